"""The query language of ``search`` and ``log --where``: parse, compile to SQL, evaluate in Python.

A query is a boolean expression over the fields of a saved version::

    Accuracy > 0.88 and ("Input-Data-Source" like 's3://credit%' or tag = 'production')

The full language is documented in ``docs/query.md``. In short:

- fields: ``version``, ``author``, ``timestamp``, ``tag`` (any current tag, ``latest`` included),
  ``comment``, and any metadata key (bare like ``Accuracy`` or double-quoted like
  ``"Input-Data-Source"``, with ``""`` for a ``"`` inside);
- values: numbers, ``'strings'`` (``''`` for a ``'`` inside), ``true``, ``false``, ``null``;
- ``= != < <= > >=``, ``like``/``ilike`` (``%`` any text, ``_`` one character, ``\\`` escapes),
  ``in (…)``, ``not in``, ``not like``, ``exists FIELD``, ``and``, ``or``, ``not``, parentheses.

Comparisons are typed: a number literal matches only numbers, a string only strings, ``true``/``false``
only booleans. A comparison whose types differ, or whose field is missing, is false; ``a != x`` is
exactly ``not (a = x)``; ``a = null`` is true when ``a`` is missing or null. There is no third truth
value: every condition is true or false, so ``not`` always means "the other rows".

The same meaning is implemented twice: :meth:`Query.to_sql` compiles to one parameterized SQL
expression over the index (no user text is ever put into the SQL text: keys, values and patterns are
all parameters) and :meth:`Query.matches` evaluates a :class:`Record` in plain Python. The tests
generate queries and data and require both to agree.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import QuerySyntaxError
from .names import LATEST

__all__ = [
    "And", "Compare", "CompiledQuery", "Exists", "Field", "In", "Like", "Not", "Or", "Query",
    "QuerySyntaxError", "Record", "parse", "like_match",
]

#: The fields that are not metadata keys (bare names, case-sensitive).
BUILTIN_FIELDS = ("version", "author", "timestamp", "tag", "comment")
#: Fields that are also keys of ``image.get_metadata()``: ``"timestamp"`` quoted means the same.
AUTOMATIC_FIELDS = ("timestamp", "author")
KEYWORDS = frozenset({"and", "or", "not", "like", "ilike", "in", "exists", "true", "false", "null"})
_OP_ALIASES = {"==": "=", "<>": "!="}

MAX_QUERY_LENGTH = 10_000
MAX_DEPTH = 32
MAX_IN_VALUES = 1_000
MAX_PATTERN_LENGTH = 2_000
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

_NUMBER_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_UNICODE_QUOTES = "\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u2032\u2033\u00ab\u00bb\uff02\uff07"

Value = bool | int | float | str | None


# ----------------------------------------------------------------------------------------------
# The syntax tree
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """A field: a built-in one (``version``, ``author``, ``timestamp``, ``tag``, ``comment``) or a
    metadata key (``builtin=False``)."""

    name: str
    builtin: bool = False

    def __str__(self) -> str:
        if self.builtin:
            return self.name
        if _is_bare_name(self.name) and self.name.lower() not in KEYWORDS \
                and self.name not in BUILTIN_FIELDS:
            return self.name
        return '"' + self.name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Compare:
    """``field op value`` with ``op`` one of ``= != < <= > >=``."""

    field: Field
    op: str
    value: Value

    def __str__(self) -> str:
        return f"{self.field} {self.op} {_format_value(self.value)}"


@dataclass(frozen=True)
class Like:
    """``field like 'pattern'`` (``ilike``: ignoring case)."""

    field: Field
    pattern: str
    ignore_case: bool = False

    def __str__(self) -> str:
        return f"{self.field} {'ilike' if self.ignore_case else 'like'} {_format_value(self.pattern)}"


@dataclass(frozen=True)
class In:
    """``field in (v1, v2, …)``: the same as ``field = v1 or field = v2 or …``."""

    field: Field
    values: tuple[Value, ...]

    def __str__(self) -> str:
        return f"{self.field} in ({', '.join(_format_value(v) for v in self.values)})"


@dataclass(frozen=True)
class Exists:
    """``exists field``: the field is present (a metadata key set to null is present)."""

    field: Field

    def __str__(self) -> str:
        return f"exists {self.field}"


@dataclass(frozen=True)
class Not:
    operand: Node

    def __str__(self) -> str:
        return f"not {_format_operand(self.operand, Not)}"


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]

    def __str__(self) -> str:
        return " and ".join(_format_operand(o, And) for o in self.operands)


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]

    def __str__(self) -> str:
        return " or ".join(_format_operand(o, Or) for o in self.operands)


Node = Compare | Like | In | Exists | Not | And | Or


def _format_operand(node: Node, parent: type) -> str:
    if isinstance(node, (And, Or)) and not (parent is Or and isinstance(node, And)):
        return f"({node})"
    return str(node)


def _format_value(value: Value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + value.replace("'", "''") + "'"


def _is_bare_name(name: str) -> bool:
    return bool(name) and (name[0] == "_" or name[0].isalpha()) and all(
        c == "_" or c.isalnum() for c in name)


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
    kind: str  # name, qname, string, number, op, punct, end
    value: Any
    column: int  # 1-based
    text: str


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "the end of the query"
    text = tok.text if len(tok.text) <= 40 else tok.text[:37] + "..."
    return repr(text)


def _tokenize(text: str) -> list[_Token]:
    def fail(column: int, message: str) -> QuerySyntaxError:
        return QuerySyntaxError(f"invalid query at column {column}: {message}", query=text,
                                column=column)

    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise fail(e.start + 1, "the query is not valid Unicode text (lone surrogate)") from None
    if "\x00" in text:
        raise fail(text.index("\x00") + 1, "the NUL character is not allowed in a query")
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        col = i + 1
        if c.isspace():
            i += 1
        elif c in "(),":
            tokens.append(_Token("punct", c, col, c))
            i += 1
        elif c in "=!<>":
            two = text[i:i + 2]
            if two in ("<=", ">=", "!=", "==", "<>"):
                op, i = two, i + 2
            elif c == "!":
                raise fail(col, "expected '!=' ('!' alone is not an operator; use 'not')")
            else:
                op, i = c, i + 1
            tokens.append(_Token("op", _OP_ALIASES.get(op, op), col, op))
        elif c in "'\"":
            j, parts = i + 1, []
            while True:
                k = text.find(c, j)
                if k < 0:
                    what = "string" if c == "'" else "field name"
                    raise fail(col, f"unterminated {what} starting here: end it with {c} "
                                    f"(write {c}{c} for a {c} inside it)")
                parts.append(text[j:k])
                if text[k + 1:k + 2] == c:
                    parts.append(c)
                    j = k + 2
                    continue
                i = k + 1
                break
            value = "".join(parts)
            if c == '"' and not value:
                raise fail(col, 'expected a field name between the double quotes, found ""')
            tokens.append(_Token("string" if c == "'" else "qname", value, col, text[col - 1:i]))
        elif c.isdigit() or c in "-." and i + 1 < n and (text[i + 1].isdigit() or text[i + 1] == "."):
            m = _NUMBER_RE.match(text, i)
            if not m:
                raise fail(col, f"expected a number, found {text[i:i + 10]!r}")
            j = m.end()
            if j < n and (text[j].isalnum() or text[j] in "_.\"'"):
                raise fail(j + 1, f"expected a space or an operator after the number "
                                  f"{m.group()!r}, found {text[j]!r} (write a metadata key that "
                                  f"starts with a digit in double quotes: \"{m.group()}...\")")
            tokens.append(_Token("number", _parse_number(m.group(), fail, col), col, m.group()))
            i = j
        elif c == "_" or c.isalpha():
            j = i + 1
            while j < n and (text[j] == "_" or text[j].isalnum()):
                j += 1
            tokens.append(_Token("name", text[i:j], col, text[i:j]))
            i = j
        elif c in _UNICODE_QUOTES:
            raise fail(col, f"unexpected character {c!r}: strings use straight single quotes "
                            f"('...') and field names straight double quotes (\"...\")")
        else:
            raise fail(col, f"unexpected character {c!r}")
    tokens.append(_Token("end", None, n + 1, ""))
    return tokens


def _parse_number(s: str, fail: Callable[[int, str], QuerySyntaxError], col: int) -> int | float:
    if re.fullmatch(r"-?[0-9]+", s):
        v = int(s)
        if not _INT_MIN <= v <= _INT_MAX:
            raise fail(col, f"integer {s} is out of the 64-bit range; write it as a decimal "
                            f"({s}.0) to compare it as a float")
        return v
    v = float(s)
    if v in (float("inf"), float("-inf")):
        raise fail(col, f"number {s} is out of range")
    return v


# ----------------------------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------------------------
_VALUE_EXPECTED = "a value (a number, a 'string', true, false or null)"
_OPERATOR_EXPECTED = "an operator (=, !=, <, <=, >, >=, like, ilike, in, not like, not ilike, not in)"
_CONDITION_EXPECTED = "a condition (a field name, a \"quoted field name\", not, exists or '(')"


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def next(self) -> _Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def is_keyword(self, tok: _Token, *words: str) -> bool:
        return tok.kind == "name" and tok.value.lower() in words

    def error(self, tok: _Token, expected: str, hint: str = "") -> QuerySyntaxError:
        return QuerySyntaxError(
            f"invalid query at column {tok.column}: expected {expected}, found {_describe(tok)}"
            + (f" ({hint})" if hint else ""),
            query=self.text, column=tok.column, expected=expected, found=_describe(tok))

    def parse(self) -> Node:
        if not self.text.strip():
            raise self.error(self.peek(), _CONDITION_EXPECTED)
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            hint = ""
            if tok.kind in ("name", "qname", "string", "number") or tok.value == "(":
                hint = "combine conditions with 'and' or 'or'"
            raise self.error(tok, "'and', 'or' or the end of the query", hint)
        return node

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QuerySyntaxError(
                f"invalid query at column {tok.column}: nested more than {MAX_DEPTH} levels deep "
                f"(parentheses and 'not'); simplify the query",
                query=self.text, column=tok.column)

    def or_expr(self) -> Node:
        operands = [self.and_expr()]
        while self.is_keyword(self.peek(), "or"):
            self.next()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self) -> Node:
        operands = [self.unary()]
        while self.is_keyword(self.peek(), "and"):
            self.next()
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> Node:
        tok = self.peek()
        if self.is_keyword(tok, "not"):
            self.next()
            self.enter(tok)
            node = Not(self.unary())
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "punct" and tok.value == "(":
            self.next()
            self.enter(tok)
            node = self.or_expr()
            close = self.next()
            if not (close.kind == "punct" and close.value == ")"):
                raise self.error(close, "'and', 'or' or ')'",
                                 f"to close the '(' at column {tok.column}")
            self.depth -= 1
            return node
        if self.is_keyword(tok, "exists"):
            self.next()
            return Exists(self.field("a field name after exists"))
        return self.predicate()

    def field(self, expected: str) -> Field:
        tok = self.next()
        if tok.kind == "qname":
            return Field(tok.value, tok.value in AUTOMATIC_FIELDS)
        if tok.kind == "name" and tok.value.lower() not in KEYWORDS:
            return Field(tok.value, tok.value in BUILTIN_FIELDS)
        hint = ""
        if tok.kind == "name":
            hint = f'{tok.value!r} is a keyword; write "{tok.value}" for a metadata key of that name'
        elif tok.kind == "string":
            hint = "field names use double quotes, strings single quotes"
        raise self.error(tok, expected, hint)

    def predicate(self) -> Node:
        fld = self.field(_CONDITION_EXPECTED)
        tok = self.next()
        if tok.kind == "op":
            value_tok = self.peek()
            value = self.value()
            if tok.value not in ("=", "!=") and (value is None or isinstance(value, bool)):
                raise QuerySyntaxError(
                    f"invalid query at column {tok.column}: {_describe(value_tok)} can only be "
                    f"compared with = or !=", query=self.text, column=tok.column,
                    expected="= or !=", found=tok.text)
            return Compare(fld, tok.value, value)
        negate = False
        if self.is_keyword(tok, "not"):
            negate = True
            tok = self.next()
            if not self.is_keyword(tok, "like", "ilike", "in"):
                raise self.error(tok, "like, ilike or in after 'not'")
        if self.is_keyword(tok, "like", "ilike"):
            pat = self.next()
            if pat.kind != "string":
                raise self.error(pat, "a 'pattern' in single quotes after like")
            problem = _pattern_problem(pat.value)
            if problem:
                raise QuerySyntaxError(f"invalid query at column {pat.column}: {problem}",
                                       query=self.text, column=pat.column)
            node: Node = Like(fld, pat.value, tok.value.lower() == "ilike")
        elif self.is_keyword(tok, "in"):
            node = In(fld, self.value_list())
        else:
            hint = ""
            if self.is_keyword(tok, "is"):
                hint = "write '= null' or '!= null' instead of 'is null'"
            elif self.is_keyword(tok, "exists"):
                hint = f"write 'exists {fld}'"
            raise self.error(tok, _OPERATOR_EXPECTED, hint)
        return Not(node) if negate else node

    def value(self) -> Value:
        tok = self.next()
        if tok.kind in ("number", "string"):
            return tok.value
        if tok.kind == "name" and tok.value.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[tok.value.lower()]
        hint = ""
        if tok.kind == "qname":
            hint = "strings use single quotes; double quotes are for field names"
        elif tok.kind == "name":
            hint = f"write '{tok.value}' for a string"
        raise self.error(tok, _VALUE_EXPECTED, hint)

    def value_list(self) -> tuple[Value, ...]:
        tok = self.next()
        if not (tok.kind == "punct" and tok.value == "("):
            raise self.error(tok, "'(' after in")
        values = [self.value()]
        while True:
            tok = self.next()
            if tok.kind == "punct" and tok.value == ")":
                return tuple(values)
            if not (tok.kind == "punct" and tok.value == ","):
                raise self.error(tok, "',' or ')'")
            if len(values) >= MAX_IN_VALUES:
                raise QuerySyntaxError(f"invalid query at column {tok.column}: more than "
                                       f"{MAX_IN_VALUES} values in one 'in' list",
                                       query=self.text, column=tok.column)
            values.append(self.value())


# ----------------------------------------------------------------------------------------------
# like patterns: % any text, _ one character, \ makes the next character literal
# ----------------------------------------------------------------------------------------------
_ANY, _ONE = object(), object()


def _pattern_problem(pattern: str) -> str | None:
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


def _sql_like(value: Any, pattern: Any, ignore_case: Any) -> int:
    """``roro_like(value, pattern, ignore_case)``: :func:`like_match` as an SQLite function."""
    if not isinstance(value, str) or not isinstance(pattern, str):
        return 0
    return int(like_match(value, pattern, bool(ignore_case)))


# ----------------------------------------------------------------------------------------------
# The reference evaluator
# ----------------------------------------------------------------------------------------------
class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_OPAQUE: Any = object()  # a value no literal can equal or order against: lists, objects...


@dataclass(frozen=True)
class Record:
    """What a query sees of one saved version.

    ``tags`` are the version's current tags, ``latest`` included for the highest live version of
    its repository; ``metadata`` is the user metadata (without ``timestamp`` and ``author``).
    """

    version: int
    author: str | None = None
    timestamp: str | None = None
    comment: str | None = None
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_image(cls, image: Any, tags: Sequence[str] = ()) -> Record:
        """The record of a saved :class:`~roro.image.ModelImage` with its current ``tags``."""
        manifest = image.manifest
        return cls(version=image.version, author=manifest["author"],
                   timestamp=manifest["timestamp"], comment=manifest["comment"],
                   tags=tuple(tags), metadata=manifest["metadata"])


def _scalar_of(record: Record, fld: Field) -> Any:
    if fld.builtin:
        value = getattr(record, fld.name)
        return MISSING if value is None else value
    value = record.metadata.get(fld.name, MISSING)
    if isinstance(value, (list, dict)):
        return _OPAQUE
    if isinstance(value, str) and "\x00" in value:
        return _OPAQUE  # see docs/query.md: strings holding NUL are not comparable
    return value


def _same_type(value: Any, literal: Value) -> bool:
    if isinstance(literal, bool):
        return isinstance(value, bool)
    if isinstance(literal, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(literal, str):
        return isinstance(value, str)
    return False


_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _compare(value: Any, op: str, literal: Value) -> bool:
    """One value (not a tag set) against one literal, for every op but ``!=``."""
    if literal is None:
        return value is MISSING or value is None
    return _same_type(value, literal) and _PY_OPS[op](value, literal)


def _evaluate(node: Node, record: Record) -> bool:
    if isinstance(node, And):
        return all(_evaluate(o, record) for o in node.operands)
    if isinstance(node, Or):
        return any(_evaluate(o, record) for o in node.operands)
    if isinstance(node, Not):
        return not _evaluate(node.operand, record)
    if isinstance(node, Compare) and node.op == "!=":
        return not _evaluate(Compare(node.field, "=", node.value), record)
    fld = node.field
    if fld.builtin and fld.name == "tag":
        tags = record.tags
        if isinstance(node, Exists):
            return bool(tags)
        if isinstance(node, Compare):
            if node.value is None:
                return not tags
            return any(_compare(t, node.op, node.value) for t in tags)
        if isinstance(node, Like):
            return any(like_match(t, node.pattern, node.ignore_case) for t in tags)
        assert isinstance(node, In)
        return any((v is None and not tags) or any(_compare(t, "=", v) for t in tags)
                   for v in node.values)
    value = _scalar_of(record, fld)
    if isinstance(node, Exists):
        return value is not MISSING
    if isinstance(node, Compare):
        return _compare(value, node.op, node.value)
    if isinstance(node, Like):
        return isinstance(value, str) and like_match(value, node.pattern, node.ignore_case)
    assert isinstance(node, In)
    return any(_compare(value, "=", v) for v in node.values)


# ----------------------------------------------------------------------------------------------
# The SQL compiler
# ----------------------------------------------------------------------------------------------
#: Built-in scalar fields: the SQL expression over the ``versions`` row ``v``, and the literal type
#: that can match it. ``timestamp`` is the manifest's (what ``image["timestamp"]`` shows).
_SCALAR_COLUMNS = {
    "version": ("v.version", "number"),
    "author": ("v.author", "text"),
    "comment": ("v.comment", "text"),
    "timestamp": ("json_extract(v.manifest, '$.timestamp')", "text"),
}
_SQL_OPS = {"=": "=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_JSON_TYPES = {"number": "('integer', 'real')", "text": "('text')"}
#: The row's version is among the (project, repository, version) rows of ``tags`` selected by a
#: condition on ``t.tag``: a subquery that does not depend on the row, so SQLite runs it once.
_TAGGED = "(v.project, v.repository, v.version) IN (SELECT t.project, t.repository, t.version " \
          "FROM tags AS t{where})"
_IS_LATEST = ("(v.version = (SELECT max(l.version) FROM versions AS l WHERE l.project = v.project "
              "AND l.repository = v.repository AND l.deleted = 0))")
_META_KEY = "SELECT 1 FROM json_each(v.metadata) AS j WHERE j.key = ?"
LIKE_FUNCTION = "roro_like"


def _literal_kind(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "text"


def _glob_pattern(pattern: str) -> str:
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


def _path_safe(key: str) -> bool:
    r"""Can ``key`` be looked up with the JSON path ``$."key"``? SQLite's path syntax has no escape
    inside quotes, and compares the label with the key as written in the JSON text, which json.dumps
    escapes only for ``"``, ``\``, and control characters."""
    return not any(c in '"\\' or ord(c) < 0x20 or c == "\x7f" for c in key)


