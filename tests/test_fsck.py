"""fsck: a clean store is clean; every kind of damage to the ref logs and objects is reported, with
where it is; it reads on past a problem instead of stopping at the first."""

from __future__ import annotations

import json

import pytest
from conftest import make_store_url
from support.trust_helpers import AGEABLE, age_all_objects, event_key, rewrite

from roro import IntegrityError, Project, Store
from roro.check import (
    BROKEN_LOG,
    INDEX_MISMATCH,
    INVALID_MANIFEST,
    MISSING_OBJECT,
    STRAY_FILE,
    fsck,
)
from roro.digests import digest_bytes
from roro.objects.canonical import canonical_json, loads
from roro.storage.layout import object_key


@pytest.fixture
def project(store_url):
    return Project("p", store=store_url)


def populate(project, versions=4):
    repo = project.get_model_repository("m")
    for i in range(versions):
        image = repo.new_image({"i": i})
        image["i"] = i
        image.attach("a.txt", f"attachment {i}".encode())
        image.save(comment=f"v{i + 1}")
    if versions >= 3:
        repo.add_tag("prod", 2)
        repo.add_tag("prod", 3)
    return repo


def edit_event(store, seq, repository="m", **changes):
    """Rewrite event ``seq`` in canonical form with ``changes``; returns (old hash, new hash)."""
    key = event_key(store, "p", repository, seq)
    raw = store.backend.get(key)
    body = {**loads(raw), **changes}
    new = canonical_json(body)
    rewrite(store, key, new)
    return digest_bytes(raw), digest_bytes(new)


def kinds(report):
    return [(p.kind, p.repository, p.seq) for p in report.problems]


def test_empty_and_uninitialized_stores_are_clean(store_url):
    report = fsck(Store(store_url))
    assert report.ok and report.repositories == 0 and report.objects == 0
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True


def test_clean_store(project):
    populate(project)
    project.get_model_repository("other").new_image([1, 2]).save()
    report = fsck(project.store, read_data=True)
    assert report.ok, report.problems
    assert (report.projects, report.repositories, report.versions, report.tags) == (1, 2, 5, 1)
    assert report.events == 4 + 2 + 1
    # 5 manifests + 5 model blobs + 4 attachments; every object was re-hashed
    assert report.objects == report.referenced == report.verified == 14
    assert report.unreferenced == []
    d = json.loads(json.dumps(report.to_dict()))
    assert d["problems"] == [] and d["ok"] is True and "reachable" not in d


def test_unreferenced_objects_are_reported_not_errors(project):
    populate(project)
    orphan = project.store.objects.put_bytes(b"a crashed save left this")
    report = fsck(project.store)
    assert report.ok
    assert report.unreferenced == [orphan]


def test_removed_event_breaks_the_log_and_fsck_says_where(project):
    populate(project)
    project.store.backend.delete(event_key(project.store, "p", "m", 2))
    report = fsck(project.store)
    assert not report.ok
    first = report.problems[0]
    assert (first.kind, first.project, first.repository, first.seq) == (BROKEN_LOG, "p", "m", 2)
    assert "event 2 is missing" in first.message
    # and it read on: the event after the gap is judged by its own content (version 3 after
    # version 1 is not the next version)
    assert (BROKEN_LOG, "m", 3) in kinds(report)
    # the library refuses to read the broken log from scratch, pointing at fsck
    fresh = Project("p", store=Store(project.store.url))
    fresh.store.rebuild_index()
    with pytest.raises(IntegrityError, match="fsck"):
        fresh.get_model_repository("m").get_model()


def test_edited_event_breaks_the_chain_at_the_next_event(project):
    populate(project)
    old, new = edit_event(project.store, 2, comment="rewritten history")
    report = fsck(project.store)
    assert kinds(report) == [(BROKEN_LOG, "m", 3)]
    p = report.problems[0]
    assert p.expected == old and p.actual == new
    assert "event 2 was changed" in p.message


def test_non_canonical_edit_is_reported_at_the_event_itself(project):
    populate(project)
    key = event_key(project.store, "p", "m", 2)
    raw = project.store.backend.get(key)
    rewrite(project.store, key, json.dumps(loads(raw), indent=1).encode())
    report = fsck(project.store)
    assert kinds(report) == [(BROKEN_LOG, "m", 2), (BROKEN_LOG, "m", 3)]
    assert "canonical" in report.problems[0].message
    assert "hash chain broken" in report.problems[1].message


def test_garbage_event_is_reported_and_checking_goes_on(project):
    populate(project)
    project.get_model_repository("other").new_image(1).save()
    rewrite(project.store, event_key(project.store, "p", "m", 3), b"\xff\x00 not json")
    report = fsck(project.store)
    # event 3 (version 3) is lost, so the chain breaks at 4, and what depended on version 3
    # is reported too; the other repository is still checked, and is clean
    assert kinds(report)[:2] == [(BROKEN_LOG, "m", 3), (BROKEN_LOG, "m", 4)]
    assert {r for _, r, _ in kinds(report)} == {"m"}
    assert "not valid JSON" in report.problems[0].message
    assert report.repositories == 2 and report.versions == 1 + 3


