"""The Python API contract of issue 2, item by item."""

from __future__ import annotations

import io
import json
import os
import pathlib
import re

import cloudpickle
import pytest

import roro
from roro import (
    ConflictError,
    ImmutableError,
    IntegrityError,
    InvalidMetadataError,
    InvalidNameError,
    NotFoundError,
    Project,
    RoroError,
    Store,
)
from roro.storage.layout import object_key
from roro.storage.wrappers import CountingBackend


class Model:
    def __init__(self, w):
        self.w = w

    def predict(self, x):
        return self.w * x


@pytest.fixture
def project(store_url):
    return Project("proj", store_url)


@pytest.fixture
def repo(project):
    return project.get_model_repository("credit-risk")


def save(repo, w=1, comment="", **meta):
    img = repo.new_image(Model(w))
    for k, v in meta.items():
        img[k] = v
    return img.save(comment=comment)


def test_exports():
    for name in ("get_current_project", "Project", "ModelRepository", "ModelImage", "RoroError",
                 "NotFoundError", "IntegrityError", "ConflictError", "InvalidNameError"):
        assert name in roro.__all__ and hasattr(roro, name)
    assert issubclass(InvalidNameError, ValueError)
    for e in (NotFoundError, IntegrityError, ConflictError, InvalidNameError):
        assert issubclass(e, RoroError)


def test_save_and_load_roundtrip(repo):
    img = repo.new_image(Model(3))
    assert img.version is None and img.digest is None
    img["Accuracy"] = 0.89
    img.save(comment="first")
    assert img.version == 1 and re.fullmatch(r"sha256:[0-9a-f]{64}", img.digest)
    assert img.comment == "first"
    loaded = repo.get_model_image(version=1)
    assert loaded.digest == img.digest and loaded.Accuracy == 0.89
    assert loaded.get_model().predict(2) == 6
    assert repo.get_model().predict(1) == 3


def test_numpy_arrays_roundtrip(repo):
    """Pickle protocol 5 hands large array buffers to the spool as PickleBuffers (a crash once)."""
    import numpy as np
    model = {"weights": np.arange(300_000, dtype=np.float32).reshape(600, 500),
             "bias": np.asfortranarray(np.ones((300, 200))), "small": np.zeros(3)}
    repo.new_image(model).save()
    loaded = repo.get_model()
    for k, v in model.items():
        assert loaded[k].dtype == v.dtype and np.array_equal(loaded[k], v)
    assert repo.get_model_image().model_size > model["weights"].nbytes + model["bias"].nbytes


def test_versions_are_sequential_and_latest_is_highest(repo):
    for i in range(1, 4):
        assert save(repo, i).version == i
    assert repo.get_model_image().version == 3
    assert repo.get_model_image(tag="latest").version == 3
    assert repo.get_model(version=2).w == 2
    assert repo.get_model(version="2").w == 2
    assert [i.version for i in repo.list_model_images()] == [3, 2, 1]
    assert [i.version for i in repo.list_model_images(limit=2)] == [3, 2]
    assert [i.version for i in repo.list_model_images(limit=2, before=3)] == [2, 1]


def test_metadata_dict_and_attribute_style(repo):
    img = repo.new_image(Model(1))
    img["Input-Data-Source"] = "s3://x"
    img.Accuracy = 0.5
    img.params = {"depth": 3, "layers": [1, 2]}
    assert img.Accuracy == 0.5 and img["Accuracy"] == 0.5
    assert img.params == {"depth": 3, "layers": [1, 2]}
    img.save()
    md = repo.get_model_image().get_metadata()
    assert md["Input-Data-Source"] == "s3://x" and md["Accuracy"] == 0.5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", md["timestamp"])
    assert md["author"]


def test_author_from_env(repo, monkeypatch):
    monkeypatch.setenv("RORO_AUTHOR", "ana@example.com")
    assert save(repo).get_metadata()["author"] == "ana@example.com"


def test_set_metadata_replaces(repo):
    img = repo.new_image(Model(1))
    img["a"] = 1
    img.set_metadata({"b": 2})
    assert "a" not in img and img["b"] == 2
    img.save()
    assert {k: v for k, v in img.get_metadata().items() if k not in ("timestamp", "author")} == {"b": 2}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object(), {1: "x"}, b"bytes",
                                   "\ud800", 2**70, {"k": [float("-inf")]}])