@dataclass(frozen=True)
class CompiledQuery:
    """A boolean SQL expression over the ``versions`` row aliased ``v`` and its parameters.

    ``functions`` are the SQLite functions it calls (name → (number of arguments, callable)); the
    index registers them on its connection before running it.
    """

    sql: str
    params: tuple[Any, ...]
    functions: Mapping[str, tuple[int, Callable[..., Any]]]


class _Compiler:
    """Every method returns an SQL expression that is 0 or 1, never NULL, and appends the values
    of its ``?`` placeholders to ``self.params`` in the order they appear in its text. No user
    text (key, value, pattern) is ever part of the SQL text."""

    def __init__(self) -> None:
        self.params: list[Any] = []
        self.uses_function = False

    def p(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def node(self, node: Node) -> str:
        if isinstance(node, (And, Or)):
            return self.balanced([*node.operands], " AND " if isinstance(node, And) else " OR ")
        if isinstance(node, Not):
            return f"(NOT {self.node(node.operand)})"
        if isinstance(node, Compare) and node.op == "!=":
            return f"(NOT {self.node(Compare(node.field, '=', node.value))})"
        fld = node.field
        if fld.builtin and fld.name == "tag":
            return self.tag(node)
        if fld.builtin:
            return self.scalar(node, *_SCALAR_COLUMNS[fld.name])
        if _path_safe(fld.name):
            return self.metadata_path(node)
        return self.metadata_each(node)

    def balanced(self, operands: list[Node], joiner: str) -> str:
        # A balanced tree keeps SQLite's expression depth logarithmic in the number of operands.
        if len(operands) == 1:
            return self.node(operands[0])
        mid = len(operands) // 2
        left = self.balanced(operands[:mid], joiner)
        right = self.balanced(operands[mid:], joiner)
        return f"({left}{joiner}{right})"

    def like(self, operand: str, node: Like, nul_free: bool) -> str:
        """``operand`` (a non-NULL text) matches the pattern. GLOB where it is exact; the Python
        function for ilike and for text that may hold NUL (where SQLite's GLOB stops)."""
        if node.ignore_case or not nul_free:
            self.uses_function = True
            call = (f"{LIKE_FUNCTION}({operand}, {self.p(node.pattern)}, "
                    f"{self.p(int(node.ignore_case))})")
            if node.ignore_case:
                return call
            return (f"(CASE WHEN instr({operand}, char(0)) > 0 THEN {call} "
                    f"ELSE {operand} GLOB {self.p(_glob_pattern(node.pattern))} END)")
        return f"({operand} GLOB {self.p(_glob_pattern(node.pattern))})"

    # -- version, author, comment, timestamp: one typed SQL value, NULL when missing -------------
    def scalar(self, node: Node, col: str, kind: str) -> str:
        if isinstance(node, Exists):
            return f"({col} IS NOT NULL)"
        if isinstance(node, Compare):
            lk = _literal_kind(node.value)
            if lk == "null":
                return f"({col} IS NULL)"
            if lk != kind:
                return "0"
            return f"({col} IS NOT NULL AND {col} {_SQL_OPS[node.op]} {self.p(node.value)})"
        if isinstance(node, Like):
            if kind != "text":
                return "0"
            return f"({col} IS NOT NULL AND {self.like(col, node, col != 'v.comment')})"
        assert isinstance(node, In)
        terms = []
        same = [v for v in node.values if _literal_kind(v) == kind]
        if same:
            marks = ", ".join(self.p(v) for v in same)
            terms.append(f"({col} IS NOT NULL AND {col} IN ({marks}))")
        if any(v is None for v in node.values):
            terms.append(f"({col} IS NULL)")
        return "(" + " OR ".join(terms) + ")" if terms else "0"

    # -- metadata keys ---------------------------------------------------------------------------
    # The metadata column is JSON text. A key is found with the JSON path '$."key"', passed as a
    # parameter, when the key allows it; otherwise with json_each, which compares keys as values.
    # Either way the key is a parameter, and both forms have the same meaning.
    def metadata_path(self, node: Node) -> str:
        path = '$."' + node.field.name + '"'

        def jtype() -> str:
            return f"COALESCE(json_type(v.metadata, {self.p(path)}), '')"

        def value() -> str:
            return f"json_extract(v.metadata, {self.p(path)})"

        if isinstance(node, Exists):
            return f"(json_type(v.metadata, {self.p(path)}) IS NOT NULL)"
        if isinstance(node, Compare) and node.value is None:
            return f"(COALESCE(json_type(v.metadata, {self.p(path)}), 'null') = 'null')"
        if isinstance(node, Compare):
            kind = _literal_kind(node.value)
            if kind == "bool":
                return f"({jtype()} = {self.p('true' if node.value else 'false')})"
            t = jtype()
            return f"({t} IN {_JSON_TYPES[kind]} AND {value()} {_SQL_OPS[node.op]} {self.p(node.value)})"
        if isinstance(node, Like):
            t = jtype()
            return f"({t} = 'text' AND {self.like(value(), node, True)})"
        assert isinstance(node, In)
        terms = []
        for kind in ("number", "text"):
            same = [v for v in node.values if _literal_kind(v) == kind]
            if same:
                t, x = jtype(), value()
                marks = ", ".join(self.p(v) for v in same)
                terms.append(f"({t} IN {_JSON_TYPES[kind]} AND {x} IN ({marks}))")
        bools = sorted({"true" if v else "false" for v in node.values if isinstance(v, bool)})
        if bools:
            t = jtype()
            terms.append(f"({t} IN ({', '.join(self.p(b) for b in bools)}))")
        if any(v is None for v in node.values):
            terms.append(f"(COALESCE(json_type(v.metadata, {self.p(path)}), 'null') = 'null')")
        return "(" + " OR ".join(terms) + ")"

    def key(self, node: Node) -> str:
        """The head of a subquery over the row's metadata entry for the node's key."""
        self.p(node.field.name)
        return _META_KEY

    def metadata_each(self, node: Node) -> str:
        if isinstance(node, Exists):
            return f"EXISTS ({self.key(node)})"
        if isinstance(node, Compare) and node.value is None:
            return f"(NOT EXISTS ({self.key(node)} AND j.type != 'null'))"
        if isinstance(node, Compare):
            head = self.key(node)
            kind = _literal_kind(node.value)
            if kind == "bool":
                return f"EXISTS ({head} AND j.type = {self.p('true' if node.value else 'false')})"
            return (f"EXISTS ({head} AND j.type IN {_JSON_TYPES[kind]} AND j.atom "
                    f"{_SQL_OPS[node.op]} {self.p(node.value)})")
        if isinstance(node, Like):
            head = self.key(node)
            return f"EXISTS ({head} AND j.type = 'text' AND {self.like('j.atom', node, True)})"
        assert isinstance(node, In)
        terms = []
        if any(v is not None for v in node.values):
            head = self.key(node)
            groups = []
            for kind in ("number", "text"):
                same = [v for v in node.values if _literal_kind(v) == kind]
                if same:
                    marks = ", ".join(self.p(v) for v in same)
                    groups.append(f"(j.type IN {_JSON_TYPES[kind]} AND j.atom IN ({marks}))")
            bools = sorted({"true" if v else "false" for v in node.values if isinstance(v, bool)})
            if bools:
                groups.append(f"j.type IN ({', '.join(self.p(b) for b in bools)})")
            terms.append(f"EXISTS ({head} AND ({' OR '.join(groups)}))")
        if any(v is None for v in node.values):
            terms.append(f"(NOT EXISTS ({self.key(node)} AND j.type != 'null'))")
        return "(" + " OR ".join(terms) + ")"

    # -- tag: true when ANY current tag satisfies the condition; latest counts as a tag ----------
    def tag(self, node: Node) -> str:
        # Whether 'latest' itself satisfies the condition does not depend on the row: decide it
        # here, so that the SQL is "a stored tag satisfies it [or the row is the latest]".
        latest_ok = _evaluate(node, Record(version=0, tags=(LATEST,)))
        if isinstance(node, Exists) or isinstance(node, Compare) and node.value is None:
            anything = f"({_TAGGED.format(where='')} OR {_IS_LATEST})"
            return anything if isinstance(node, Exists) else f"(NOT {anything})"
        if isinstance(node, Compare):
            if _literal_kind(node.value) != "text":
                return "0"
            stored = f"t.tag {_SQL_OPS[node.op]} {self.p(node.value)}"
        elif isinstance(node, Like):
            stored = self.like("t.tag", node, True)
        else:
            assert isinstance(node, In)
            strings = [v for v in node.values if isinstance(v, str)]
            terms = []
            if strings:
                marks = ", ".join(self.p(v) for v in strings)
                tagged = _TAGGED.format(where=f" WHERE t.tag IN ({marks})")
                terms.append(f"({tagged} OR {_IS_LATEST})" if LATEST in strings else f"({tagged})")
            if any(v is None for v in node.values):
                terms.append(f"(NOT ({_TAGGED.format(where='')} OR {_IS_LATEST}))")
            return "(" + " OR ".join(terms) + ")" if terms else "0"
        tagged = _TAGGED.format(where=f" WHERE {stored}")
        return f"({tagged} OR {_IS_LATEST})" if latest_ok else f"({tagged})"


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------
class Query:
    """A parsed query. ``str(query)`` is its canonical text (parsing it again gives the same query)."""

    def __init__(self, text: str, ast: Node):
        self.text = text
        self.ast = ast

    def __repr__(self) -> str:
        return f"<Query {str(self.ast)!r}>"

    def __str__(self) -> str:
        return str(self.ast)

    def matches(self, record: Record) -> bool:
        """Evaluate the query on one :class:`Record`, in plain Python (the reference semantics)."""
        return _evaluate(self.ast, record)

    def to_sql(self) -> CompiledQuery:
        """Compile to one parameterized SQL expression over the index row ``v`` (``versions``)."""
        c = _Compiler()
        sql = c.node(self.ast)
        functions = {LIKE_FUNCTION: (3, _sql_like)} if c.uses_function else {}
        return CompiledQuery(sql, tuple(c.params), functions)


def parse(text: str) -> Query:
    """Parse a query; :class:`~roro.errors.QuerySyntaxError` (a ``ValueError``) says where it is
    wrong (``column``, 1-based) and what was expected."""
    if isinstance(text, Query):
        return text
    if not isinstance(text, str):
        raise QuerySyntaxError(f"a query must be a string, not {type(text).__name__}", query=None,
                               column=None)
    if len(text) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(f"the query is {len(text)} characters long; at most "
                               f"{MAX_QUERY_LENGTH} are allowed", query=text[:100], column=None)
    return Query(text, _Parser(text).parse())
