"""Validation of user metadata: JSON values within documented limits, refused when set.

Limits (each refused with :class:`~roro.errors.InvalidMetadataError`):

- a key is a non-empty string of at most 256 characters, with no control characters;
  ``timestamp`` and ``author`` are set automatically and cannot be set by hand;
- a value is JSON: null, true/false, an integer within ±2**63, a finite float, a string, a list
  (tuples are stored as lists) or an object with string keys; nesting at most 32 deep;
- one value encodes to at most 1 MiB of JSON, all metadata of an image to at most 4 MiB and
  10,000 keys.

Values of a few common non-JSON types are stored as the JSON value they stand for: numpy
scalars, 0-d and other arrays (``np.int64(5)`` → ``5``, ``np.bool_(True)`` → ``true``, an array →
nested lists), ``datetime``/``date`` (pandas ``Timestamp`` included) → ISO 8601 strings as
``isoformat()`` writes them (a naive time stays naive), pandas ``NaT`` → null. numpy is never
imported: a value is recognised by its type's module.
"""

from __future__ import annotations

import datetime
import json
import math
import unicodedata
from typing import Any

from .errors import InvalidMetadataError

AUTOMATIC_KEYS = ("timestamp", "author")
MAX_KEY_LENGTH = 256
MAX_DEPTH = 32
MAX_VALUE_BYTES = 1 << 20
MAX_TOTAL_BYTES = 4 << 20
MAX_KEYS = 10_000
_INT_LIMIT = 2**63


