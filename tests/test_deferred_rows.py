"""Issue 18: a cold read from a checkpoint of a long history writes the rows of the newest
versions only; the older versions' events are verified (the checkpoint's chain) but not parsed,
and their rows are written when something first needs them. Whatever is asked, the answers are
the log's. On a folder store and on SeaweedFS."""

from __future__ import annotations

import warnings

import pytest
from conftest import _start_s3, make_store_url
from support.history import fill
from test_checkpoints import (
    KINDS,
    VERSIONS,
    cold,
    cold_log,
    cold_log_without_checkpoints,
    whole_index,
)

from roro.check import fsck
from roro.digests import digest_bytes
from roro.errors import IntegrityError
from roro.objects.canonical import canonical_json, loads
from roro.project import Project
from roro.refs import checkpoint as ck
from roro.refs import index as index_module
from roro.storage import layout, open_backend, parse_store_url
from roro.storage.layout import checkpoint_key, log_key, object_key
from roro.store import Store

EAGER = 20


@pytest.fixture(params=KINDS)
def url(request, tmp_path, monkeypatch) -> str:
    kind = request.param
    endpoint = _start_s3(request, monkeypatch, kind) if kind != "folder" else None
    return make_store_url(kind, tmp_path, endpoint)


@pytest.fixture
def eager(monkeypatch) -> int:
    monkeypatch.setattr(index_module, "EAGER_VERSIONS", EAGER)
    return EAGER


@pytest.fixture
def long_history(url) -> str:
    """150 versions, a tag move every 10, then (in the newest events) version 3 deleted and a
    tag on version 4: the fold meets deferred versions."""
    store = Store(url)
    fill(store, "p", "r", VERSIONS, tag_every=10)
    store.close()
    repo = Project("p", url).get_model_repository("r")
    repo.delete_version(3)
    repo.add_tag("old", 4, sign=False)
    repo.checkpoint()
    return url


def _deferred(store: Store) -> tuple[int, int]:
    """The repository's deferred versions, and how many rows ``versions`` holds."""
    conn = store.index.conn
    return (conn.execute("SELECT deferred FROM repositories").fetchone()[0],
            conn.execute("SELECT count(*) FROM versions").fetchone()[0])


def test_a_cold_read_writes_the_newest_rows_and_the_rest_when_first_needed(
        long_history, tmp_path, monkeypatch):
    url = long_history
    whole, requests, store = cold_log(url, tmp_path, monkeypatch, n=5)
    assert _deferred(store) == (0, VERSIONS)  # the default: 150 versions are all written
    store.close()
    right, _, store = cold_log_without_checkpoints(url, tmp_path, monkeypatch)
    expected = whole_index(store)
    store.close()

    eager = EAGER
    monkeypatch.setattr(index_module, "EAGER_VERSIONS", eager)
    got, deferred_requests, store = cold_log(url, tmp_path, monkeypatch, n=5)
    assert got == right == whole
    assert deferred_requests == requests  # deferring costs no request
    # versions 1..130 have no row but the first (its event, the log's first, is always read)
    # and the deleted one (the fold wrote it to delete it)
    assert _deferred(store) == (VERSIONS - eager, eager + 2)
    repo = Project("p", store).get_model_repository("r")
    assert [i.version for i in repo.list_model_images(limit=eager)] == list(
        range(VERSIONS, VERSIONS - eager, -1))
    assert repo.get_tags()["old"] == 4
    assert _deferred(store) == (VERSIONS - eager, eager + 2)  # none of that needed old rows
    assert repo.get_model_image(tag="old").get_metadata()["i"] == 4  # that one row is written
    assert _deferred(store) == (VERSIONS - eager, eager + 3)
    assert whole_index(store) == expected  # and every row for that
    assert _deferred(store) == (0, VERSIONS)


@pytest.mark.parametrize("ask", ["page", "count", "search", "fsck", "project-log"])
def test_whatever_reads_old_rows_writes_them_first(long_history, tmp_path, monkeypatch, eager,
                                                   ask):
    url = long_history
    _, _, store = cold_log_without_checkpoints(url, tmp_path, monkeypatch)
    expected = whole_index(store)
    store.close()
    _, _, store = cold_log(url, tmp_path, monkeypatch, n=5)
    assert _deferred(store)[0] == VERSIONS - eager
    repo = Project("p", store).get_model_repository("r")
    if ask == "page":
        assert repo.list_model_images(limit=eager + 5)[-1].version == VERSIONS - eager - 4
    elif ask == "count":
        assert repo.count() == VERSIONS - 1
    elif ask == "search":
        assert [i.version for i in repo.search("i <= 5")] == [5, 4, 2, 1]
    elif ask == "fsck":
        assert fsck(store).ok
    else:
        assert len(Project("p", store).log(None)) == VERSIONS - 1
    assert _deferred(store) == (0, VERSIONS)
    assert whole_index(store) == expected


def test_writers_after_a_deferred_cold_read(long_history, tmp_path, monkeypatch, eager):
    url = long_history
    store, _ = cold(url, tmp_path, monkeypatch)
    repo = Project("p", store).get_model_repository("r")
    repo.list_model_images(limit=5)
    repo.new_model_image(b"new").save()
    repo.add_tag("older", 7, sign=False)  # a deferred version is live
    with pytest.raises(Exception, match="missing version 3|does not exist"):
        repo.add_tag("gone", 3, sign=False)  # and a deleted one is not
    repo.delete_version(8)  # its row is written to be deleted
    # rows: the eager ones, version 1, deleted version 3, the new version, 7 (looked up to be
    # tagged) and 8
    assert _deferred(store) == (VERSIONS - eager, eager + 5)
    repo.destroy()  # every row is written first
    assert _deferred(store) == (0, VERSIONS + 1)
    repo.restore()
    mine = whole_index(store)
    store.close()
    _, _, fresh = cold_log_without_checkpoints(url, tmp_path, monkeypatch)
    assert whole_index(fresh) == mine


