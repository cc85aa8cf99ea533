"""Why a search matched nothing: the keys it names that exist in another case, or hold values of
another type than the query compares them with (``Accuracy > 0.9`` when the key is ``accuracy``;
``accuracy > '0.9'`` when its values are numbers)."""

from __future__ import annotations

from collections.abc import Callable

from ..metadata import json_kind
from ..suggest import did_you_mean
from . import Query, Value

#: What a JSON type of SQLite's json_each is called in a hint.
_KIND = {"integer": "numbers", "real": "numbers", "text": "strings", "true": "booleans",
         "false": "booleans", "null": "nulls", "object": "objects", "array": "lists"}


_PLURAL = {"null": "nulls", "bool": "booleans", "number": "numbers", "string": "strings"}


def _kind_of(value: Value) -> str:
    return _PLURAL[json_kind(value)]


def _literal(value: Value) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(
        value, bool) or value is None else str(value)


def no_match_hints(query: Query, key_types: Callable[[str], dict[str, set[str]]],
                   all_keys: Callable[[], list[str]]) -> list[str]:
    """Hints for a query that matched nothing. ``key_types(key)`` gives the keys equal to
    ``key`` ignoring case with the types of their values; ``all_keys()`` every key."""
    hints: list[str] = []
    keys: list[str] | None = None
    for key, values in query.comparisons():
        found = key_types(key)
        if key not in found:
            others = sorted(found)
            if others:
                hints.append(f"no version has the key {key!r}, but {', '.join(map(repr, others))} "
                             f"exists (keys are case-sensitive)")
            else:
                keys = keys if keys is not None else all_keys()
                hints.append(f"no version has the key {key!r}{did_you_mean(key, keys)}")
            continue
        stored = {_KIND.get(t, t) for t in found[key]}
        for value in values:
            if value is None:
                continue
            kind = _kind_of(value)
            if kind not in stored:
                hints.append(f"{key!r} holds {' and '.join(sorted(stored))}, but the query "
                             f"compares it with {kind[:-1]} {_literal(value)} (comparisons are "
                             f"typed: a number never equals a string)")
    return list(dict.fromkeys(hints))