def test_bad_metadata_values_refused_when_set(repo, value):
    img = repo.new_image(Model(1))
    with pytest.raises(InvalidMetadataError) as e:
        img["x"] = value
    assert isinstance(e.value, ValueError) and isinstance(e.value, RoroError)
    assert "x" not in img


@pytest.mark.parametrize("key", ["", "timestamp", "author", 3, "x" * 300, "a\x00b"])
def test_bad_metadata_keys_refused(repo, key):
    with pytest.raises(InvalidMetadataError):
        repo.new_image(Model(1))[key] = 1


def test_metadata_is_copied(repo):
    img = repo.new_image(Model(1))
    value = [1, 2]
    img["l"] = value
    value.append(3)
    assert img["l"] == [1, 2]


def test_reserved_attributes_not_metadata(repo):
    img = repo.new_image(Model(1))
    with pytest.raises(AttributeError):
        img.version = 3
    with pytest.raises(AttributeError):
        img.nothing_here  # noqa: B018


def test_saved_image_is_immutable(repo):
    img = save(repo, a=1)
    loaded = repo.get_model_image()
    for target in (img, loaded):
        with pytest.raises(ImmutableError, match="saved and cannot be changed"):
            target["a"] = 2
        with pytest.raises(ImmutableError):
            target.Accuracy = 1
        with pytest.raises(ImmutableError):
            target.set_metadata({})
        with pytest.raises(ImmutableError):
            target.attach("x.txt", b"x")
        with pytest.raises(ImmutableError):
            target.save()
    assert repo.get_model_image()["a"] == 1


def test_attach_all_source_kinds(repo, tmp_path):
    (tmp_path / "log.txt").write_text("héllo\n", encoding="utf-8")
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01\x02")
    img = repo.new_image(Model(1))
    img.attach("text.txt", open(tmp_path / "log.txt", encoding="utf-8"))
    img.attach("binary.dat", open(tmp_path / "bin.dat", "rb"))
    img.attach("raw.bin", b"raw bytes")
    img.attach("from-str-path.txt", str(tmp_path / "log.txt"))
    img.attach("plots/from-pathlike.txt", pathlib.Path(tmp_path / "log.txt"))
    img.attach("stringio.txt", io.StringIO("ünï"))
    img.save()
    atts = {a.name: a for a in repo.get_model_image().get_attachments()}
    assert atts["text.txt"].read() == "héllo\n".encode()
    assert atts["binary.dat"].read() == b"\x00\x01\x02"
    assert atts["raw.bin"].read() == b"raw bytes"
    assert atts["from-str-path.txt"].read() == "héllo\n".encode()
    assert atts["plots/from-pathlike.txt"].size == len("héllo\n".encode())
    assert atts["stringio.txt"].read() == "ünï".encode()
    with atts["raw.bin"].open() as f:
        assert f.read() == b"raw bytes"
    assert atts["raw.bin"].digest.startswith("sha256:")
    assert sorted(atts) == [a.name for a in repo.get_model_image().get_attachments()]


def test_attach_snapshot_and_replace(repo, tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("one")
    img = repo.new_image(Model(1))
    img.attach("f.txt", p)
    p.write_text("two")  # later changes do not affect the image
    img.attach("g.txt", b"first")
    img.attach("g.txt", b"second")
    img.save()
    atts = {a.name: a.read() for a in repo.get_model_image().get_attachments()}
    assert atts == {"f.txt": b"one", "g.txt": b"second"}


def test_attach_missing_file_is_clear_error(repo, tmp_path):
    with pytest.raises(RoroError, match="cannot read attachment"):
        repo.new_image(Model(1)).attach("x", str(tmp_path / "nope"))


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../../b", "C:\\x", "..\\x",
                                  "a\x00b", "", ".", "..", "x" * 300, "a//b", "a/./b", " lead",
                                  "trail.", "q?.txt"])
def test_hostile_attachment_names_refused(repo, name):
    with pytest.raises(InvalidNameError):
        repo.new_image(Model(1)).attach(name, b"x")


def test_case_colliding_attachment_names_refused(repo):
    img = repo.new_image(Model(1))
    img.attach("Log.txt", b"1")
    with pytest.raises(InvalidNameError, match="case"):
        img.attach("log.txt", b"2")


@pytest.mark.parametrize("name", ["", "Upper", "-lead", ".lead", "a..b", "a/b", "a b", "x" * 101,
                                  "ü", "a:b", None, 3])
