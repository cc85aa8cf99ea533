"""Hostile and unlucky files in a store (issue 13, items 2 and 6).

- "Present" means a regular file of the right size: a directory, a dangling symbolic link, a FIFO
  or a truncated copy at an object's path never counts as the stored object; a save replaces it
  (or, for a directory, fails naming the path) and never reports a version whose object is not
  there.
- Nothing hangs, nothing explodes: a FIFO, a symbolic link (to ``/dev/zero`` or anywhere) or a
  directory where roro keeps a file is never opened for reading nor followed; fsck reports each.
  Every read is bounded by what its kind may hold (an event 1 MiB, a manifest 16 MiB): a 200 MB
  forged event costs bounded memory and fails clearly. A directory at the next log slot is not
  "another writer": the save fails at once, naming the path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import tracemalloc

import pytest
from click.testing import CliRunner
from conftest import save_image
from support.deadline import within

from roro import IntegrityError, InvalidMetadataError, Project, Store
from roro.check import SPECIAL_FILE, fsck, gc
from roro.cli import main
from roro.refs.events import MAX_EVENT_SIZE
from roro.storage.layout import log_key, object_key
from roro.sync import sync

#: these tests collect what they just made, with nobody else writing: any grace period
pytestmark = pytest.mark.usefixtures("no_gc_floor")

MODEL = {"weights": list(range(50))}
SQUATTERS = ["directory", "dangling symlink", "fifo", "truncated file", "symlink to the bytes"]
TRAPS = ["fifo", "symlink to /dev/zero", "symlink to the bytes", "directory"]


def model_digest(tmp_path) -> str:
    """The digest of MODEL's pickle (the same bytes in every store)."""
    image = save_image(Project("p", store=str(tmp_path / "probe")).get_model_repository("m"), MODEL)
    return image.manifest["model"]["digest"]


