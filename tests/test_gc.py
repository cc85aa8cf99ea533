"""gc: deletes exactly the unreachable objects older than the grace period, never a live one, never
anything while the store has a problem that hides what is reachable."""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import make_store_url
from support.trust_helpers import AGEABLE, age_all_objects, age_key, event_key

from roro import NotFoundError, Project, Store
from roro.check import DEFAULT_GRACE_SECONDS, fsck, gc, parse_duration
from roro.errors import GcRefusedError, InvalidDurationError
from roro.faults import set_crash_handler
from roro.storage.layout import object_key

# gc with a grace period below the production floor (nobody else writes here)
pytestmark = pytest.mark.usefixtures("no_gc_floor")

DAY = 86400


@pytest.fixture
def project(store_url):
    return Project("p", store=store_url)


@pytest.fixture(params=AGEABLE)
def ageable_project(request, tmp_path):
    """A project on each backend kind whose modification times a test can set back."""
    return Project("p", store=make_store_url(request.param, tmp_path))


def save(repo, model, attachment=None, **metadata):
    image = repo.new_image(model)
    for k, v in metadata.items():
        image[k] = v
    if attachment is not None:
        image.attach("a.txt", attachment)
    return image.save()


def objects_of(image) -> set[str]:
    m = image.manifest
    return {image.digest, m["model"]["digest"], *(a["digest"] for a in m["attachments"])}


def stored(store) -> set[str]:
    return set(store.objects.list_digests())


def test_gc_on_an_empty_store(store_url):
    report = gc(Store(store_url))
    assert report.deleted == [] and report.freed_bytes == 0


def test_gc_deletes_old_orphans_and_keeps_everything_live(ageable_project):
    project = ageable_project
    repo = project.get_model_repository("m")
    images = [save(repo, {"i": i}, attachment=f"att {i}".encode(), i=i) for i in range(3)]
    live = set().union(*(objects_of(i) for i in images))
    orphan = project.store.objects.put_bytes(b"left by a crashed save")
    age_all_objects(project.store, 2 * DAY)

    dry = gc(project.store, dry_run=True)
    assert [o.digest for o in dry.deleted] == [orphan]
    assert dry.freed_bytes == len(b"left by a crashed save")
    assert orphan in stored(project.store), "a dry run deleted something"

    report = gc(project.store)
    assert [o.digest for o in report.deleted] == [orphan]
    assert report.to_dict() == {**dry.to_dict(), "dry_run": False, "seconds": report.seconds,
                                "deleted": report.to_dict()["deleted"]}
    assert stored(project.store) == live
    assert fsck(project.store, read_data=True).ok
    for i, image in enumerate(images):
        assert repo.get_model(image.version) == {"i": i}
    assert gc(project.store).deleted == []  # nothing left to do
    json.dumps(report.to_dict())


def test_grace_period_spares_young_orphans(project):
    """Generic over backends: no mtime is faked, the clock really moves."""
    store = project.store
    project.get_model_repository("m").new_image(1).save()
    old = store.objects.put_bytes(b"old orphan")
    # S3 keeps modification times to the second, and gc counts every object one second
    # younger for it; the margins leave gc two seconds to start after the young orphan was
    # written, even on a loaded machine
    time.sleep(4.2)
    young = store.objects.put_bytes(b"young orphan")
    report = gc(store, grace_seconds=3.0)
    assert [o.digest for o in report.deleted] == [old]
    assert (report.kept_young, report.kept_young_bytes) == (1, len(b"young orphan"))
    assert young in stored(store)
    assert [o.digest for o in gc(store, grace_seconds=0).deleted] == [young]


def test_default_grace_is_a_day(ageable_project):
    project = ageable_project
    assert DEFAULT_GRACE_SECONDS == DAY
    project.get_model_repository("m").new_image(1).save()
    orphan = project.store.objects.put_bytes(b"orphan")
    age_key(project.store, object_key(orphan), DAY - 60)
    assert gc(project.store).deleted == []
    age_key(project.store, object_key(orphan), DAY + 60)
    assert [o.digest for o in gc(project.store).deleted] == [orphan]


