"""The storage contract, run unchanged against every backend."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roro.errors import InvalidNameError
from roro.storage import KeyNotFoundError, open_backend


@pytest.fixture
def backend(store_url):
    b = open_backend(store_url)
    yield b
    b.close()


def test_get_missing_raises(backend):
    with pytest.raises(KeyNotFoundError):
        backend.get("objects/ab/missing")
    assert not backend.exists("objects/ab/missing")
    with pytest.raises(KeyNotFoundError):
        backend.stat("objects/ab/missing")


def test_put_get_open_stat(backend):
    backend.put("a/b/c", b"hello")
    assert backend.get("a/b/c") == b"hello"
    with backend.open("a/b/c") as f:
        assert f.read() == b"hello"
    assert backend.exists("a/b/c")
    info = backend.stat("a/b/c")
    assert info.size == 5 and info.mtime > 0


def test_put_file_and_download(backend, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    backend.put_file("x/big", str(src))
    dst = tmp_path / "dst.bin"
    backend.download("x/big", str(dst))
    assert dst.read_bytes() == src.read_bytes()


def test_put_file_from_tempdir_then_caller_deletes(backend, tmp_path):
    d = backend.tempdir() or str(tmp_path)
    p = os.path.join(d, "spooled")
    with open(p, "wb") as f:
        f.write(b"spooled bytes")
    backend.put_file("k/spooled", p)
    os.unlink(p)
    assert backend.get("k/spooled") == b"spooled bytes"


def test_put_if_absent_only_once(backend):
    assert backend.put_if_absent("refs/p/r/log/0000000001.json", b"first") is True
    assert backend.put_if_absent("refs/p/r/log/0000000001.json", b"second") is False
    assert backend.get("refs/p/r/log/0000000001.json") == b"first"


def test_put_if_absent_concurrent_single_winner(backend):
    results = []
    barrier = threading.Barrier(8)

    def worker(i):
        barrier.wait()
        results.append((backend.put_if_absent("race/key", f"w{i}".encode()), i))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for ok, i in results if ok]
    assert len(winners) == 1
    assert backend.get("race/key") == f"w{winners[0]}".encode()


def test_list_sorted_with_prefix_and_start_after(backend):
    keys = [f"refs/p/r/log/{i:010d}.json" for i in (3, 1, 2, 10)]
    for k in keys:
        backend.put(k, b"x")
    backend.put("refs/p/other/log/0000000001.json", b"y")
    backend.put("refs/p/r2/log/0000000001.json", b"z")
    listed = list(backend.list("refs/p/r/log/"))
    assert listed == sorted(keys)
    after = list(backend.list("refs/p/r/log/", start_after="refs/p/r/log/0000000002.json"))
    assert after == ["refs/p/r/log/0000000003.json", "refs/p/r/log/0000000010.json"]
    assert list(backend.list("refs/nothing/")) == []


def test_list_dirs(backend):
    for k in ("refs/p/a/log/1", "refs/p/b/log/1", "refs/p/b/log/2", "refs/q/c/log/1", "refs/p/file"):
        backend.put(k, b"x")
    assert backend.list_dirs("refs/p/") == ["a", "b"]
    assert backend.list_dirs("refs/") == ["p", "q"]
    assert backend.list_dirs("refs/none/") == []


def test_delete_is_idempotent(backend):
    backend.put("d/k", b"x")
    backend.delete("d/k")
    backend.delete("d/k")
    assert not backend.exists("d/k")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "..", "a\\b", "a/./b", "nul\x00"])
def test_hostile_keys_refused(backend, key):
    with pytest.raises(InvalidNameError):
        backend.put(key, b"x")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096))
def test_roundtrip_property(backend, data):
    key = f"prop/{hashlib.sha256(data).hexdigest()}"  # put is for content-addressed keys
    backend.put(key, data)
    backend.put(key, data)  # idempotent
    assert backend.get(key) == data
    assert backend.stat(key).size == len(data)
