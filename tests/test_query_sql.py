"""The SQL compiler agrees with the reference evaluator, and hostile text never reaches the SQL.

Hypothesis generates rows (metadata of every JSON type, tags, deleted versions, comments holding
NUL, keys that need quoting) and queries (as syntax trees, printed to text and parsed back), runs
the compiled SQL through the real ``Index.search`` and requires exactly the versions, in exactly the
order, that ``Query.matches`` selects in plain Python.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import tempfile

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.index_rows import Row, insert, records

from roro.errors import QuerySyntaxError
from roro.query import (
    BUILTIN_FIELDS,
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_QUERY_LENGTH,
    And,
    Compare,
    Exists,
    Field,
    In,
    Like,
    Not,
    Or,
    parse,
)
from roro.refs import Index

PROJECT = "p"
REPOS = ("credit", "fraud")
KEYS = ["a", "b", "Accuracy", "Input-Data-Source", 'we"ird', "back\\slash", "ünï", "version",
        "tag", "and", "1x", " sp ace", "%", "_", "dot.ted", "x'y", "[0]", "$.a"]
TAGS = ["production", "staging", "prod-1", "a_b"]
POOL_TEXT = ["", "a", "A", "ab", "abc", "s3://credit/june", "%", "_", "\\", "'", '"', "ü", "Ü",
             "ß", "production", "latest", "0.5", "1", "true", "null", "a%b", "a_b", "[x]", "*", "?"]
POOL_NUMBERS = [0, 1, -1, 2, 0.5, 1.0, -0.0, 0.88, 2**63 - 1, -(2**63), 2**53 + 1, 1e16, 3.14]

# Small pools shared by data and queries, so that conditions often hit some rows and miss others.
COMMON = [None, True, False, 0, 1, 1.0, 0.5, 2, "", "a", "ab", "production", "a%b", "ß"]
common_keys = st.sampled_from(["a", "b", 'we"ird'])
any_key = st.one_of(common_keys, st.sampled_from(KEYS))

# -- data -----------------------------------------------------------------------------------------
text_values = st.one_of(st.sampled_from(POOL_TEXT), st.text(max_size=6),
                        st.text(alphabet="ab%_\\\x00ßS", max_size=5))
scalars = st.one_of(st.sampled_from(COMMON), st.none(), st.booleans(), st.sampled_from(POOL_NUMBERS),
                    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False,
                                                                  allow_infinity=False),
                    text_values)
json_values = st.one_of(scalars, st.lists(scalars, max_size=2),
                        st.dictionaries(any_key, scalars, max_size=2))


@st.composite
def datasets(draw):
    rows = []
    for repo in REPOS:
        n = draw(st.integers(0, 8))
        for v in range(1, n + 1):
            rows.append(Row(
                repository=repo, version=v,
                metadata=draw(st.dictionaries(any_key, json_values, max_size=5)),
                author=draw(st.sampled_from(["ana", "bob", "Ana", "b%b"])),
                signer=draw(st.sampled_from([None, "alice", "bob", "Alice"])),
                timestamp=f"2024-06-{draw(st.integers(1, 28)):02d}T00:00:0{v}.000000Z",
                comment=draw(st.one_of(st.sampled_from(["", "a", "ab", "a\x00b"]),
                                       st.sampled_from(POOL_TEXT), st.text(max_size=5))),
                deleted=draw(st.booleans()) if v < n and draw(st.integers(0, 4)) == 0 else False))
    tags = {}
    for repo in REPOS:
        live = [r.version for r in rows if r.repository == repo and not r.deleted]
        for tag in TAGS:
            if live and draw(st.booleans()):
                tags[(repo, tag)] = draw(st.sampled_from(live))
    return rows, tags


# -- queries --------------------------------------------------------------------------------------
fields = st.one_of(
    st.sampled_from(BUILTIN_FIELDS).map(lambda n: Field(n, True)),
    any_key.map(lambda k: Field(k, False)),
)
literal_text = st.one_of(st.sampled_from(POOL_TEXT + TAGS), st.text(max_size=4).filter(
    lambda s: "\x00" not in s))
literals = st.one_of(st.sampled_from(COMMON), st.none(), st.booleans(), st.sampled_from(POOL_NUMBERS),
                     st.integers(-(2**63), 2**63 - 1),
                     st.floats(allow_nan=False, allow_infinity=False), literal_text)
patterns = st.lists(st.one_of(st.sampled_from(["%", "_", "\\%", "\\_", "\\\\", "a", "A", "b", "ß",
                                               "s", "*", "?", "[", "]", "credit", "prod"]),
                              st.characters(exclude_characters="\x00\\", exclude_categories=["Cs"])),
                    max_size=5).map("".join)


@st.composite
def comparisons(draw):
    value = draw(literals)
    ops = ["=", "!="] if value is None or isinstance(value, bool) else \
        ["=", "!=", "<", "<=", ">", ">="]
    return Compare(draw(fields), draw(st.sampled_from(ops)), value)


leaves = st.one_of(
    comparisons(),
    st.builds(Like, fields, patterns, st.booleans()),
    st.builds(In, fields, st.lists(literals, min_size=1, max_size=4).map(tuple)),
    st.builds(Exists, fields),
)
queries = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(Not, children),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=8,
)


def expected(recs, query, repository):
    hits = [(repo, time, rec) for repo, time, rec in recs
            if (repository is None or repo == repository) and query.matches(rec)]
    if repository is not None:
        hits.sort(key=lambda h: -h[2].version)
    else:  # time DESC, repository ASC, version DESC
        hits.sort(key=lambda h: (h[0], -h[2].version))
        hits.sort(key=lambda h: h[1], reverse=True)
    return [(repo, rec.version) for repo, _, rec in hits]


def run_sql(index, query, repository, limit=None):
    c = query.to_sql()
    rows = index.search(PROJECT, repository, c.sql, c.params, limit, dict(c.functions))
    return [(r["repository"], r["version"]) for r in rows]


def anonymized(node):
    """The same query shape with every user string replaced (key, text value, pattern). Tag
    conditions keep theirs: whether 'latest' satisfies one is decided when compiling."""
    if not isinstance(node, (And, Or, Not)) and node.field.builtin and node.field.name == "tag":
        return node

    def value(v):
        return "s" if isinstance(v, str) else v

    def fld(f):
        return f if f.builtin else Field("k", False)

    if isinstance(node, (And, Or)):
        return type(node)(tuple(anonymized(o) for o in node.operands))
    if isinstance(node, Not):
        return Not(anonymized(node.operand))
    if isinstance(node, Compare):
        return Compare(fld(node.field), node.op, value(node.value))
    if isinstance(node, Like):
        return Like(fld(node.field), "p", node.ignore_case)
    if isinstance(node, In):
        return In(fld(node.field), tuple(value(v) for v in node.values))
    return Exists(fld(node.field))


@pytest.fixture(scope="module")
def tmpdir_module():
    with tempfile.TemporaryDirectory() as d:
        yield d


_counter = iter(range(10**9))


def fresh_index(directory) -> Index:
    return Index(f"{directory}/index-{next(_counter)}.sqlite3")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datasets(), asts=st.lists(queries, min_size=1, max_size=6))
def test_sql_equals_reference_evaluator(tmpdir_module, data, asts):
    rows, tags = data
    index = fresh_index(tmpdir_module)
    try:
        insert(index, PROJECT, rows, tags)
        recs = records(index, PROJECT)
        for ast in asts:
            text = str(ast)
            query = parse(text)
            assert repr(query.ast) == repr(ast), text  # printing and parsing round-trip
            for repository in (*REPOS, None):
                assert run_sql(index, query, repository) == expected(recs, query, repository), text
            want = expected(recs, query, None)
            assert run_sql(index, query, None, limit=2) == want[:2]
            event("matches: " + ("none" if not want else "all" if len(want) == len(recs)
                                 else "some"))
    finally:
        index.close()


@settings(max_examples=300, deadline=None)
@given(ast=queries)
def test_sql_text_never_depends_on_user_text(ast):
    """Keys, string values and patterns change only the parameters, never the SQL text
    (except a key's choice between the JSON-path and the json_each form, both parameterized)."""
    compiled, anon = parse(str(ast)).to_sql(), parse(str(anonymized(ast))).to_sql()
    if all(f.builtin or "\\" not in f.name and '"' not in f.name for f in _fields(ast)):
        assert compiled.sql == anon.sql
    for sql in (compiled.sql, anon.sql):
        quoted = sql.replace("'integer'", "").replace("'real'", "").replace("'text'", "") \
            .replace("'null'", "").replace("''", "").replace("'$.timestamp'", "")
        assert "'" not in quoted and '"' not in quoted and ";" not in sql and "--" not in sql


def _fields(node):
    if isinstance(node, (And, Or)):
        return [f for o in node.operands for f in _fields(o)]
    if isinstance(node, Not):
        return _fields(node.operand)
    return [node.field]


def test_nul_strings_in_metadata_match_nothing_but_exist(tmp_path):
    """SQLite's JSON functions cut a string at U+0000; the index stores such a string as an opaque
    value instead, so SQL and the reference agree that it is not comparable (docs/query.md)."""
    index = Index(str(tmp_path / "i.sqlite3"))
    insert(index, PROJECT, [Row("credit", 1, {"a": "x\x00y", "b": "x"})])
    recs = records(index, PROJECT)
    for text, hits in [("a = 'x'", []), ("a like 'x%'", []), ("a > ''", []), ("exists a", [1]),
                       ("a != 'x'", [1]), ("a = null", []), ("b = 'x'", [1])]:
        q = parse(text)
        assert run_sql(index, q, "credit") == expected(recs, q, "credit") \
            == [("credit", v) for v in hits], text


def test_comment_with_nul_is_compared_whole(tmp_path):
    index = Index(str(tmp_path / "i.sqlite3"))
    insert(index, PROJECT, [Row("credit", 1, comment="a\x00b"), Row("credit", 2, comment="a")])
    recs = records(index, PROJECT)
    for text, hits in [("comment like 'a_b'", [1]), ("comment like 'a%'", [2, 1]),
                       ("comment like '%b'", [1]), ("comment = 'a'", [2]),
                       ("comment > 'a'", [1]), ("comment ilike 'A_B'", [1])]:
        q = parse(text)
        assert run_sql(index, q, "credit") == expected(recs, q, "credit") \
            == [("credit", v) for v in hits], text


# -- injection corpus -----------------------------------------------------------------------------
HOSTILE = ["' or 1=1 --", '"; drop table versions; --', "%", "_", "\\", "\\\\", "'; DELETE FROM "
           "tags; --", "\u2018 or 1=1 \u2019", "\u201c\u201d", "a' UNION SELECT * FROM versions --",
           ")) OR 1=1 --", "*", "?", "[a]", "$.a", '$."a"', "x\\'y", "\u02bc", "\uff07"]

INJECTION_QUERIES = [
    "' or 1=1 --",
    "comment = '' or 1=1 --'",
    "comment = ''' or 1=1 --'",
    "comment = '' or 1=1",
    '"; drop table versions; --" = 1',
    '"a" = \'"; drop table versions; --\'',
    "a like '%'", "a like '_'", "a like '\\%'", "a like '\\_'", "a like '\\\\'", "a = '\\'",
    '"\\" = 1', '"\\\\" exists', 'exists "\\"', "a = \u2018x\u2019", "a = \u2019 or 1=1 --",
    "a = \u201cx\u201d", "version = 1; DROP TABLE versions", "version = 1 -- comment",
    "tag = 'production' /* */", "exists \"'); DELETE FROM versions; --\"",
    '"a"" or 1=1 --" = 1', "a in ('x', 'y'); drop table tags", "json_extract(metadata, '$.a') = 1",
    "a = 'x' union select * from versions", "version = (select max(version) from versions)",
    "version = 1 or 1 = 1", "1 = 1", "a = 1 or true", "exists \"$.a\"", "\"$.a\" = 1",
    "\"$\"\".a\" = 1", "a = '\x00'", "a = 'x\ud800'", "a = 0x10", "a = 1e999", "a like '%%%%_'",
    "tag like '%' and not tag = 'latest'", "\"[0]\" exists", "exists \"[0]\"",
    "comment like '%' or comment = ''", "a = ''''", "a = '''''", "\"a\" = 'b' and \"\" = 1",
] + [f"comment = '{h.replace(chr(39), chr(39) * 2)}'" for h in HOSTILE] \
  + [f'"{h.replace(chr(34), chr(34) * 2)}" = 1' for h in HOSTILE] \
  + [f"\"{h.replace(chr(34), chr(34) * 2)}\" like '{h.replace(chr(39), chr(39) * 2)}'"
     for h in HOSTILE] \
  + [f"tag in ('{h.replace(chr(39), chr(39) * 2)}', 'production')" for h in HOSTILE] \
  + HOSTILE


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory):
    index = Index(str(tmp_path_factory.mktemp("inj") / "index.sqlite3"))
    rows = []
    for i, h in enumerate(HOSTILE, start=1):
        rows.append(Row("credit", i, {"a": h, "$.a": i, "[0]": h, h: 1}, comment=h))
    rows.append(Row("credit", len(HOSTILE) + 1, {"a": "x"}, comment=""))
    insert(index, PROJECT, rows, {("credit", "production"): 2})
    yield index
    index.close()


