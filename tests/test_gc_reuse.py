"""gc never deletes an object a save relies on (issue 13, item 3; the rule of docs/trust.md).

A save that finds an object already stored relies on it without writing anything when it is
young (younger than the reuse horizon H = G_min / 2, and it publishes within H / 2), and protects
it with a keep marker and a look at the gc lock when it is old. gc takes its lock, lists the
objects (with their times), reads the keep markers, then the logs, then deletes. No touch, no
self-copy.

Each race is run for real: the other side runs to completion *inside* a named delay point of one
side (``roro.faults``), on a folder store and on the SeaweedFS server; afterwards the version
loads and fsck is clean. Folder stores are aged by setting modification times back; on S3 the
clock really runs (G_min is a few seconds there).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest
from conftest import _start_s3, make_store_url, save_image
from support.trust_helpers import age_all_objects, run_python

import roro
from roro import ConflictError, Project, Store
from roro.check import fsck, gc
from roro.errors import InvalidDurationError
from roro.faults import DELAY_POINTS, set_crash_handler
from roro.objects.keep import GcLock
from roro.storage.layout import GC_LOCK_KEY, KEEP_PREFIX, RESERVE_KEY, object_key
from roro.storage.wrappers import CountingBackend

G_MIN = 6.0  # seconds: H = 3 s, a save must publish within 1.5 s of relying on an object
MODEL = {"model": "reused"}
ATTACHMENT = b"reused attachment"


@pytest.fixture(params=["folder", "seaweedfs"])
def kind(request, monkeypatch):
    monkeypatch.setenv("RORO_GC_MIN_GRACE", str(G_MIN))
    if request.param == "seaweedfs":
        _start_s3(request, monkeypatch, "seaweedfs")
    return request.param


def orphaned_store(kind: str, tmp_path) -> str:
    """A store whose p/m has v1, and v2 deleted: v2's model blob, attachment and manifest are
    unreferenced (gc candidates once old)."""
    url = make_store_url(kind, tmp_path)
    repo = Project("p", store=url).get_model_repository("m")
    save_image(repo, "first")
    save_image(repo, MODEL, attachments={"a.txt": ATTACHMENT})
    repo.delete_version(2)
    return url


def make_old(kind: str, urls: list[str]) -> None:
    """Make every object of these stores older than the grace period G_MIN (+ slack)."""
    if kind == "folder":
        for url in urls:
            age_all_objects(Store(url), 3 * G_MIN)
    else:  # S3 keeps the server's times: wait (once for all the stores)
        time.sleep(G_MIN + 1.5)


def reused_digests(url: str) -> set[str]:
    image = Project("p", store=Store(url)).get_model_repository("m").get_model_image(3)
    return {image.manifest["model"]["digest"], image.manifest["attachments"][0]["digest"]}


def assert_whole(url: str) -> None:
    repo = Project("p", store=Store(url)).get_model_repository("m")
    assert repo.get_model(3) == MODEL
    assert repo.get_model_image(3).get_attachment("a.txt").read() == ATTACHMENT
    report = fsck(Store(url), read_data=True)
    assert report.ok, [str(p) for p in report.problems]


@contextlib.contextmanager
def at_point(point: str, action):
    """Run ``action()`` once, when ``point`` is reached (in the thread that reaches it)."""
    done = []

    def handler(name: str) -> None:
        if name == point and not done:
            done.append(action())

    previous = set_crash_handler(handler)
    try:
        yield done
    finally:
        set_crash_handler(previous)


def save_again(url: str):
    return save_image(Project("p", store=Store(url)).get_model_repository("m"), MODEL,
                      attachments={"a.txt": ATTACHMENT})


SAVE_POINTS = ["reuse:after-check", "reuse:after-marker", "reuse:after-protect"]
GC_POINTS = ["gc:after-lock", "gc:after-list", "gc:after-markers", "gc:after-logs"]


def test_every_delay_point_is_named():
    assert set(SAVE_POINTS + GC_POINTS) <= set(DELAY_POINTS)


def test_gc_runs_inside_every_step_of_a_save_reusing_old_objects(kind, tmp_path):
    """The save found v2's blobs stored and old; a whole gc runs at each step of the save. At
    the first step gc deletes them (no marker yet): the save sees that after the lock check and
    writes them again. Later, the keep marker protects them."""
    urls = {point: orphaned_store(kind, tmp_path) for point in SAVE_POINTS}
    make_old(kind, list(urls.values()))
    for point, url in urls.items():
        with at_point(point, lambda url=url: gc(Store(url), grace_seconds=G_MIN)) as reports:
            image = save_again(url)
        assert image.version == 3 and len(reports) == 1, point
        deleted = {o.digest for o in reports[0].deleted}
        if point == "reuse:after-check":
            assert reused_digests(url) <= deleted, "the race this test is about did not happen"
        else:
            assert not deleted & reused_digests(url), point
        assert_whole(url)


def test_a_summary_object_is_relied_on_like_the_model(kind, tmp_path):
    """A safetensors save writes a summary object (issue 15) through the same guard as the model
    and the manifest: found old and unreferenced (v2 deleted), it is protected by the keep
    marker, or written again if a gc took it before the marker; gc never leaves v3 without it."""
    import numpy as np
    weights = {"w": np.arange(64, dtype=np.float32)}
    urls = {}
    for point in SAVE_POINTS:
        url = urls[point] = make_store_url(kind, tmp_path)
        repo = Project("p", store=url).get_model_repository("m")
        repo.new_image({"w": np.zeros(1, dtype=np.float32)}, format="safetensors").save()
        repo.new_image(weights, format="safetensors").save()
        repo.delete_version(2)
    make_old(kind, list(urls.values()))
    for point, url in urls.items():
        repo = Project("p", store=Store(url)).get_model_repository("m")
        with at_point(point, lambda url=url: gc(Store(url), grace_seconds=G_MIN)) as reports:
            image = repo.new_image(weights, format="safetensors").save()
        summary = image.manifest["model"]["summary"]["digest"]
        deleted = {o.digest for o in reports[0].deleted}
        assert (summary in deleted) == (point == "reuse:after-check"), point
        fresh = Project("p", store=Store(url)).get_model_repository("m").get_model_image(3)
        assert fresh.summary["tensors"] == [{"name": "w", "dtype": "F32", "shape": [64]}]
        assert np.array_equal(fresh.get_model()["w"], weights["w"])
        gc(Store(url), grace_seconds=G_MIN)  # v3 names it: never collected
        report = fsck(Store(url), read_data=True)
        assert report.ok and summary in report.reachable, [str(p) for p in report.problems]


def test_a_save_inside_every_step_of_gc(kind, tmp_path):
    """A whole save (reusing old, unreferenced objects) runs at each step of gc: the save sees
    gc's lock and waits for it; gc either saw the save's marker (and kept the objects) or
    deleted them before the save looked again (and the save wrote them back)."""
    urls = {point: orphaned_store(kind, tmp_path) for point in GC_POINTS}
    make_old(kind, list(urls.values()))
    for point, url in urls.items():
        waited, result = save_inside_gc(url, point)
        assert waited, f"{point}: the save did not wait for gc"
        assert not isinstance(result, BaseException), result
        assert result.version == 3
        assert_whole(url)


def save_inside_gc(url: str, point: str):
    """Run gc; at ``point``, start a save (in a thread: it will wait for gc's lock) and let gc
    go on once the save waits. Returns whether it waited, and the saved image (or the error)."""
    waited, result, started = threading.Event(), [], []

    def run_save():
        try:
            result.append(save_again(url))
        except BaseException as e:  # surfaced by the caller
            result.append(e)

    def handler(name):
        if name == "reuse:waiting-for-gc":
            waited.set()
        elif name == point and not started:
            started.append(threading.Thread(target=run_save))
            started[0].start()
            waited.wait(30)  # the save is now waiting for this gc to finish

    previous = set_crash_handler(handler)
    try:
        gc(Store(url), grace_seconds=G_MIN)
    finally:
        set_crash_handler(previous)
    assert started, f"gc never reached {point}"
    started[0].join(60)
    return waited.is_set(), result[0]


def test_young_objects_are_reused_without_any_write(kind, tmp_path, monkeypatch):
    """An object younger than H is relied on as it is: no marker, no lock, no copy; a gc inside
    the save's window keeps it (it is younger than the grace period)."""
    monkeypatch.setenv("RORO_GC_MIN_GRACE", "60")  # H = 30 s: "young" whatever S3's pace
    url = orphaned_store(kind, tmp_path)
    counting = CountingBackend(Store(url).backend)
    repo = Project("p", store=Store(counting)).get_model_repository("m")
    repo.get_tags()
    counting.counts.clear()
    with at_point("reuse:after-check", lambda: gc(Store(url), grace_seconds=60)) as reports:
        save_image(repo, MODEL, attachments={"a.txt": ATTACHMENT})
    assert reports and not reports[0].deleted
    assert not list(Store(url).backend.list(KEEP_PREFIX)), "a young reuse wrote a keep marker"
    assert set(counting.counts) <= {"put_if_absent", "put_bytes_if_absent", "put_file_if_absent",
                                    "stat", "list", "get", "exists"}
    assert_whole(url)


def test_a_save_slower_than_the_deadline_checks_again(kind, tmp_path, monkeypatch):
    """The reuse horizon holds only if the save publishes within H/2 of relying on a young
    object: a slower save looks again before publishing (and protects what has grown old)."""
    url = orphaned_store(kind, tmp_path)
    with at_point("reuse:after-protect", lambda: time.sleep(G_MIN / 2 + 1.2)):
        save_again(url)
    assert list(Store(url).backend.list(KEEP_PREFIX)), "the save did not protect old objects"
    assert "gc-keep" in Store(url).features()
    assert_whole(url)


def test_a_fresh_save_costs_no_extra_request_on_s3(s3_endpoint, tmp_path, monkeypatch):
    """A small save of new objects on a warm S3 handle: model, attachment, manifest and event
    are one conditional PUT each, and the refresh before the event one listing (which also
    checks the log's tail); nothing is touched or copied."""
    monkeypatch.setenv("RORO_GC_MIN_GRACE", "3600")
    url = make_store_url("seaweedfs", tmp_path, s3_endpoint)
    save_image(Project("p", store=url).get_model_repository("m"), "first")
    counting = CountingBackend(Store(url).backend)
    repo = Project("p", store=Store(counting)).get_model_repository("m")
    repo.get_tags()
    counting.counts.clear()
    save_image(repo, {"new": 1}, attachments={"a.txt": b"new attachment"})
    # model and attachment, manifest, event: one conditional PUT each; the refresh: one LIST
    writes = {"put_file_if_absent": 2, "put_bytes_if_absent": 1, "put_if_absent": 1}
    assert dict(counting.counts) == {**writes, "list": 1}
    counting.counts.clear()
    save_image(repo, {"new": 2}, attachments={"a.txt": b"new attachment"})  # attachment reused
    assert dict(counting.counts) == {**writes, "stat": 1, "list": 1}  # its age: one HEAD


def test_gc_refuses_a_grace_below_the_minimum(tmp_path, monkeypatch):
    url = orphaned_store("folder", tmp_path)
    monkeypatch.delenv("RORO_GC_MIN_GRACE", raising=False)
    with pytest.raises(InvalidDurationError, match="1h|3600"):
        gc(Store(url), grace_seconds=1800)
    monkeypatch.setenv("RORO_GC_MIN_GRACE", "600")
    with pytest.raises(InvalidDurationError, match="RORO_GC_MIN_GRACE"):
        gc(Store(url), grace_seconds=599)
    assert gc(Store(url), grace_seconds=600).deleted == []


def test_one_gc_at_a_time_and_a_dead_ones_lock_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv("RORO_GC_MIN_GRACE", str(G_MIN))
    url = orphaned_store("folder", tmp_path)
    inner = []
    with at_point("gc:after-list", lambda: inner.append(_second_gc(url))):
        gc(Store(url), grace_seconds=G_MIN)
    assert isinstance(inner[0], ConflictError) and "gc already running" in str(inner[0])
    assert not Store(url).backend.exists(GC_LOCK_KEY), "gc left its lock"
    # a gc killed while holding the lock: the next one waits for nothing once it is stale
    dead = GcLock("dead", time.time() - 2 * 3600, "gone", 1)
    Store(url).backend.put(GC_LOCK_KEY, dead.raw())
    age_all_objects(Store(url), 3 * G_MIN)
    report = gc(Store(url), grace_seconds=G_MIN)
    assert report.deleted and not Store(url).backend.exists(GC_LOCK_KEY)
    killed = run_python("import sys; from roro import Store; from roro.check import gc; "
                        "gc(Store(sys.argv[1]), grace_seconds=6)", url,
                        RORO_CRASH_AT="gc:after-lock", RORO_GC_MIN_GRACE="6")
    assert killed.returncode != 0 and Store(url).backend.exists(GC_LOCK_KEY)
    with pytest.raises(ConflictError, match="gc already running"):
        gc(Store(url), grace_seconds=G_MIN)


def _second_gc(url):
    try:
        gc(Store(url), grace_seconds=G_MIN)
    except ConflictError as e:
        return e
    return None


def test_keep_markers_are_known_never_copied_and_collected(tmp_path, monkeypatch):
    monkeypatch.setenv("RORO_GC_MIN_GRACE", str(G_MIN))
    url = orphaned_store("folder", tmp_path)
    age_all_objects(Store(url), 3 * G_MIN)
    save_again(url)  # reuses old objects: writes a keep marker
    markers = list(Store(url).backend.list(KEEP_PREFIX))
    assert len(markers) == 1
    marker = json.loads(Store(url).backend.get(markers[0]))
    assert set(marker["digests"]) >= reused_digests(url)
    assert fsck(Store(url)).ok  # not a stray file
    dst = make_store_url("folder", tmp_path)
    assert roro.sync(url, dst).ok
    assert list(Store(dst).backend.list("gc/")) == [RESERVE_KEY]  # DST's own room for gc
    age_all_objects(Store(url), 3 * G_MIN)
    for key in markers:
        Store(url).backend.local_path(key)
    _age_markers(url, 3 * G_MIN)
    report = gc(Store(url), grace_seconds=G_MIN)
    assert report.markers_deleted == 1 and not list(Store(url).backend.list(KEEP_PREFIX))
    assert_whole(url)


def _age_markers(url: str, seconds: float) -> None:
    import os
    store = Store(url)
    when = time.time() - seconds
    for key in store.backend.list(KEEP_PREFIX):
        os.utime(store.backend.local_path(key), (when, when))


def test_no_touch_anywhere():
    """The backend contract has no touch any more: nothing refreshes an object's time."""
    from roro.storage import Backend
    assert not hasattr(Backend, "touch")


def test_gc_order_across_processes(tmp_path, monkeypatch):
    """The same race across processes, with an environment-injected delay: gc (a subprocess)
    pauses after reading the keep markers while this process saves, reusing old objects."""
    monkeypatch.setenv("RORO_GC_MIN_GRACE", str(G_MIN))
    url = orphaned_store("folder", tmp_path)
    age_all_objects(Store(url), 3 * G_MIN)
    import subprocess
    import sys

    from support.trust_helpers import subprocess_env
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from roro import Store; from roro.check import gc; "
         "print(len(gc(Store(sys.argv[1]), grace_seconds=6).deleted))", url],
        env=subprocess_env(RORO_DELAY_AT="gc:after-markers", RORO_DELAY_SECONDS="3",
                           RORO_GC_MIN_GRACE="6"), stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not Store(url).backend.exists(GC_LOCK_KEY) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    image = save_again(url)  # waits for the gc's lock, then checks its objects again
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0 and int(out) >= 3  # gc did delete v2's objects
    assert image.version == 3
    assert object_key(next(iter(reused_digests(url))))
    assert_whole(url)


