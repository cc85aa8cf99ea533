"""Local files: the operations on the local file system that several layers need, written once.

Downloads write below a directory chosen by the user, with names that come from a store (and so
may be hostile). Every path is checked to stay below that directory, symbolic links are never
followed out of it, and a file appears only complete, verified and fsynced under its final name.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from typing import IO

from .digests import digest_stream
from .errors import (
    ConflictError,
    DiskFullError,
    DownloadError,
    IntegrityError,
    InvalidNameError,
    StoreError,
)
from .names import attachment_collision, check_download_name

#: errno values that mean "you may not write here" and "no room to write here".
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def free_bytes(path: str) -> int | None:
    """Bytes free for this user on the file system of ``path`` (its nearest existing parent)."""
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        st = os.statvfs(path or ".")
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def write_failure(error: OSError, path: str, where: str, needed: int | None = None,
                  at_least: bool = False) -> StoreError | None:
    """The one-line StoreError for a write that failed because ``where`` (a store, a cache) is
    read-only for this user or its disk is full, naming ``path`` and, for a full disk, the
    space free and needed (``needed``: bytes, ``at_least`` that many when the total is not
    known, as for a model streamed into a spool; None if not known); None for other errors."""
    if error.errno in READ_ONLY_ERRNOS:
        return StoreError(f"{where} is read-only for this user ({error.strerror}: {path}): "
                          f"reading it works, writing does not")
    if error.errno in FULL_ERRNOS:
        free = free_bytes(path)
        need = ("more than that needed" if needed is None else
                f"{'at least ' if at_least else ''}{needed} bytes needed")
        return DiskFullError(f"no space left on the device to write {path} ({where}): "
                          f"{'?' if free is None else free} bytes free, {need}; free some space "
                          f"('roro gc' removes unreferenced objects) and try again")
    return None


#: The most bytes handed to one ``write`` of a big buffer into a file (:func:`write_pieces`).
WRITE_PIECE = 256 * 1024


def write_pieces(f: IO[bytes], data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` (a C-contiguous bytes-like object) to the binary file ``f`` in pieces of at
    most :data:`WRITE_PIECE` bytes. The page cache takes folios as large as a write (up to
    2 MiB); on a VM that hands free memory back to its host (free page reporting, as on the
    machine roro is benchmarked on) large folios come from memory the host must fault in again:
    512 MiB written into new files in 2 MiB or larger writes cost 1.1-1.3 s of CPU there, in
    64 KiB-1 MiB writes 0.10-0.18 s, and in a save 256 KiB pieces kept the page-cache cost low
    longest (bench/README.md, "Issue 17, fifth session"). Elsewhere it costs a few more system
    calls per chunk."""
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")  # slices below count bytes, not items
    for at in range(0, view.nbytes, WRITE_PIECE):
        f.write(view[at:at + WRITE_PIECE])


