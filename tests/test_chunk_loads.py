"""Loads of chunked blobs (issue 17, the load half): every whole chunk a read covers goes straight
into the unpickler's buffer (from the local cache, a folder's file, or an S3 GET body read from
the socket) and is verified there before the read returns; a chunk fetched from S3 goes into the
cache, so the next load reads no chunk from the bucket, unless the blob is larger than the cache
may hold: then it streams through and the cache neither fills nor evicts.

Small chunk parameters (``RORO_CHUNKS``, a test-only setting) keep the models a few MiB.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import threading

import numpy as np
import pytest
from support.s3servers import create_bucket, use_endpoint
from support.trust_helpers import corrupt_object_uncached
from test_chunks import SMALL, chunks_of, save_marked, weights

from roro import IntegrityError, Project, Store, StoreError
from roro.objects.chunks import ChunkedReader, read_index
from roro.storage.layout import object_key
from roro.storage.s3 import GET_INTO_ATTEMPTS, S3Backend
from roro.storage.wrappers import CountingBackend

MiB = 1 << 20


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch) -> None:
    monkeypatch.setenv("RORO_CHUNKS", SMALL)


@pytest.fixture
def s3_url(monkeypatch, seaweedfs_endpoint, tmp_path) -> str:
    use_endpoint(monkeypatch, seaweedfs_endpoint)
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "cache"))
    return f"s3://{create_bucket(seaweedfs_endpoint)}/m"


def counted(url: str) -> tuple[CountingBackend, Project]:
    counting = CountingBackend(Store(url).backend)
    return counting, Project("p", store=Store(counting))


def cached_objects(root: pathlib.Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in root.rglob("*")
            if p.is_file() and "objects" in p.parts and not p.name.startswith(".tmp-")}


def test_an_s3_load_gets_each_chunk_once_into_the_buffer_and_the_next_reads_none(s3_url,
                                                                                   tmp_path):
    repo = Project("p", store=s3_url).get_model_repository("m")
    w = weights()
    image = repo.new_image({"w": w}).save()
    chunks = chunks_of(Project("p", store=s3_url), image)
    size = image.manifest["model"]["size"]
    first, project = counted(s3_url)
    assert (project.get_model_repository("m").get_model()["w"] == w).all()
    # the fast path ran: all but the chunks a read starts inside of came by get_into, and
    # every chunk was fetched once (no read-ahead fetched and dropped)
    assert first.counts["get_into"] >= len(chunks) - 8, first.counts
    assert size <= first.bytes_read <= size + 64 * 1024, (first.bytes_read, size)
    cached = cached_objects(tmp_path / "cache")
    assert all(d.split(":")[1][2:] in cached for d, _ in chunks)
    second, project = counted(s3_url)
    assert (project.get_model_repository("m").get_model()["w"] == w).all()
    assert second.counts["get_into"] == 0 and second.bytes_read < 64 * 1024, second.counts


def test_a_folder_load_reads_chunks_in_place(tmp_path):
    url = str(tmp_path / "store")
    w = weights()
    Project("p", store=url).get_model_repository("m").new_image({"w": w}).save()
    counting, project = counted(url)
    assert (project.get_model_repository("m").get_model()["w"] == w).all()
    assert counting.counts["get_into"] > 16, counting.counts


class ChunkGets(CountingBackend):
    """Which chunk keys were read whole (``get``: through a copy) and which into the caller's
    buffer (``get_into``), in order."""

    def __init__(self, inner, chunk_keys):
        super().__init__(inner)
        self.chunk_keys, self.whole, self.into, self.order = chunk_keys, [], [], []

    def get(self, key, max_size=None):
        if key in self.chunk_keys:
            with self._lock:
                self.whole.append(self.chunk_keys[key])
                self.order.append(("whole", self.chunk_keys[key]))
        return super().get(key, max_size)

    def get_into(self, key, buffer):
        if key in self.chunk_keys:
            with self._lock:
                self.into.append(self.chunk_keys[key])
                self.order.append(("into", self.chunk_keys[key]))
        return super().get_into(key, buffer)


def test_a_folder_load_copies_only_the_chunks_the_array_starts_and_ends_in(tmp_path):
    """A pickled array's load on a folder store: every chunk is read once, and only two of them
    whole (verified, then copied out): the one the unpickler's buffered reads end in (read
    first of its fill, with no chunk read ahead after it: the next read, the array's, takes
    the chunks it covers straight into its buffer, all at once) and the one the array ends in
    (again read first of that fill, not alone after it)."""
    url = str(tmp_path / "store")
    w = weights()
    image = Project("p", store=url).get_model_repository("m").new_image({"w": w}).save()
    chunks = chunks_of(Project("p", store=url), image)
    keys = {object_key(d): i for i, (d, _) in enumerate(chunks)}
    counting = ChunkGets(Store(url).backend, keys)
    project = Project("p", store=Store(counting))
    assert (project.get_model_repository("m").get_model()["w"] == w).all()
    assert len(counting.whole) == 2 and counting.whole[1] == len(chunks) - 1, counting.whole
    assert sorted(counting.whole + counting.into) == list(range(len(chunks))), counting.into
    # the array's last chunk was started before the last of the chunks that went into it
    assert counting.order.index(("whole", len(chunks) - 1)) < len(counting.order) - 2


def test_a_blob_larger_than_the_cache_limit_streams_through(s3_url, tmp_path, monkeypatch):
    repo = Project("p", store=s3_url).get_model_repository("m")
    w = weights()  # 2 MiB
    image = repo.new_image({"w": w}).save()
    chunks = chunks_of(Project("p", store=s3_url), image)
    monkeypatch.setenv("RORO_CACHE_MAX", "1M")
    before = cached_objects(tmp_path / "cache")  # the manifest and the index (small)
    for _ in range(2):
        counting, project = counted(s3_url)
        assert (project.get_model_repository("m").get_model()["w"] == w).all()
        assert counting.counts["get_into"] >= len(chunks) - 8  # fetched again: not cached
        after = cached_objects(tmp_path / "cache")
        assert after.items() >= before.items()  # nothing evicted
        assert not any(d.split(":")[1][2:] in after for d, _ in chunks)  # nothing added
        assert sum(after.values()) < MiB


def test_a_corrupted_cache_entry_is_fetched_again(s3_url, tmp_path):
    repo = Project("p", store=s3_url).get_model_repository("m")
    w = weights()
    image = repo.new_image({"w": w}).save()
    repo.get_model()  # fills the cache
    chunks = chunks_of(Project("p", store=s3_url), image)
    middle = chunks[len(chunks) // 2][0]
    entry = Store(s3_url).objects.cache.path(middle)
    data = bytearray(pathlib.Path(entry).read_bytes())
    data[len(data) // 2] ^= 1
    pathlib.Path(entry).write_bytes(bytes(data))
    counting, project = counted(s3_url)
    assert (project.get_model_repository("m").get_model()["w"] == w).all()
    assert counting.counts["get_into"] == 1, counting.counts
    assert Store(s3_url).objects.cache.read(middle) is not None  # verified, cached again


@pytest.mark.parametrize("change", ["longer", "shorter"])
def test_a_chunk_of_the_wrong_size_in_the_bucket_is_refused(s3_url, tmp_path, change):
    repo = Project("p", store=s3_url).get_model_repository("m")
    image = save_marked(repo, tmp_path / "marker")
    chunks = chunks_of(Project("p", store=s3_url), image)
    i = len(chunks) // 2
    digest, size = chunks[i]
    store = Store(s3_url)
    original = corrupt_object_uncached(store, digest)  # drops the cache entry
    store.backend.put(object_key(digest), original + b"x" * 100 if change == "longer"
                      else original[:-1])
    counting, project = counted(s3_url)
    with pytest.raises(IntegrityError) as e:
        project.get_model_repository("m").get_model(1)
    why = f"holds more than its {size} bytes" if change == "longer" else \
        f"({size - 1} bytes, not {size})"
    assert f"chunk {i} ({digest}) of the model of m:1 is corrupted" in str(e.value)
    assert why in str(e.value)
    assert not (tmp_path / "marker").exists(), "the unpickler ran past a bad chunk"
    assert counting.counts["get_into"] > 0


# -- a GET body cut short ---------------------------------------------------------------------------
class CuttingServer:
    """A one-trick S3 endpoint: every GET answers ``Content-Length: len(body)``; the first
    ``cuts`` answers send half the body and close the connection."""

    def __init__(self, body: bytes, cuts: int):
        self.body, self.cuts, self.gets = body, cuts, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(65536)
                    if not data:
                        break
                    request += data
                if not request.startswith(b"GET "):
                    continue
                self.gets += 1
                cut = self.gets <= self.cuts
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(self.body))
                conn.sendall(self.body[:len(self.body) // 2] if cut else self.body)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("cuts", [1, GET_INTO_ATTEMPTS])
def test_a_get_body_cut_short_is_fetched_again_then_refused(monkeypatch, cuts):
    use_endpoint(monkeypatch, "http://127.0.0.1:1")
    body = os.urandom(300_000)
    server = CuttingServer(body, cuts)
    backend = S3Backend("s3://bucket", endpoint_url=server.url, max_retries=0)
    buffer = bytearray(len(body))
    try:
        if cuts < GET_INTO_ATTEMPTS:
            assert backend.get_into("objects/k", memoryview(buffer)) == len(body)
            assert buffer == body
        else:
            with pytest.raises(StoreError, match=r"broke during GetObject 'objects/k'.*ended "
                                                 r"after 150000 of its 300000 bytes"):
                backend.get_into("objects/k", memoryview(buffer))
        assert server.gets == cuts + (cuts < GET_INTO_ATTEMPTS)
    finally:
        backend.close()
        server.close()


def test_a_big_load_keeps_every_byte(s3_url):
    """Reads that start inside a chunk, cover several, and end inside one: the bytes are the
    blob's, in order (open_model, read in odd sizes)."""
    repo = Project("p", store=s3_url).get_model_repository("m")
    w = np.arange(300_000, dtype=np.float64)
    image = repo.new_image({"w": w}).save()
    fresh = Project("p", store=s3_url).get_model_repository("m").get_model_image(1)
    with fresh.open_model() as f:
        whole = f.read()
    with fresh.open_model() as f:
        parts = []
        for n in (7, 100_000, 3, 1_000_000, 65_536, 10 * MiB):
            parts.append(f.read(n))
    assert b"".join(parts) == whole[:len(b"".join(parts))]
    assert len(whole) == image.manifest["model"]["size"]


