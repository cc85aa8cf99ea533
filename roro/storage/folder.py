"""A store in a local folder: the default, with no set-up.

Every write goes to a temporary file in ``<root>/tmp/``, is fsynced, then hard-linked into place
(``os.link`` fails if the target exists, which is exactly create-if-absent), and the directory is
fsynced. Objects are made read-only (0444) before they are linked.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import StoreError
from ..localfs import quiet_unlink
from .base import Backend, KeyInfo, KeyInfos, KeyNotFoundError, Names, check_key, fsync_dir

TMP_DIR = "tmp"


class FolderBackend(Backend):
    cheap_exists = True

    def __init__(self, root: str | os.PathLike):
        self.root = os.path.abspath(os.fspath(root))
        self.url = self.root

    # -- paths -----------------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        return os.path.join(self.root, *check_key(key).split("/"))

    def local_path(self, key: str) -> str:
        return self._path(key)

    def tempdir(self) -> str:
        path = os.path.join(self.root, TMP_DIR)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot write to store {self.root}: {e.strerror}") from e
        return path

    def collect_temp(self, older_than: float, dry_run: bool = False) -> KeyInfos:
        """Spool files in ``tmp/`` (a crashed writer's) older than ``older_than`` seconds."""
        try:
            entries = list(os.scandir(os.path.join(self.root, TMP_DIR)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        now = time.time()
        out = []
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not entry.is_file(follow_symlinks=False) or now - st.st_mtime < older_than:
                continue
            if not dry_run:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
            out.append(KeyInfo(f"{TMP_DIR}/{entry.name}", st.st_size, st.st_mtime))
        return out

    # -- reads -----------------------------------------------------------------------------------
    def get(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, NotADirectoryError):
            raise KeyNotFoundError(key, self.url) from None
        except IsADirectoryError:
            raise KeyNotFoundError(key, self.url) from None

    def download(self, key: str, path: str) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except (FileNotFoundError, NotADirectoryError):
            raise KeyNotFoundError(key, self.url) from None

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def stat(self, key: str) -> KeyInfo:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            raise KeyNotFoundError(key, self.url) from None
        return KeyInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        base, _, _ = prefix.rpartition("/")
        top = os.path.join(self.root, *base.split("/")) if base else self.root
        keys = []
        for dirpath, dirnames, filenames in os.walk(top):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel = "" if rel == "." else rel + "/"
            if rel == "":
                dirnames[:] = [d for d in dirnames if d != TMP_DIR]
            for name in filenames:
                key = rel + name
                if key.startswith(prefix) and (start_after is None or key > start_after):
                    keys.append(key)
        keys.sort()
        return iter(keys)

    def list_dirs(self, prefix: str) -> Names:
        top = os.path.join(self.root, *prefix.rstrip("/").split("/")) if prefix.strip("/") else self.root
        try:
            with os.scandir(top) as it:
                return sorted(e.name for e in it if e.is_dir() and e.name != TMP_DIR)
        except (FileNotFoundError, NotADirectoryError):
            return []

    # -- writes ----------------------------------------------------------------------------------
    def _spool(self, data: bytes) -> str:
        fd, tmp = tempfile.mkstemp(dir=self.tempdir(), prefix="put-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            quiet_unlink(tmp)
            raise
        return tmp

    def _link(self, tmp: str, key: str) -> bool:
        """Link ``tmp`` at ``key``: True if created, False if the key existed. Removes ``tmp``.
        The new key's modification time is now (a spool may have been written long before):
        gc's grace period counts from when an object appears in the store."""
        target = self._path(key)
        parent = os.path.dirname(target)
        try:
            os.makedirs(parent, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.utime(tmp)
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            fsync_dir(parent)
            return True
        finally:
            quiet_unlink(tmp)

    def put(self, key: str, data: bytes) -> None:
        self._link(self._spool(data), key)

    def put_file(self, key: str, path: str) -> None:
        self.put_file_if_absent(key, path)

    def put_file_if_absent(self, key: str, path: str) -> bool:
        src = os.path.abspath(path)
        if os.path.dirname(src) != self.tempdir():
            fd, tmp = tempfile.mkstemp(dir=self.tempdir(), prefix="put-")
            os.close(fd)
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            return self._link(tmp, key)
        # The caller spooled into our tempdir: link it directly (no copy). Take our own name for it
        # first so that the caller may delete its name at any time.
        fd, tmp = tempfile.mkstemp(dir=self.tempdir(), prefix="put-")
        os.close(fd)
        os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copyfile(src, tmp)
        return self._link(tmp, key)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._link(self._spool(data), key)

    def replace(self, key: str, data: bytes) -> None:
        tmp = self._spool(data)
        target = self._path(key)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except BaseException:
            quiet_unlink(tmp)
            raise
        fsync_dir(os.path.dirname(target))

    def delete(self, key: str) -> None:
        quiet_unlink(self._path(key))
