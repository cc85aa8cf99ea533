"""``like`` patterns: ``%`` any text, ``_`` one character, ``\\`` makes the next character literal.

One matcher (:func:`like_match`) serves the reference evaluator and, as the SQLite function
``roro_like``, the compiled SQL; :func:`glob_pattern` writes a short pattern as SQLite's ``GLOB``.

The matcher runs in time linear in the value, whatever the pattern (a 2,000-character pattern
against a 1 MiB metadata string takes well under a second): the pattern is cut at its ``%``
into fixed-length segments; the first must match at the start, the last at the end, and each
one between is found leftmost, after the one before (for such patterns the leftmost match of
each segment is never worse than another). A segment without ``_`` is found by ``str.find``
(CPython's two-way search, linear); one with ``_`` by a bit-parallel shift-and scan
(``D = ((D << 1) | 1) & mask[c]``, one step per character of the value), which jumps over the
value with ``str.find`` of the segment's longest literal run whenever no partial match is in
progress. SQLite's own ``GLOB`` backtracks (O(value × pattern): ~3.5 s for a 2,000-character
pattern on 1 MiB), so the compiled SQL uses it only for patterns of at most
:data:`GLOB_MAX_PATTERN` characters and this matcher for longer ones.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from .syntax import MAX_PATTERN_LENGTH

LIKE_FUNCTION = "roro_like"
#: The longest pattern the compiled SQL leaves to SQLite's GLOB (whose worst case is
#: O(value × pattern)): 64 characters keep a 1 MiB value under ~0.1 s.
GLOB_MAX_PATTERN = 64

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
            if not (out and out[-1] is _ANY):  # %% is %
                out.append(_ANY)
        elif c == "_":
            out.append(_ONE)
        else:
            out.extend(c.casefold() if ignore_case else c)
        i += 1
    return tuple(out)


class _Segment(NamedTuple):
    """A run of the pattern without ``%``: ``runs`` are its literal pieces as ``(offset,
    text)``; positions not covered by a run are ``_``."""

    length: int
    runs: tuple[tuple[int, str], ...]
    masks: dict[str, int] | None  # shift-and masks, for segments with a ``_``
    any_mask: int  # the bits of its ``_`` positions
    anchor: tuple[int, str]  # its longest run (offset, text), to jump with str.find

    def matches_at(self, s: str, pos: int) -> bool:
        return all(s.startswith(text, pos + off) for off, text in self.runs)

    def find(self, s: str, start: int, end: int) -> int:
        """The leftmost ``p`` in ``[start, end - length]`` where the segment matches, or -1."""
        if self.masks is None:
            text = self.runs[0][1] if self.runs else ""
            return s.find(text, start, end)
        m = self.length
        if end - start < m:
            return -1
        off, text = self.anchor
        masks, any_mask, hit = self.masks, self.any_mask, 1 << (m - 1)
        state = 0
        i = start
        while i < end:
            if state == 0 and text:
                # No partial match in progress: the next match needs its anchor at p + off.
                q = s.find(text, i + off, end)
                if q < 0:
                    return -1
                i = q - off
            state = ((state << 1) | 1) & masks.get(s[i], any_mask)
            if state & hit:
                return i - m + 1
            i += 1
        return -1


@functools.lru_cache(maxsize=256)
def _segments(pattern: str, ignore_case: bool) -> tuple[tuple[_Segment, ...], bool]:
    """The pattern's segments, and whether it holds a ``%`` at all."""
    tokens = _pattern_tokens(pattern, ignore_case)
    pieces: list[list[Any]] = [[]]
    for tok in tokens:
        if tok is _ANY:
            pieces.append([])
        else:
            pieces[-1].append(tok)
    return tuple(_segment(p) for p in pieces), len(pieces) > 1


def _segment(tokens: list[Any]) -> _Segment:
    runs: list[tuple[int, str]] = []
    start = None
    for i, tok in enumerate([*tokens, _ONE]):
        if tok is _ONE:
            if start is not None:
                runs.append((start, "".join(tokens[start:i])))
                start = None
        elif start is None:
            start = i
    has_one = any(tok is _ONE for tok in tokens)
    anchor = max(runs, key=lambda r: len(r[1]), default=(0, ""))
    if not has_one:
        return _Segment(len(tokens), tuple(runs), None, 0, anchor)
    any_mask = sum(1 << i for i, tok in enumerate(tokens) if tok is _ONE)
    masks: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok is not _ONE:
            masks[tok] = masks.get(tok, any_mask) | (1 << i)
    return _Segment(len(tokens), tuple(runs), masks, any_mask, anchor)


def like_match(value: str, pattern: str, ignore_case: bool = False) -> bool:
    """Does ``value`` match the like ``pattern``? Linear time in ``len(value)`` (see the module
    docstring), whatever the pattern.

    ``%`` matches any text (also empty), ``_`` exactly one character, ``\\`` makes the next
    character literal. With ``ignore_case`` both sides are compared case-folded (``str.casefold``).
    """
    segments, has_any = _segments(pattern, ignore_case)
    s = value.casefold() if ignore_case else value
    first, last = segments[0], segments[-1]
    if not has_any:
        return len(s) == first.length and first.matches_at(s, 0)
    end = len(s) - last.length
    if end < first.length or not first.matches_at(s, 0) or not last.matches_at(s, end):
        return False
    pos = first.length
    for segment in segments[1:-1]:
        found = segment.find(s, pos, end)
        if found < 0:
            return False
        pos = found + segment.length
    return True


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
