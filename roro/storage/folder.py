"""A store in a local folder: the default, with no set-up.

Every write goes to a temporary file in ``<root>/tmp/``, is fsynced, then hard-linked into place
(``os.link`` fails if the target exists, which is exactly create-if-absent), and the directory is
fsynced. Objects are made read-only (0444) before they are linked.

Nothing inside the store is trusted to be what roro wrote (issue 13): the root itself may be a
symbolic link, but every path below it is walked one directory at a time without following
symbolic links (``O_NOFOLLOW``), a key is only ever a regular file (a directory, a symbolic link,
a FIFO or a device at a key's path is an :class:`IrregularKeyError`, never "present" and never
opened for reading: a FIFO opens with ``O_NONBLOCK`` and is refused after ``fstat``), and reads
can be bounded (``get(key, max_size)``) before a byte is read. A write that finds something that
is not a regular file at its key replaces it (a dangling symbolic link, a FIFO, a truncated
object: ``rename`` replaces the entry itself, never what it points to) or, for a directory,
refuses with the path; a create-if-absent write reports a lost race only when a regular file took
the slot.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from ..errors import StoreError
from ..localfs import quiet_unlink, write_failure, write_pieces
from .base import (
    Backend,
    IrregularKeyError,
    KeyInfo,
    KeyInfos,
    KeyKinds,
    KeyNotFoundError,
    Names,
    check_key,
    refuse_too_large,
)
from .layout import RESERVE_KEY, is_key_path

TMP_DIR = "tmp"
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC

#: The room kept for gc on a full disk (``gc/reserve``): its lock, a takeover key and their
#: spool files, a few file-system blocks each.
RESERVE_BYTES = 16 * 1024


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` is, in words (for error messages and fsck)."""
    for test, name in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


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

    def _irregular(self, key: str, what: str) -> IrregularKeyError:
        return IrregularKeyError(key, what, self._path(key))

    @contextmanager
    def _parent(self, key: str, create: bool = False) -> Iterator[tuple[int, str]]:
        """``(fd of the directory holding key, key's file name)``: walked from the root one part
        at a time without following symbolic links (made if ``create``). KeyNotFoundError if a
        directory is missing (and not ``create``) or is a regular file; IrregularKeyError if one
        is a symbolic link or something else that is not a directory."""
        *folders, name = check_key(key).split("/")
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)  # may be a link
        except (FileNotFoundError, NotADirectoryError):
            if not create:
                raise KeyNotFoundError(key, self.url) from None
            os.makedirs(self.root, exist_ok=True)
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        try:
            for i, part in enumerate(folders):
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise KeyNotFoundError(key, self.url) from None
                    try:
                        os.mkdir(part, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except (NotADirectoryError, OSError) as e:
                    if isinstance(e, NotADirectoryError) or e.errno == errno.ELOOP:
                        mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
                        if stat.S_ISREG(mode) and not create:
                            raise KeyNotFoundError(key, self.url) from None
                        where = "/".join(folders[:i + 1])
                        raise IrregularKeyError(key, f"below {where}, which is a "
                                                f"{file_kind(mode)}", self._path(key)) from None
                    raise
                os.close(fd)
                fd = nxt
            yield fd, name
        finally:
            os.close(fd)

    def _open_regular(self, key: str) -> int:
        """An fd of ``key``'s file, opened only if it is a regular file (never through a symbolic
        link, never blocking on a FIFO)."""
        with self._parent(key) as (dirfd, name):
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=dirfd)
            except FileNotFoundError:
                raise KeyNotFoundError(key, self.url) from None
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise self._irregular(key, "symbolic link") from None
                mode = os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode
                if not stat.S_ISREG(mode):  # a socket (ENXIO), a device we may not open...
                    raise self._irregular(key, file_kind(mode)) from None
                raise
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise self._irregular(key, file_kind(mode))
        return fd

    def _lstat(self, key: str) -> os.stat_result:
        """The entry at ``key``, not followed if it is a symbolic link; KeyNotFoundError."""
        with self._parent(key) as (dirfd, name):
            try:
                return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                raise KeyNotFoundError(key, self.url) from None

    @contextmanager
    def _writing(self, path: str, needed: int | None = None) -> Iterator[None]:
        """Turn a write's OSError into one line: a read-only store, or a full disk naming the
        space free and ``needed``."""
        try:
            yield
        except (FileNotFoundError, FileExistsError):
            raise  # the callers' business
        except OSError as e:
            failure = write_failure(e, path, f"store {self.root}", needed)
            if failure is None:
                raise StoreError(f"cannot write {path} in store {self.root}: "
                                 f"{e.strerror or e}") from e
            raise failure from e

    def prepare_for_writes(self) -> None:
        """Refuse a store this user may not write, before anything is written (reading it
        works: see ``Store.index``)."""
        top = self.root
        while not os.path.exists(top) and os.path.dirname(top) != top:
            top = os.path.dirname(top)
        if not os.access(top, os.W_OK):
            with self._writing(top):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), top)

    def free_reserve(self) -> bool:
        try:
            with self._writing(self._path(RESERVE_KEY)), self._parent(RESERVE_KEY) as (dirfd, name):
                os.unlink(name, dir_fd=dirfd)
        except (KeyNotFoundError, FileNotFoundError):
            return False
        return True

    def keep_reserve(self) -> None:
        if not os.path.lexists(self._path(RESERVE_KEY)):
            try:
                self.put_if_absent(RESERVE_KEY, bytes(RESERVE_BYTES))
            except StoreError:
                pass  # no room (or read-only): gc can still run where there is room

    def tempdir(self) -> str:
        path = os.path.join(self.root, TMP_DIR)
        with self._writing(path):
            os.makedirs(path, exist_ok=True)
            if not os.access(path, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        if os.path.islink(path) or not os.path.isdir(path):
            raise StoreError(f"cannot write to store {self.root}: {path} is not a directory "
                             f"(a symbolic link?); roro keeps its temporary files there")
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
    def get(self, key: str, max_size: int | None = None) -> bytes:
        fd = self._open_regular(key)
        with os.fdopen(fd, "rb") as f:
            if max_size is not None:
                refuse_too_large(key, os.fstat(fd).st_size, max_size, self.url)
                data = f.read(max_size + 1)
                refuse_too_large(key, len(data), max_size, self.url)
                return data
            return f.read()

    def open(self, key: str) -> BinaryIO:
        return os.fdopen(self._open_regular(key), "rb")

    def download(self, key: str, path: str) -> None:
        with self.open(key) as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    def exists(self, key: str) -> bool:
        """True if the key is taken: any entry but a directory is at its path. A FIFO or a
        symbolic link there is taken but unreadable (:meth:`get` and :meth:`stat` raise
        :class:`IrregularKeyError`), so a reader meets the damage instead of skipping it; a
        directory is not a key (a write there fails naming it)."""
        try:
            return not stat.S_ISDIR(self._lstat(key).st_mode)
        except (KeyNotFoundError, IrregularKeyError):
            return False

    def stat(self, key: str) -> KeyInfo:
        st = self._lstat(key)
        if not stat.S_ISREG(st.st_mode):
            raise self._irregular(key, file_kind(st.st_mode))
        return KeyInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        """Every key taken (as :meth:`exists`: any entry but a directory), without following
        symbolic links, and never the spool files in ``tmp/``."""
        keys = [key for key, kind in self._walk(prefix, False) if kind != "directory"
                and (start_after is None or key > start_after)]
        keys.sort()
        return iter(keys)

    def _walk(self, prefix: str, with_tmp: bool) -> Iterator[tuple[str, str | None]]:
        """Every entry whose key starts with ``prefix``, without following symbolic links:
        ``(key, None)`` for a regular file, ``(key, kind)`` for anything else that is not a
        directory, and ``(key, "directory")`` for a directory at a path where roro keeps a file
        (:func:`~roro.storage.layout.is_key_path`). ``tmp/`` at the top only ``with_tmp``."""
        base, _, _ = prefix.rpartition("/")
        stack = [(os.path.join(self.root, *base.split("/")) if base else self.root,
                  base + "/" if base else "")]
        while stack:
            directory, rel = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                key = rel + entry.name
                inside = key.startswith(prefix)
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if inside and is_key_path(key):
                            yield key, "directory"
                        if (inside or prefix.startswith(key + "/")) and (
                                with_tmp or key != TMP_DIR):
                            stack.append((entry.path, key + "/"))
                    elif inside:
                        yield key, (None if entry.is_file(follow_symlinks=False) else
                                    file_kind(entry.stat(follow_symlinks=False).st_mode))
                except FileNotFoundError:
                    continue

    def irregular_entries(self, prefix: str = "") -> KeyKinds:
        """Every symbolic link, FIFO, device or socket under ``prefix`` (``tmp/`` included), and
        every directory at a path where roro keeps a file (an object, a log event, roro.json)."""
        return sorted((key, kind) for key, kind in self._walk(prefix, True) if kind is not None)

    def list_dirs(self, prefix: str) -> Names:
        top = os.path.join(self.root, *prefix.rstrip("/").split("/")) if prefix.strip("/") else self.root
        try:
            with os.scandir(top) as it:
                return sorted(e.name for e in it
                              if e.is_dir(follow_symlinks=False) and e.name != TMP_DIR)
        except (FileNotFoundError, NotADirectoryError):
            return []

    # -- writes ----------------------------------------------------------------------------------
    def _spool(self, data: bytes) -> str:
        directory = self.tempdir()
        with self._writing(directory, len(data)):
            fd, tmp = tempfile.mkstemp(dir=directory, prefix="put-")
            try:
                with os.fdopen(fd, "wb") as f:
                    write_pieces(f, data)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                quiet_unlink(tmp)
                raise
        return tmp

    def _link(self, tmp: str, key: str, replace_damaged: bool) -> bool:
        """Link ``tmp`` at ``key``: True if created, False if a regular file was there (with the
        same size, where ``replace_damaged``). Removes ``tmp``.

        With ``replace_damaged`` (content-addressed keys, whose bytes are known), something that
        cannot be the object (a regular file of another size, a symbolic link, a FIFO, a device)
        is replaced by it; a directory is refused (:class:`IrregularKeyError`, naming its path).
        Without it (create-if-absent), anything but a regular file is refused: the slot can
        never be written, which is not a lost race.
        The new key's modification time is now (a spool may have been written long before):
        gc's grace period counts from when an object appears in the store."""
        try:
            os.chmod(tmp, 0o444)
            os.utime(tmp)
            with self._writing(self._path(key)), self._parent(key, create=True) as (dirfd, name):
                try:
                    os.link(tmp, name, dst_dir_fd=dirfd)
                except FileExistsError:
                    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and (
                            not replace_damaged or st.st_size == os.stat(tmp).st_size):
                        return False
                    if not replace_damaged or stat.S_ISDIR(st.st_mode):
                        raise self._irregular(key, file_kind(st.st_mode)) from None
                    os.replace(tmp, name, dst_dir_fd=dirfd)
                os.fsync(dirfd)
                return True
        finally:
            quiet_unlink(tmp)

    def put(self, key: str, data: bytes) -> None:
        self._link(self._spool(data), key, replace_damaged=True)

    def put_file(self, key: str, path: str) -> None:
        self.put_file_if_absent(key, path)

    def put_file_if_absent(self, key: str, path: str) -> bool:
        src = os.path.abspath(path)
        if os.path.dirname(src) != self.tempdir():
            with self._writing(self.tempdir(), os.path.getsize(src)):
                fd, tmp = tempfile.mkstemp(dir=self.tempdir(), prefix="put-")
                os.close(fd)
                try:
                    shutil.copyfile(src, tmp)
                    with open(tmp, "rb+") as f:
                        os.fsync(f.fileno())
                except BaseException:
                    quiet_unlink(tmp)
                    raise
            return self._link(tmp, key, replace_damaged=True)
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
        return self._link(tmp, key, replace_damaged=True)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._link(self._spool(data), key, replace_damaged=False)

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        return self._link(self._spool(data), key, replace_damaged=True)

    def replace(self, key: str, data: bytes) -> None:
        tmp = self._spool(data)
        try:
            os.chmod(tmp, 0o444)
            with self._writing(self._path(key)), self._parent(key, create=True) as (dirfd, name):
                try:
                    mode = os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode
                except FileNotFoundError:
                    mode = 0
                if stat.S_ISDIR(mode):  # rename would fail; a link or FIFO is replaced
                    raise self._irregular(key, "directory")
                os.replace(tmp, name, dst_dir_fd=dirfd)
                os.fsync(dirfd)
        finally:
            quiet_unlink(tmp)

    def delete(self, key: str) -> None:
        """Remove the file at ``key`` (a symbolic link or FIFO there too; never a directory)."""
        try:
            with self._writing(self._path(key)), self._parent(key) as (dirfd, name):
                os.unlink(name, dir_fd=dirfd)
        except (KeyNotFoundError, FileNotFoundError):
            pass
