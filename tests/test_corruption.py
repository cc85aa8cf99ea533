"""One flipped byte in a model blob, an attachment or a manifest: loading raises IntegrityError naming
the digest before any byte reaches the unpickler, and fsck reports exactly that object."""

from __future__ import annotations

import pathlib

import pytest
from support.trust_helpers import corrupt_object, restore_object

from roro import IntegrityError, Project
from roro.check import CORRUPT_OBJECT, fsck

# gc with a grace period below the production floor (nobody else writes here)
pytestmark = pytest.mark.usefixtures("no_gc_floor")


class WritesMarker:
    """Unpickling this runs ``Path(marker).write_text("pwned")``: proof the unpickler ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (pathlib.Path(self.marker), "pwned"))


@pytest.fixture
def project(store_url):
    return Project("p", store=store_url)


def save_marked(repo, marker, attachment=b"attached bytes"):
    image = repo.new_image(WritesMarker(marker))
    image["accuracy"] = 0.9
    image.attach("notes/log.txt", attachment)
    return image.save(comment="marked")


def test_intact_pickle_does_run_the_marker(project, tmp_path):
    """The control: without corruption, loading this model really writes the marker, so the tests
    below would see it if the unpickler ran."""
    repo = project.get_model_repository("m")
    save_marked(repo, tmp_path / "marker")
    repo.get_model()
    assert (tmp_path / "marker").read_text() == "pwned"


def test_flipped_byte_in_model_blob(project, tmp_path):
    repo = project.get_model_repository("m")
    image = save_marked(repo, tmp_path / "marker")
    blob = image.manifest["model"]["digest"]
    corrupt_object(project.store, blob)

    with pytest.raises(IntegrityError) as e:
        repo.get_model(1)
    assert e.value.digest == blob and blob in str(e.value)
    assert e.value.expected == blob and e.value.actual not in (None, blob)
    assert not (tmp_path / "marker").exists(), "the unpickler ran on corrupted bytes"

    assert fsck(project.store).ok  # without --read-data blobs are only checked to exist
    report = fsck(project.store, read_data=True)
    assert [(p.kind, p.digest, p.repository, p.version, p.object) for p in report.problems] == [
        (CORRUPT_OBJECT, blob, "m", 1, "model")]
    problem = report.problems[0]
    assert problem.expected == blob and problem.actual == e.value.actual
    assert problem.project == "p" and problem.references == ["p/m:1 (model)"]


def test_flipped_byte_in_attachment(project, tmp_path):
    repo = project.get_model_repository("m")
    image = save_marked(repo, tmp_path / "marker")
    att = repo.get_model_image(1).get_attachment("notes/log.txt")
    original = corrupt_object(project.store, att.digest)

    with pytest.raises(IntegrityError) as e:
        att.read()
    assert e.value.digest == att.digest
    with pytest.raises(IntegrityError):
        att.download(tmp_path / "out")
    assert not (tmp_path / "out" / "notes" / "log.txt").exists()
    report = fsck(project.store, read_data=True)
    assert [(p.kind, p.digest, p.object) for p in report.problems] == [
        (CORRUPT_OBJECT, att.digest, "attachment notes/log.txt")]

    # Repaired, fsck is clean again and the data loads (git t1450 ends the same way).
    restore_object(project.store, att.digest, original)
    assert fsck(project.store, read_data=True).ok
    assert att.read() == b"attached bytes"
    assert image.version == 1


def test_flipped_byte_in_manifest(project, tmp_path):
    repo = project.get_model_repository("m")
    image = save_marked(repo, tmp_path / "marker")
    corrupt_object(project.store, image.digest)

    with pytest.raises(IntegrityError) as e:
        repo.get_model()
    assert e.value.digest == image.digest
    with pytest.raises(IntegrityError):
        repo.get_model_image(1)
    assert not (tmp_path / "marker").exists()

    for read_data in (False, True):  # manifests are always read, so always checked
        report = fsck(project.store, read_data=read_data)
        assert [(p.kind, p.digest, p.version, p.object) for p in report.problems] == [
            (CORRUPT_OBJECT, image.digest, 1, "manifest")]


def test_shared_blob_is_reported_once_with_every_reference(project, tmp_path):
    repo = project.get_model_repository("m")
    first = repo.new_image({"same": "model"})
    first.save()
    second = repo.new_image({"same": "model"})
    second["run"] = 2
    second.save()
    blob = first.manifest["model"]["digest"]
    assert second.manifest["model"]["digest"] == blob  # dedup
    corrupt_object(project.store, blob)
    report = fsck(project.store, read_data=True)
    assert len(report.problems) == 1
    assert report.problems[0].references == ["p/m:1 (model)", "p/m:2 (model)"]


def test_corrupt_unreferenced_object_is_a_problem_but_does_not_block_gc(project):
    from roro.check import gc
    project.store.ensure_initialized()  # (objects without roro.json would be a damaged store)
    digest = project.store.objects.put_bytes(b"orphan bytes")
    corrupt_object(project.store, digest)
    report = fsck(project.store, read_data=True)
    assert [(p.kind, p.digest, p.repository) for p in report.problems] == [
        (CORRUPT_OBJECT, digest, None)]
    assert report.unreferenced == [digest]
    assert [o.digest for o in gc(project.store, grace_seconds=0).deleted] == [digest]
    assert fsck(project.store, read_data=True).ok
