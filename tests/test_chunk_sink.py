"""Cut while pickling (issue 17, the save half): a model is dumped into a ChunkSink that cuts
FastCDC chunks as the bytes arrive and stores them while the pickler runs; nothing is read back.

The sink must cut exactly where cutting the whole blob at once cuts (else a model saved with
``save`` and the same bytes saved as a file or attachment would not share chunks); a blob that
turns out below the threshold is one object; a pickler that raises, or a disk that fills, leaves
no version, no thread and only orphans gc removes; and a chunk a gc collects before the version
is published fails the save cleanly (its bytes were not kept), and a rerun writes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import warnings

import cloudpickle
import numpy as np
import pyfastcdc
import pytest
from conftest import make_store_url
from support.mounts import small_tmpfs
from support.trust_helpers import age_all_objects

from roro import Project, Store, StoreError
from roro.check import fsck, gc
from roro.digests import digest_bytes
from roro.faults import set_crash_handler
from roro.objects import chunksink
from roro.objects.chunks import CHUNKED_FEATURE, ChunkParams, read_index
from roro.objects.chunksink import ChunkSink
from roro.objects.keep import ReuseGuard
from roro.storage.layout import feature_key
from roro.storage.wrappers import WrappingBackend

MiB = 1 << 20
#: threshold, min, avg, max: blobs of 64 KiB and up, chunks of 16 KiB on average
SMALL = "65536,4096,16384,65536"
PARAMS = ChunkParams(65536, 4096, 16384, 65536)
THREADS = ("roro-chunks", "roro-hash")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch) -> None:
    monkeypatch.setenv("RORO_CHUNKS", SMALL)


def sink_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(THREADS)]


def chunks_of(url: str, image) -> list[tuple[str, int]]:
    model = image.manifest["model"]
    return read_index(Store(url).objects, model["chunks"]["digest"], model["size"]).chunks


def whole_cut(data: bytes, params: ChunkParams = PARAMS) -> list[tuple[str, int]]:
    cdc = pyfastcdc.FastCDC(params.avg, min_size=params.min, max_size=params.max)
    return [(digest_bytes(c.data), c.length) for c in cdc.cut_buf(data)]


# -- the sink cuts where cutting the whole blob cuts -------------------------------------------------
#: write sizes: pickle frames, window-crossing runs, in-place writes after a held window, ...
PATTERNS = {
    "frames": [65536] * 40 + [123],
    "tiny then one big": [7, 100, 3000] + [3 * MiB],
    "big first": [5 * MiB, 10, 70000, 4 * MiB + 17],
    "window then big": [1000] * 300 + [6 * MiB] + [999] * 50 + [4 * MiB],
    "threshold then big": [65536, 4 * MiB + 1],
    "odd": [1, 65535, 1, 70001, 4 * MiB, 1, 4 * MiB, 12345],
    "empty writes": [0, 70000, 0, 4 * MiB, 0, 0, 10],
    # a seeded mix of every kind: empty, tiny, frame-sized, and in-place writes
    "random": [int(n) for n in np.random.default_rng(17).choice(
        [0, 1, 99, 4096, 65536, 200_000, 4 * MiB, 5 * MiB + 3], size=40,
        p=[.05, .15, .15, .2, .2, .15, .05, .05])],
}


@pytest.mark.parametrize("window", [32 * MiB, 200_000])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_the_sink_cuts_exactly_where_the_whole_blob_is_cut(tmp_path, pattern, window,
                                                           monkeypatch):
    monkeypatch.setattr(chunksink, "WINDOW", window)
    sizes = PATTERNS[pattern]
    data = np.random.default_rng(len(sizes)).bytes(sum(sizes))
    store = Store(str(tmp_path / "s"))
    store.ensure_initialized()
    guard = ReuseGuard(store.objects, lambda: None)
    sink = ChunkSink(guard, PARAMS)
    at = 0
    for n in sizes:
        sink.write(memoryview(data)[at:at + n])
        at += n
    digest = sink.finish()
    assert sink.chunked and digest == digest_bytes(data) and sink.size == len(data)
    index = sink.index()
    assert index.chunks == whole_cut(data)
    for (d, n), at in zip(index.chunks, index.offsets(), strict=True):  # every chunk stored, whole
        assert store.objects.read(d) == data[at:at + n]
    assert guard.stored == len(data)  # random bytes: every chunk is new
    assert not sink_threads()


# -- the threshold ----------------------------------------------------------------------------------
def pickled_of_size(size: int) -> bytes:
    """A bytes object whose cloudpickle is exactly ``size`` bytes."""
    [n] = [k for k in range(size - 40, size) if len(cloudpickle.dumps(b"\0" * k)) == size]
    value = np.random.default_rng(size).bytes(n)
    assert len(cloudpickle.dumps(value)) == size
    return value


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_a_model_just_below_at_or_above_the_threshold(real_store_url, delta):
    value = pickled_of_size(PARAMS.threshold + delta)
    repo = Project("p", store=real_store_url).get_model_repository("m")
    image = repo.new_image(value)
    image.save()
    model = image.manifest["model"]
    assert model["size"] == PARAMS.threshold + delta
    assert model["digest"] == digest_bytes(cloudpickle.dumps(value))
    store = Store(real_store_url)
    if delta < 0:
        assert "chunks" not in model and store.objects.has(model["digest"])
    else:
        index = read_index(store.objects, model["chunks"]["digest"], model["size"])
        assert index.chunks == whole_cut(cloudpickle.dumps(value))
        assert store.backend.exists(feature_key(CHUNKED_FEATURE))
    assert Project("p", store=real_store_url).get_model_repository("m").get_model() == value
    assert fsck(store, read_data=True).ok


def test_a_model_saved_and_the_same_bytes_attached_share_every_chunk(tmp_path):
    """The streaming cut (save) and the cut of a spooled file (an attachment) agree."""
    model = {"w": np.random.default_rng(5).random(3 * MiB // 8), "x": list(range(1000))}
    repo = Project("p", store=str(tmp_path / "s")).get_model_repository("m")
    image = repo.new_image(model)
    image.attach("copy.pkl", cloudpickle.dumps(model))
    image.save()
    store = Store(str(tmp_path / "s"))
    [attached] = image.manifest["attachments"]
    assert image.manifest["model"]["chunks"] == attached["chunks"]
    assert image.bytes_stored < 1.1 * image.manifest["model"]["size"]
    assert read_index(store.objects, attached["chunks"]["digest"]).size == attached["size"]


# -- failures ---------------------------------------------------------------------------------------
class Explodes:
    def __reduce__(self):
        raise RuntimeError("the pickler gave up halfway")


def test_a_pickler_that_raises_halfway_leaves_no_version_no_thread_only_orphans(
        real_store_url, no_gc_floor):
    repo = Project("p", store=real_store_url).get_model_repository("m")
    repo.new_image({"v": 1}).save()
    model = {"w": np.random.default_rng(1).random(MiB), "z": Explodes()}  # 8 MiB, then the raise
    with pytest.raises(RuntimeError, match="halfway"):
        repo.new_image(model).save()
    assert not sink_threads()
    store = Store(real_store_url)
    fresh = Project("p", store=store).get_model_repository("m")
    assert sorted(i.version for i in fresh.list_model_images()) == [1]
    chunks = set(store.objects.list_digests())
    assert len(chunks) > 10  # the chunks stored before the raise: orphans
    report = gc(store, grace_seconds=0)
    assert len(report.deleted) >= len(chunks) - 10
    assert fsck(store, read_data=True).ok
    assert fresh.get_model() == {"v": 1}


def test_a_full_disk_mid_save_fails_in_one_line_and_leaves_no_thread(tmp_path):
    with small_tmpfs(str(tmp_path / "disk"), "6m") as disk:
        root = os.path.join(disk, "store")
        repo = Project("p", store=root).get_model_repository("m")
        repo.new_image({"v": 1}).save()
        with warnings.catch_warnings(), pytest.raises(StoreError, match="no space left") as e:
            warnings.simplefilter("ignore")
            repo.new_image({"w": np.random.default_rng(2).random(MiB)}).save()  # 8 MiB
        message = str(e.value)
        assert "\n" not in message and root in message
        assert not sink_threads()
        fresh = Project("p", store=root).get_model_repository("m")
        assert sorted(i.version for i in fresh.list_model_images()) == [1]
        assert fresh.get_model() == {"v": 1}


class SlowPuts(WrappingBackend):
    """A folder store whose chunk writes take 50 ms each (a slow fsync): counts how many run at
    once, and how many chunk hashes were done meanwhile."""

    def __init__(self, inner):
        super().__init__(inner)
        self.running = self.most = 0
        self._lock = threading.Lock()

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)
            return super().put_bytes_if_absent(key, data)
        finally:
            with self._lock:
                self.running -= 1


def test_chunk_stores_wait_for_the_disk_on_threads_of_their_own(tmp_path):
    """Storing a chunk on a folder store is mostly waiting (fsync of the file, then of its
    directory): more stores are in flight than there are hashing threads (the cores), so the
    waits overlap each other while chunks are hashed (issue 17, fifth session)."""
    backend = SlowPuts(Store(str(tmp_path / "store")).backend)
    repo = Project("p", store=Store(backend)).get_model_repository("m")
    w = np.random.default_rng(3).random(MiB // 2)  # 4 MiB: ~256 chunks of 16 KiB
    repo.new_image({"w": w}).save()
    assert backend.most >= chunksink.HASH_THREADS + 2
    assert backend.most <= chunksink.STORE_THREADS_LOCAL
    assert not sink_threads()
    assert np.array_equal(repo.get_model()["w"], w)


def test_a_chunk_whose_fsync_fails_fails_the_save_in_one_line_and_publishes_nothing(
        tmp_path, monkeypatch):
    """Each chunk file is fsynced before it is linked into place, and the save waits for every
    chunk before it writes the index, the manifest and the event: a failing fsync (EIO from the
    disk) fails the save in one line, naming the store, and publishes nothing."""
    root = str(tmp_path / "store")
    repo = Project("p", store=root).get_model_repository("m")
    repo.new_image({"v": 1}).save()
    real_fsync = os.fsync
    failed: list[int] = []

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.startswith(os.path.join(root, "tmp", "put-")) and len(failed) < 1000:
            failed.append(fd)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StoreError) as e:
        repo.new_image({"w": np.random.default_rng(4).random(MiB // 2)}).save()
    monkeypatch.undo()
    message = str(e.value)
    assert failed and "\n" not in message and root in message and "Input/output" in message
    assert not sink_threads()
    fresh = Project("p", store=root).get_model_repository("m")
    assert sorted(i.version for i in fresh.list_model_images()) == [1]
    assert not [n for n in os.listdir(os.path.join(root, "tmp")) if n.startswith("put-")]
    assert fresh.get_model() == {"v": 1}


# -- the gc rule --------------------------------------------------------------------------------
G_MIN = 6.0


def deleted_and_old(url: str, model, fmt: str = "cloudpickle") -> None:
    """p/m: v1 small, v2 ``model`` (chunked) deleted, every object older than the grace period:
    v2's chunks are gc candidates a new save of ``model`` finds stored and old."""
    repo = Project("p", store=url).get_model_repository("m")
    repo.new_image({"v": 1}).save()
    repo.new_image(model, format=fmt).save()
    repo.delete_version(2)
    age_all_objects(Store(url), 3 * G_MIN)


