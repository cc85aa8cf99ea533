"""Local files: the few operations on the local file system that several layers need."""

from __future__ import annotations

import os


def quiet_unlink(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` if it is there; a file that is already gone is not an error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
