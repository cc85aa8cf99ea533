"""Canonical JSON: the one byte form of a JSON value, so equal values always hash the same."""

from __future__ import annotations

import json
from typing import Any, NoReturn


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys, no insignificant white space, no NaN/Infinity."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def loads(data: bytes) -> Any:
    """Parse roro JSON; ValueError for anything else (NaN, invalid UTF-8, hostile nesting)."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed in roro JSON")
