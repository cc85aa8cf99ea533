"""Digests are strings ``sha256:<64 lowercase hex>`` everywhere; this is the one place that parses them."""

from __future__ import annotations

import hashlib
import re

from .errors import InvalidNameError

ALGORITHM = "sha256"
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


def digest_bytes(data: bytes) -> str:
    """The digest of ``data``."""
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def new_hasher():
    return hashlib.sha256()


def digest_of_hasher(hasher) -> str:
    return f"{ALGORITHM}:{hasher.hexdigest()}"


def short(digest: str, length: int = 12) -> str:
    """A short form for display: the first ``length`` hex digits."""
    return hex_of(digest)[:length]
