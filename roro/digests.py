"""Digests are strings ``sha256:<64 lowercase hex>`` everywhere; this is the one place that parses them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import IO, Any

from .errors import InvalidNameError

ALGORITHM = "sha256"
CHUNK = 1 << 20
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def parse_digest(value: object) -> str:
    """Return ``value`` if it is a well-formed digest, else raise :class:`InvalidNameError`."""
    if not isinstance(value, str) or not _DIGEST_RE.fullmatch(value):
        raise InvalidNameError(f"invalid digest {value!r}: expected 'sha256:' and 64 lowercase hex digits",
                               name=value)
    return value


def hex_of(digest: str) -> str:
    """The 64 hex digits of a digest (validated)."""
    return parse_digest(digest)[len(ALGORITHM) + 1:]


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """The digest of ``data``."""
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def new_hasher() -> Any:
    return hashlib.sha256()


def digest_of_hasher(hasher: Any) -> str:
    return f"{ALGORITHM}:{hasher.hexdigest()}"


def digest_stream(stream: IO[bytes], copy_to: IO[bytes] | None = None,
                  on_chunk: Callable[[int], None] | None = None) -> tuple[str, int]:
    """``(digest, size)`` of everything left in ``stream``, read in 1 MiB chunks: the one
    stream-hash loop. Each chunk is written to ``copy_to`` (if given) after it is hashed, so
    the bytes copied are exactly the bytes hashed; ``on_chunk(n)`` follows each chunk."""
    h, size = new_hasher(), 0
    while chunk := stream.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return digest_of_hasher(h), size


def short(digest: str, length: int = 12) -> str:
    """A short form for display: the first ``length`` hex digits."""
    return hex_of(digest)[:length]
