"""Checkpoints (issue 18, DESIGN §10): a cold reader reads the newest checkpoint, verified against
the log, then only the tail; a wrong one is ignored with one warning and the log is read; fsck
verifies them, gc keeps the newest chain, sync copies them; a kill -9 while one is written leaves
only harmless orphans. On a folder store and on SeaweedFS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
import zlib

import pytest
from conftest import _start_s3, make_store_url
from support.history import fill

import roro
from roro.check import fsck, gc
from roro.digests import digest_bytes
from roro.errors import StoreError
from roro.objects.canonical import canonical_json, loads
from roro.objects.manifest import MAX_MANIFEST_SIZE
from roro.project import Project
from roro.refs import checkpoint as ck
from roro.refs.events import make_event
from roro.storage import layout, open_backend, parse_store_url
from roro.storage.layout import checkpoint_key, log_key, object_key
from roro.storage.wrappers import CountingBackend
from roro.store import Store
from roro.sync import sync

KINDS = ["folder", "seaweedfs"]
VERSIONS = 150  # with a tag move every 10 versions: 165 events


@pytest.fixture(params=KINDS)
def url(request, tmp_path, monkeypatch) -> str:
    kind = request.param
    endpoint = _start_s3(request, monkeypatch, kind) if kind != "folder" else None
    return make_store_url(kind, tmp_path, endpoint)


def cold(url: str, tmp_path, monkeypatch) -> tuple[Store, CountingBackend]:
    """A handle on a machine that has never seen the store: a new cache (a remote store's
    index), no index file in a folder store; counted."""
    cache = tmp_path / f"cache-{os.urandom(4).hex()}"
    monkeypatch.setenv("RORO_CACHE_DIR", str(cache))
    if not url.startswith("s3://"):
        for name in os.listdir(url):
            if name.startswith(layout.INDEX_KEY):
                os.remove(os.path.join(url, name))
    counted = CountingBackend(open_backend(parse_store_url(url)))
    return Store(counted), counted


def cold_log(url, tmp_path, monkeypatch, n: int = 5) -> tuple[list, int, Store]:
    """What a cold ``models:log r -n 5`` reads: the 5 newest versions, and the requests."""
    store, counted = cold(url, tmp_path, monkeypatch)
    images = Project("p", store).get_model_repository("r").list_model_images(limit=n)
    return [(i.version, i.digest) for i in images], sum(counted.counts.values()), store


def whole_index(store: Store) -> dict:
    return store.index.dump()


@pytest.fixture
def history(url) -> str:
    store = Store(url)
    fill(store, "p", "r", VERSIONS, tag_every=10)
    store.close()
    return url


def test_a_cold_reader_reads_the_checkpoint_and_the_tail_with_the_same_answers(
        history, tmp_path, monkeypatch):
    url = history
    before, requests_before, store = cold_log(url, tmp_path, monkeypatch)
    by_log = whole_index(store)
    store.close()
    made = Project("p", url).get_model_repository("r").checkpoint()
    assert made["created"] and made["seq"] == VERSIONS + VERSIONS // 10
    fill(Store(url), "p", "r", 3, start=made["seq"])  # a tail after the checkpoint
    store = Store(url)
    store.refresh("p", "r")
    store.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no checkpoint warning: it is right
        after, requests_after, store = cold_log(url, tmp_path, monkeypatch)
        by_checkpoint = whole_index(store)
    _, _, store = cold_log_without_checkpoints(url, tmp_path, monkeypatch)
    assert by_checkpoint == whole_index(store)
    assert after[0][0] == VERSIONS + 3 and [a[0] for a in before] == list(
        range(VERSIONS, VERSIONS - 5, -1))
    assert by_log["versions"] == [r for r in by_checkpoint["versions"] if r["version"] <= VERSIONS]
    # before: every event and every manifest; after: the marker, the features, the pointer
    # listing, the checkpoint (2 objects: up to 128, then to 165), event N, the tail's
    # listing (a folder: a look at each next slot), 3 events and their 3 manifests
    assert requests_before >= 2 * VERSIONS
    assert requests_after == (13 if url.startswith("s3://") else 16), requests_after


def cold_log_without_checkpoints(url, tmp_path, monkeypatch):
    """The same cold read with every pointer moved away (the log's answer)."""
    backend = open_backend(parse_store_url(url))
    moved = {}
    for key in list(backend.list(layout.CHECKPOINTS_PREFIX)):
        moved[key] = backend.get(key)
        backend.delete(key)
    try:
        return cold_log(url, tmp_path, monkeypatch)
    finally:
        for key, data in moved.items():
            backend.put_if_absent(key, data)


def _rewrite(url: str, change) -> str:
    """Replace the newest checkpoint with ``change(checkpoint)`` (a new object and pointer at the
    same event; the honest pointer is removed): what someone who can write the bucket can do."""
    backend = open_backend(parse_store_url(url))
    store = Store(url)
    pointer = ck.newest_pointer(backend, "p", "r")
    assert pointer is not None
    cp = ck.decode(store.objects.read(pointer.digest), pointer.digest, "p", "r")
    change(cp)
    data = cp.encode()
    digest = digest_bytes(data)
    backend.put_bytes_if_absent(object_key(digest), data)
    backend.delete(pointer.key)
    backend.put_if_absent(checkpoint_key("p", "r", pointer.seq, digest), b"{}")
    return digest


def _change_comment(cp: ck.Checkpoint, i: int = 4, rechain: bool = False) -> None:
    body = loads(cp.events[i])
    body["comment"] = body["comment"] + "!"
    cp.events[i] = canonical_json(body)
    if rechain:  # a careful forger: the chain inside the checkpoint holds again
        for j in range(i + 1, len(cp.events)):
            body = loads(cp.events[j])
            body["prev"] = digest_bytes(cp.events[j - 1])
            cp.events[j] = canonical_json(body)


def _swap_manifest(cp: ck.Checkpoint) -> None:
    m = loads(cp.manifests[0])
    m["metadata"]["i"] = -1
    cp.manifests[0] = canonical_json(m)


def _forged_pointer(url: str) -> None:
    """A pointer at an event past the log's end, naming a valid checkpoint of other events."""
    backend = open_backend(parse_store_url(url))
    pointer = ck.newest_pointer(backend, "p", "r")
    assert pointer is not None
    backend.put_if_absent(checkpoint_key("p", "r", pointer.seq + 50, pointer.digest), b"{}")


@pytest.mark.parametrize("forgery", ["event-byte", "rechained-event", "manifest", "pointer",
                                     "not-a-checkpoint", "truncated"])
def test_a_wrong_checkpoint_is_detected_and_the_log_read(history, tmp_path, monkeypatch,
                                                         forgery):
    url = history
    Project("p", url).get_model_repository("r").checkpoint()
    right, _, store = cold_log_without_checkpoints(url, tmp_path, monkeypatch)
    expected = whole_index(store)
    store.close()
    if forgery == "event-byte":
        _rewrite(url, _change_comment)
    elif forgery == "rechained-event":
        _rewrite(url, lambda cp: _change_comment(cp, rechain=True))
    elif forgery == "manifest":
        _rewrite(url, _swap_manifest)
    elif forgery == "pointer":
        _forged_pointer(url)
    elif forgery == "not-a-checkpoint":  # a pointer naming a manifest
        backend = open_backend(parse_store_url(url))
        image = loads(backend.get(log_key("p", "r", 1)))["image"]
        backend.put_if_absent(checkpoint_key("p", "r", 3, image), b"{}")
        for key in list(backend.list(layout.CHECKPOINTS_PREFIX)):
            if not key.endswith(f"{image[7:]}.json"):
                backend.delete(key)
    else:
        def truncate(cp: ck.Checkpoint) -> None:
            cp.events.pop()
            cp.end -= 1
        _rewrite(url, truncate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got, _, store = cold_log(url, tmp_path, monkeypatch)
    ignored = [w for w in caught if issubclass(w.category, ck.CheckpointWarning)]
    assert len(ignored) == 1, [str(w.message) for w in caught]
    assert "was ignored" in str(ignored[0].message)
    assert got == right
    assert whole_index(store) == expected
    report = fsck(Store(url))
    assert [p.kind for p in report.problems] == ["bad-checkpoint"]
    assert not report.problems[0].blocks_gc


def test_writers_make_checkpoints_as_history_grows_and_never_fail_for_them(
        tmp_path, monkeypatch):
    url = str(tmp_path / "store")
    store = Store(url)
    fill(store, "p", "r", ck.AUTO_FROM - 2)
    store.close()
    repo = Project("p", url).get_model_repository("r")
    for i in range(6):  # events 63..68: checkpoints at 64 and 68
        repo.new_model_image(i).save()
    backend = open_backend(parse_store_url(url))
    assert [p.seq for p in ck.pointers(backend, "p", "r")] == [68, 64]
    assert "checkpoints" in Store(url).features()
    assert fsck(Store(url)).ok

    def broken(*args, **kwargs):
        raise StoreError("the bucket said no")
    monkeypatch.setattr(ck, "build", broken)
    for i in range(4):
        repo.new_model_image(i).save()  # event 72 would make one: the save still succeeds
    assert repo.count() == ck.AUTO_FROM - 2 + 10
    assert [p.seq for p in ck.pointers(backend, "p", "r")] == [68, 64]


def test_kill_9_while_a_checkpoint_is_written_leaves_only_orphans(url, tmp_path, monkeypatch,
                                                                  no_gc_floor):
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "cache"))
    store = Store(url)
    fill(store, "p", "r", 100)
    store.close()
    env = {**os.environ, "RORO_STORE": url, "RORO_PROJECT": "p",
           "RORO_CRASH_AT": "checkpoint:before-pointer"}
    done = subprocess.run([sys.executable, "-m", "roro", "checkpoint", "r"], env=env,
                          capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr
    backend = open_backend(parse_store_url(url))
    assert ck.newest_pointer(backend, "p", "r") is None
    report = fsck(Store(url))
    assert report.ok and report.checkpoints == 0
    assert len(report.unreferenced) == 1  # the checkpoint object, with no pointer
    collected = gc(Store(url), grace_seconds=0)
    assert [o.digest for o in collected.deleted] == report.unreferenced
    env.pop("RORO_CRASH_AT")
    done = subprocess.run([sys.executable, "-m", "roro", "checkpoint", "r", "--json"], env=env,
                          capture_output=True, timeout=120, text=True)
    assert done.returncode == 0, done.stderr
    assert '"created": true' in done.stdout
    assert fsck(Store(url)).ok


def test_gc_keeps_the_newest_chain_and_deletes_older_pointers(tmp_path, monkeypatch,
                                                                no_gc_floor):
    url = str(tmp_path / "store")
    store = Store(url)
    fill(store, "p", "r", 200)
    repo = Project("p", url).get_model_repository("r")
    first = repo.checkpoint()
    fill(store, "p", "r", 10, start=200)
    second = repo.checkpoint()  # 210: a small object over the one at 128
    assert second["objects_written"] == 1 and first["seq"] == 200
    report = fsck(Store(url))
    assert report.ok and report.checkpoints == 2
    assert report.unreferenced == []  # the older pointer's object is named until gc
    collected = gc(Store(url), grace_seconds=0)
    assert collected.checkpoints_deleted == 1 and collected.kept_checkpoints == 2
    backend = open_backend(parse_store_url(url))
    assert [p.seq for p in ck.pointers(backend, "p", "r")] == [210]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, requests, _ = cold_log(url, tmp_path, monkeypatch)
    assert got[0][0] == 210 and requests == 7  # marker, features, pointers, 2 objects, N, 1 look
    assert fsck(Store(url)).ok


def test_sync_copies_the_checkpoint(url, tmp_path, monkeypatch):
    src = str(tmp_path / "src")
    store = Store(src)
    fill(store, "p", "r", 100)
    Project("p", src).get_model_repository("r").checkpoint()
    report = sync(src, url)
    assert report.ok
    backend = open_backend(parse_store_url(url))
    assert [p.seq for p in ck.pointers(backend, "p", "r")] == [100]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, requests, _ = cold_log(url, tmp_path, monkeypatch)
    assert got[0][0] == 100 and requests == 6  # marker, features, pointers, 1 object, N, tail
    assert fsck(Store(url)).ok


def test_sync_builds_a_checkpoint_at_dst_where_src_has_none_for_a_long_log(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    fill(Store(src), "p", "r", 80)
    fill(Store(src), "p", "other", 10)
    Project("p", src).get_model_repository("other").checkpoint()  # SRC uses checkpoints
    assert sync(src, dst).ok
    assert [p.seq for p in ck.pointers(open_backend(parse_store_url(dst)), "p", "r")] == [80]
    assert fsck(Store(dst)).ok
    plain = str(tmp_path / "plain")
    fill(Store(plain), "p", "r", 80)
    assert sync(plain, str(tmp_path / "mirror")).ok  # a store without checkpoints: a mirror
    assert not os.path.exists(tmp_path / "mirror" / "checkpoints")


def test_a_roro_that_does_not_know_checkpoints_refuses_the_store(tmp_path, monkeypatch):
    url = str(tmp_path / "store")
    fill(Store(url), "p", "r", 10)
    Project("p", url).get_model_repository("r").checkpoint()
    monkeypatch.setattr(layout, "KNOWN_FEATURES", layout.KNOWN_FEATURES - {"checkpoints"})
    with pytest.raises(StoreError, match="checkpoints.*upgrade roro"):
        Store(url).is_initialized()


def test_a_checkpoint_is_bounded_and_deterministic(monkeypatch):
    events = [make_event(1, None, "create", "a", "t").raw]
    cp = ck.Checkpoint("p", "r", 0, 1, None, None, events)
    assert cp.encode() == cp.encode()
    bomb = zlib.compress(ck.MAGIC + b"x" * (ck.MIN_RAW_LIMIT + 10), 9)
    with pytest.raises(ck.CheckpointError, match="no header"):  # read no further than 2 MiB
        ck.decode(bomb, "sha256:" + "0" * 64, "p", "r")
    record = MAX_MANIFEST_SIZE
    count = ck.MIN_RAW_LIMIT // record + 2
    header = canonical_json({"format": ck.FORMAT, "project": "p", "repository": "r", "start": 0,
                             "end": 1, "parent": None, "parent_start": None, "events": 1,
                             "manifests": count})
    body = [ck.MAGIC, header, b"\n", len(events[0]).to_bytes(4, "big"), events[0]]
    body += [record.to_bytes(4, "big") + b"\0" * record] * count
    compressor = zlib.compressobj(9)
    bomb = b"".join(compressor.compress(part) for part in body) + compressor.flush()
    assert len(bomb) < ck.THREAD_FROM and ck.MIN_RAW_LIMIT < sum(map(len, body))
    switch = sys.getswitchinterval()
    for thread_from in (ck.THREAD_FROM, 1):  # inflated here, then by a thread ahead
        monkeypatch.setattr(ck, "THREAD_FROM", thread_from)
        with pytest.raises(ck.CheckpointError, match="inflates to more"):
            ck.decode(bomb, "sha256:" + "0" * 64, "p", "r")
        with pytest.raises(ck.CheckpointError, match="truncated"):
            ck.decode(cp.encode()[:-4], "sha256:" + "0" * 64, "p", "r")
        assert ck.decode(cp.encode(), "sha256:" + "0" * 64, "p", "r").events == events
    assert sys.getswitchinterval() == switch  # what the inflater's thread changed, restored
    assert ck.boundaries(100_003) == [100_003, 99_968, 98_304]
    assert ck.boundaries(4096 * 3) == [4096 * 3]


@pytest.mark.parametrize("thread_from", [1 << 30, 1])
def test_manifests_left_by_decode_are_inflated_and_split_when_asked_for(monkeypatch,
                                                                       thread_from):
    """A cold reader's decode stops after the events (the manifests are inflated, split and
    checked when first used), with or without its inflater thread, in pieces smaller than a
    record."""
    monkeypatch.setattr(ck, "THREAD_FROM", thread_from)
    monkeypatch.setattr(ck, "PIECE", 1000)
    events, prev = [], None
    for seq in range(1, 41):
        event = make_event(seq, prev, "create", "a", "t") if seq == 1 else \
            make_event(seq, prev, "delete", "a", "t", version=seq)
        events.append(event.raw)
        prev = event.hash
    manifests = [canonical_json({"n": i, "pad": "m" * (i * 37)}) for i in range(30)]
    cp = ck.Checkpoint("p", "r", 0, 40, None, None, events, manifests)
    data, digest = cp.encode(), "sha256:" + "0" * 64
    whole = ck.decode(data, digest, "p", "r")
    assert whole.manifests == manifests and whole.events == events
    left = ck.decode(data, digest, "p", "r", defer_manifests=True)
    assert left.events == events and left.sums == [digest_bytes(e) for e in events]
    assert left.first_manifests(3) == manifests[:3]
    assert left.split_manifests() == manifests and left.first_manifests(2) == manifests[:2]
    bad = ck.Checkpoint("p", "r", 0, 40, None, None, events, manifests[:-1])
    body = bad.encode()
    inflated = zlib.decompress(body).replace(b'"manifests":29', b'"manifests":30')
    short = ck.decode(zlib.compress(inflated), digest, "p", "r", defer_manifests=True)
    assert short.events == events  # the events are whole: the manifests are found short later
    with pytest.raises(ck.CheckpointError, match="truncated"):
        short.split_manifests()


def test_cli_checkpoint_json(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from roro.cli import main
    url = str(tmp_path / "store")
    fill(Store(url), "p", "r", 20)
    monkeypatch.setenv("RORO_STORE", url)
    monkeypatch.setenv("RORO_PROJECT", "p")
    out = CliRunner().invoke(main, ["checkpoint", "--json"])
    assert out.exit_code == 0, out.output
    assert '"seq": 20' in out.output and '"created": true' in out.output
    out = CliRunner().invoke(main, ["checkpoint", "r"])
    assert "already there" in out.output
    assert roro.__name__ == "roro"


def test_a_warm_read_command_lists_the_log_once(s3_endpoint, tmp_path, monkeypatch):
    """``models:log`` and ``models:show`` on a warm S3 store: the marker, and one listing of
    the log's tail however many times the command asks about the repository (resolve, list,
    tags); ``show`` also reads the events it serves, to confirm them."""
    from click.testing import CliRunner

    import roro.store
    from roro.cli import main
    url = make_store_url("seaweedfs", tmp_path, s3_endpoint)
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "cache"))
    fill(Store(url), "p", "r", 30, tag_every=10)
    seen: list[tuple[str, str]] = []

    class Recording(CountingBackend):
        def get(self, key, *args, **kwargs):
            seen.append(("get", key.rsplit("/", 1)[-1] if "/log/" in key else key))
            return super().get(key, *args, **kwargs)

        def list(self, prefix="", *args, **kwargs):
            seen.append(("list", prefix))
            return super().list(prefix, *args, **kwargs)

    def run(*argv: str) -> list[tuple[str, str]]:
        seen.clear()
        result = CliRunner().invoke(main, ["--store", url, "--project", "p", *argv],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return [(op, key.rpartition(layout.REFS_PREFIX)[2] if op == "list" else key)
                for op, key in seen]

    monkeypatch.setattr(roro.store, "open_backend",
                        lambda location, **o: Recording(open_backend(location, **o)))
    run("models:log", "r", "-n", "20")  # the first read indexes the store (cold)
    tail = ("list", "p/r/log/")
    assert run("models:log", "r", "-n", "20") == [("get", "roro.json"), tail]
    fill(Store(url), "p", "r", 2, start=33, first_version=31)  # another machine's saves
    after = run("models:log", "r", "-n", "20")  # and the new events and their manifests
    assert after[:4] == [("get", "roro.json"), tail, ("get", "0000000034.json"),
                         ("get", "0000000035.json")]
    assert len(after) == 6 and all(k.startswith(layout.OBJECTS_PREFIX) for _, k in after[4:])
    shown = run("models:show", "r:best", "--no-scan")
    assert shown[:2] == [("get", "roro.json"), tail] and tail not in shown[2:]


def test_a_checkpoint_over_three_levels_reuses_the_two_below(tmp_path, monkeypatch):
    """Past 4,096 + 128 events a chain has three objects; the next checkpoint (here a writer's,
    after its save) writes only the small one over the two it reuses (it used to fail with a
    KeyError, from the save, looking for the events of the object it reuses)."""
    url = str(tmp_path / "store")
    fill(Store(url), "p", "r", 4300)
    repo = Project("p", url).get_model_repository("r")
    assert repo.checkpoint()["objects_written"] == 3
    fill(Store(url), "p", "r", 3, start=4300, first_version=4301)
    repo = Project("p", url).get_model_repository("r")
    image = repo.new_model_image(b"the 4,304th event")
    image.save("a writer's checkpoint at 4304")
    backend = open_backend(parse_store_url(url))
    newest = ck.newest_pointer(backend, "p", "r")
    assert newest is not None and newest.seq == 4304
    chain = ck.load_chain(Store(url).objects, "p", "r", newest.digest, newest.seq)
    assert [(cp.start, cp.end) for _, cp in chain] == [(4224, 4304), (4096, 4224), (0, 4096)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, _, store = cold_log(url, tmp_path, monkeypatch)
        by_checkpoint = whole_index(store)
    _, _, store = cold_log_without_checkpoints(url, tmp_path, monkeypatch)
    assert by_checkpoint == whole_index(store) and got[0][0] == 4304
    assert fsck(Store(url)).ok


def test_gc_keeps_young_pointers_and_an_old_one_is_built_on_under_a_keep_marker(
        tmp_path, monkeypatch):
    """The gc rule for checkpoints: gc keeps the chain of every pointer younger than its grace
    period (and the pointer), so a writer builds on a young pointer's chain writing nothing
    more; building on an old one, it writes a keep marker for the objects it reuses."""
    monkeypatch.setenv("RORO_GC_MIN_GRACE", "60")  # H = 30 s
    url = str(tmp_path / "store")
    backend = open_backend(parse_store_url(url))
    fill(Store(url), "p", "r", 200)
    repo = Project("p", url).get_model_repository("r")
    repo.checkpoint()
    first = ck.newest_pointer(backend, "p", "r")
    assert first is not None
    fill(Store(url), "p", "r", 4, start=200, first_version=201)
    repo.checkpoint()  # on a young pointer: no marker
    assert list(backend.list(layout.KEEP_PREFIX)) == []
    old = time.time() - 3600
    for top in ("checkpoints", "objects"):  # everything so far is an hour old
        for folder, _, files in os.walk(os.path.join(url, top)):
            for name in files:
                os.utime(os.path.join(folder, name), (old, old))
    fill(Store(url), "p", "r", 4, start=204, first_version=205)
    repo.checkpoint()  # on an old pointer: the objects it reuses are protected
    markers = list(backend.list(layout.KEEP_PREFIX))
    assert len(markers) == 1
    reused = set(loads(backend.get(markers[0]))["digests"])
    assert first.digest not in reused and len(reused) == 1  # the object of events 1..128
    # a pointer younger than the grace period is not deleted, nor its chain
    fill(Store(url), "p", "r", 4, start=208, first_version=209)
    repo.checkpoint()
    collected = gc(Store(url), grace_seconds=60)
    left = [p.seq for p in ck.pointers(backend, "p", "r")]
    assert left == [212, 208], left  # 204 and 200 were old; 208 is young
    assert collected.checkpoints_deleted == 2
    assert fsck(Store(url)).ok


def test_a_writers_checkpoint_costs_three_requests_on_s3(s3_endpoint, tmp_path, monkeypatch):
    """Every 4th save from event 64 makes a checkpoint: on a handle that wrote the events since
    its last one, the pointers' listing, the new small object and its pointer; nothing read
    (the events are the handle's own, the object below it the one it wrote last)."""
    url = make_store_url("seaweedfs", tmp_path, s3_endpoint)
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "cache"))
    fill(Store(url), "p", "r", 60)
    counting = CountingBackend(open_backend(parse_store_url(url)))
    repo = Project("p", store=Store(counting)).get_model_repository("r")
    costs = {}
    for i in range(61, 77):
        counting.counts.clear()
        image = repo.new_model_image(b"model %d" % i)
        image["i"] = i
        image.save(f"v{i}")
        costs[i] = {k: v for k, v in counting.counts.items() if v}
    plain = costs[65]
    assert plain == costs[66] == costs[75], costs
    extra = {"list": 1, "put_bytes_if_absent": 1, "put_if_absent": 1}
    for i in (68, 72, 76):
        assert costs[i] == {k: plain.get(k, 0) + extra.get(k, 0)
                            for k in {*plain, *extra}}, (i, costs[i], plain)
    newest = ck.newest_pointer(counting, "p", "r")
    assert newest is not None and newest.seq == 76
    assert fsck(Store(url)).ok


def test_rows_from_a_checkpoint_are_described_when_first_asked_for(history, tmp_path,
                                                                    monkeypatch):
    """Issue 18: a cold read from a checkpoint keeps each manifest's (verified) text in its row
    and parses it only when something asks: what a listing hands out is complete, a search or
    fsck sees exactly the rows the log's reader writes, and a manifest that hashes right but is
    not a manifest is a damaged version either way."""
    url, seq = history, VERSIONS + VERSIONS // 10
    backend = open_backend(parse_store_url(url))
    bogus = canonical_json({"format": "roro.image/2", "model": "not a model"})
    backend.put_bytes_if_absent(object_key(digest_bytes(bogus)), bogus)
    prev = digest_bytes(backend.get(log_key("p", "r", seq)))
    bad = make_event(seq + 1, prev, "version", "x", "2026-11-27T11:00:00.000000Z",
                     version=VERSIONS + 1, image=digest_bytes(bogus), comment="bad")
    backend.put_if_absent(log_key("p", "r", seq + 1), bad.raw)
    fill(Store(url), "p", "r", 2, start=seq + 1, first_version=VERSIONS + 2)
    store = Store(url)
    made = ck.build(store.reflog("p", "r"), store.objects, seq + 3,
                    manifest=lambda digest, version: backend.get(object_key(digest)),
                    before_first_write=lambda: store.require_feature(layout.CHECKPOINT_FEATURE))
    assert bogus in ck.read_object(store.objects, made.pointer.digest, "p", "r").manifests
    store.close()

    store, _ = cold(url, tmp_path, monkeypatch)
    repo = Project("p", store).get_model_repository("r")
    images = repo.list_model_images(limit=4)

    def column(sql: str) -> int:
        return store.index.conn.execute(sql).fetchone()[0]

    assert column("SELECT describe_pending FROM repositories") == 1
    assert column("SELECT count(*) FROM versions WHERE metadata IS NULL") == VERSIONS + 3
    assert [i.version for i in images] == [VERSIONS + 3, VERSIONS + 2, VERSIONS + 1, VERSIONS]
    assert images[0].get_metadata()["i"] == VERSIONS + 3 and images[0].damaged is None
    assert "is not a valid image manifest" in images[2].damaged
    assert repo.get_model_image(version=VERSIONS + 2).get_metadata()["name"] == \
        f"run-{VERSIONS + 2}"
    assert fsck(store).ok is False  # the damaged version, found through the pending row
    assert column("SELECT describe_pending FROM repositories") == 1  # fsck only read
    assert [i.version for i in repo.search("i >= 149")] == [VERSIONS + 3, VERSIONS + 2,
                                                             VERSIONS, VERSIONS - 1]
    assert column("SELECT describe_pending FROM repositories") == 0
    assert column("SELECT count(*) FROM versions WHERE metadata IS NULL") == 1  # the bogus one
    by_checkpoint = whole_index(store)
    _, _, store = cold_log_without_checkpoints(url, tmp_path, monkeypatch)
    assert whole_index(store) == by_checkpoint