def test_forged_event_against_the_rules(project):
    """A correctly chained event that breaks a fold rule (a tag on a version that does not exist)."""
    repo = populate(project)
    row = project.store.refresh("p", "m")
    log = project.store.reflog("p", "m")
    assert log.append(row["last_seq"] + 1, row["last_hash"], "tag", "mallory", "2030-01-01T00:00:00Z",
                      tag="prod", version=99, previous=3)
    report = fsck(project.store)
    assert kinds(report) == [(BROKEN_LOG, "m", row["last_seq"] + 1)]
    assert report.problems[0].version == 99
    assert "missing version 99" in report.problems[0].message
    assert repo.name == "m"


def test_rewritten_history_and_truncation_are_caught_by_the_index(project):
    """A chain recomputed from some event on, or cut at the end, is a valid chain: only what the
    index saw tells it apart."""
    populate(project)
    store = project.store
    last = store.refresh("p", "m")["last_seq"]
    # Truncation: remove the last event.
    original = store.backend.get(event_key(store, "p", "m", last))
    store.backend.delete(event_key(store, "p", "m", last))
    report = fsck(store)
    assert kinds(report) == [(INDEX_MISMATCH, "m", last)]
    assert "removed from its end" in report.problems[0].message
    store.backend.put(event_key(store, "p", "m", last), original)
    assert fsck(store).ok
    # Rewrite: change the last event (nothing after it can show the change in its chain).
    edit_event(store, last, author="mallory")
    report = fsck(store)
    assert kinds(report) == [(INDEX_MISMATCH, "m", last)]
    assert "rewritten" in report.problems[0].message
    # After a deliberate rebuild (e.g. a restored backup), the index accepts the store as it is.
    rewrite(store, event_key(store, "p", "m", last), original)
    store.rebuild_index()
    assert fsck(store).ok


def test_missing_manifest_and_missing_blob(project):
    repo = populate(project)
    v2 = repo.get_model_image(2)
    v3 = repo.get_model_image(3)
    project.store.backend.delete(object_key(v2.digest))
    blob = v3.manifest["model"]["digest"]
    project.store.backend.delete(object_key(blob))
    report = fsck(project.store)
    got = {(p.kind, p.version, p.digest, p.object, p.blocks_gc) for p in report.problems}
    assert got == {(MISSING_OBJECT, 2, v2.digest, "manifest", True),
                   (MISSING_OBJECT, 3, blob, "model", False)}


def test_invalid_manifest(project):
    """An object that hashes right but is not a manifest (a forged or buggy writer)."""
    repo = populate(project, versions=1)
    store = project.store
    bogus = store.objects.put_bytes(canonical_json({"format": "roro.image/1", "model": {}}))
    deep = store.objects.put_bytes(b"[" * 100_000 + b"]" * 100_000)  # hostile nesting
    log = store.reflog("p", "m")
    for version, digest in ((2, bogus), (3, deep)):
        last = log.read_all()[-1]
        assert log.append(last.seq + 1, last.hash, "version", "x", "2030-01-01T00:00:00Z",
                          version=version, image=digest, comment="")
    store.refresh("p", "m")  # the index lists them as damaged; the repository stays readable
    damaged = repo.damaged_versions()
    assert sorted(damaged) == [2, 3]
    assert all("is not a valid image manifest" in why for why in damaged.values())
    report = fsck(store)
    got = [(p.kind, p.version, p.digest) for p in report.problems]
    assert got == [(INVALID_MANIFEST, 2, bogus), (INVALID_MANIFEST, 3, deep)]
    assert "nested too deeply" in report.problems[1].message
    assert repo.name == "m"


def test_stray_files(project):
    populate(project, versions=1)
    b = project.store.backend
    b.put("refs/p/m/log/notes.txt", b"x")
    b.put("refs/p/m/log/0000000002.json/inner", b"x")
    b.put("refs/Bad Name/m/log/0000000001.json", b"x")
    b.put("objects/sha256/zz/not-a-digest", b"x")
    report = fsck(project.store)
    # On a folder store "0000000002.json" is a directory at the next event's slot, too.
    folder = [("special-file", "refs/p/m/log/0000000002.json")] if b.local_path("x") else []
    assert sorted((p.kind, p.key) for p in report.problems) == sorted([
        (STRAY_FILE, "objects/sha256/zz/not-a-digest"),
        (STRAY_FILE, "refs/Bad Name/m/log/0000000001.json"),
        (STRAY_FILE, "refs/p/m/log/0000000002.json/inner"),
        (STRAY_FILE, "refs/p/m/log/notes.txt"),
        *folder])


@pytest.mark.parametrize("kind", AGEABLE)
def test_fsck_leaves_the_store_alone(kind, tmp_path):
    project = Project("p", store=make_store_url(kind, tmp_path))
    populate(project)
    project.store.objects.put_bytes(b"orphan")
    age_all_objects(project.store, 10 * 86400)
    before = {k: project.store.backend.stat(k) for k in project.store.backend.list("")}
    fsck(project.store, read_data=True)
    after = {k: project.store.backend.stat(k) for k in project.store.backend.list("")}
    assert before.keys() == after.keys()
    for k in before:
        if k.startswith(("objects/", "refs/")):
            assert before[k] == after[k], k


def test_problem_display(project):
    populate(project)
    edit_event(project.store, 2, comment="x")
    p = fsck(project.store).problems[0]
    text = str(p)
    assert text.startswith("broken-log: p/m:3 event 3 sha256:")  # event 3 is version 3
    assert p.to_dict()["seq"] == 3
