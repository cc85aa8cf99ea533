"""Raw keys on a folder, in memory or on S3. See :mod:`roro.storage.base` for the contract."""

from __future__ import annotations

import os
from typing import Any

from .base import (
    Backend,
    IrregularKeyError,
    KeyInfo,
    KeyNotFoundError,
    SizedReader,
    TooLargeError,
)
from .folder import FolderBackend
from .memory import MemoryBackend
from .url import FOLDER, MEMORY, StoreLocation, check_options, parse_store_url

__all__ = ["Backend", "FolderBackend", "IrregularKeyError", "KeyInfo", "KeyNotFoundError",
           "MemoryBackend", "SizedReader", "StoreLocation", "TooLargeError", "open_backend",
           "parse_store_url"]


def open_backend(url: str | os.PathLike[str] | StoreLocation, **options: Any) -> Backend:
    """Open the backend for a store URL: a folder path, ``memory://NAME`` or ``s3://bucket/prefix``.

    ``options`` are the S3 backend's (see :class:`~roro.storage.s3.S3Backend`; folder and memory
    stores ignore them); an unknown option is a :class:`~roro.errors.StoreError` naming it.
    """
    location = url if isinstance(url, StoreLocation) else parse_store_url(url)
    check_options(location, options)
    if location.kind == FOLDER:
        return FolderBackend(location.path)
    if location.kind == MEMORY:
        return MemoryBackend.shared(location.name)
    from .s3 import S3Backend  # lazily: ~3 ms of `import roro` that only S3 stores need
    return S3Backend(location.url, **options)  # (and boto3 is imported at its first request)
