"""Helpers for the trust tests (fsck, gc, crashes, corruption): damage a store on purpose, run a
python subprocess on this tree's roro, compare a repository with what its log says.

Damage goes through the raw backend (delete, then put), so it works the same on every backend
kind; only ageing an object's modification time needs to know the kind.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

from roro import Store
from roro.refs.state import fold
from roro.storage.layout import log_key, object_key

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def flip_byte(store: Store, key: str, offset: int | None = None) -> bytes:
    """Flip one bit of one byte of ``key`` in place; returns the original bytes."""
    backend = store.backend
    original = backend.get(key)
    data = bytearray(original)
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    rewrite(store, key, bytes(data))
    return original


def rewrite(store: Store, key: str, data: bytes) -> None:
    """Replace the bytes under ``key`` (the store never does this: objects and events are
    create-only, so this is the damage a disk, a person or a bad tool could do)."""
    store.backend.delete(key)
    store.backend.put(key, data)


def corrupt_object(store: Store, digest: str) -> bytes:
    return flip_byte(store, object_key(digest))


def corrupt_object_uncached(store: Store, digest: str) -> bytes:
    """:func:`corrupt_object`, and drop a remote store's local cache entry of it: the cache holds
    verified copies, which roro may rightly read instead of the bucket, so that the corrupted
    bytes are what a reader meets. Returns the original bytes."""
    original = corrupt_object(store, digest)
    if store.objects.cache is not None:
        pathlib.Path(store.objects.cache.path(digest)).unlink(missing_ok=True)
    return original


def restore_object(store: Store, digest: str, original: bytes) -> None:
    rewrite(store, object_key(digest), original)


AGEABLE = ["memory", "folder"]  # backend kinds whose modification times age_key can set back


def age_key(store: Store, key: str, seconds: float) -> None:
    """Make ``key`` look ``seconds`` older (backend-specific: there is no API for it)."""
    backend = store.backend
    path = backend.local_path(key)
    when = time.time() - seconds
    if path is not None:
        os.utime(path, (when, when))
    elif hasattr(backend, "replace_raw"):
        backend.replace_raw(key, backend.get(key), mtime=when)
    else:  # a new backend kind: teach this helper how to age its keys
        raise NotImplementedError(f"cannot age keys of {backend!r}")


def age_all_objects(store: Store, seconds: float) -> None:
    for key in list(store.backend.list("objects/")):
        age_key(store, key, seconds)


def event_key(store: Store, project: str, repository: str, seq: int) -> str:
    return log_key(project, repository, seq)


def log_state(store: Store, project: str, repository: str):
    """The repository's state folded from its log alone (the truth the index must agree with)."""
    return fold(repository, store.reflog(project, repository).read_all())


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_python(code: str, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this tree's roro."""
    return subprocess.run([sys.executable, "-c", code, *args], env=subprocess_env(**env),
                          capture_output=True, text=True, timeout=timeout)