def test_deleted_versions_objects_are_collected_unless_a_live_version_shares_them(project):
    repo = project.get_model_repository("m")
    v1 = save(repo, {"shared": "model"}, attachment=b"only v1", run=1)
    v2 = save(repo, {"shared": "model"}, attachment=b"only v2", run=2)  # same model blob
    v3 = save(repo, {"v3": True}, attachment=b"only v1", run=3)  # v1's attachment bytes
    shared_blob = v1.manifest["model"]["digest"]
    assert v2.manifest["model"]["digest"] == shared_blob
    repo.delete_version(1)
    repo.delete_version(2)

    report = gc(project.store, grace_seconds=0)
    gone = {o.digest for o in report.deleted}
    v2_attachment = v2.manifest["attachments"][0]["digest"]
    assert gone == {v1.digest, v2.digest, shared_blob, v2_attachment}
    assert stored(project.store) == objects_of(v3)
    assert repo.get_model() == {"v3": True}
    assert repo.get_model_image().get_attachment("a.txt").read() == b"only v1"
    with pytest.raises(NotFoundError, match="deleted"):
        repo.get_model(1)
    assert fsck(project.store, read_data=True).ok


def test_index_rebuild_after_gc_collected_a_deleted_versions_manifest(project):
    """Regression: the index used to fetch the manifest of every version event when it indexed a
    log from scratch, so once gc had collected a deleted version's manifest, `index --rebuild`
    (or any fresh index) failed with 'manifest ... is missing'."""
    repo = project.get_model_repository("m")
    for i in range(3):
        save(repo, {"i": i}, i=i)
    repo.delete_version(2)
    incremental = project.store.index.dump()
    gc(project.store, grace_seconds=0)
    store = Store(project.store.url)  # a new process: no manifests remembered from the saves
    report = store.rebuild_index()
    assert report.ok and report.versions == 2, report.failed
    assert store.index.dump() == incremental
    assert [i.version for i in Project("p", store=store).get_model_repository("m")
            .list_model_images()] == [3, 1]


def test_gc_refuses_on_a_broken_log_and_deletes_nothing(project):
    repo = project.get_model_repository("m")
    for i in range(3):
        save(repo, {"i": i})
    orphan = project.store.objects.put_bytes(b"orphan")
    project.store.backend.delete(event_key(project.store, "p", "m", 2))
    before = stored(project.store)
    with pytest.raises(GcRefusedError, match="event 2 is missing") as e:
        gc(project.store, grace_seconds=0)
    assert "nothing was deleted" in str(e.value) and "roro fsck" in str(e.value)
    assert e.value.report is not None and not e.value.report.ok
    assert stored(project.store) == before and orphan in before
    with pytest.raises(GcRefusedError):
        gc(project.store, grace_seconds=0, dry_run=True)


def test_gc_refuses_when_a_live_manifest_is_missing_but_not_for_a_missing_blob(project):
    repo = project.get_model_repository("m")
    a = save(repo, {"a": 1})
    b = save(repo, {"b": 2})
    orphan = project.store.objects.put_bytes(b"orphan")
    # A missing blob: reachability is still known, so gc may run (and says what is missing).
    project.store.backend.delete(object_key(b.manifest["model"]["digest"]))
    report = gc(project.store, grace_seconds=0)
    assert [o.digest for o in report.deleted] == [orphan] and report.missing_blobs == 1
    # A missing manifest: the blobs it named are unknown, so gc must not guess.
    project.store.backend.delete(object_key(a.digest))
    with pytest.raises(GcRefusedError, match="manifest"):
        gc(project.store, grace_seconds=0)