def test_invalid_repository_names(project, name):
    with pytest.raises(InvalidNameError):
        project.get_model_repository(name)


@pytest.mark.parametrize("name", ["a", "credit-risk", "m.v2_x", "0abc", "x" * 100])
def test_valid_repository_names(project, name):
    assert project.get_model_repository(name).name == name


def test_tags(repo):
    save(repo, 1)
    save(repo, 2)
    assert repo.get_tags() == {"latest": 2}
    repo.add_tag("production", 1)
    assert repo.get_tags() == {"latest": 2, "production": 1}
    assert repo.get_model_image(tag="production").version == 1
    assert repo.get_model(tag="production").w == 1
    repo.add_tag("production", "2")  # move
    repo.add_tag("production", 2)  # no-op: not recorded
    repo.remove_tag("production")
    assert repo.get_tags() == {"latest": 2}
    hist = repo.get_tag_history("production")
    assert [(h["version"], h["previous"]) for h in hist] == [(1, None), (2, 1), (None, 2)]
    assert all(h["author"] and h["time"] for h in hist)


def test_tag_moves_are_returned(repo):
    save(repo, 1)
    save(repo, 2)
    made = repo.add_tag("production", 1)
    assert (made.tag, made.version, made.previous, made.changed) == ("production", 1, None, True)
    moved = repo.add_tag("production", 2)
    assert (moved.version, moved.previous, moved.seq) == (2, 1, made.seq + 1)
    same = repo.add_tag("production", 2)
    assert (same.version, same.previous, same.changed, same.seq) == (2, 2, False, None)
    removed = repo.remove_tag("production")
    assert (removed.version, removed.previous, removed.seq) == (None, 2, moved.seq + 1)
    assert [h["seq"] for h in repo.get_tag_history()] == [made.seq, moved.seq, removed.seq]