def test_bit_flips_never_make_gc_or_a_writer_trust_a_lock_or_marker_they_misread(tmp_path,
                                                                                 monkeypatch):
    """A keep marker is named by the hash of its content and the lock carries a checksum: a
    marker read with a flipped bit is read again, and one that never reads intact stops gc; a
    lock that never reads intact counts as held since its modification time."""
    from roro.errors import GcRefusedError
    from roro.objects.keep import GcLockHolder, read_lock
    from roro.storage import open_backend
    from roro.storage.faulty import FaultyBackend

    monkeypatch.setenv("RORO_GC_MIN_GRACE", str(G_MIN))
    url = orphaned_store("folder", tmp_path)
    age_all_objects(Store(url), 3 * G_MIN)
    save_again(url)  # a keep marker for v2's old objects
    save_image(Project("p", store=Store(url)).get_model_repository("m"), "second")
    Project("p", store=Store(url)).get_model_repository("m").delete_version(3)
    age_all_objects(Store(url), 3 * G_MIN)  # v3's objects: old, unreferenced, in the marker

    def flipping(times):
        faulty = FaultyBackend(open_backend(url), seed=3)
        faulty.flip_bits("get", where=lambda key: key.startswith(KEEP_PREFIX), times=times)
        return Store(faulty)

    with pytest.raises(GcRefusedError, match="unreadable-marker"):
        gc(flipping(None), grace_seconds=G_MIN)
    marked = set(json.loads(Store(url).backend.get(next(iter(
        Store(url).backend.list(KEEP_PREFIX)))))["digests"])
    report = gc(flipping(1), grace_seconds=G_MIN)  # one flip: read again, intact
    assert report.kept_protected == len(marked) == 2
    assert not marked & {o.digest for o in report.deleted}
    holder = GcLockHolder.acquire(Store(url).backend, url)
    try:
        faulty = FaultyBackend(open_backend(url), seed=5)
        faulty.flip_bits("get", where=lambda key: key == GC_LOCK_KEY, times=None)
        misread = read_lock(faulty)
        assert misread is not None and misread.id == "unreadable" and not misread.stale()
        assert read_lock(Store(url).backend) == holder.lock
    finally:
        holder.release()
