"""Real read-only and full file systems for tests (we run as root, here and in CI).

A test that needs one must fail, never skip, when it cannot be set up: these helpers raise.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()} "
                           f"-- these tests need root and mount(8)")


@contextmanager
def read_only_view(source: str, target: str) -> Iterator[str]:
    """``target``: a read-only bind mount of ``source`` (EROFS for every writer, root too)."""
    os.makedirs(target, exist_ok=True)
    _run("mount", "--bind", source, target)
    try:
        _run("mount", "-o", "remount,bind,ro", target)
        probe = os.path.join(target, ".roro-probe")
        try:
            open(probe, "wb").close()
        except OSError:
            pass
        else:
            os.unlink(probe)
            raise RuntimeError(f"{target} is writable after a read-only remount")
        yield target
    finally:
        _run("umount", "-l", target)  # lazily: a test's open SQLite handles may still be there


@contextmanager
def small_tmpfs(target: str, size: str = "4m") -> Iterator[str]:
    """``target``: a fresh tmpfs of ``size`` bytes, to fill up."""
    os.makedirs(target, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", target)
    try:
        yield target
    finally:
        _run("umount", "-l", target)


def fill(directory: str, leave: int = 0) -> str:
    """Fill the file system of ``directory`` until at most ``leave`` bytes are free; returns the
    filler file's path (delete it to free the space)."""
    path = os.path.join(directory, "filler")
    chunk = b"\0" * (1 << 16)
    with open(path, "wb") as f:
        try:
            while True:
                free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
                if free <= leave:
                    break
                f.write(chunk[: max(1, min(len(chunk), free - leave))])
                f.flush()
        except OSError:
            pass
    return path