def _schema(index):
    return index.conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE "
                            "'sqlite_stat%' ORDER BY name").fetchall()


@pytest.mark.parametrize("text", INJECTION_QUERIES)
def test_injection_corpus_is_a_syntax_error_or_a_correct_answer(hostile_index, text):
    before, schema = hostile_index.dump(), _schema(hostile_index)
    recs = records(hostile_index, PROJECT)
    try:
        query = parse(text)
    except QuerySyntaxError as e:
        assert e.column is None or 1 <= e.column <= len(text) + 1
    else:
        for repository in ("credit", None):
            assert run_sql(hostile_index, query, repository) == expected(recs, query, repository)
    assert hostile_index.dump() == before
    assert _schema(hostile_index) == schema


def test_injection_corpus_finds_the_hostile_values(hostile_index):
    """The corpus is not vacuous: hostile strings as keys, values and patterns find their rows."""
    for i, h in enumerate(HOSTILE, start=1):
        key, value = h.replace('"', '""'), h.replace("'", "''")
        q = parse(f'"{key}" = 1 and a = \'{value}\' and comment = \'{value}\'')
        assert run_sql(hostile_index, q, "credit") == [("credit", i)], h
        escaped = "".join("\\" + c if c in "%_\\" else c for c in h).replace("'", "''")
        q = parse(f"a like '{escaped}'")
        assert run_sql(hostile_index, q, "credit") == [("credit", i)], h
    assert len(run_sql(hostile_index, parse("a like '%'"), "credit")) == len(HOSTILE) + 1
    assert run_sql(hostile_index, parse("a like '\\%'"), "credit") == [("credit", 3)]
    assert run_sql(hostile_index, parse("a like '_'"), "credit") == [
        ("credit", i) for i in range(len(HOSTILE) + 1, 0, -1) if len(([*HOSTILE, "x"])[i - 1]) == 1]