def test_chunks_fetched_ahead_are_handed_over_not_fetched_again(s3_url):
    """A small read fetches chunks ahead; a following read that covers them whole takes their
    verified bytes (one GET per chunk in all), and drops the read-ahead it does not cover."""
    repo = Project("p", store=s3_url).get_model_repository("m")
    image = repo.new_image({"w": weights()}).save()
    chunks = chunks_of(Project("p", store=s3_url), image)
    counting, project = counted(s3_url)
    objects = project.store.objects
    objects.cache = None  # every chunk from the bucket: each GET is counted
    index = read_index(objects, image.manifest["model"]["chunks"]["digest"],
                       image.manifest["model"]["size"])
    first, second = chunks[0][1], chunks[1][1]
    whole = b"".join(objects.read(d) for d, _ in chunks[:4])
    counting.counts.clear()
    with ChunkedReader(objects, index, "the model", threads=4) as reader:
        assert reader.read(100) == whole[:100]  # chunk 0, and 1..3 fetched ahead
        n = first - 100 + second + chunks[2][1]  # the rest of 0, then 1 and 2 whole
        assert reader.read(n) == whole[100:100 + n]
        assert reader.read(chunks[3][1]) == whole[100 + n:]  # 3 was dropped: fetched again
    # 1 and 2 came from the read-ahead (without the hand-over: get_into 1, 2 and 3); 3's GET
    # ahead may have been cancelled before it started
    assert counting.counts["get"] in (3, 4) and counting.counts["get_into"] == 1, counting.counts


