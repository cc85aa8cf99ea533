"""A local content-addressed cache of verified objects, for remote stores.

Layout: ``<cache>/objects/sha256/<2 hex>/<62 hex>``, the same as a store. Entries are written
atomically (temp file + rename) only after they were verified, and re-hashed whenever they are
used: a corrupted entry is deleted and fetched again.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

from ..digests import digest_bytes, digest_stream
from ..localfs import quiet_unlink
from ..storage.layout import object_key


class ObjectCache:
    """Verified objects of one remote store, under ``root``."""

    def __init__(self, root: str):
        self.root = root

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
            return data
        quiet_unlink(path)
        return None

    def write(self, digest: str, data: bytes) -> None:
        path = self.path(digest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            quiet_unlink(tmp)
            raise

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
            os.replace(tmp, path)
        except BaseException:
            quiet_unlink(tmp)
            raise
        return open(path, "rb")

