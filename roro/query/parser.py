"""Parsing a query: text -> tokens -> syntax tree, with errors that say where and what was expected."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import QuerySyntaxError
from .patterns import pattern_problem
from .syntax import (
    AUTOMATIC_FIELDS,
    BUILTIN_FIELDS,
    KEYWORDS,
    MAX_DEPTH,
    MAX_IN_VALUES,
    And,
    Compare,
    Exists,
    Field,
    In,
    Like,
    Node,
    Not,
    Or,
    Value,
)

_OP_ALIASES = {"==": "=", "<>": "!="}
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_NUMBER_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_UNICODE_QUOTES = "\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u2032\u2033\u00ab\u00bb\uff02\uff07"


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


Fail = Callable[[int, str], QuerySyntaxError]


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
        if c.isspace():
            i += 1
            continue
        if c in "(),":
            token, i = _Token("punct", c, i + 1, c), i + 1
        elif c in "=!<>":
            token, i = _scan_operator(text, i, fail)
        elif c in "'\"":
            token, i = _scan_quoted(text, i, fail)
        elif c.isdigit() or c in "-." and i + 1 < n and (text[i + 1].isdigit() or text[i + 1] == "."):
            token, i = _scan_number(text, i, fail)
        elif c == "_" or c.isalpha():
            j = i + 1
            while j < n and (text[j] == "_" or text[j].isalnum()):
                j += 1
            token, i = _Token("name", text[i:j], i + 1, text[i:j]), j
        elif c in _UNICODE_QUOTES:
            raise fail(i + 1, f"unexpected character {c!r}: strings use straight single quotes "
                              f"('...') and field names straight double quotes (\"...\")")
        else:
            raise fail(i + 1, f"unexpected character {c!r}")
        tokens.append(token)
    tokens.append(_Token("end", None, n + 1, ""))
    return tokens


def _scan_operator(text: str, i: int, fail: Fail) -> tuple[_Token, int]:
    """The comparison operator at ``text[i]`` and the index after it."""
    c, two = text[i], text[i:i + 2]
    if two in ("<=", ">=", "!=", "==", "<>"):
        op, end = two, i + 2
    elif c == "!":
        raise fail(i + 1, "expected '!=' ('!' alone is not an operator; use 'not')")
    else:
        op, end = c, i + 1
    return _Token("op", _OP_ALIASES.get(op, op), i + 1, op), end


def _scan_quoted(text: str, i: int, fail: Fail) -> tuple[_Token, int]:
    """The ``'string'`` or ``"field name"`` starting at ``text[i]`` (a doubled quote stands for
    one) and the index after it."""
    c, col = text[i], i + 1
    j, parts = i + 1, []
    while True:
        k = text.find(c, j)
        if k < 0:
            what = "string" if c == "'" else "field name"
            raise fail(col, f"unterminated {what} starting here: end it with {c} "
                            f"(write {c}{c} for a {c} inside it)")
        parts.append(text[j:k])
        if text[k + 1:k + 2] != c:
            break
        parts.append(c)
        j = k + 2
    value, end = "".join(parts), k + 1
    if c == '"' and not value:
        raise fail(col, 'expected a field name between the double quotes, found ""')
    return _Token("string" if c == "'" else "qname", value, col, text[i:end]), end


def _scan_number(text: str, i: int, fail: Fail) -> tuple[_Token, int]:
    """The number literal at ``text[i]`` and the index after it."""
    col = i + 1
    m = _NUMBER_RE.match(text, i)
    if not m:
        raise fail(col, f"expected a number, found {text[i:i + 10]!r}")
    j = m.end()
    if j < len(text) and (text[j].isalnum() or text[j] in "_.\"'"):
        raise fail(j + 1, f"expected a space or an operator after the number "
                          f"{m.group()!r}, found {text[j]!r} (write a metadata key that "
                          f"starts with a digit in double quotes: \"{m.group()}...\")")
    return _Token("number", _parse_number(m.group(), fail, col), col, m.group()), j


def _parse_number(s: str, fail: Callable[[int, str], QuerySyntaxError], col: int) -> int | float:
    if re.fullmatch(r"-?[0-9]+", s):
        v = int(s)
        if not _INT_MIN <= v <= _INT_MAX:
            raise fail(col, f"integer {s} is out of the 64-bit range; write it as a decimal "
                            f"({s}.0) to compare it as a float")
        return v
    f = float(s)
    if f in (float("inf"), float("-inf")):
        raise fail(col, f"number {s} is out of range")
    return f


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
            problem = pattern_problem(pat.value)
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




def parse_text(text: str) -> Node:
    """The syntax tree of ``text``; :class:`~roro.errors.QuerySyntaxError` if it is not a query."""
    return _Parser(text).parse()
