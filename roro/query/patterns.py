"""``like`` patterns: ``%`` any text, ``_`` one character, ``\\`` makes the next character literal.

One matcher (:func:`like_match`) serves the reference evaluator and, as the SQLite function
``roro_like``, the compiled SQL; :func:`glob_pattern` writes a pattern as SQLite's ``GLOB``.
"""

from __future__ import annotations

import functools
from typing import Any

from .syntax import MAX_PATTERN_LENGTH

LIKE_FUNCTION = "roro_like"

_ANY, _ONE = object(), object()


def pattern_problem(pattern: str) -> str | None:
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"a like pattern is longer than {MAX_PATTERN_LENGTH} characters"
    backslashes = len(pattern) - len(pattern.rstrip("\\"))
    if backslashes % 2:
        return ("a like pattern cannot end with a single backslash; write \\\\ for a literal "
                "backslash")
    return None


@functools.lru_cache(maxsize=256)
def _pattern_tokens(pattern: str, ignore_case: bool) -> tuple[Any, ...]:
    """The pattern as a tuple of literal characters, ``_ANY`` (``%``) and ``_ONE`` (``_``)."""
    out: list[Any] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            literal = pattern[i + 1]
            out.extend(literal.casefold() if ignore_case else literal)
            i += 2
            continue
        if c == "%":
            if not (out and out[-1] is _ANY):  # %% is %: keeps matching linear
                out.append(_ANY)
        elif c == "_":
            out.append(_ONE)
        else:
            out.extend(c.casefold() if ignore_case else c)
        i += 1
    return tuple(out)


def like_match(value: str, pattern: str, ignore_case: bool = False) -> bool:
    """Does ``value`` match the like ``pattern``? O(len(value) * len(pattern)) time at worst,
    constant extra space: no exponential backtracking, whatever the pattern.

    ``%`` matches any text (also empty), ``_`` exactly one character, ``\\`` makes the next
    character literal. With ``ignore_case`` both sides are compared case-folded (``str.casefold``).
    """
    tokens = _pattern_tokens(pattern, ignore_case)
    s = value.casefold() if ignore_case else value
    # Classic wildcard matching: remember the last % and retry from one character further.
    i = j = 0
    star_j, star_i = -1, 0
    n, m = len(s), len(tokens)
    while i < n:
        if j < m and tokens[j] is not _ANY and (tokens[j] is _ONE or tokens[j] == s[i]):
            i += 1
            j += 1
        elif j < m and tokens[j] is _ANY:
            star_j, star_i = j, i
            j += 1
        elif star_j >= 0:
            star_i += 1
            i, j = star_i, star_j + 1
        else:
            return False
    while j < m and tokens[j] is _ANY:
        j += 1
    return j == m


def sql_like(value: Any, pattern: Any, ignore_case: Any) -> int:
    """``roro_like(value, pattern, ignore_case)``: :func:`like_match` as an SQLite function."""
    if not isinstance(value, str) or not isinstance(pattern, str):
        return 0
    return int(like_match(value, pattern, bool(ignore_case)))


def glob_pattern(pattern: str) -> str:
    """The like ``pattern`` as an SQLite GLOB pattern (case-sensitive, no escape character:
    the GLOB wildcards ``* ? [`` are written as one-character classes)."""
    out = []
    for tok in _pattern_tokens(pattern, False):
        if tok is _ANY:
            out.append("*")
        elif tok is _ONE:
            out.append("?")
        else:
            out.append(f"[{tok}]" if tok in "*?[" else tok)
    return "".join(out)


