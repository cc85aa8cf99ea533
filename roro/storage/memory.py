"""An in-memory backend, for tests and experiments. ``memory://NAME`` stores are shared in-process."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

from .base import Backend, KeyInfo, KeyNotFoundError, Names, check_key, refuse_too_large

_SHARED: dict[str, MemoryBackend] = {}
_SHARED_LOCK = threading.Lock()


class MemoryBackend(Backend):
    cheap_exists = True

    def __init__(self, name: str = ""):
        self.url = f"memory://{name}"
        self._data: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, name: str) -> MemoryBackend:
        with _SHARED_LOCK:
            if name not in _SHARED:
                _SHARED[name] = cls(name)
            return _SHARED[name]

    def _item(self, key: str) -> tuple[bytes, float]:
        try:
            return self._data[check_key(key)]
        except KeyError:
            raise KeyNotFoundError(key, self.url) from None

    def get(self, key: str, max_size: int | None = None) -> bytes:
        data = self._item(key)[0]
        if max_size is not None:
            refuse_too_large(key, len(data), max_size, self.url)
        return data

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self.get(key))

    def exists(self, key: str) -> bool:
        return check_key(key) in self._data

    def stat(self, key: str) -> KeyInfo:
        data, mtime = self._item(key)
        return KeyInfo(key, len(data), mtime)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self._data
                          if k.startswith(prefix) and (start_after is None or k > start_after))
        return iter(keys)

    def list_dirs(self, prefix: str) -> Names:
        with self._lock:
            names = {k[len(prefix):].split("/", 1)[0] for k in self._data
                     if k.startswith(prefix) and "/" in k[len(prefix):]}
        return sorted(names)

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._data[check_key(key)] = (bytes(data), time.time())

    def replace(self, key: str, data: bytes) -> None:
        self.put(key, data)

    def put_file(self, key: str, path: str) -> None:
        with open(path, "rb") as f:
            self.put(key, f.read())

    def put_if_absent(self, key: str, data: bytes) -> bool:
        with self._lock:
            if check_key(key) in self._data:
                return False
            self._data[key] = (bytes(data), time.time())
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(check_key(key), None)

    def put_file_if_absent(self, key: str, path: str) -> bool:
        with open(path, "rb") as f:
            return self.put_if_absent(key, f.read())

    # for tests: corrupt or age stored bytes
    def replace_raw(self, key: str, data: bytes, mtime: float | None = None) -> None:
        with self._lock:
            self._data[check_key(key)] = (data, time.time() if mtime is None else mtime)
