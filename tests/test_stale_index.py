"""A stale index never lets a writer break the log (issue 13, item 1).

The index remembers where each log ended (event N and its hash). If the log was cut or rewritten
behind it (an older backup restored, an event removed by hand), a writer that trusted the index
would append at N+1 past a hole, or chain onto an event that is no longer there, and every other
client would then get ``IntegrityError`` on every version. Before appending after N, a writer
checks that event N is still there with the hash it remembers; when it is not, nothing is written
and the error says to run ``roro fsck`` / ``roro index --rebuild``. Save, tag, delete and sync
appends all go through that check.
"""

from __future__ import annotations

import pytest
from conftest import make_store_url, save_image
from support.trust_helpers import event_key, rewrite

import roro
from roro import IntegrityError, Project, Store
from roro.check import INDEX_MISMATCH, fsck
from roro.environment import now_utc
from roro.objects.canonical import canonical_json, loads
from roro.refs.state import fold
from roro.storage import open_backend
from roro.storage.wrappers import CountingBackend, WrappingBackend
from roro.sync.report import FAILED


def history(project: Project, n: int = 3):
    repo = project.get_model_repository("m")
    for i in range(n):
        save_image(repo, {"i": i}, i=i)
    repo.add_tag("prod", 1)
    return repo


def cut_last_event(store: Store, repository: str = "m") -> int:
    """Remove the last event of ``p/<repository>`` behind the index's back; returns its seq."""
    last = store.refresh("p", repository)["last_seq"]
    store.backend.delete(event_key(store, "p", repository, last))
    return last


def rewrite_last_event(store: Store) -> int:
    """Replace the last event by a different valid event (same seq, same prev)."""
    last = store.refresh("p", "m")["last_seq"]
    key = event_key(store, "p", "m", last)
    body = {**loads(store.backend.get(key)), "author": "someone else"}
    rewrite(store, key, canonical_json(body))
    return last


WRITES = {
    "save": lambda repo: save_image(repo, {"new": True}),
    "tag": lambda repo: repo.add_tag("prod", 2),
    "untag": lambda repo: repo.remove_tag("prod"),
    "delete": lambda repo: repo.delete_version(3),
}


@pytest.mark.parametrize("write", sorted(WRITES))
@pytest.mark.parametrize("damage", ["truncated", "rewritten"])
def test_a_write_refuses_to_extend_a_log_cut_or_rewritten_behind_the_index(store_url, write,
                                                                            damage):
    project = Project("p", store=store_url)
    repo = history(project)
    store = project.store
    last = cut_last_event(store) if damage == "truncated" else rewrite_last_event(store)
    before = sorted(store.backend.list("refs/"))
    with pytest.raises(IntegrityError, match="truncated or rewritten") as e:
        WRITES[write](repo)
    message = str(e.value)
    assert f"event {last}" in message and "roro fsck" in message and "index --rebuild" in message
    assert sorted(store.backend.list("refs/")) == before, "something was appended"
    # After a deliberate rebuild the index accepts the log as it is, and writes go on from there.
    assert store.rebuild_index().ok
    WRITES["save"](repo)
    fold("m", store.reflog("p", "m").read_all())  # the log is whole
    assert fsck(store).ok


def test_another_handle_with_a_fresh_index_is_not_affected(store_url, tmp_path, monkeypatch):
    """Only an index that saw the lost event refuses: a client that never saw it (a new cache)
    appends at the real end of the log."""
    project = Project("p", store=store_url)
    history(project)
    cut_last_event(project.store)
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "other-cache"))
    if project.store.backend.local_path("x") is not None:  # a folder keeps its index inside
        project.store.rebuild_index()
    other = Project("p", store=Store(store_url)).get_model_repository("m")
    save_image(other, {"other": True})
    fold("m", project.store.reflog("p", "m").read_all())


@pytest.mark.parametrize("kind", ["folder", "seaweedfs"])
def test_sync_refuses_to_append_past_a_hole_in_dst(kind, tmp_path, request, monkeypatch):
    src = make_store_url("folder", tmp_path)
    if kind == "seaweedfs":
        from conftest import _start_s3
        dst = make_store_url(kind, tmp_path, _start_s3(request, monkeypatch, kind))
    else:
        dst = make_store_url(kind, tmp_path)
    repo = Project("p", store=src).get_model_repository("m")
    for i in range(3):
        save_image(repo, {"i": i})
    assert roro.sync(src, dst).ok
    save_image(repo, {"i": 3})
    dst_store = Store(dst)
    dst_store.refresh("p", "m")
    last = cut_last_event(dst_store)
    before = sorted(dst_store.backend.list("refs/"))
    report = roro.sync(src, dst_store)
    assert not report.ok
    (res,) = report.repositories
    assert res.status == FAILED and "truncated or rewritten" in res.message
    assert f"event {last}" in res.message
    assert sorted(dst_store.backend.list("refs/")) == before


