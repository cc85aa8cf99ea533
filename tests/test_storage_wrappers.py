"""The wrappers' own behaviour: what CountingBackend counts, what FaultyBackend injects.

(That they keep the storage contract when nothing is injected is in test_storage_contract.py.)
"""

from __future__ import annotations

import time

import pytest

from roro.digests import digest_bytes
from roro.errors import IntegrityError, StoreError
from roro.objects import ObjectStore
from roro.objects.chunks import ChunkedReader, ChunkIndex
from roro.storage import open_backend
from roro.storage.faulty import READS, FaultyBackend
from roro.storage.layout import object_key
from roro.storage.wrappers import CountingBackend


@pytest.fixture
def inner(tmp_path):
    return open_backend(str(tmp_path / "store"))


def test_counting_counts_requests_by_operation(inner, tmp_path):
    counting = CountingBackend(inner)
    counting.put("a/1", b"x")
    counting.put_if_absent("a/2", b"y")
    counting.get("a/1")
    list(counting.list("a/"))
    counting.exists("a/3")
    counting.put_bytes_if_absent("a/4", b"z")
    counting.tempdir(), counting.local_path("a/1"), counting.prepare_for_writes()  # not requests
    assert dict(counting.counts) == {"put": 1, "put_if_absent": 1, "get": 1, "list": 1,
                                     "exists": 1, "put_bytes_if_absent": 1}
    assert counting.copy_from(inner, "a/1") is False and "copy_from" not in counting.counts
    counting.close()
    assert inner.get("a/1") == b"x"  # closing the wrapper leaves the inner backend open


def test_fail_after_n_calls_then_stops(inner):
    faulty = FaultyBackend(inner)
    faulty.fail("put", after=2, times=1)
    faulty.put("k/1", b"1")
    faulty.put("k/2", b"2")
    with pytest.raises(StoreError, match="injected fail fault on put 'k/3'"):
        faulty.put("k/3", b"3")
    assert not inner.exists("k/3")  # failed before writing
    faulty.put("k/3", b"3")  # fired once: the rule is spent
    assert [(i.kind, i.op, i.key) for i in faulty.log] == [("fail", "put", "k/3")]


def test_fail_after_the_write_is_a_lost_answer(inner):
    faulty = FaultyBackend(inner)
    faulty.fail("put_if_absent", applied=True, error=lambda op, key: OSError(f"lost {key}"))
    with pytest.raises(OSError, match="lost refs/x"):
        faulty.put_if_absent("refs/x", b"event")
    assert inner.get("refs/x") == b"event"  # the write happened; only its answer was lost
    assert faulty.put_if_absent("refs/x", b"event") is False


def test_where_picks_the_keys(inner):
    faulty = FaultyBackend(inner)
    faulty.fail("get", where=lambda key: key.startswith("refs/"), times=None)
    inner.put("objects/a", b"a")
    inner.put("refs/a", b"r")
    assert faulty.get("objects/a") == b"a"
    with pytest.raises(StoreError):
        faulty.get("refs/a")
    with pytest.raises(StoreError):
        faulty.get("refs/a")


def test_slow_reads_wait(inner):
    inner.put("k", b"v")
    faulty = FaultyBackend(inner)
    faulty.slow("get", delay=0.2)
    start = time.monotonic()
    assert faulty.get("k") == b"v"
    assert time.monotonic() - start >= 0.2
    start = time.monotonic()
    faulty.get("k")
    assert time.monotonic() - start < 0.2


@pytest.mark.parametrize("op", READS)
def test_flipped_bits_are_caught_by_the_object_layer(tmp_path, op):
    inner = open_backend(f"memory://flip-{op}-{time.monotonic_ns()}")  # reads go through the backend
    data = b"model bytes " * 100
    digest = digest_bytes(data)
    inner.put(object_key(digest), data)
    faulty = FaultyBackend(inner, seed=3)
    faulty.flip_bits(op, times=None)
    if op == "get":
        seen = faulty.get(object_key(digest))
    elif op == "get_into":
        buffer = bytearray(len(data))
        assert faulty.get_into(object_key(digest), memoryview(buffer)) == len(data)
        seen = bytes(buffer)
    elif op == "open":
        with faulty.open(object_key(digest)) as f:
            seen = f.read()
    else:
        faulty.download(object_key(digest), str(tmp_path / "out"))
        seen = (tmp_path / "out").read_bytes()
    diff = [a ^ b for a, b in zip(seen, data, strict=True) if a != b]
    assert len(diff) == 1 and bin(diff[0]).count("1") == 1  # exactly one bit
    assert inner.get(object_key(digest)) == data  # the stored bytes are intact
    objects = ObjectStore(faulty)
    with pytest.raises(IntegrityError, match="corrupted"):
        if op == "open":  # what sync does with a stream: spool it, hashing, then compare
            with faulty.open(object_key(digest)) as f:
                spooled = objects.spool_stream(f)
            spooled.discard()
            if spooled.digest != digest:
                raise IntegrityError("corrupted")
        elif op == "get_into":  # a chunk read straight into the reader's buffer
            index = ChunkIndex([(digest, len(data))], len(data), {})
            with ChunkedReader(objects, index, "the model") as reader:
                reader.read()
        else:  # get: read(); download: open_verified() downloads a store without local paths
            (objects.read if op == "get" else objects.open_verified)(digest)


def test_same_seed_same_faults(tmp_path):
    def run(seed):
        backend = open_backend(f"memory://wrappers-{seed}-{time.monotonic_ns()}")
        backend.put("k", bytes(range(256)))
        faulty = FaultyBackend(backend, seed=seed)
        faulty.flip_bits("get", times=None, probability=0.5)
        return [faulty.get("k") for _ in range(20)]

    assert run(11) == run(11)
    assert run(11) != run(12)
    flipped = sum(r != bytes(range(256)) for r in run(11))
    assert 0 < flipped < 20  # about half, drawn from the seeded generator


@pytest.mark.parametrize("op", ["put", "put_file", "put_if_absent"])
def test_torn_writes_store_a_prefix_and_fail(inner, tmp_path, op):
    data = b"0123456789" * 10
    faulty = FaultyBackend(inner, seed=5)
    faulty.tear(op)
    with pytest.raises(StoreError, match="injected tear fault"):
        if op == "put_file":
            path = tmp_path / "src"
            path.write_bytes(data)
            faulty.put_file("w/k", str(path))
        else:
            getattr(faulty, op)("w/k", data)
    stored = inner.get("w/k")
    assert len(stored) < len(data) and data.startswith(stored)
    assert faulty.log[0].kind == "tear"


def test_faults_only_where_they_make_sense(inner):
    faulty = FaultyBackend(inner)
    with pytest.raises(ValueError, match="put"):
        faulty.flip_bits("put")
    with pytest.raises(ValueError, match="get"):
        faulty.tear("get")
    faulty.fail(times=None)  # no operation named: every read and write
    with pytest.raises(StoreError):
        faulty.get("k")
    faulty.clear()
    assert faulty.put_if_absent("k", b"v") is True
