"""The raw-key contract every storage backend implements, and every wrapper of one.

Backends only move bytes under keys. Hashing, verification, retries of ref writes and error mapping
live once, above them (``roro.objects`` and ``roro.refs``). Every write is atomic: a reader sees a key
whole or not at all. Keys are ``/``-separated relative paths made by :mod:`roro.storage.layout`.

Every capability a layer above may use is a method here, with a safe default where one exists, so
nothing above this package asks ``getattr(backend, ...)`` or tests for a concrete class:

- data: ``get``, ``get_into``, ``open``, ``download``, ``put``, ``put_file``, ``put_if_absent``, ``exists``,
  ``stat``, ``list``, ``list_info``, ``list_dirs``, ``delete``, ``put_bytes_if_absent``,
  ``put_file_if_absent``, ``copy_from``;
- local files: ``local_path`` (read a key in place), ``tempdir`` (where to spool for ``put_file``),
  ``collect_temp`` (what a crashed writer left there);
- set-up: ``prepare_for_writes`` (checks before the first write), ``cache_identity`` (what keys the
  local cache and index of a store), ``cheap_exists`` and ``remote`` (how calls cost), ``close``;
- wrappers: ``unwrap`` (the concrete backend under any wrappers).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import IntegrityError, InvalidNameError, NotFoundError


class SizedReader(io.RawIOBase):
    """A readable raw stream of a known size that can seek anywhere in it: the position
    bookkeeping (``_pos``) that a chunked blob's verified reader and an S3 PUT body share.
    Subclasses give :meth:`_size` and ``readinto``."""

    _pos = 0

    def _size(self) -> int:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size()}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos


class KeyNotFoundError(NotFoundError):
    """A key that is not in the store."""

    def __init__(self, key: str, url: str = ""):
        super().__init__(f"{key!r} not found in store {url}".rstrip())
        self.key = key


class IrregularKeyError(IntegrityError):
    """Something that is not a regular file at a key's path in a folder store: a directory, a
    symbolic link, a FIFO, a device. roro never writes one; it is never read (a FIFO or a link
    to ``/dev/zero`` would hang or flood the reader) and never counts as the stored key."""

    def __init__(self, key: str, what: str, path: str):
        super().__init__(f"{path} is a {what}, not a regular file: roro never writes one there; "
                         f"move it out of the store (run 'roro fsck')")
        self.key, self.what, self.path = key, what, path


class TooLargeError(IntegrityError):
    """A key larger than the most its kind may hold (an event, a manifest, ``roro.json``): a
    forged or damaged entry, refused before it is read into memory."""

    def __init__(self, key: str, size: int, limit: int, url: str = ""):
        super().__init__(f"{key!r} in store {url} is {size} bytes, more than the {limit} bytes "
                         f"such an entry may hold; it was not written by roro (run 'roro fsck')")
        self.key, self.size, self.limit = key, size, limit


def refuse_too_large(key: str, size: int, limit: int, url: str = "") -> None:
    if size > limit:
        raise TooLargeError(key, size, limit, url)


@dataclass(frozen=True)
class KeyInfo:
    key: str
    size: int
    mtime: float  # seconds since the epoch, UTC
    #: What the server says identifies the bytes (S3: the ETag, without quotes; the MD5 of the
    #: bytes for a single-part upload), or None where the backend has none (folder, memory).
    etag: str | None = None


# Names for return types of Backend methods (in a class that defines ``list``, ``list[...]``
# would name the method).
Names = list[str]
KeyInfos = list[KeyInfo]
KeyKinds = list[tuple[str, str]]  # (key, what it is)


def check_key(key: str) -> str:
    """Refuse keys that could escape the store: absolute, empty parts, '.', '..', backslashes, NUL."""
    if (not isinstance(key, str) or not key or key.startswith("/") or "\\" in key or "\x00" in key
            or any(part in ("", ".", "..") for part in key.split("/"))):
        raise InvalidNameError(f"invalid storage key {key!r}", name=key)
    return key


class Backend(ABC):
    """A flat namespace of immutable keys. Subclasses implement the abstract hooks; the others
    have defaults that are safe for any backend."""

    url: str = ""
    #: True where ``exists`` is a local call (folder, memory): the ref log then finds new events
    #: by probing the next sequence numbers instead of listing a directory of every event.
    cheap_exists: bool = False
    #: True where reads cross a network (S3): a store then keeps a local cache of verified objects.
    remote: bool = False

    # -- data ------------------------------------------------------------------------------------
    @abstractmethod
    def get(self, key: str, max_size: int | None = None) -> bytes:
        """The bytes under ``key``; raises :class:`KeyNotFoundError`, and
        :class:`TooLargeError` without reading more than ``max_size + 1`` bytes if it holds
        more than ``max_size``."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of ``key``; raises :class:`KeyNotFoundError`."""

    def get_into(self, key: str, buffer: memoryview) -> int:
        """Read ``key`` straight into ``buffer`` (a writable byte view, e.g. a slice of an
        unpickler's own buffer): returns the bytes read, fewer than ``len(buffer)`` if the key
        holds fewer. Never writes past the view: a key that holds more raises
        :class:`TooLargeError` (what was written into the view is then garbage). Raises
        :class:`KeyNotFoundError` as :meth:`get`. The default reads :meth:`open`'s stream with
        ``readinto`` (a folder's file: no copy in between)."""
        with self.open(key) as f:
            got = readinto_all(f, buffer)
            if got == len(buffer) and f.read(1):
                raise TooLargeError(key, got + 1, len(buffer), self.url)
        return got

    def download(self, key: str, path: str) -> None:
        """Write the bytes of ``key`` to the local file ``path`` (replaced if present)."""
        with self.open(key) as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically. Only for content-addressed keys, where a second
        write of the same key writes the same bytes."""

    @abstractmethod
    def put_file(self, key: str, path: str) -> None:
        """Store the content of the local file ``path`` under ``key`` atomically (as :meth:`put`).
        The backend may take ownership of ``path`` by hard-linking it; the caller must not modify
        the file afterwards, and may delete it."""

    @abstractmethod
    def replace(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically, replacing what is there: the one key that
        changes is the format marker (raised once, to the same bytes by every writer)."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` only if it does not exist: True if this call created it,
        False if it was already there (someone else won)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def stat(self, key: str) -> KeyInfo:
        """Size and modification time of ``key``; raises :class:`KeyNotFoundError`."""

    @abstractmethod
    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        """Every key starting with ``prefix``, sorted, optionally only those after ``start_after``."""

    def list_info(self, prefix: str, start_after: str | None = None) -> Iterator[KeyInfo]:
        """:meth:`list` with each key's size and modification time (and ``etag`` where the
        backend has one): what gc lists objects with, and the ref log checks its tail with. The
        default asks :meth:`stat` for each key (a key deleted meanwhile is left out); S3 gets it
        all from the listing itself."""
        for key in self.list(prefix, start_after):
            try:
                yield self.stat(key)
            except KeyNotFoundError:
                continue

    @abstractmethod
    def list_dirs(self, prefix: str) -> Names:
        """The sorted names of the immediate 'directories' under ``prefix`` (which ends with '/')."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """:meth:`put_if_absent` for a content-addressed key: True if this call wrote it, False
        if it was present, where "present" wins when it cannot be told apart (S3: a 412 after a
        retried attempt whose answer was lost); the caller then looks at the object's age. The
        default is :meth:`put_if_absent`."""
        return self.put_if_absent(key, data)

    def put_file_if_absent(self, key: str, path: str) -> bool:
        """Store the file ``path`` under the content-addressed ``key`` unless it is there: True
        if this call wrote it (its modification time is then now), False if it was present
        (nothing written: present bytes are never sent again, nor refreshed). The default asks
        :meth:`exists` first; a folder links (create-if-absent) and S3 sends small files with
        ``If-None-Match: *``. No touch: nothing in roro refreshes an object's time (the gc rule
        in docs/trust.md does without)."""
        if self.exists(key):
            return False
        self.put_file(key, path)
        return True

    def copy_from(self, src: Backend, key: str) -> bool:
        """Copy ``key`` from ``src`` without the bytes passing through this process (a
        server-side copy), if these two backends can: True if copied, False if the caller must
        stream it (the default). ``src`` may be a wrapper: look at ``src.unwrap()``. Raises
        :class:`KeyNotFoundError` if ``src`` lacks the key. Callers verify the copy."""
        return False

    # -- local files -----------------------------------------------------------------------------
    def local_path(self, key: str) -> str | None:
        """The local file that holds ``key``, for reading it in place (a folder store), or None
        (the default: read through :meth:`open` or :meth:`download`). The file need not exist."""
        return None

    def tempdir(self) -> str | None:
        """A local directory where callers should spool files meant for :meth:`put_file`, so the
        backend can link them instead of copying; None (the default) means anywhere."""
        return None

    def irregular_entries(self, prefix: str = "") -> KeyKinds:
        """``(key, what)`` for every entry under ``prefix`` that is not a regular file where
        roro expects one (a folder store: a symbolic link, a FIFO, a device; a directory at an
        object's or event's path), for fsck. The default (no local files) has none."""
        return []

    def collect_temp(self, older_than: float, dry_run: bool = False) -> KeyInfos:
        """Temporary files this backend's writers left behind (a crashed save's spool files)
        that were last modified more than ``older_than`` seconds ago: deleted, unless
        ``dry_run``; returns what was (or would be) deleted. The default has none."""
        return []

    # -- room on a full disk ---------------------------------------------------------------------
    def free_reserve(self) -> bool:
        """Give back the room kept for gc: a folder store keeps a small file (``gc/reserve``)
        so that gc can write its lock on a full disk and then free space. True if room was
        freed. The default (a store whose disk does not fill: S3) keeps none."""
        return False

    def keep_reserve(self) -> None:  # noqa: B027 - a hook with a safe default
        """Keep the room :meth:`free_reserve` gives back, if it is not kept (written when the
        store is created and after each gc; quietly nothing when there is no room). Default:
        no-op."""

    # -- set-up ----------------------------------------------------------------------------------
    def prepare_for_writes(self) -> None:  # noqa: B027 - a hook with a safe default
        """Check, once per backend object, that writing is safe (S3: that the store honours
        conditional writes); raise :class:`~roro.errors.StoreError` if it is not. Default: no-op."""

    def cache_identity(self) -> str:
        """What names this store in the user's cache directory (its local index and object
        cache): the same string for the same store, another for another one."""
        return json.dumps([self.url, None])

    def unwrap(self) -> Backend:
        """The concrete backend under any wrappers (a backend that wraps none: itself)."""
        return self

    def close(self) -> None:  # noqa: B027 - a hook with a safe default
        """Release connections and handles (idempotent)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def readinto_all(f: BinaryIO, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``f`` until it is full or ``f`` ends; the bytes read."""
    got = 0
    while got < len(buffer):
        n = f.readinto(buffer[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def fsync_dir(path: str) -> None:
    """fsync a directory so that a new entry in it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
