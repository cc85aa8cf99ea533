"""The storage contract, run unchanged against every backend and every wrapper of one.

Every capability of :class:`roro.storage.Backend` is exercised here: the data methods (``replace``
included), ``touch``,
``copy_from``, ``local_path``, ``tempdir``, ``collect_temp``, ``prepare_for_writes``,
``cache_identity``, ``unwrap`` and ``close``. The wrappers (counting, fault injection with no
fault armed) must pass the same tests as what they wrap.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest
from conftest import BACKENDS, _start_s3, make_store_url
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.s3servers import S3_KINDS

from roro.errors import InvalidNameError, StoreError
from roro.storage import Backend, KeyNotFoundError, TooLargeError, open_backend
from roro.storage.faulty import FaultyBackend
from roro.storage.wrappers import CountingBackend

WRAPPERS = {"counting": CountingBackend, "faulty": lambda inner: FaultyBackend(inner, seed=1)}
CASES = [(kind, None) for kind in BACKENDS] + [
    (kind, wrapper) for wrapper in WRAPPERS for kind in ("memory", "folder")]


@pytest.fixture(params=CASES, ids=[k if w is None else f"{w}-{k}" for k, w in CASES])
def case(request, tmp_path, monkeypatch):
    """``(kind, wrapper, new_url)``: a backend kind, the wrapper around it (or None), and a
    function that makes a fresh, empty store URL of that kind."""
    kind, wrapper = request.param
    endpoint = _start_s3(request, monkeypatch, kind) if kind in S3_KINDS else None
    return kind, wrapper, lambda: make_store_url(kind, tmp_path, endpoint)


def opened(case) -> Backend:
    """A backend on a fresh store of the case's kind, wrapped as the case says."""
    _, wrapper, new_url = case
    inner = open_backend(new_url())
    return inner if wrapper is None else WRAPPERS[wrapper](inner)


@pytest.fixture
def backend(case):
    b = opened(case)
    yield b
    b.close()
    b.unwrap().close()


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


def test_get_into_fills_the_view_and_never_past_it(backend):
    data = bytes(range(256)) * 300  # 76,800 bytes: more than one socket read
    backend.put("a/into", data)
    buffer = bytearray(len(data) + 10)
    exact = memoryview(buffer)[:len(data)]
    assert backend.get_into("a/into", exact) == len(data) and bytes(exact) == data
    buffer[:] = b"\xee" * len(buffer)
    assert backend.get_into("a/into", memoryview(buffer)) == len(data)  # a shorter key
    assert bytes(buffer[:len(data)]) == data and buffer[len(data):] == b"\xee" * 10
    buffer[:] = b"\xee" * len(buffer)
    with pytest.raises(TooLargeError):  # a longer key: refused, nothing written past the view
        backend.get_into("a/into", memoryview(buffer)[:1000])
    assert buffer[1000:] == b"\xee" * (len(buffer) - 1000)
    with pytest.raises(KeyNotFoundError):
        backend.get_into("a/missing", memoryview(buffer))


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


def test_replace_overwrites_atomically(backend):
    backend.replace("roro.json", b"first")
    backend.replace("roro.json", b"second, longer")
    assert backend.get("roro.json") == b"second, longer"
    assert backend.stat("roro.json").size == len(b"second, longer")
    assert list(backend.list("roro")) == ["roro.json"]


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


def test_list_info_gives_sizes_times_and_etags(backend):
    keys = [f"refs/p/r/log/{i:010d}.json" for i in (1, 2, 3)]
    before = time.time()
    for i, k in enumerate(keys):
        backend.put(k, b"x" * (i + 1))
    infos = list(backend.list_info("refs/p/r/log/", start_after=keys[0]))
    assert [(i.key, i.size) for i in infos] == [(keys[1], 2), (keys[2], 3)]
    for info in infos:
        assert before - 2 < info.mtime < time.time() + 2  # S3 keeps whole seconds
        assert info == backend.stat(info.key)
        # S3 names single-part uploads by their MD5; local backends have no ETag
        assert info.etag in (None, hashlib.md5(backend.get(info.key)).hexdigest())
    assert (infos[0].etag is None) == (not backend.unwrap().remote)
    assert list(backend.list_info("refs/nothing/")) == []


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


