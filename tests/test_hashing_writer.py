"""HashingWriter hashes big writes on a helper thread while it writes them: the digest must still
be that of every byte, in order, whatever mix of small and big writes a pickler makes."""

from __future__ import annotations

import hashlib
import os
import pickle
import time

from roro.objects.store import PARALLEL_HASH_MIN, HashingWriter


def test_digest_of_mixed_small_and_big_writes_in_order(tmp_path):
    big = os.urandom(PARALLEL_HASH_MIN + 123)
    parts = [b"head", big, b"x" * 100, bytearray(big[::-1]), memoryview(big)[7:],
             pickle.PickleBuffer(big), b"", b"tail"]
    w = HashingWriter(str(tmp_path))
    for part in parts:
        assert w.write(part) == memoryview(part).nbytes
    digest = w.finish()
    expected = b"".join(bytes(memoryview(p)) for p in parts)
    assert digest == "sha256:" + hashlib.sha256(expected).hexdigest()
    assert w.size == len(expected)
    with open(w.path, "rb") as f:
        assert f.read() == expected
    w.discard()
    assert not os.path.exists(w.path)


def test_discard_during_a_big_write_leaves_nothing(tmp_path):
    w = HashingWriter(str(tmp_path))
    w.write(os.urandom(PARALLEL_HASH_MIN * 2))
    w.discard()
    assert os.listdir(tmp_path) == []


class SlowHasher:
    """The real sha256, slow on big updates (as on a loaded machine): a write that did not wait
    for the previous big update would hash out of order."""

    def __init__(self, real):
        self.real = real

    def update(self, data) -> None:
        if memoryview(data).nbytes >= PARALLEL_HASH_MIN:
            time.sleep(0.05)
        self.real.update(data)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_updates_keep_write_order_when_hashing_lags(tmp_path):
    big = os.urandom(PARALLEL_HASH_MIN)
    w = HashingWriter(str(tmp_path))
    w._hasher = SlowHasher(w._hasher)
    parts = [big, b"small after big", big[::-1], b"end"]
    for part in parts:
        w.write(part)
    digest = w.finish()
    assert digest == "sha256:" + hashlib.sha256(b"".join(parts)).hexdigest()
    w.discard()
