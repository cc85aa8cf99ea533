"""A local content-addressed cache of verified objects, for remote stores.

Layout: ``<cache>/objects/sha256/<2 hex>/<62 hex>``, the same as a store. Entries are written
atomically (temp file + rename) only after they were verified, and re-hashed whenever they are
used: a corrupted entry is deleted and fetched again.

Size limit (``RORO_CACHE_MAX``, default 10 GiB; ``500M``, ``2G``…): the objects of every remote
store's cache together (``<user cache>/stores/*/cache``). When a process has added enough to the
cache to matter (1 % of the limit, at most 64 MiB, since its last look), it scans the caches and
deletes the least recently used entries (each use refreshes an entry's modification time) until
the total is under the limit. An entry in use is never pulled from under its reader: a reader
opens an entry *before* it trusts it (a hit is opened, then re-hashed from that handle), a fill
opens the downloaded file before it renames it into place, and on Linux a deleted file that is
open stays readable until it is closed. A reader that looked for an entry but had not opened it
yet when it was evicted simply finds it missing and downloads it again.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import BinaryIO

from ..digests import digest_bytes, digest_stream
from ..localfs import quiet_unlink, write_pieces
from ..storage.base import readinto_all
from ..storage.layout import OBJECTS_PREFIX, object_key
from ..units import parse_size

DEFAULT_MAX = 10 << 30
#: Bytes a process adds before it looks at the whole cache again: 1 % of the limit, at most this.
SCAN_EVERY_MAX = 64 << 20
STALE_TEMP_SECONDS = 3600  # a fill's temporary file older than this was left by a killed process


def cache_max_bytes() -> int:
    """``$RORO_CACHE_MAX`` in bytes (default 10 GiB); ConfigError for an invalid value."""
    text = os.environ.get("RORO_CACHE_MAX")
    return DEFAULT_MAX if not text else parse_size(text, "RORO_CACHE_MAX")


class ObjectCache:
    """Verified objects of one remote store, under ``root``; at most ``max_bytes`` in all the
    caches below ``shared_root`` (default: this one only), least recently used evicted first."""

    def __init__(self, root: str, max_bytes: int | None = None, shared_root: str | None = None):
        self.root = root
        self.max_bytes = max_bytes
        self.shared_root = shared_root or root
        self._added = 0  # bytes this process added since it last scanned
        self._scan_every = 0 if max_bytes is None else min(SCAN_EVERY_MAX, max(1, max_bytes // 100))

    def path(self, digest: str) -> str:
        return os.path.join(self.root, *object_key(digest).split("/"))

    def _open_valid(self, path: str, digest: str) -> BinaryIO | None:
        """The entry, opened and fully re-hashed (the very handle that is returned, so nothing
        can change it between the check and the use); None if absent or corrupted (then it is
        deleted, to be fetched again)."""
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return None
        try:
            if digest_stream(f)[0] == digest:
                f.seek(0)
                _used(path)
                return f
        except BaseException:
            f.close()
            raise
        f.close()
        quiet_unlink(path)
        return None

    def read(self, digest: str, max_size: int | None = None) -> bytes | None:
        """The cached, verified bytes; None if absent, corrupted, or larger than ``max_size``
        (then the caller reads the store, which refuses it)."""
        path = self.path(digest)
        try:
            with open(path, "rb") as f:
                if max_size is not None and os.fstat(f.fileno()).st_size > max_size:
                    return None
                data = f.read()
        except FileNotFoundError:
            return None
        if digest_bytes(data) == digest:
            _used(path)
            return data
        quiet_unlink(path)
        return None

    def open_if_present(self, digest: str) -> BinaryIO | None:
        """The cached entry, opened and re-hashed (:meth:`open` without the fill); None if it is
        absent or was corrupted (then deleted)."""
        return self._open_valid(self.path(digest), digest)

    def read_into(self, digest: str, buffer: memoryview) -> bool:
        """Fill ``buffer`` (exactly the object's size) with the cached entry and verify it there:
        True if it matched; False if absent or corrupted (then deleted, and what ``buffer``
        holds is garbage)."""
        path = self.path(digest)
        try:
            f = open(path, "rb", buffering=0)
        except FileNotFoundError:
            return False
        with f:
            if os.fstat(f.fileno()).st_size == len(buffer) \
                    and readinto_all(f, buffer) == len(buffer) and digest_bytes(buffer) == digest:
                _used(path)
                return True
        quiet_unlink(path)
        return False

    def fits(self, size: int) -> bool:
        """May a blob of ``size`` bytes be cached? Not if it is larger than the size limit: it
        would only evict everything else, then itself (it streams through instead)."""
        return self.max_bytes is None or size <= self.max_bytes

    def write(self, digest: str, data: bytes | memoryview) -> None:
        path = self.path(digest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                write_pieces(f, data)
            os.replace(tmp, path)
        except BaseException:
            quiet_unlink(tmp)
            raise
        self._grew(len(data))

    def open(self, digest: str, download: Callable[[str, str], None]) -> BinaryIO:
        """Open the cached, verified object, calling ``download(digest, path)`` (which must verify)
        to fill the cache on a miss or a corrupted entry."""
        path = self.path(digest)
        f = self._open_valid(path, digest)
        if f is not None:
            return f
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        os.close(fd)
        try:
            download(digest, tmp)
            f = open(tmp, "rb")  # before it is published: an eviction can never take it from us
            os.replace(tmp, path)
        except BaseException:
            quiet_unlink(tmp)
            raise
        self._grew(os.fstat(f.fileno()).st_size)
        return f

    # -- the size limit ------------------------------------------------------------------------
    def _grew(self, size: int) -> None:
        if self.max_bytes is None:
            return
        self._added += size
        if self._added >= self._scan_every:
            self.evict()

    def evict(self) -> int:
        """Delete least recently used entries of every cache below ``shared_root`` until they
        hold at most ``max_bytes`` (and temporary files of killed fills); returns the bytes
        they hold now."""
        self._added = 0
        entries, total = [], 0
        now = time.time()
        for path, st in _cache_files(self.shared_root):
            if os.path.basename(path).startswith(".tmp-"):
                if now - st.st_mtime > STALE_TEMP_SECONDS:
                    quiet_unlink(path)
                continue
            entries.append((st.st_mtime, st.st_size, path))
            total += st.st_size
        if self.max_bytes is None or total <= self.max_bytes:
            return total
        entries.sort()
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            quiet_unlink(path)  # a reader that has it open keeps reading it (POSIX)
            total -= size
        return total


def _used(path: str) -> None:
    """Mark an entry as just used: its modification time is its place in the LRU order."""
    try:
        os.utime(path)
    except OSError:
        pass


def _cache_files(top: str) -> list[tuple[str, os.stat_result]]:
    """Every file of every object cache below ``top`` (``<top>/**/objects/sha256/<2 hex>/*``)."""
    out = []
    stack = [top]
    objects_dir = OBJECTS_PREFIX.rstrip("/").split("/")
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False) and \
                            entry.path.split(os.sep)[-4:-2] == objects_dir:
                        try:
                            out.append((entry.path, entry.stat(follow_symlinks=False)))
                        except FileNotFoundError:
                            continue
        except (FileNotFoundError, NotADirectoryError):
            continue
    return out