# -- limits: the biggest queries the parser accepts run in SQLite ---------------------------------
def test_deepest_and_widest_queries_run(tmp_path):
    index = Index(str(tmp_path / "i.sqlite3"))
    insert(index, PROJECT, [Row("credit", 1, {"a": 1}), Row("credit", 2, {"a": 2})])
    deep = "(" * (MAX_DEPTH - 1) + "not a = 1" + ")" * (MAX_DEPTH - 1)
    assert run_sql(index, parse(deep), "credit") == [("credit", 2)]
    notnot = "not " * MAX_DEPTH + "a = 1"
    assert run_sql(index, parse(notnot), "credit") == [("credit", 1)]
    with pytest.raises(QuerySyntaxError, match="nested"):
        parse("(" * MAX_DEPTH + "not a = 1" + ")" * MAX_DEPTH)
    wide_in = "a in (" + ", ".join(str(i) for i in range(MAX_IN_VALUES)) + ")"
    assert run_sql(index, parse(wide_in), "credit") == [("credit", 2), ("credit", 1)]
    # as many conditions as MAX_QUERY_LENGTH allows, with either form of key lookup
    for template in ("a=%d", '"\\"=%d', "a like '%d'"):
        parts, i = [], 0
        while len(" or ".join(parts)) < MAX_QUERY_LENGTH - 20:
            parts.append(template % i)
            i += 1
        text = " or ".join(parts)
        assert len(text) <= MAX_QUERY_LENGTH and len(parts) > 600
        both = [("credit", 2), ("credit", 1)]
        expect = both if template == "a=%d" else []
        assert run_sql(index, parse(text), "credit") == expect
        assert run_sql(index, parse("not (" + text.replace(" or ", " and ")[:MAX_QUERY_LENGTH - 6]
                                    .rsplit(" and ", 1)[0] + ")"), "credit") == both
    with pytest.raises(QuerySyntaxError, match="at most"):
        parse("a = 1 or " * 2000 + "a = 2")
    index.close()