@pytest.mark.parametrize("gone", ["objects", "everything"])
def test_old_rows_are_written_from_the_log_when_the_checkpoint_is_gone(
        long_history, tmp_path, monkeypatch, eager, gone):
    url = long_history
    _, _, store = cold_log_without_checkpoints(url, tmp_path, monkeypatch)
    expected = whole_index(store)
    store.close()
    _, _, store = cold_log(url, tmp_path, monkeypatch, n=5)
    store._last_history = None  # as in a later process
    backend = open_backend(parse_store_url(url))
    pointer = ck.newest_pointer(backend, "p", "r")
    assert pointer is not None
    for digest in ck.chain_digests(store.objects, pointer, "p", "r"):
        backend.delete(object_key(digest))
    if gone == "everything":
        backend.delete(pointer.key)
    assert whole_index(store) == expected


def test_a_swapped_old_manifest_is_found_when_the_rows_are_written(long_history, tmp_path,
                                                                     monkeypatch, eager):
    """The cold read hashes only the manifests of the rows it writes: one of an old version,
    swapped, is found when the old rows are written (a warning; the store's manifest is read
    instead) and the answers stay the log's."""
    url = long_history
    _, _, store = cold_log_without_checkpoints(url, tmp_path, monkeypatch)
    expected = whole_index(store)
    store.close()
    backend = open_backend(parse_store_url(url))
    pointer = ck.newest_pointer(backend, "p", "r")
    assert pointer is not None
    store = Store(url)
    chain = ck.load_chain(store.objects, "p", "r", pointer.digest, pointer.seq)
    digest = None  # the base object (the old versions' manifests), then each above it
    for _, cp in reversed(chain):
        if digest is None:
            body = loads(cp.manifests[5])
            body["metadata"]["i"] = -1
            cp.manifests[5] = canonical_json(body)
        else:
            cp.parent = digest
        data = cp.encode()
        digest = digest_bytes(data)
        backend.put_bytes_if_absent(object_key(digest), data)
    backend.delete(pointer.key)
    backend.put_if_absent(checkpoint_key("p", "r", pointer.seq, digest), b"{}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got, _, store = cold_log(url, tmp_path, monkeypatch, n=5)
        assert not [w for w in caught if issubclass(w.category, ck.CheckpointWarning)]
        store._last_history = None  # as in a later process
        assert Project("p", store).get_model_repository("r").count() == VERSIONS - 1
    wrong = [str(w.message) for w in caught if issubclass(w.category, ck.CheckpointWarning)]
    assert len(wrong) == 1 and "holds a wrong manifest" in wrong[0], wrong
    assert whole_index(store) == expected


def _broken_history(url: str, at: int) -> None:
    """Rewrite the log so that event ``at`` (a version event) names the wrong version, every
    later event chained to it, and a checkpoint of that log: what a buggy writer could leave."""
    backend = open_backend(parse_store_url(url))
    store = Store(url)
    raws = [e.raw for e in store.reflog("p", "r").read_after(0)]
    body = loads(raws[at - 1])
    assert body["type"] == "version"
    body["version"] += 1000
    raws[at - 1] = canonical_json(body)
    for i in range(at, len(raws)):
        body = loads(raws[i])
        body["prev"] = digest_bytes(raws[i - 1])
        raws[i] = canonical_json(body)
    for seq, raw in enumerate(raws, start=1):
        backend.delete(log_key("p", "r", seq))
        backend.put_if_absent(log_key("p", "r", seq), raw)
    for key in list(backend.list(layout.CHECKPOINTS_PREFIX)):
        backend.delete(key)
    manifests = []
    for raw in raws:
        body = loads(raw)
        if body["type"] == "version":
            manifests.append(backend.get(object_key(body["image"])))
    store.require_feature(layout.CHECKPOINT_FEATURE)
    data = ck.Checkpoint("p", "r", 0, len(raws), None, None, raws, manifests).encode()
    digest = digest_bytes(data)
    backend.put_bytes_if_absent(object_key(digest), data)
    backend.put_if_absent(checkpoint_key("p", "r", len(raws), digest), b"{}")
    store.close()


def test_a_broken_event_among_the_deferred_is_reported_when_its_rows_are_written(
        url, tmp_path, monkeypatch, eager):
    store = Store(url)
    fill(store, "p", "r", 60)
    store.close()
    _broken_history(url, at=10)
    with pytest.raises(IntegrityError, match="broken at event 10"):
        cold_log_without_checkpoints(url, tmp_path, monkeypatch)
    got, _, store = cold_log(url, tmp_path, monkeypatch, n=5)  # versions 1..40 deferred
    assert [v for v, _ in got] == [60, 59, 58, 57, 56]
    repo = Project("p", store).get_model_repository("r")
    assert repo.get_model_image(version=5).get_metadata()["i"] == 5  # its event is right
    with pytest.raises(IntegrityError, match="broken at event 10: version 1010 where version "
                                             "10 was next"):
        repo.get_model_image(version=10)
    with pytest.raises(IntegrityError, match="broken at event 10"):
        repo.count()  # every row
    assert not fsck(Store(url)).ok
