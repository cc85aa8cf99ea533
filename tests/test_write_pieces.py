"""Big buffers go into files in pieces (``roro.localfs.write_pieces``, 256 KiB): a write of 2 MiB
or more fills the page cache with 2 MiB folios, which on a VM with free page reporting cost ~10x
the CPU (bench/README.md). Counted with the calling thread's own write system calls
(``/proc/thread-self/io``), so nothing else in the process disturbs the count."""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np

from roro.localfs import WRITE_PIECE, write_pieces
from roro.objects.cache import ObjectCache
from roro.storage.folder import FolderBackend

MiB = 1 << 20


def write_calls() -> int:
    with open("/proc/thread-self/io") as f:
        for line in f:
            if line.startswith("syscw:"):
                return int(line.split()[1])
    raise AssertionError("no syscw in /proc/thread-self/io")


class Recorder(io.RawIOBase):
    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.pieces.append(bytes(b))
        return len(b)


def test_write_pieces_hands_the_file_at_most_a_piece_at_a_time():
    data = np.random.default_rng(0).integers(0, 255, 2 * WRITE_PIECE + 12345, dtype=np.uint8)
    f = Recorder()
    write_pieces(f, memoryview(data))
    assert [len(p) for p in f.pieces] == [WRITE_PIECE, WRITE_PIECE, 12345]
    assert b"".join(f.pieces) == data.tobytes()
    f = Recorder()
    floats = data[:2 * WRITE_PIECE + 8000].view(np.float64)  # 8-byte items: counted in bytes
    write_pieces(f, memoryview(floats))
    assert b"".join(f.pieces) == floats.tobytes()
    assert max(len(p) for p in f.pieces) == WRITE_PIECE
    f = Recorder()
    write_pieces(f, b"")
    assert f.pieces == []


def test_a_folder_store_writes_a_big_object_in_pieces(tmp_path):
    backend = FolderBackend(str(tmp_path / "store"))
    data = os.urandom(5 * MiB)
    before = write_calls()
    assert backend.put_bytes_if_absent("objects/ab/cd", data)
    assert write_calls() - before >= 5 * MiB // WRITE_PIECE
    assert backend.get("objects/ab/cd") == data


def test_the_cache_writes_a_big_object_in_pieces(tmp_path):
    cache = ObjectCache(str(tmp_path / "cache"))
    data = os.urandom(4 * MiB + 1)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    before = write_calls()
    cache.write(digest, memoryview(data))
    assert write_calls() - before >= (4 * MiB) // WRITE_PIECE
    with open(cache.path(digest), "rb") as f:
        assert f.read() == data
