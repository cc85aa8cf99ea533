"""``like``/``ilike`` can never hang a command (issue 13, item 13): the matcher is linear in the
value whatever the pattern, in the reference evaluator and in the SQL the index runs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.deadline import within
from support.index_rows import Row, insert

from roro.query import parse
from roro.query.evaluate import Record
from roro.query.patterns import GLOB_MAX_PATTERN, like_match, pattern_problem
from roro.refs import Index

MiB = 1 << 20
#: Patterns of the maximal length (2,000) that made the old O(value x pattern) matchers crawl:
#: every position of the value starts a partial match that fails only at its end.
HOSTILE_PATTERNS = ["%" + "a_" * 998 + "ab%", "%" + "a" * 1997 + "b%", "a%" * 999 + "b",
                    "%" + "_a" * 999 + "%"]


def reference(value: str, pattern: str, ignore_case: bool) -> bool:
    """The meaning of like, by dynamic programming over (value, pattern) prefixes: obviously
    right, O(value x pattern), fine on short values only."""
    def literal(c: str) -> list[str]:  # a case-folded character may be several (ß: ss)
        return list(c.casefold() if ignore_case else c)

    tokens: list[str | None] = []  # None is %, "" is _, else one literal character
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            tokens += literal(pattern[i + 1])
            i += 2
            continue
        tokens += [None] if c == "%" else [""] if c == "_" else literal(c)
        i += 1
    s = value.casefold() if ignore_case else value
    row = [True] + [False] * len(s)  # which prefixes of s the pattern so far matches
    for tok in tokens:
        new = [row[0] and tok is None] + [False] * len(s)
        for j in range(1, len(s) + 1):
            if tok is None:
                new[j] = new[j - 1] or row[j]
            else:
                new[j] = row[j - 1] and tok in ("", s[j - 1])
        row = new
    return row[-1]


@settings(max_examples=3000, deadline=None)
@given(value=st.text(alphabet="abAB%_\\ß", max_size=14),
       pattern=st.text(alphabet="ab%_A\\", max_size=9), ignore_case=st.booleans())
def test_like_means_what_the_reference_means(value, pattern, ignore_case):
    if pattern_problem(pattern) is None:
        assert like_match(value, pattern, ignore_case) == reference(value, pattern, ignore_case)


def test_like_agrees_with_the_reference_on_long_random_values():
    rng = random.Random(13)
    for _ in range(300):
        value = "".join(rng.choice("aab") for _ in range(rng.randint(0, 300)))
        pattern = "".join(rng.choice("aab%__") for _ in range(rng.randint(0, 40)))
        for ic in (False, True):
            assert like_match(value, pattern, ic) == reference(value, pattern, ic), pattern


def _evaluate_all() -> list[bool]:
    value = "a" * MiB
    record = Record(version=1, metadata={"k": value})
    out = []
    for pattern in HOSTILE_PATTERNS:
        for op in ("like", "ilike"):
            out.append(parse(f"k {op} '{pattern}'").matches(record))
    return out


def test_a_2000_character_pattern_on_1_mib_never_hangs_the_evaluator():
    assert within(30, _evaluate_all, "like on 1 MiB") == [False, False, False, False,
                                                          False, False, True, True]


@pytest.fixture
def index_with_a_long_value(tmp_path):
    index = Index(str(tmp_path / "index.sqlite3"))
    insert(index, "p", [Row("credit", 1, metadata={"k": "a" * MiB}, comment="a" * MiB)], {})
    return index


def test_a_2000_character_pattern_on_1_mib_never_hangs_the_index(index_with_a_long_value):
    def search_all() -> list[int]:
        hits = []
        for pattern in HOSTILE_PATTERNS:
            for field in ("k", "comment"):
                for op in ("like", "ilike"):
                    c = parse(f"{field} {op} '{pattern}'").to_sql()
                    rows = index_with_a_long_value.search("p", "credit", c.sql, c.params, None,
                                                          dict(c.functions))
                    hits.append(len(rows))
        return hits

    assert within(60, search_all, "searches on 1 MiB") == [0] * 12 + [1] * 4


def test_long_patterns_go_to_the_linear_matcher_short_ones_to_glob():
    short = parse("k like '" + "a" * GLOB_MAX_PATTERN + "'").to_sql()
    long = parse("k like '" + "a" * (GLOB_MAX_PATTERN + 1) + "'").to_sql()
    assert "GLOB" in short.sql and not short.functions
    assert "GLOB" not in long.sql and long.functions