def quiet_unlink(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` if it is there; a file that is already gone is not an error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def copy_verified(src: IO[bytes], dst: IO[bytes], digest: str, what: str,
                  on_chunk: Callable[[int], None] | None = None) -> None:
    """Copy ``src`` to ``dst`` while hashing: the bytes written must hash to ``digest`` (checked
    here, after the store's own verification, so nothing can change them between the check and
    the copy)."""
    actual, _ = digest_stream(src, copy_to=dst, on_chunk=on_chunk)
    if actual != digest:
        raise IntegrityError(f"{what} changed while it was copied: its bytes hash to {actual}, "
                             f"not {digest}; run 'roro fsck --read-data'", digest=digest,
                             expected=digest, actual=actual)


def write_verified(src: IO[bytes], path: str, digest: str, what: str, *, replace: bool,
                   on_chunk: Callable[[int], None] | None = None) -> None:
    """Write ``src`` to ``path`` through a temporary file in the same directory: the file appears
    complete, verified (:func:`copy_verified`) and fsynced under its name, with the permissions of
    a new file (the umask's), or not at all. Without ``replace`` an existing file is refused, even
    one created meanwhile (:class:`~roro.errors.DownloadError`)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".roro-download-", suffix=".tmp")
    except OSError as e:
        raise DownloadError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as dst:
            copy_verified(src, dst, digest, what, on_chunk)
            dst.flush()
            os.fsync(dst.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if replace:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except OSError as e:
        raise DownloadError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        quiet_unlink(tmp)


def _link_new(tmp: str, path: str) -> None:
    exists = DownloadError(f"{path} exists; pass --force (force=True) to overwrite it")
    try:
        os.link(tmp, path)  # never replaces: an existing file is refused, even in a race
    except FileExistsError:
        raise exists from None
    except OSError:  # a filesystem without hard links: check, then rename
        if os.path.lexists(path):
            raise exists from None
        os.replace(tmp, path)


def refuse_existing(path: str, force: bool, digest: str | None = None,
                    size: int | None = None) -> bool:
    """Before writing ``path``: True if it already holds exactly the bytes of ``digest`` (a
    regular file of ``size`` bytes hashing to it: nothing to write); False if it is absent (or
    ``force``); else DownloadError (it exists with other bytes)."""
    if not os.path.lexists(path):
        return False
    if digest is not None and same_file_bytes(path, digest, size):
        return True
    if force:
        return False
    raise DownloadError(f"{path} exists with other bytes; pass --force (force=True) to "
                        f"overwrite it")


def same_file_bytes(path: str, digest: str, size: int | None) -> bool:
    """True if ``path`` is a regular file (not a link) whose bytes hash to ``digest``."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size):
        return False
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return False
    return f"sha256:{h.hexdigest()}" == digest


def check_inside(directory: str, path: str, name: str) -> None:
    """Refuse ``path`` unless it resolves (symbolic links followed) to a place below ``directory``,
    and is not itself a symbolic link."""
    root = os.path.realpath(directory)
    parent = os.path.realpath(os.path.dirname(path))
    final = os.path.join(parent, os.path.basename(path))
    if os.path.commonpath([root, parent]) != root or final == root or os.path.islink(final):
        raise DownloadError(f"refusing to write attachment {name!r}: {path} leads outside "
                            f"{directory}")


def plan_attachments(directory: str, names: Iterable[str], force: bool,
                     contents: dict[str, tuple[str, int]] | None = None) -> list[str]:
    """The path each attachment will be written to below ``directory``, refused before any byte
    is fetched if a name is invalid, leads outside ``directory``, collides with another (as a
    file and a folder, or on a case-insensitive or normalizing filesystem), or exists with other
    bytes than ``contents[name]`` (``(digest, size)``; without ``force``)."""
    names = list(names)
    check_no_collision(names)
    planned = []
    contents = contents or {}
    for name in names:
        check_download_name(name)
        path = os.path.join(directory, *name.split("/"))
        check_inside(directory, path, name)
        refuse_existing(path, force, *contents.get(name, (None, None)))
        planned.append(path)
    return planned


def check_no_collision(names: Iterable[str]) -> None:
    """Refuse (:class:`~roro.errors.DownloadError`) attachment names that cannot all be written
    below one directory (:func:`~roro.names.attachment_collision`): before anything is written."""
    why = attachment_collision(names)
    if why is not None:
        raise DownloadError(f"refusing to download: {why}; the manifest was not written by roro "
                            f"(run 'roro fsck')")


def attachment_target(directory: str | os.PathLike[str], name: str) -> str:
    """The path of attachment ``name`` below ``directory``, with its parent folders made; refuses
    any path that could resolve outside ``directory`` (a folder that is a symbolic link:
    :class:`~roro.errors.ConflictError`)."""
    check_download_name(name)
    root = os.path.realpath(os.fspath(directory))
    os.makedirs(root, exist_ok=True)
    *folders, filename = name.split("/")
    current = root
    for part in folders:
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise ConflictError(f"cannot write attachment {name!r}: {current} is a symbolic link; "
                                f"download into an empty directory")
        try:
            os.mkdir(current)
        except FileExistsError:
            if not os.path.isdir(current):
                raise ConflictError(f"cannot write attachment {name!r}: {current} exists and is "
                                    f"not a directory") from None
    target = os.path.join(current, filename)
    if os.path.isdir(target) and not os.path.islink(target):
        raise ConflictError(f"cannot write attachment {name!r}: {target} is a directory")
    parent = os.path.realpath(current)
    if parent != root and not parent.startswith(root + os.sep):  # defence in depth
        raise InvalidNameError(f"attachment name {name!r} resolves outside {root}", name=name)
    return target
