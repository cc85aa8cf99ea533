"""Suggestions for a mistyped word ("did you mean …?"): one helper for every error that names
an unknown repository, tag, project, metadata key, configuration key or attribute."""

from __future__ import annotations

from collections.abc import Iterable


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """The optimal-string-alignment distance between ``a`` and ``b`` (insertions, deletions,
    substitutions and transpositions of neighbours each cost 1), capped at ``limit``."""
    if abs(len(a) - len(b)) >= limit:
        return limit
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return min(prev[-1], limit)


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` candidates that ``word`` is probably a typo of, best first: the same word in
    another case, then those within two edits, then difflib's close matches."""
    import difflib  # only when a name was not found: `import roro` stays cheap
    pool = sorted(set(candidates) - {word})
    out = [c for c in pool if c.casefold() == word.casefold()]
    out += sorted((c for c in pool if c not in out and edit_distance(word, c) <= 2),
                  key=lambda c: edit_distance(word, c))
    out += [c for c in difflib.get_close_matches(word, pool, n=n, cutoff=0.75) if c not in out]
    return out[:n]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` (or ``'x' or 'y'``), or ``""`` when nothing is close."""
    matches = close_matches(word, candidates)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"
