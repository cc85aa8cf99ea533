"""Compiling a query to one parameterized SQL expression over the index's ``versions`` row ``v``.

No user text (key, value, pattern) is ever part of the SQL text: every one is a ``?`` parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..metadata import json_kind
from ..names import LATEST
from .evaluate import Record, evaluate
from .patterns import GLOB_MAX_PATTERN, LIKE_FUNCTION, glob_pattern, sql_like
from .syntax import And, Compare, Exists, In, Leaf, Like, Node, Not, Or, Value

#: Built-in scalar fields: the SQL expression over the ``versions`` row ``v``, and the literal type
#: that can match it. ``timestamp`` is the manifest's (what ``image["timestamp"]`` shows).
_SCALAR_COLUMNS = {
    "version": ("v.version", "number"),
    "author": ("v.author", "text"),
    "comment": ("v.comment", "text"),
    "format": ("v.model_format", "text"),
    "signer": ("v.signer", "text"),  # the name the version event's signature gives; NULL: unsigned
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


def _literal_kind(value: Value) -> str:
    """A literal's kind in SQLite's words (``text``, not ``string``)."""
    found = json_kind(value)
    return "text" if found == "string" else found


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
        """``operand`` (a non-NULL text) matches the pattern. GLOB where it is exact and cheap;
        the Python function (linear in the value) for ilike, for text that may hold NUL (where
        SQLite's GLOB stops), and for patterns longer than ``GLOB_MAX_PATTERN`` (GLOB's worst
        case is O(value x pattern))."""
        if node.ignore_case or len(node.pattern) > GLOB_MAX_PATTERN or not nul_free:
            self.uses_function = True
            call = (f"{LIKE_FUNCTION}({operand}, {self.p(node.pattern)}, "
                    f"{self.p(int(node.ignore_case))})")
            if node.ignore_case or len(node.pattern) > GLOB_MAX_PATTERN:
                return call
            return (f"(CASE WHEN instr({operand}, char(0)) > 0 THEN {call} "
                    f"ELSE {operand} GLOB {self.p(glob_pattern(node.pattern))} END)")
        return f"({operand} GLOB {self.p(glob_pattern(node.pattern))})"

    # -- version, author, comment, timestamp: one typed SQL value, NULL when missing -------------
    def scalar(self, node: Leaf, col: str, kind: str) -> str:
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
    def metadata_path(self, node: Leaf) -> str:
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

    def key(self, node: Leaf) -> str:
        """The head of a subquery over the row's metadata entry for the node's key."""
        self.p(node.field.name)
        return _META_KEY

    def metadata_each(self, node: Leaf) -> str:
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
    def tag(self, node: Leaf) -> str:
        # Whether 'latest' itself satisfies the condition does not depend on the row: decide it
        # here, so that the SQL is "a stored tag satisfies it [or the row is the latest]".
        latest_ok = evaluate(node, Record(version=0, tags=(LATEST,)))
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




def compile_node(node: Node) -> CompiledQuery:
    """Compile a syntax tree to one parameterized SQL expression over the row ``v``."""
    c = _Compiler()
    sql = c.node(node)
    functions = {LIKE_FUNCTION: (3, sql_like)} if c.uses_function else {}
    return CompiledQuery(sql, tuple(c.params), functions)