def test_a_tag_move_reports_the_move_it_made_when_another_writer_came_first(repo):
    """The move is decided at the log's tail: when another writer moves the tag between this
    writer's look and its append, the append loses the slot, decides again, and reports the
    previous target it really moved the tag from (not the one it first saw)."""
    for w in (1, 2, 3):
        save(repo, w)
    repo.add_tag("production", 1)
    store = repo.project.store

    class OtherWriterFirst(CountingBackend):
        raced = False

        def put_if_absent(self, key, data):
            if "/log/" in key and not self.raced:
                self.raced = True
                Project(repo.project.name, store).get_model_repository(repo.name).add_tag(
                    "production", 2)
            return super().put_if_absent(key, data)

    racing = Project(repo.project.name, Store(OtherWriterFirst(store.backend)))
    change = racing.get_model_repository(repo.name).add_tag("production", 3)
    assert (change.version, change.previous) == (3, 2)
    assert [(h["previous"], h["version"]) for h in repo.get_tag_history()] == [
        (None, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize("tag", ["latest", "123", "Bad", "a..b", ""])
def test_invalid_tags(repo, tag):
    save(repo)
    with pytest.raises(InvalidNameError):
        repo.add_tag(tag, 1)


def test_tag_errors(repo):
    with pytest.raises(NotFoundError):
        repo.add_tag("prod", 1)
    save(repo)
    with pytest.raises(NotFoundError, match="version 7"):
        repo.add_tag("prod", 7)
    with pytest.raises(NotFoundError, match="no tag"):
        repo.remove_tag("prod")
    with pytest.raises(NotFoundError, match="no tag"):
        repo.get_model_image(tag="prod")


def test_missing_repository_and_version(project, repo):
    with pytest.raises(NotFoundError, match="does not exist"):
        repo.get_model_image()
    with pytest.raises(NotFoundError):
        repo.get_tags()
    with pytest.raises(NotFoundError):
        repo.list_model_images()
    save(repo)
    with pytest.raises(NotFoundError, match="version 5"):
        repo.get_model_image(version=5)
    with pytest.raises(InvalidNameError):
        repo.get_model_image(version=0)
    with pytest.raises(ValueError):
        repo.get_model_image(version=1, tag="x")


def test_project_repositories(project):
    assert project.list_model_repositories() == []
    for name in ("zeta", "alpha", "mid"):
        save(project.get_model_repository(name))
    assert [r.name for r in project.list_model_repositories()] == ["alpha", "mid", "zeta"]
    created = project.create_model_repository("empty")
    assert created.name == "empty" and created.exists()
    with pytest.raises(ConflictError, match="already exists"):
        project.create_model_repository("empty")
    with pytest.raises(ConflictError):
        project.create_model_repository("alpha")
    assert "empty" in [r.name for r in project.list_model_repositories()]
    with pytest.raises(NotFoundError, match="no versions"):
        created.get_model_image()
    assert created.get_tags() == {}
    assert save(created).version == 1


def test_projects_are_separate_namespaces(store_url):
    a, b = Project("a", store_url), Project("b", store_url)
    save(a.get_model_repository("m"), 1)
    assert b.list_model_repositories() == []
    with pytest.raises(NotFoundError):
        b.get_model_repository("m").get_model()


def test_identical_blobs_stored_once(tmp_path):
    store = tmp_path / "s"
    repo = Project("p", str(store)).get_model_repository("m")
    for _ in range(3):
        img = repo.new_image({"weights": list(range(1000))})
        img.attach("log.txt", b"same log")
        img.save()
    objects = [p for p in (store / "objects").rglob("*") if p.is_file()]
    # one model blob + one attachment blob + three manifests (their timestamps differ)
    assert len(objects) == 5
    logs = list((store / "refs" / "p" / "m" / "log").iterdir())
    assert len(logs) == 3


def test_constructing_touches_nothing(tmp_path, monkeypatch):
    store = tmp_path / "never"
    p = Project("p", str(store))
    p.get_model_repository("m")
    assert p.list_model_repositories() == []
    with pytest.raises(NotFoundError):
        p.get_model_repository("m").get_model()
    assert not store.exists()


def test_unknown_store_format_refused(tmp_path):
    store = tmp_path / "s"
    store.mkdir()
    (store / "roro.json").write_text(json.dumps({"format": 99, "id": "x"}))
    with pytest.raises(roro.StoreError, match="format 99"):
        Project("p", str(store)).list_model_repositories()


def test_corrupted_model_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    repo = Project("p", str(tmp_path / "s")).get_model_repository("m")
    img = save(repo, 5)
    digest = img.manifest["model"]["digest"]
    path = tmp_path / "s" / object_key(digest)
    os.chmod(path, 0o644)
    import pickle

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(IntegrityError) as e:
        repo.get_model()
    assert e.value.digest == digest and digest in str(e.value)
    assert not marker.exists()


def test_index_is_derived_data(tmp_path):
    store = tmp_path / "s"
    repo = Project("p", str(store)).get_model_repository("m")
    save(repo, 1, a=1)
    save(repo, 2, a=2)
    repo.add_tag("prod", 1)
    before = repo.project.store.index.dump()
    repo.project.store.close()
    for f in store.glob("index.sqlite3*"):
        f.unlink()
    repo2 = Project("p", str(store)).get_model_repository("m")
    assert repo2.get_tags() == {"latest": 2, "prod": 1}
    assert repo2.project.store.index.dump() == before


def test_two_handles_see_each_others_saves(store_url):
    a = Project("p", store_url).get_model_repository("m")
    b = Project("p", store_url).get_model_repository("m")
    save(a, 1)
    assert save(b, 2).version == 2
    assert a.get_model_image().version == 2


def test_download_writes_the_model_and_attachments_verified(repo, tmp_path):
    img = repo.new_image(Model(5))
    img.attach("notes/a.txt", b"a")
    img.attach("b.txt", b"b")
    img.save()
    done = img.download(tmp_path, attachments=tmp_path / "files")
    assert done.model == str(tmp_path / f"{repo.name}-v1.pkl")
    assert done.attachments == [str(tmp_path / "files" / "b.txt"),
                                str(tmp_path / "files" / "notes" / "a.txt")]
    assert (tmp_path / "files" / "notes" / "a.txt").read_bytes() == b"a"
    with open(done.model, "rb") as f:
        assert cloudpickle.load(f).w == 5
    again = img.download(tmp_path)  # the same bytes are there: nothing to write (issue 14)
    assert again.unchanged == [done.model] and again.model == done.model
    os.chmod(done.model, 0o644)
    with open(done.model, "wb") as f:
        f.write(b"other")
    with pytest.raises(roro.DownloadError, match="exists with other bytes"):
        img.download(tmp_path)
    assert img.download(tmp_path, force=True).model == done.model
    with pytest.raises(RoroError, match="not saved"):
        repo.new_image(Model(6)).download(tmp_path)