def test_search_registers_no_state_that_outlives_it(tmp_path):
    """A query that uses the like function works on a connection that has never seen one."""
    path = str(tmp_path / "i.sqlite3")
    index = Index(path)
    insert(index, PROJECT, [Row("credit", 1, comment="Retrain")])
    index.close()
    again = Index(path)
    assert run_sql(again, parse("comment ilike 'retrain'"), "credit") == [("credit", 1)]
    with pytest.raises(sqlite3.OperationalError):  # the function only exists where registered
        sqlite3.connect(path).execute("SELECT roro_like('a', 'a', 0)")
    again.close()


def test_record_and_row_fields_are_what_queries_see(tmp_path):
    index = Index(str(tmp_path / "i.sqlite3"))
    row = Row("credit", 1, {"Accuracy": 0.9}, author="ana", timestamp="2024-06-02T00:00:00.000000Z",
              comment="june")
    insert(index, PROJECT, [row], {("credit", "production"): 1})
    (_, _, rec), = records(index, PROJECT)
    assert dataclasses.asdict(rec) == {
        "version": 1, "author": "ana", "timestamp": "2024-06-02T00:00:00.000000Z",
        "comment": "june", "tags": ("production", "latest"), "signer": None,
        "metadata": {"Accuracy": 0.9}, "format": None}
    assert json.loads(index.version(PROJECT, "credit", 1)["metadata"]) == {"Accuracy": 0.9}
    index.close()


def test_search_gathers_planner_statistics_without_waiting_for_writers(tmp_path):
    path = str(tmp_path / "i.sqlite3")
    index = Index(path)
    insert(index, PROJECT, [Row(f"r{i % 50}", i // 50 + 1, {"a": i}) for i in range(5000)],
           {("r1", "production"): 3})
    q = parse("tag = 'production'")
    writer = sqlite3.connect(path, timeout=0)
    writer.execute("BEGIN IMMEDIATE")
    assert run_sql(index, q, None) == [("r1", 3)]  # answers at once although a writer holds the lock
    assert "sqlite_stat1" not in index.table_names()
    writer.rollback()
    writer.close()
    assert run_sql(index, q, None) == [("r1", 3)]
    assert index.conn.execute("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'versions'").fetchone()[0]
    assert index.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 60_000
    index.close()