def test_a_chunked_safetensors_model_loads_from_one_reassembled_cached_file(s3_url, tmp_path):
    weights_ = {"a": np.arange(200_000, dtype=np.float64), "b": np.ones((300, 100), np.float32)}
    repo = Project("p", store=s3_url).get_model_repository("m")
    image = repo.new_image(weights_, format="safetensors").save()
    model = image.manifest["model"]
    chunks = chunks_of(Project("p", store=s3_url), image)
    assert "chunks" in model and len(chunks) > 16
    shutil.rmtree(tmp_path / "cache")
    counting, project = counted(s3_url)
    got = project.get_model_repository("m").get_model()
    assert set(got) == {"a", "b"} and all((got[k] == weights_[k]).all() for k in got)
    assert counting.counts["get_into"] >= len(chunks) - 8
    cached = cached_objects(tmp_path / "cache")
    # one file under the whole blob's digest, none of the chunks
    assert cached.get(model["digest"].split(":")[1][2:]) == model["size"]
    assert not any(d.split(":")[1][2:] in cached for d, _ in chunks)
    again, project = counted(s3_url)
    got = project.get_model_repository("m").get_model(tensors=["b"])
    assert list(got) == ["b"] and (got["b"] == weights_["b"]).all()
    assert again.counts["get_into"] == 0 and again.bytes_read < 64 * 1024, again.counts


def test_a_flipped_chunk_of_a_safetensors_model_leaves_no_file_in_the_cache(s3_url, tmp_path):
    repo = Project("p", store=s3_url).get_model_repository("m")
    image = repo.new_image({"a": np.arange(300_000, dtype=np.float64)},
                           format="safetensors").save()
    chunks = chunks_of(Project("p", store=s3_url), image)
    i = len(chunks) // 2
    corrupt_object_uncached(Store(s3_url), chunks[i][0])
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(IntegrityError, match=f"chunk {i} .* of the model of m:1 is corrupted"):
        Project("p", store=s3_url).get_model_repository("m").get_model()
    assert image.manifest["model"]["digest"].split(":")[1][2:] not in \
        cached_objects(tmp_path / "cache")