# -- the capabilities beyond get and put --------------------------------------------------------
def test_write_if_absent_for_content_addressed_keys(backend, tmp_path):
    """put_bytes_if_absent / put_file_if_absent: True and a fresh time when written; False
    when present, and then nothing is sent and the time is left as it was (no touch)."""
    data = b"content-addressed bytes"
    key = f"objects/{hashlib.sha256(data).hexdigest()}"
    before = time.time()
    assert backend.put_bytes_if_absent(key, data) is True
    assert backend.stat(key).mtime > before - 2  # S3 keeps whole seconds
    first = backend.stat(key).mtime
    time.sleep(1.05)
    assert backend.put_bytes_if_absent(key, data) is False
    path = tmp_path / "spool"
    path.write_bytes(data)
    assert backend.put_file_if_absent(key, str(path)) is False
    assert backend.stat(key).mtime == first and backend.get(key) == data
    other = tmp_path / "other"
    other.write_bytes(b"a file")
    assert backend.put_file_if_absent("objects/f", str(other)) is True
    assert backend.get("objects/f") == b"a file" and other.read_bytes() == b"a file"
    assert not hasattr(backend, "touch")


def test_copy_from_copies_or_declines(case):
    src, dst = opened(case), opened(case)
    src.put("c/k", b"copied bytes")
    if dst.copy_from(src, "c/k"):
        assert dst.get("c/k") == b"copied bytes"
    else:  # the caller streams instead: nothing was written
        assert not dst.exists("c/k")
    try:
        assert dst.copy_from(src, "c/missing") is False
    except KeyNotFoundError:
        pass
    assert not dst.exists("c/missing")


def test_local_path_reads_the_key_in_place(backend):
    backend.put("l/k", b"local bytes")
    path = backend.local_path("l/k")
    if path is None:
        return
    with open(path, "rb") as f:
        assert f.read() == b"local bytes"
    with pytest.raises(InvalidNameError):
        backend.local_path("../escape")


def test_tempdir_and_collect_temp(backend):
    tmp = backend.tempdir()
    if tmp is None:
        assert backend.collect_temp(0) == []
        return
    assert os.path.isdir(tmp)
    old, young = os.path.join(tmp, "crashed.tmp"), os.path.join(tmp, "in-flight.tmp")
    for path in (old, young):
        with open(path, "wb") as f:
            f.write(b"spooled")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    listed = backend.collect_temp(3600, dry_run=True)
    assert [(i.size, os.path.basename(i.key)) for i in listed] == [(7, "crashed.tmp")]
    assert os.path.exists(old)  # a dry run deletes nothing
    assert [os.path.basename(i.key) for i in backend.collect_temp(3600)] == ["crashed.tmp"]
    assert not os.path.exists(old) and os.path.exists(young)
    assert not any(key.startswith("tmp/") for key in backend.list(""))


def test_prepare_for_writes_is_idempotent_and_leaves_nothing(backend):
    backend.prepare_for_writes()
    backend.prepare_for_writes()
    assert list(backend.list("")) == []


def test_cache_identity_names_one_store(case):
    _, _, new_url = case
    url = new_url()
    a, b, other = open_backend(url), open_backend(url), open_backend(new_url())
    assert isinstance(a.cache_identity(), str)
    assert a.cache_identity() == b.cache_identity() != other.cache_identity()
    assert json.loads(a.cache_identity())[0] == a.url


def test_unwrap_close_and_how_calls_cost(backend):
    inner = backend.unwrap()
    assert inner.unwrap() is inner and not isinstance(inner, (CountingBackend, FaultyBackend))
    assert backend.cheap_exists == inner.cheap_exists and backend.remote == inner.remote
    assert backend.url == inner.url
    assert not (backend.remote and backend.cheap_exists)  # a network round trip is never cheap


def test_unknown_store_option_is_refused(case):
    _, _, new_url = case
    with pytest.raises(StoreError, match="endpoint_ur"):
        open_backend(new_url(), endpoint_ur="http://typo")