def json_kind(value: Any) -> str:
    """The JSON type of a value: ``null``, ``bool``, ``number``, ``string``, ``list`` or
    ``object`` (a bool is no number, though Python's bool is an int). The web UI, the query
    compiler and its hints each name these in their own words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


def validate_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidMetadataError(f"invalid metadata key {key!r}: expected a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidMetadataError(f"invalid metadata key {key[:40]!r}…: longer than "
                                   f"{MAX_KEY_LENGTH} characters")
    _check_text(key, "metadata key")
    if any(unicodedata.category(c) == "Cc" for c in key):
        raise InvalidMetadataError(f"invalid metadata key {key!r}: control characters are not allowed")
    if key in AUTOMATIC_KEYS:
        raise InvalidMetadataError(f"metadata key {key!r} is set automatically when the image is "
                                   f"saved; choose another name")
    return key


_PLAIN = (str, int, float, list, tuple, dict)
_NOT_ADAPTED = object()


def _adapt(key: str, value: Any) -> Any:
    """The JSON value a numpy or datetime ``value`` stands for, or ``_NOT_ADAPTED``."""
    module = type(value).__module__
    if module == "numpy" or module.startswith("numpy."):
        if hasattr(value, "tolist") and hasattr(value, "ndim"):  # a numpy scalar or array
            if getattr(value, "size", 1) > MAX_VALUE_BYTES:
                raise InvalidMetadataError(f"metadata value for {key!r} is larger than 1 MiB "
                                           f"of JSON")
            return value.tolist()
        return _NOT_ADAPTED
    if isinstance(value, datetime.date):  # datetime, pandas Timestamp
        if value != value:  # pandas NaT, the missing time
            return None
        return value.isoformat()
    return _NOT_ADAPTED


def _json_default(value: Any) -> Any:
    adapted = _adapt("", value)
    if adapted is _NOT_ADAPTED:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return adapted


def normalize_value(key: str, value: Any) -> Any:
    """Validate ``value`` and return an independent JSON copy of it (tuples become lists, numpy
    values and times the JSON values they stand for)."""
    _check_value(key, value)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=_json_default)
    except (ValueError, TypeError) as e:
        raise InvalidMetadataError(f"metadata value for {key!r} is not a JSON value: {e}") from None
    if len(text.encode("utf-8")) > MAX_VALUE_BYTES:
        raise InvalidMetadataError(f"metadata value for {key!r} is larger than 1 MiB of JSON")
    return json.loads(text)


def check_total(metadata: dict[str, Any]) -> None:
    if len(metadata) > MAX_KEYS:
        raise InvalidMetadataError(f"too many metadata keys ({len(metadata)}): at most {MAX_KEYS}")
    _check_size(len(json.dumps(metadata, ensure_ascii=False).encode("utf-8")))


def _check_size(size: int) -> None:
    if size > MAX_TOTAL_BYTES:
        raise InvalidMetadataError(f"metadata is {size} bytes of JSON: at most {MAX_TOTAL_BYTES}")


def entry_size(key: str, value: Any) -> int:
    """The bytes ``key: value`` adds to the JSON that :func:`check_total` measures (separator
    included), so that a running sum of entries equals the size of the whole object."""
    return len(json.dumps({key: value}, ensure_ascii=False).encode("utf-8"))  # '{' + '}' = ', '


class MetadataBudget:
    """The key count and JSON size of a metadata dict, kept up to date entry by entry, so that
    setting keys one at a time costs O(size of the value), not O(size of all metadata)."""

    def __init__(self, metadata: dict[str, Any]):
        self.sizes = {k: entry_size(k, v) for k, v in metadata.items()}
        self.total = sum(self.sizes.values())

    def check_set(self, key: str, value: Any) -> int:
        """Raise if setting ``key`` to ``value`` breaks a limit; else return its entry size."""
        size = entry_size(key, value)
        count = len(self.sizes) + (key not in self.sizes)
        if count > MAX_KEYS:
            raise InvalidMetadataError(f"too many metadata keys ({count}): at most {MAX_KEYS}")
        _check_size(max(2, self.total - self.sizes.get(key, 0) + size))
        return size

    def set(self, key: str, size: int) -> None:
        self.total += size - self.sizes.get(key, 0)
        self.sizes[key] = size

    def remove(self, key: str) -> None:
        self.total -= self.sizes.pop(key, 0)


def normalize_metadata(metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise InvalidMetadataError(f"metadata must be a dict, not {type(metadata).__name__}")
    if len(metadata) > MAX_KEYS:
        raise InvalidMetadataError(f"too many metadata keys ({len(metadata)}): at most {MAX_KEYS}")
    out = {validate_key(k): normalize_value(k, v) for k, v in metadata.items()}
    check_total(out)
    return out


def _check_text(s: str, what: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMetadataError(f"{what} {s[:40]!r} is not valid Unicode text "
                                   f"(lone surrogate)") from None


def _check_value(key: str, value: Any) -> None:
    """Walk ``value`` without recursion, so hostile nesting cannot exhaust the stack.

    ``used`` is a lower bound of the value's JSON size (every item takes at least one byte, every
    character of a string or key at least one), checked before a container's items are queued or
    a string is encoded: a hostile value is refused in time and memory bounded by the limit, not
    by its own size.
    """
    too_large = InvalidMetadataError(f"metadata value for {key!r} is larger than 1 MiB of JSON")
    stack: list[tuple[Any, int]] = [(value, 1)]
    used = 0
    while stack:
        v, depth = stack.pop()
        used += 1
        if used > MAX_VALUE_BYTES:
            raise too_large
        if depth > MAX_DEPTH:
            raise InvalidMetadataError(f"metadata value for {key!r} is nested deeper than {MAX_DEPTH}")
        if v is None or isinstance(v, bool):
            continue
        if not isinstance(v, _PLAIN):
            adapted = _adapt(key, v)
            if adapted is not _NOT_ADAPTED:
                stack.append((adapted, depth))  # check what will be stored
                used -= 1
                continue
        if isinstance(v, int):
            if not -_INT_LIMIT <= v < _INT_LIMIT:
                raise InvalidMetadataError(f"metadata value for {key!r}: integer out of the 64-bit range")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise InvalidMetadataError(f"metadata value for {key!r} is {v}: NaN and infinity "
                                           f"are not JSON")
        elif isinstance(v, str):
            used += len(v)
            if used > MAX_VALUE_BYTES:
                raise too_large
            _check_text(v, f"metadata value for {key!r}:")
        elif isinstance(v, (list, tuple)):
            if used + len(stack) + len(v) > MAX_VALUE_BYTES:
                raise too_large
            stack.extend((item, depth + 1) for item in v)
        elif isinstance(v, dict):
            if used + len(stack) + 2 * len(v) > MAX_VALUE_BYTES:
                raise too_large
            for k, item in v.items():
                if not isinstance(k, str):
                    raise InvalidMetadataError(f"metadata value for {key!r}: object keys must be "
                                               f"strings, not {type(k).__name__}")
                used += len(k)
                if used > MAX_VALUE_BYTES:
                    raise too_large
                _check_text(k, f"metadata value for {key!r}: key")
                stack.append((item, depth + 1))
        else:
            raise InvalidMetadataError(f"metadata value for {key!r} is a {type(v).__name__}, "
                                       f"not a JSON value (use numbers, strings, booleans, None, "
                                       f"lists or dicts)")