def test_a_save_in_flight_is_never_robbed(ageable_project):
    """gc runs while a save is between writing its objects and publishing its event: the
    new manifest is young and kept; the old, unreferenced objects the save re-uses may be
    deleted (the save has not protected them yet), and the save, which looks at them again
    after its keep marker and the gc lock, writes them back before it publishes. The version
    is whole. (tests/test_gc_reuse.py runs gc at every step of a save, and a save at every
    step of gc.)"""
    project = ageable_project
    repo = project.get_model_repository("m")
    save(repo, "first")
    orphaned = save(repo, {"model": "reused"}, attachment=b"reused attachment")
    repo.delete_version(orphaned.version)  # its objects are now unreferenced...
    age_all_objects(project.store, 2 * DAY)  # ... and old

    reports = []

    def gc_now(point):
        if point == "after-manifest":
            reports.append(gc(project.store))

    previous = set_crash_handler(gc_now)
    try:
        image = save(repo, {"model": "reused"}, attachment=b"reused attachment")
    finally:
        set_crash_handler(previous)
    assert len(reports) == 1
    assert image.digest not in {o.digest for o in reports[0].deleted}
    assert reports[0].kept_young == 1  # its new manifest
    assert repo.get_model() == {"model": "reused"}
    assert repo.get_model_image().get_attachment("a.txt").read() == b"reused attachment"
    assert fsck(project.store, read_data=True).ok


def test_gc_without_grace_can_rob_a_save_in_flight(project):
    """The test above cannot pass by accident: with no grace period the same race loses data."""
    repo = project.get_model_repository("m")
    save(repo, "first")

    def gc_now(point):
        if point == "after-manifest":
            gc(project.store, grace_seconds=0)

    previous = set_crash_handler(gc_now)
    try:
        save(repo, {"model": "new"})
    finally:
        set_crash_handler(previous)
    assert not fsck(project.store).ok


@pytest.mark.parametrize("kind", ["folder"])
def test_stale_temp_files_of_a_folder_store(kind, tmp_path):
    store = Store(make_store_url(kind, tmp_path))
    Project("p", store=store).get_model_repository("m").new_image(1).save()
    tmp = store.backend.tempdir()
    old, young = os.path.join(tmp, "obj-old.tmp"), os.path.join(tmp, "put-young")
    for path in (old, young):
        with open(path, "wb") as f:
            f.write(b"x" * 100)
    os.utime(old, (time.time() - 2 * DAY, time.time() - 2 * DAY))

    dry = gc(store, dry_run=True)
    assert [t.key for t in dry.temp_files] == ["tmp/obj-old.tmp"] and os.path.exists(old)
    report = gc(store)
    assert [t.key for t in report.temp_files] == ["tmp/obj-old.tmp"]
    assert report.freed_bytes == 100
    assert not os.path.exists(old) and os.path.exists(young)


def test_negative_grace_is_refused(project):
    with pytest.raises(InvalidDurationError):
        gc(project.store, grace_seconds=-1)


@pytest.mark.parametrize("text, seconds", [
    ("0", 0), ("90", 90), ("90s", 90), ("30m", 1800), ("24h", DAY), ("7d", 7 * DAY),
    ("2w", 14 * DAY), ("1h30m", 5400), ("1.5h", 5400), (" 12H ", 12 * 3600), (3600, 3600),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "1x", "1h 30m", "one day", "nan", "inf", "-5",
                                  "1h-", True])
def test_parse_duration_refuses(text):
    with pytest.raises(InvalidDurationError, match="duration"):
        parse_duration(text)


def test_fsck_and_gc_next_to_writers(store_url):
    """fsck and gc run over and over while another writer saves, tags and deletes: every report is
    clean (a save in flight is neither a missing object nor a lost event), nothing live is
    deleted, and afterwards every live version loads."""
    import threading
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        try:
            repo = Project("p", store=Store(store_url)).get_model_repository("m")
            n = 0
            while not stop.is_set():
                image = repo.new_image({"n": n % 4})  # re-uses blobs of deleted versions
                image.attach("a.txt", f"{n % 3}".encode())
                image.save()
                repo.add_tag("prod", image.version)
                if n % 2 and image.version > 2:
                    repo.delete_version(image.version - 1)
                n += 1
        except BaseException as e:  # surfaced below
            errors.append(e)

    Project("p", store=store_url).get_model_repository("m").new_image("first").save()
    thread = threading.Thread(target=writer)
    thread.start()
    checker = Store(store_url)
    try:
        for i in range(30):
            if i % 3 == 0:
                gc(checker)
            report = fsck(checker)
            assert report.ok, [str(p) for p in report.problems]
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[0]
    assert fsck(Store(store_url), read_data=True).ok
    repo = Project("p", store=Store(store_url)).get_model_repository("m")
    for image in repo.list_model_images():
        image.get_model()
