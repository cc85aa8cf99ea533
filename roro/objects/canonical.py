"""Canonical JSON: the one byte form of a JSON value, so equal values always hash the same."""

from __future__ import annotations

import json
from typing import Any, NoReturn


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed in roro JSON")


# One encoder and one decoder for every call (json.dumps/loads with options build new ones each
# time: a fifth of the time of parsing a small event). Both are stateless between calls.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys, no insignificant white space, no NaN/Infinity."""
    return _ENCODER.encode(value).encode("utf-8")


_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]  # the C scanner decode() calls


def loads(data: bytes) -> Any:
    """Parse roro JSON; ValueError for anything else (NaN, invalid UTF-8, hostile nesting)."""
    try:
        text = data.decode("utf-8")
        try:  # the common case, one C call: a value that starts at 0 and ends at the end
            value, end = _SCAN(text, 0)
            if end == len(text):
                return value
        except StopIteration:
            pass
        return _DECODER.decode(text)  # white space around it, or the error message
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