def place(path: str, what: str, good: bytes = b"") -> None:
    """Put ``what`` at ``path`` (replacing a file there), as a careless or hostile hand would."""
    if os.path.lexists(path):
        os.chmod(path, 0o644)
        os.unlink(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if what == "directory":
        os.mkdir(path)
        open(os.path.join(path, "inside"), "wb").close()
    elif what == "dangling symlink":
        os.symlink(path + ".nowhere", path)
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "truncated file":
        with open(path, "wb") as f:
            f.write(good[: len(good) // 2])
    elif what == "symlink to the bytes":
        outside = os.path.join(tempfile.mkdtemp(prefix="outside-"), "copy")
        with open(outside, "wb") as f:
            f.write(good)
        os.symlink(outside, path)
    elif what == "symlink to /dev/zero":
        os.symlink("/dev/zero", path)
    else:
        raise ValueError(what)


# -- present means a regular file of the right size -------------------------------------------------
@pytest.mark.parametrize("what", SQUATTERS)
def test_a_save_never_takes_a_squatter_for_the_object(tmp_path, what):
    digest = model_digest(tmp_path)
    good = open(os.path.join(tmp_path / "probe", *object_key(digest).split("/")), "rb").read()
    root = str(tmp_path / "store")
    Store(root).ensure_initialized()
    path = os.path.join(root, *object_key(digest).split("/"))
    place(path, what, good)
    repo = Project("p", store=root).get_model_repository("m")

    def save_and_load():
        try:
            save_image(repo, MODEL)
        except IntegrityError as e:
            return "refused", str(e)
        fresh = Project("p", store=root).get_model_repository("m")
        return "saved", fresh.get_model()

    outcome, value = within(30, save_and_load, "a save over a squatter")
    if what == "directory":
        assert outcome == "refused" and path in value and "directory" in value
        assert not repo.exists()  # no version names an object that is not there
        assert [p.key for p in fsck(repo.store).problems if p.kind == SPECIAL_FILE] == [
            object_key(digest)]
    else:
        assert outcome == "saved" and value == MODEL
        assert not os.path.islink(path) and os.path.isfile(path)
        assert open(path, "rb").read() == good
        assert fsck(repo.store, read_data=True).ok


def test_a_truncated_object_is_rewritten_on_every_backend(store_url, tmp_path):
    repo = Project("p", store=store_url).get_model_repository("m")
    digest = save_image(repo, MODEL).manifest["model"]["digest"]
    store = Store(store_url)
    good = store.backend.get(object_key(digest))
    store.backend.delete(object_key(digest))
    store.backend.put(object_key(digest), good[:10])  # what a crashed copy by hand leaves
    save_image(Project("p", store=store_url).get_model_repository("m"), MODEL)
    assert Store(store_url).backend.get(object_key(digest)) == good
    assert fsck(Store(store_url), read_data=True).ok


# -- nothing hangs, nothing is followed ---------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    root = str(tmp_path / "store")
    repo = Project("p", store=root).get_model_repository("m")
    image = save_image(repo, MODEL, attachments={"notes.txt": b"notes"})
    save_image(repo, {"v": 2})
    return root, image


@pytest.mark.parametrize("what", TRAPS)
def test_a_trap_at_an_object_path_never_hangs_a_read(saved, tmp_path, what):
    root, image = saved
    digest = image.manifest["model"]["digest"]
    key = object_key(digest)
    path = os.path.join(root, *key.split("/"))
    place(path, what, open(path, "rb").read())

    def load():
        try:
            Project("p", store=root).get_model_repository("m").get_model(1)
        except IntegrityError as e:
            return str(e)
        return "loaded"

    message = within(20, load, "a load")
    assert path in message and what.split()[0] in message.lower().replace("symbolic link", "symlink")

    os.chdir(tmp_path)

    def download():
        result = CliRunner().invoke(main, ["--store", root, "--project", "p", "models:download",
                                           "m:1"])
        return result.exit_code, result.output

    code, output = within(20, download, "a download")
    assert code == 4 and len(output.strip().splitlines()) == 1, output
    assert not os.path.exists(tmp_path / "m-v1.pkl")

    report = within(30, lambda: fsck(Store(root), read_data=True), "fsck --read-data")
    assert (SPECIAL_FILE, key) in [(p.kind, p.key) for p in report.problems]
    assert not report.ok

    backup = str(tmp_path / "backup")
    failed = within(30, lambda: [r.repository for r in sync(root, backup).failed], "a sync")
    assert failed == ["m"]


@pytest.mark.parametrize("what", ["fifo", "symlink to /dev/zero", "symlink to the bytes"])
def test_a_trap_at_a_log_event_never_hangs_a_read(saved, what):
    root, _ = saved
    path = os.path.join(root, *log_key("p", "m", 2).split("/"))
    place(path, what, open(path, "rb").read())
    for name in os.listdir(root):  # a reader that has not indexed event 2 yet
        if name.startswith("index.sqlite3"):
            os.unlink(os.path.join(root, name))

    def read():
        try:
            Project("p", store=root).get_model_repository("m").list_model_images()
        except IntegrityError as e:
            return str(e)
        return "read"

    assert "event 2" in within(20, read, "a refresh")
    report = within(30, lambda: fsck(Store(root)), "fsck")
    kinds = {(p.kind, p.key) for p in report.problems}
    assert (SPECIAL_FILE, log_key("p", "m", 2)) in kinds
    assert "broken-log" in {p.kind for p in report.problems}


def test_a_symlinked_directory_inside_the_store_is_not_followed(saved, tmp_path):
    root, image = saved
    digest = image.manifest["model"]["digest"]
    folder = os.path.join(root, "objects", "sha256", digest[7:9])
    elsewhere = str(tmp_path / "elsewhere")
    shutil.copytree(folder, elsewhere)
    shutil.rmtree(folder)
    os.symlink(elsewhere, folder)
    with pytest.raises(IntegrityError, match="symbolic link"):
        Project("p", store=root).get_model_repository("m").get_model(1)
    assert (SPECIAL_FILE, f"objects/sha256/{digest[7:9]}") in [
        (p.kind, p.key) for p in fsck(Store(root)).problems]


def test_the_store_root_itself_may_be_a_symlink(saved, tmp_path):
    root, _ = saved
    link = str(tmp_path / "link-to-store")
    os.symlink(root, link)
    repo = Project("p", store=link).get_model_repository("m")
    assert repo.get_model(1) == MODEL
    save_image(repo, {"v": 3})
    report = fsck(Store(link), read_data=True)
    assert report.ok and not report.problems
    gc(Store(link), grace_seconds=0)


# -- a directory at the next log slot ---------------------------------------------------------------
def test_a_directory_at_the_next_log_slot_fails_at_once_naming_it(saved):
    root, _ = saved
    path = os.path.join(root, *log_key("p", "m", 3).split("/"))
    os.mkdir(path)
    repo = Project("p", store=root).get_model_repository("m")

    def save():
        try:
            save_image(repo, {"v": 3})
        except IntegrityError as e:
            return str(e)
        return "saved"

    message = within(20, save, "a save")  # it used to retry 10,000 times (281 s)
    assert path in message and "directory" in message and "other writers" not in message
    for call in (lambda: repo.add_tag("prod", 1), lambda: repo.delete_version(2)):
        with pytest.raises(IntegrityError, match="directory"):
            call()
    report = fsck(Store(root))
    problem = next(p for p in report.problems if p.kind == SPECIAL_FILE)
    assert problem.key == log_key("p", "m", 3) and problem.blocks_gc
    os.rmdir(path)
    save_image(repo, {"v": 3})  # once it is moved away, writing goes on
    assert fsck(Store(root)).ok


# -- bounded reads --------------------------------------------------------------------------------
def peak_memory(url: str, fn) -> tuple[object, int]:
    """``fn(store)`` and the peak of memory Python allocated meanwhile (tracemalloc), in a child,
    with a fresh Store of ``url`` whose backend is ready (boto3 imported, client made)."""
    def run():
        store = Store(url)
        store.backend.exists("roro.json")
        tracemalloc.start()
        try:
            result = fn(store)
        except Exception as e:  # noqa: BLE001
            result = f"{type(e).__name__}: {e}"
        return result, tracemalloc.get_traced_memory()[1]
    return within(60, run, "a bounded read")


def forged_event_size(store_url: str) -> int:
    # A sparse 200 MB file costs nothing on a folder; an S3 server stores real bytes (20 MB).
    return 200_000_000 if "://" not in store_url else 20_000_000


def test_a_huge_forged_event_costs_bounded_memory_and_fails_clearly(store_url):
    repo = Project("p", store=store_url).get_model_repository("m")
    save_image(repo, MODEL)
    size = forged_event_size(store_url)
    key = log_key("p", "m", 2)
    backend = Store(store_url).backend
    if "://" not in store_url:
        path = os.path.join(store_url, *key.split("/"))
        with open(path, "wb") as f:
            f.truncate(size)
    else:
        backend.put(key, b"{" + b" " * (size - 2) + b"}")

    def read(store):
        return Project("p", store=store).get_model_repository("m").list_model_images()

    result, peak = peak_memory(store_url, read)
    assert "IntegrityError" in result and f"more than the {MAX_EVENT_SIZE}" in result, result
    assert peak < 8 * MAX_EVENT_SIZE, peak  # it used to cost ~4x the event's size
    report = fsck(Store(store_url))
    assert any(p.kind == "broken-log" and p.seq == 2 and "more than" in p.message
               for p in report.problems)


def test_an_event_naming_a_huge_blob_as_its_image_costs_bounded_memory(store_url, monkeypatch):
    monkeypatch.setenv("RORO_CHUNKS", f"{1 << 30},1048576,4194304,16777216")  # one 20 MB object
    repo = Project("p", store=store_url).get_model_repository("m")
    blob = save_image(repo, os.urandom(20_000_000)).manifest["model"]["digest"]
    log = Store(store_url).reflog("p", "m")
    last = log.read_all()[-1]
    log.append(last.seq + 1, last.hash, "version", "x", "2030-01-01T00:00:00Z", version=2,
               image=blob, comment="")

    def read(store):  # the version is damaged (issue 13.7), its manifest never read whole
        store.refresh("p", "m")
        return store.index.damaged_versions("p", "m")

    result, peak = peak_memory(store_url, read)
    assert isinstance(result, dict) and list(result) == [2] and "more than" in result[2], result
    assert peak < 24_000_000, peak


def test_an_event_too_large_to_read_back_is_never_written(tmp_path, monkeypatch):
    repo = Project("p", store=str(tmp_path / "s")).get_model_repository("m")
    monkeypatch.setenv("RORO_AUTHOR", "x" * (MAX_EVENT_SIZE + 1))
    with pytest.raises(InvalidMetadataError, match="RORO_AUTHOR"):
        save_image(repo, MODEL)
    assert not repo.exists()
def test_an_object_path_that_is_a_directory_is_a_clear_error(tmp_path):
    store = str(tmp_path / "store")
    repo = Project("p", store=store).get_model_repository("m")
    image = save_image(repo, {"m": 1}, attachments={"f": b"payload"})
    digest = image.get_attachment("f").digest
    path = os.path.join(store, "objects", "sha256", digest[7:9], digest[9:])
    os.chmod(path, 0o644)
    os.unlink(path)
    os.mkdir(path)
    with pytest.raises(IntegrityError, match="directory"):
        repo.get_model_image().get_attachment("f").read()
    result = CliRunner().invoke(main, ["--store", store, "--project", "p", "models:download", "m",
                                       "--attachments", str(tmp_path / "out")])
    assert result.exit_code == 4 and "directory" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
