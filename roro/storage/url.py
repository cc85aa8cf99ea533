"""Store URLs: the one parser of ``PATH``, ``file://PATH``, ``memory://NAME`` and ``s3://bucket/prefix``.

:func:`parse_store_url` touches nothing: it only says what kind of store a URL names and its
canonical form, so that :class:`~roro.store.Store` and :func:`~roro.storage.open_backend` agree.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from ..errors import RoroError, StoreError
from .base import check_key

FOLDER, MEMORY, S3 = "folder", "memory", "s3"
#: The options a store URL may come with (``roro.yml``, ``Store(url, **options)``): those of
#: :class:`~roro.storage.s3.S3Backend`. Folder and memory stores ignore them, so one ``roro.yml``
#: may point its store at a bucket or a folder; any other name is refused.
STORE_OPTIONS = frozenset({"endpoint_url", "region", "max_retries", "connect_timeout",
                           "read_timeout", "multipart_threshold", "multipart_chunksize",
                           "first_contact_timeout", "retry_deadline"})
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class StoreLocation(NamedTuple):
    """Where a store is. ``url`` is canonical: an absolute folder path, ``memory://NAME`` or
    ``s3://bucket[/prefix]`` (no trailing ``/``). (The small result types of roro are named
    tuples: a frozen dataclass costs ~0.3 ms of ``import roro`` each.)"""

    kind: str  # FOLDER, MEMORY or S3
    url: str
    path: str = ""    # FOLDER: the absolute path
    name: str = ""    # MEMORY: the name
    bucket: str = ""  # S3
    prefix: str = ""  # S3: no leading or trailing '/', may be empty


def parse_store_url(url: str | os.PathLike[str]) -> StoreLocation:
    """Parse a store URL or folder path; :class:`~roro.errors.StoreError` for an unknown scheme
    or an invalid bucket or prefix. A relative or ``~`` path is made absolute."""
    text = os.fspath(url)
    if text.startswith("memory://"):
        return StoreLocation(MEMORY, text, name=text[len("memory://"):])
    if text.startswith("s3://"):
        bucket, prefix = parse_s3_url(text)
        return StoreLocation(S3, f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}",
                             bucket=bucket, prefix=prefix)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        # Refused here, before the URL could be taken for a relative folder ("gs:/bucket").
        raise StoreError(f"unsupported store URL {text!r}: use a folder path or s3://bucket/prefix")
    path = os.path.abspath(os.path.expanduser(text))
    return StoreLocation(FOLDER, path, path=path)


def check_options(location: StoreLocation, options: dict[str, object]) -> None:
    """Refuse option names no store has (a typo in ``roro.yml``), naming them."""
    unknown = sorted(set(options) - STORE_OPTIONS)
    if unknown:
        raise StoreError(f"unknown store option{'s' * (len(unknown) > 1)} {', '.join(unknown)} "
                         f"for store {location.url}: the options are "
                         f"{', '.join(sorted(STORE_OPTIONS))}")


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into ``(bucket, prefix)``; the prefix has no leading or
    trailing ``/`` and may be empty."""
    if not url.startswith("s3://"):
        raise StoreError(f"not an S3 URL: {url!r}; use s3://bucket/prefix")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise StoreError(f"invalid bucket name {bucket!r} in store URL {url!r}: use 3 to 63 "
                         "lowercase letters, digits, '.' and '-'")
    if prefix:
        try:
            check_key(prefix)
        except RoroError:
            raise StoreError(f"invalid prefix {prefix!r} in store URL {url!r}") from None
    return bucket, prefix