def test_fsck_reports_a_log_that_vanished_whole(store_url):
    project = Project("p", store=store_url)
    history(project)
    save_image(project.get_model_repository("other"), "kept")
    store = project.store
    store.refresh("p", "m")
    for key in list(store.backend.list("refs/p/m/")):
        store.backend.delete(key)
    report = fsck(store)
    assert [(p.kind, p.repository) for p in report.problems] == [(INDEX_MISMATCH, "m")]
    assert "log is gone" in report.problems[0].message
    assert "index --rebuild" in report.problems[0].message
    store.rebuild_index()
    assert fsck(store).ok


def test_the_check_costs_no_extra_request_on_s3(s3_endpoint, tmp_path):
    """On S3 the check rides on the listing the refresh makes anyway (it starts one key earlier
    and compares event N's ETag with the MD5 the index kept): a tag move costs the same requests
    with the check as it did without it."""
    url = make_store_url("moto", tmp_path, s3_endpoint)  # any S3 kind: the endpoint decides
    project = Project("p", store=url)
    history(project)
    counting = CountingBackend(Store(url).backend)
    repo = Project("p", store=Store(counting)).get_model_repository("m")
    repo.get_tags()  # warm: the index is up to date, the handle probed
    counting.counts.clear()
    repo.add_tag("prod", 2)
    # the refresh before (which also checks the tail); the event (applied to the index as it
    # was written: no read after)
    assert dict(counting.counts) == {"list": 1, "put_if_absent": 1}


class _FlipsOneRead(WrappingBackend):
    """Hands out event ``key`` once with one bit of its time flipped ('2026' -> '2027'): bytes
    that still parse as a valid event, as the torture test's bit-flipping reads sometimes do."""

    def __init__(self, inner, key: str):
        super().__init__(inner)
        self.key, self.flipped = key, 0

    def get(self, key: str, max_size: int | None = None) -> bytes:
        data = super().get(key, max_size)
        if key == self.key and not self.flipped:
            self.flipped += 1
            i = data.index(b'"time":"') + len(b'"time":"') + 3
            data = data[:i] + bytes([data[i] ^ 1]) + data[i + 1:]
        return data


def test_a_writer_never_chains_onto_a_misread_last_event(store_url):
    """A writer's refresh reads the events others appended and then writes after the last one.
    The hash chain vouches for every event read but that last one: a read of it that changed a
    bit and still parsed must not become the ``prev`` of the new event (it did: fsck's
    ``broken-log``, 'prev does not match', seen once in the torture test). The writer notices
    (ETag or a second read), writes nothing, says to try again; the retry is clean."""
    project = Project("p", store=store_url)
    history(project)
    store = project.store
    row = store.refresh("p", "m")
    seq = row["last_seq"] + 1  # another writer's event, not in the index yet
    store.reflog("p", "m").append(seq, row["last_hash"], "tag", "other", now_utc(),
                                  tag="staging", version=1, previous=None)
    backend = _FlipsOneRead(open_backend(store_url), event_key(store, "p", "m", seq))
    writer = Project("p", store=Store(backend)).get_model_repository("m")
    with pytest.raises(IntegrityError, match=f"event {seq} .* read differently twice"):
        save_image(writer, {"new": True})
    assert backend.flipped == 1
    assert len(store.reflog("p", "m").read_all()) == seq, "something was appended"
    save_image(writer, {"new": True})
    fold("m", store.reflog("p", "m").read_all())  # the log is whole
    assert fsck(store).ok


def test_sync_never_copies_a_misread_last_event(tmp_path):
    """Sync copies SRC's new events byte for byte; the last one must be SRC's bytes, not a
    read of them that changed a bit and still parsed (DST's next sync would find the logs
    diverged, and DST would hold an event SRC never had)."""
    src, dst = make_store_url("folder", tmp_path), make_store_url("folder", tmp_path)
    project = Project("p", store=src)
    history(project)
    last = project.store.refresh("p", "m")["last_seq"]
    backend = _FlipsOneRead(open_backend(src), event_key(project.store, "p", "m", last))
    report = roro.sync(Store(backend), dst)
    assert not report.ok and "read differently twice" in report.repositories[0].message
    assert roro.sync(Store(backend), dst).ok
    raw = [e.raw for e in Store(dst).reflog("p", "m").read_all()]
    assert raw == [e.raw for e in project.store.reflog("p", "m").read_all()]


def test_a_rename_never_copies_a_misread_last_event(tmp_path):
    """A rename copies the old log's events byte for byte under the new name, then appends the
    rename event (chained to the real last event) to both: a copy of a misread last event that
    still parsed would leave the new log broken for good. The rename notices, copies nothing
    wrong, and running it again completes it."""
    url = make_store_url("folder", tmp_path)
    project = Project("p", store=url)
    history(project)
    last = project.store.refresh("p", "m")["last_seq"]
    backend = _FlipsOneRead(open_backend(url), event_key(project.store, "p", "m", last))
    renaming = Project("p", store=Store(backend))
    with pytest.raises(IntegrityError, match=f"event {last} .* read differently twice"):
        renaming.rename_model_repository("m", "n")
    assert backend.flipped == 1
    renaming.rename_model_repository("m", "n")
    store = Store(url)
    old = [e.raw for e in store.reflog("p", "m").read_all()]
    assert [e.raw for e in store.reflog("p", "n").read_all()] == old
    fold("n", store.reflog("p", "n").read_all())  # the new log is whole
    assert fsck(store).ok
