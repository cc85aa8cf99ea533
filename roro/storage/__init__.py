"""Raw keys on a folder, in memory or on S3. See :mod:`roro.storage.base` for the contract."""

from __future__ import annotations

import os
from typing import Any

from ..errors import StoreError
from .base import Backend, KeyInfo, KeyNotFoundError

__all__ = ["Backend", "KeyInfo", "KeyNotFoundError", "open_backend", "is_remote_url"]


def is_remote_url(url: str) -> bool:
    return url.startswith("s3://")


def open_backend(url: str | os.PathLike, **options: Any) -> Backend:
    """Open the backend for a store URL: a folder path, ``memory://NAME`` or ``s3://bucket/prefix``."""
    url = os.fspath(url)
    if url.startswith("memory://"):
        from .memory import MemoryBackend
        return MemoryBackend.shared(url[len("memory://"):])
    if url.startswith("s3://"):
        from .s3 import S3Backend  # imported lazily: boto3 costs ~0.2 s to import
        return S3Backend(url, **options)
    if url.startswith("file://"):
        url = url[len("file://"):]
    elif "://" in url:
        raise StoreError(f"unsupported store URL {url!r}: use a folder path or s3://bucket/prefix")
    from .folder import FolderBackend
    return FolderBackend(os.path.expanduser(url))
