"""Backends that wrap another one: the delegating base, and counting requests (fault injection is
:mod:`roro.storage.faulty`).

A wrapper is a :class:`~roro.storage.base.Backend` itself, so anything that takes a backend takes a
wrapped one. Each wraps an explicit ``inner`` backend and delegates every method of the contract
by name (no ``__getattr__`` pass-through: a capability added to the contract must be added here,
and ``tests/test_storage_contract.py`` runs the contract against the wrappers to prove it).
:meth:`~roro.storage.base.Backend.unwrap` gives the concrete backend below every wrapper.

Closing a wrapper does not close what it wraps: the inner backend belongs to whoever opened it.
"""

from __future__ import annotations

import io
import os
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any, BinaryIO

from .base import Backend, KeyInfo, KeyInfos, KeyKinds, Names

__all__ = ["CountingBackend", "WrappingBackend"]


class _CountingReader(io.RawIOBase):
    """A binary stream that adds what is read from it to a :class:`CountingBackend`'s bytes
    (seekable, with a file descriptor, when the stream it wraps is)."""

    def __init__(self, inner: BinaryIO, owner: CountingBackend):
        self._inner, self._owner = inner, owner

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._inner.seekable())

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def fileno(self) -> int:
        return self._inner.fileno()

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        buffer[:len(data)] = data
        self._owner.add_bytes_read(len(data))
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


class WrappingBackend(Backend):
    """Delegates every method of the contract to ``inner``. Subclasses override what they change."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.url = inner.url

    @property
    def cheap_exists(self) -> bool:  # type: ignore[override]
        return self.inner.cheap_exists

    @property
    def remote(self) -> bool:  # type: ignore[override]
        return self.inner.remote

    def get(self, key: str, max_size: int | None = None) -> bytes:
        return self.inner.get(key, max_size)

    def get_into(self, key: str, buffer: memoryview) -> int:
        return self.inner.get_into(key, buffer)

    def open(self, key: str) -> BinaryIO:
        return self.inner.open(key)

    def download(self, key: str, path: str) -> None:
        self.inner.download(key, path)

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def put_file(self, key: str, path: str) -> None:
        self.inner.put_file(key, path)

    def replace(self, key: str, data: bytes) -> None:
        self.inner.replace(key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self.inner.put_if_absent(key, data)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def stat(self, key: str) -> KeyInfo:
        return self.inner.stat(key)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        return self.inner.list(prefix, start_after)

    def list_info(self, prefix: str, start_after: str | None = None) -> Iterator[KeyInfo]:
        return self.inner.list_info(prefix, start_after)

    def list_dirs(self, prefix: str) -> Names:
        return self.inner.list_dirs(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        return self.inner.put_bytes_if_absent(key, data)

    def put_file_if_absent(self, key: str, path: str) -> bool:
        return self.inner.put_file_if_absent(key, path)

    def copy_from(self, src: Backend, key: str) -> bool:
        return self.inner.copy_from(src, key)

    def local_path(self, key: str) -> str | None:
        return self.inner.local_path(key)

    def tempdir(self) -> str | None:
        return self.inner.tempdir()

    def irregular_entries(self, prefix: str = "") -> KeyKinds:
        return self.inner.irregular_entries(prefix)

    def collect_temp(self, older_than: float, dry_run: bool = False) -> KeyInfos:
        return self.inner.collect_temp(older_than, dry_run)

    def free_reserve(self) -> bool:
        return self.inner.free_reserve()

    def keep_reserve(self) -> None:
        self.inner.keep_reserve()

    def prepare_for_writes(self) -> None:
        self.inner.prepare_for_writes()

    def cache_identity(self) -> str:
        return self.inner.cache_identity()

    def unwrap(self) -> Backend:
        return self.inner.unwrap()

    def close(self) -> None:
        pass  # the inner backend belongs to whoever opened it

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.inner!r}>"


class CountingBackend(WrappingBackend):
    """Counts the calls that read or write keys, by method name: one call is one request (a
    listing counts once, however many pages it takes; a ``copy_from`` only when it copied). Set-up
    and local calls (``tempdir``, ``local_path``, ``prepare_for_writes``, ``cache_identity``, ...)
    are not requests and are passed on uncounted."""

    def __init__(self, inner: Backend):
        super().__init__(inner)
        self.counts: Counter[str] = Counter()
        #: Bytes read from the inner backend (``get``, ``get_into``, ``download``, and ``open``
        #: streams as they are read).
        self.bytes_read = 0
        self._lock = threading.Lock()

    def _count(self, op: str) -> None:
        with self._lock:
            self.counts[op] += 1

    def add_bytes_read(self, n: int) -> None:
        with self._lock:
            self.bytes_read += n

    def get(self, key: str, max_size: int | None = None) -> bytes:
        self._count("get")
        data = super().get(key, max_size)
        self.add_bytes_read(len(data))
        return data

    def get_into(self, key: str, buffer: memoryview) -> int:
        self._count("get_into")
        n = super().get_into(key, buffer)
        self.add_bytes_read(n)
        return n

    def open(self, key: str) -> BinaryIO:
        self._count("open")
        return io.BufferedReader(_CountingReader(super().open(key), self))

    def download(self, key: str, path: str) -> None:
        self._count("download")
        super().download(key, path)
        self.add_bytes_read(os.path.getsize(path))

    def put(self, key: str, data: bytes) -> None:
        self._count("put")
        super().put(key, data)

    def put_file(self, key: str, path: str) -> None:
        self._count("put_file")
        super().put_file(key, path)

    def replace(self, key: str, data: bytes) -> None:
        self._count("replace")
        super().replace(key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self._count("put_if_absent")
        return super().put_if_absent(key, data)

    def exists(self, key: str) -> bool:
        self._count("exists")
        return super().exists(key)

    def stat(self, key: str) -> KeyInfo:
        self._count("stat")
        return super().stat(key)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        self._count("list")
        return super().list(prefix, start_after)

    def list_info(self, prefix: str, start_after: str | None = None) -> Iterator[KeyInfo]:
        self._count("list")  # one listing: on S3 the sizes and times come with it
        return super().list_info(prefix, start_after)

    def list_dirs(self, prefix: str) -> Names:
        self._count("list_dirs")
        return super().list_dirs(prefix)

    def delete(self, key: str) -> None:
        self._count("delete")
        super().delete(key)

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        self._count("put_bytes_if_absent")
        return super().put_bytes_if_absent(key, data)

    def put_file_if_absent(self, key: str, path: str) -> bool:
        self._count("put_file_if_absent")
        return super().put_file_if_absent(key, path)

    def copy_from(self, src: Backend, key: str) -> bool:
        copied = super().copy_from(src, key)
        if copied:  # a backend that cannot copy server-side declines without a request
            self._count("copy_from")
        return copied