@contextlib.contextmanager
def gc_at_first_check(url: str):
    """A whole gc runs when the save has looked at its first present object (no marker yet)."""
    ran: list = []

    def handler(name: str) -> None:
        if name == "reuse:after-check" and not ran:
            ran.append(gc(Store(url), grace_seconds=G_MIN))

    previous = set_crash_handler(handler)
    try:
        yield ran
    finally:
        set_crash_handler(previous)


def test_a_chunk_gc_collects_before_publish_costs_the_save_one_more_pass(tmp_path, monkeypatch):
    """The save finds the chunks of a deleted version stored and old; a gc runs right after it
    looked at the first one (before any keep marker): gc deletes them. The sink kept no bytes
    (a pickled model keeps no spool): that attempt publishes nothing; the model is still in
    memory, so the save pickles it again and writes the collected chunks anew."""
    monkeypatch.setenv("RORO_GC_MIN_GRACE", str(G_MIN))
    url = make_store_url("folder", tmp_path)
    model = {"w": np.random.default_rng(3).random(MiB // 4)}  # 2 MiB: ~128 chunks
    deleted_and_old(url, model)
    chunks = whole_cut(cloudpickle.dumps(model))
    with gc_at_first_check(url) as ran:
        image = Project("p", store=url).get_model_repository("m").new_image(model)
        image.save()
    assert len(ran) == 1 and len(ran[0].deleted) > 100
    collected = {o.digest for o in ran[0].deleted} & set(dict(chunks))
    assert collected  # gc took chunks the first attempt relied on
    assert image.version == 3 and not sink_threads()
    assert {d for d, _ in chunks_of(url, image)} == {d for d, _ in chunks}
    assert all(Store(url).objects.has(d) for d, _ in chunks)  # written anew by the second pass
    assert (Project("p", store=url).get_model_repository("m").get_model(3)["w"]
            == model["w"]).all()
    assert fsck(Store(url), read_data=True).ok


def test_a_format_read_from_its_file_keeps_a_spool_and_a_lost_chunk_is_written_again(
        tmp_path, monkeypatch):
    """safetensors' summary is read from the stored file: the sink also writes a spool (never
    read back otherwise). It is the source the gc rule writes a collected chunk again from:
    the save succeeds, and the spool is gone afterwards."""
    monkeypatch.setenv("RORO_GC_MIN_GRACE", str(G_MIN))
    url = make_store_url("folder", tmp_path)
    tensors = {"a": np.random.default_rng(4).random(MiB // 4), "b": np.arange(10.0)}
    deleted_and_old(url, tensors, "safetensors")
    with gc_at_first_check(url) as ran:
        image = Project("p", store=url).get_model_repository("m").new_image(
            tensors, format="safetensors")
        image.save()
    assert len(ran) == 1 and len(ran[0].deleted) > 100
    assert image.version == 3 and "chunks" in image.manifest["model"]
    assert "summary" in image.manifest["model"]
    assert not sink_threads()
    tmp = Store(url).backend.tempdir()
    assert [n for n in os.listdir(tmp) if n.startswith("obj-")] == []  # the spool is gone
    loaded = Project("p", store=url).get_model_repository("m").get_model(3)
    assert (loaded["a"] == tensors["a"]).all() and (loaded["b"] == tensors["b"]).all()
    assert fsck(Store(url), read_data=True).ok


def test_a_small_model_read_from_its_file_is_spooled_once(tmp_path, monkeypatch):
    """A safetensors model below the chunking threshold is held by the sink and spooled once,
    by the single-object path: the sink opens its own spool only once the blob turns out
    chunked (it wrote every small model into a second spool it then threw away)."""
    import tempfile
    spools = []
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if kwargs.get("prefix") == "obj-":
            spools.append(kwargs.get("dir"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    repo = Project("p", store=make_store_url("folder", tmp_path)).get_model_repository("m")
    image = repo.new_image({"w": np.arange(1000.0)}, format="safetensors").save()
    assert "chunks" not in image.manifest["model"] and "summary" in image.manifest["model"]
    assert len(spools) == 1
    assert (repo.get_model()["w"] == np.arange(1000.0)).all()
