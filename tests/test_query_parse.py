"""The query language: tokens, grammar, error messages, and the meaning of every operator."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roro import RoroError
from roro.errors import QuerySyntaxError
from roro.query import (
    MAX_QUERY_LENGTH,
    And,
    Compare,
    Exists,
    Field,
    In,
    Like,
    Not,
    Or,
    Record,
    like_match,
    parse,
)

ISSUE_EXAMPLE = ("Accuracy > 0.88 and (\"Input-Data-Source\" like 's3://credit%' or "
                 "tag = 'production')")


def m(key):
    return Field(key, False)


def b(name):
    return Field(name, True)


# -- grammar --------------------------------------------------------------------------------------
def test_issue_example():
    assert parse(ISSUE_EXAMPLE).ast == And((
        Compare(m("Accuracy"), ">", 0.88),
        Or((Like(m("Input-Data-Source"), "s3://credit%"), Compare(b("tag"), "=", "production"))),
    ))


@pytest.mark.parametrize("text, ast", [
    ("a = 1 or b = 2 and c = 3",
     Or((Compare(m("a"), "=", 1), And((Compare(m("b"), "=", 2), Compare(m("c"), "=", 3)))))),
    ("not a = 1 and b = 2", And((Not(Compare(m("a"), "=", 1)), Compare(m("b"), "=", 2)))),
    ("not (a = 1 or b = 2)", Not(Or((Compare(m("a"), "=", 1), Compare(m("b"), "=", 2))))),
    ("a = 1 and b = 2 and c = 3",
     And((Compare(m("a"), "=", 1), Compare(m("b"), "=", 2), Compare(m("c"), "=", 3)))),
    ("(a = 1)", Compare(m("a"), "=", 1)),
    ("A = 1 AND NOT B LIKE 'x' Or c In (1, 'two', TRUE, Null)",
     Or((And((Compare(m("A"), "=", 1), Not(Like(m("B"), "x")))),
         In(m("c"), (1, "two", True, None))))),
    ("a not in (1)", Not(In(m("a"), (1,)))),
    ("a not like 'x%'", Not(Like(m("a"), "x%"))),
    ("a not ilike 'x%'", Not(Like(m("a"), "x%", True))),
    ("exists a and not exists \"b c\"", And((Exists(m("a")), Not(Exists(m("b c")))))),
    ("a == 1", Compare(m("a"), "=", 1)),
    ("a <> 1", Compare(m("a"), "!=", 1)),
    ("a<=1", Compare(m("a"), "<=", 1)),
    ("a>=-1", Compare(m("a"), ">=", -1)),
    ("a\t=\n1", Compare(m("a"), "=", 1)),
])
def test_grammar(text, ast):
    assert parse(text).ast == ast


@pytest.mark.parametrize("text, field", [
    ("version = 1", b("version")), ("author = 'a'", b("author")),
    ("timestamp = 'a'", b("timestamp")), ("tag = 'a'", b("tag")), ("comment = 'a'", b("comment")),
    ('"timestamp" = \'a\'', b("timestamp")), ('"author" = \'a\'', b("author")),
    ('"version" = 1', m("version")), ('"tag" = 1', m("tag")), ('"comment" = 1', m("comment")),
    ("Version = 1", m("Version")), ("TAG = 1", m("TAG")), ("ünï = 1", m("ünï")),
    ("_x9 = 1", m("_x9")), ('"Input-Data-Source" = 1', m("Input-Data-Source")),
    ('"a""b" = 1', m('a"b')), ('"a\\b" = 1', m("a\\b")), ('"and" = 1', m("and")),
    ('"1x" = 1', m("1x")), ('" " = 1', m(" ")), ("\"'\" = 1", m("'")),
])
def test_fields(text, field):
    assert parse(text).ast.field == field


@pytest.mark.parametrize("literal, value", [
    ("1", 1), ("-1", -1), ("1.5", 1.5), (".5", 0.5), ("-.5", -0.5), ("1.", 1.0), ("1e3", 1000.0),
    ("1E-2", 0.01), ("-0.0", -0.0), ("9223372036854775807", 2**63 - 1),
    ("-9223372036854775808", -(2**63)), ("1e308", 1e308),
    ("'x'", "x"), ("''", ""), ("'it''s'", "it's"), ("''''", "'"), ("'a\\b'", "a\\b"),
    ("'\"'", '"'), ("'%_'", "%_"), ("'ünï ✓'", "ünï ✓"), ("'two\nlines'", "two\nlines"),
    ("true", True), ("FALSE", False), ("null", None), ("Null", None),
])
def test_literals(literal, value):
    ast = parse(f"a = {literal}").ast
    assert ast.value == value and type(ast.value) is type(value)


def test_numbers_keep_their_type():
    assert type(parse("a = 1").ast.value) is int
    assert type(parse("a = 1.0").ast.value) is float
    assert type(parse("a = 1e0").ast.value) is float


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, column, needle", [
    ("", 1, "expected a condition"),
    ("   ", 4, "expected a condition"),
    ("a", 2, "expected an operator"),
    ("a >", 4, "expected a value"),
    ("a = 'x", 5, "unterminated string"),
    ('"a = 1', 1, "unterminated field name"),
    ('"" = 1', 1, "expected a field name between the double quotes"),
    ("(a = 1", 7, "expected 'and', 'or' or ')'"),
    ("a = 1)", 6, "expected 'and', 'or' or the end of the query"),
    ("a = 1 b = 2", 7, "combine conditions with 'and' or 'or'"),
    ("a = 1 and", 10, "expected a condition"),
    ("a = 1 or or b = 2", 10, "expected a condition"),
    ("a < true", 3, "can only be compared with = or !="),
    ("a >= null", 3, "can only be compared with = or !="),
    ("a is null", 3, "'= null'"),
    ("a = \u2018x\u2019", 5, "straight single quotes"),
    ("a = \u201cx\u201d", 5, "straight single quotes"),
    ("and = 1", 1, 'write "and"'),
    ("a = b", 5, "write 'b' for a string"),
    ('a = "b"', 5, "double quotes are for field names"),
    ("'a' = 1", 1, "field names use double quotes"),
    ("a like 'x\\'", 8, "single backslash"),
    ("a like 1", 8, "a 'pattern'"),
    ("a in 1", 6, "'(' after in"),
    ("a in ()", 7, "expected a value"),
    ("a in (1 2)", 9, "',' or ')'"),
    ("a not = 1", 7, "like, ilike or in after 'not'"),
    ("1a = 2", 2, "double quotes"),
    ("a = 1.2.3", 8, "expected a space or an operator"),
    ("a = 99999999999999999999", 5, "64-bit range"),
    ("a = 1e999", 5, "out of range"),
    ("a ! 3", 3, "'!='"),
    ("a = 1; drop table x", 6, "unexpected character ';'"),
    ("a = 1 -- x", 7, "unexpected character '-'"),
    ("a = 'x\x00'", 7, "NUL"),
    ("a = 'x\ud800'", 7, "lone surrogate"),
    ("exists", 7, "a field name after exists"),
    ('"a b" exists', 7, "write 'exists \"a b\"'"),
    ("exists = 1", 8, "a field name after exists"),
])
def test_syntax_errors_say_where_and_what(text, column, needle):
    with pytest.raises(QuerySyntaxError) as info:
        parse(text)
    e = info.value
    assert e.column == column, str(e)
    assert f"column {column}" in str(e) and needle in str(e), str(e)
    assert "\n" not in str(e)
    assert e.query == text
    assert isinstance(e, RoroError) and isinstance(e, ValueError)


def test_error_attributes():
    with pytest.raises(QuerySyntaxError) as info:
        parse("a >")
    assert info.value.expected.startswith("a value") and info.value.found == "the end of the query"


def test_limits():
    with pytest.raises(QuerySyntaxError, match="at most 10000"):
        parse("a = 1 or " * (MAX_QUERY_LENGTH // 9 + 1) + "a = 1")
    with pytest.raises(QuerySyntaxError, match="nested more than"):
        parse("not " * 40 + "a = 1")
    with pytest.raises(QuerySyntaxError, match="more than 1000 values"):
        parse("a in (" + ",".join("1" * 1 for _ in range(1001)) + ")")
    with pytest.raises(QuerySyntaxError, match="longer than 2000"):
        parse("a like '" + "x" * 2001 + "'")
    with pytest.raises(QuerySyntaxError, match="must be a string"):
        parse(3)


# -- printing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    ISSUE_EXAMPLE, "not (a = 1 or b = 2)", "(a = 1 or b = 2) and c = 3", "a = 1 or b = 2 and c = 3",
    "not not a = 1", "\"and\" = 'it''s'", "\"a\"\"b\" in (1, 2.5, 'x', true, null)",
    "\"version\" = 1", "version = 1", "\"1x\" ilike '%\\%'", "exists \"Input-Data-Source\"",
    "a = -0.0", "a = 1e+16", "(a = 1 and b = 2) and c = 3",
])
def test_printing_round_trips(text):
    q = parse(text)
    again = parse(str(q))
    assert repr(again.ast) == repr(q.ast)
    assert str(again) == str(q)


def test_printing_quotes_what_needs_it():
    assert str(Field("and")) == '"and"'
    assert str(Field("version")) == '"version"'
    assert str(Field("version", True)) == "version"
    assert str(Field("1x")) == '"1x"'
    assert str(Field("a-b")) == '"a-b"'
    assert str(Field('a"b')) == '"a""b"'
    assert str(Field("ünï")) == "ünï"
    assert str(Compare(m("a"), "=", "it's")) == "a = 'it''s'"


# -- like -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, pattern, ignore_case, result", [
    ("s3://credit/june", "s3://credit%", False, True),
    ("S3://credit/june", "s3://credit%", False, False),
    ("S3://credit/june", "s3://credit%", True, True),
    ("abc", "a_c", False, True), ("ac", "a_c", False, False), ("abbc", "a_c", False, False),
    ("", "%", False, True), ("", "_", False, False), ("", "", False, True), ("a", "", False, False),
    ("a%c", "a\\%c", False, True), ("abc", "a\\%c", False, False),
    ("a_c", "a\\_c", False, True), ("abc", "a\\_c", False, False),
    ("a\\c", "a\\\\c", False, True), ("abc", "a\\bc", False, True),
    ("a*c", "a*c", False, True), ("abc", "a*c", False, False), ("a?c", "a?c", False, True),
    ("[x]", "[x]", False, True), ("x", "[x]", False, False),
    ("ünï", "_n_", False, True), ("ÜNÏ", "ünï", True, True), ("STRASSE", "straße", True, True),
    ("a\nb", "a_b", False, True), ("a\nb", "a%", False, True),
    ("a\x00b", "a_b", False, True),
    ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "%a%a%a%a%a%a%a%b", False,
     False),
    ("xabcabcx", "%abc%x", False, True), ("abcab", "%ab", False, True),
])
def test_like_match(value, pattern, ignore_case, result):
    assert like_match(value, pattern, ignore_case) is result


def _like_regex(pattern, ignore_case):
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1].casefold() if ignore_case else pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else
                   re.escape(c.casefold() if ignore_case else c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


@settings(max_examples=500, deadline=None)
@given(value=st.text(alphabet="ab%_\\ßSs\n", max_size=8),
       pattern=st.text(alphabet="ab%_\\ßSs", max_size=6).filter(
           lambda p: (len(p) - len(p.rstrip("\\"))) % 2 == 0),
       ignore_case=st.booleans())
def test_like_match_equals_a_regex_oracle(value, pattern, ignore_case):
    subject = value.casefold() if ignore_case else value
    assert like_match(value, pattern, ignore_case) == bool(
        _like_regex(pattern, ignore_case).fullmatch(subject))


# -- meaning (the reference evaluator) -----------------------------------------------------------
REC = Record(version=3, author="ana", timestamp="2024-06-15T10:00:00.000000Z", comment="June data",
             tags=("production", "latest"),
             metadata={"Accuracy": 0.9, "n": 10, "s": "0.9", "flag": True, "one": 1, "none": None,
                       "list": [1, 2], "obj": {"a": 1}, "Input-Data-Source": "s3://credit/june",
                       "nul": "a\x00b"})
NO_TAGS = Record(version=1, author="bob", timestamp="2024-05-01T00:00:00.000000Z", comment="",
                 tags=(), metadata={})


@pytest.mark.parametrize("text, rec_result, no_tags_result", [
    (ISSUE_EXAMPLE, True, False),
    ("Accuracy > 0.88", True, False),
    ("Accuracy > 0.9", False, False),
    ("Accuracy >= 0.9", True, False),
    ("Accuracy = 0.9", True, False),
    ("Accuracy > '0.1'", False, False),        # number vs string: false, never converted
    ("s > 0.1", False, False),                 # "0.9" is a string
    ("s = '0.9'", True, False),
    ("s < 'a'", True, False),                  # strings compare as strings
    ("n > 9", True, False), ("n = 10.0", True, False), ("n < 10.5", True, False),
    ("flag = true", True, False), ("flag = 1", False, False), ("one = true", False, False),
    ("flag != false", True, True),
    ("one = 1.0", True, False),
    ("none = null", True, True), ("missing = null", True, True), ("n = null", False, True),
    ("none != null", False, False), ("n != null", True, False),
    ("exists none", True, False), ("exists missing", False, False), ("exists list", True, False),
    ("list = 1", False, False), ("list != 1", True, True), ("obj = null", False, True),
    ("list like '%'", False, False),
    ("Accuracy != 0.5", True, True),           # missing: != is not =
    ("not Accuracy > 0.88", False, True),
    ("nul = 'a'", False, False),              # what SQLite's JSON functions would see
    ("nul like '%'", False, False), ("exists nul", True, False),
    ("tag = 'production'", True, False), ("tag = 'latest'", True, False),
    ("tag != 'production'", False, True),      # no current tag equals it
    ("tag like 'prod%'", True, False), ("tag > 'm'", True, False), ("tag < 'a'", False, False),
    ("tag in ('x', 'latest')", True, False), ("tag in ('x', null)", False, True),
    ("tag = null", False, True), ("exists tag", True, False), ("tag = 1", False, False),
    ("version = 3", True, False), ("version > 2.5", True, False), ("version = '3'", False, False),
    ("version in (1, 3)", True, True), ("exists version", True, True), ("version = null", False, False),
    ("author = 'ana'", True, False), ("author ilike 'ANA'", True, False),
    ("timestamp >= '2024-06-01'", True, False), ("timestamp like '2024-05%'", False, True),
    ("comment like '%June%'", True, False), ("comment = ''", False, True),
    ("exists comment", True, True),
    ('"Input-Data-Source" in (\'s3://credit/june\', 1)', True, False),
    ("n in (true, null)", False, True),
])
def test_meaning(text, rec_result, no_tags_result):
    q = parse(text)
    assert q.matches(REC) is rec_result
    assert q.matches(NO_TAGS) is no_tags_result
    negated = parse(f"not ({text})")
    assert negated.matches(REC) is not rec_result  # two-valued logic: not is the complement


def test_documented_examples_parse():
    import pathlib
    doc = (pathlib.Path(__file__).parent.parent / "docs" / "query.md").read_text(encoding="utf-8")
    section = doc.split("### Examples", 1)[1].split("###", 1)[0]
    examples = re.findall(r"^\| `(.+?)` \|", section, re.M)
    assert len(examples) >= 10 and ISSUE_EXAMPLE in examples
    for text in examples:
        assert str(parse(str(parse(text)))) == str(parse(text))