@pytest.mark.parametrize("where", ["folder", "seaweedfs"])
def test_a_subset_of_a_chunked_safetensors_model_fetches_only_its_chunks(where, s3_url,
                                                                          tmp_path):
    """``get_model(tensors=[...])`` of a chunked safetensors model reads the header's chunks and
    those that cover the wanted tensors' byte ranges, each verified whole (issue 17, step 5),
    not the whole blob."""
    url = s3_url if where == "seaweedfs" else str(tmp_path / "store")
    weights_ = {"a": np.arange(400_000, dtype=np.float64),  # 3.2 MB
                "b": np.linspace(0, 1, 60_000).astype(np.float32).reshape(300, 200),  # 240 KB
                "c": np.arange(300_000, dtype=np.int64)}  # 2.4 MB
    image = Project("p", store=url).get_model_repository("m").new_image(
        weights_, format="safetensors").save()
    size = image.manifest["model"]["size"]
    assert "chunks" in image.manifest["model"]
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    counting, project = counted(url)
    got = project.get_model_repository("m").get_model(tensors=["b"])
    assert list(got) == ["b"] and got["b"].dtype == np.float32 and got["b"].shape == (300, 200)
    assert (got["b"] == weights_["b"]).all()
    nbytes = weights_["b"].nbytes
    # b's bytes, plus the header's chunk and at most a few chunks of slack around each range
    # (chunks are 4–64 KiB here); the whole blob is 5.8 MB
    assert nbytes <= counting.bytes_read <= nbytes + 8 * 65536, (counting.bytes_read, size)
    counting, project = counted(url)
    got = project.get_model_repository("m").get_model(tensors=["c", "a"])
    assert list(got) == ["c", "a"] and all((got[k] == weights_[k]).all() for k in got)
    assert counting.bytes_read <= weights_["a"].nbytes + weights_["c"].nbytes + 8 * 65536


@pytest.mark.parametrize("where", ["folder", "seaweedfs-uncached"])
def test_a_chunked_safetensors_model_streams_into_its_arrays(where, s3_url, tmp_path,
                                                             monkeypatch):
    """Where no reassembled file can be mapped (a folder store; on S3 a model larger than the
    cache may hold) a chunked safetensors model is read tensor by tensor straight into arrays
    made for them, through the verified reader: the same arrays, dtypes and key order as a
    plain file gives, the model held once (it was read whole, then handed to the library,
    which copied it), and a flipped chunk still refused before any array is returned."""
    url = s3_url if where != "folder" else str(tmp_path / "store")
    if where != "folder":
        monkeypatch.setenv("RORO_CACHE_MAX", "1M")
    weights_ = {"z": np.arange(300_000, dtype=np.float64).reshape(1000, 300),
                "b": np.linspace(0, 1, 60_000).astype(np.float16),
                "m": np.array([True, False] * 5_000),
                "s": np.array(3.5, dtype=np.float32), "e": np.zeros((0, 4), np.int32)}
    repo = Project("p", store=url).get_model_repository("m")
    image = repo.new_image(weights_, format="safetensors").save()
    assert "chunks" in image.manifest["model"]
    read: list[int] = []
    real = ChunkedReader.readinto

    def readinto(self, b):  # the sizes the loader asks for
        read.append(len(b))
        return real(self, b)

    monkeypatch.setattr(ChunkedReader, "readinto", readinto)
    got = Project("p", store=url).get_model_repository("m").get_model()
    assert list(got) == sorted(weights_)  # the order safe_open gives for a plain file
    for k, v in weights_.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and (got[k] == v).all()
        assert got[k].flags.writeable and got[k].flags.c_contiguous
    # at most one tensor's bytes at a time (the largest is read straight into its array)
    assert max(read) <= weights_["z"].nbytes < image.manifest["model"]["size"]
    assert not (tmp_path / "cache").exists() or not any(
        d.split(":")[1][2:] in cached_objects(tmp_path / "cache")
        for d in [image.manifest["model"]["digest"]])
    chunks = chunks_of(Project("p", store=url), image)
    corrupt_object_uncached(Store(url), chunks[len(chunks) // 2][0])
    with pytest.raises(IntegrityError, match=r"chunk \d+ .* of the model of m:1 is corrupted"):
        Project("p", store=url).get_model_repository("m").get_model()
