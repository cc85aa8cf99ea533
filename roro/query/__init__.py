"""The query language of ``search`` and ``log --where``: parse, compile to SQL, evaluate in Python.

A query is a boolean expression over the fields of a saved version::

    Accuracy > 0.88 and ("Input-Data-Source" like 's3://credit%' or tag = 'production')

The full language is documented in ``docs/query.md``. In short:

- fields: ``version``, ``author``, ``timestamp``, ``tag`` (any current tag, ``latest`` included),
  ``comment``, ``format`` (the model's format: ``cloudpickle``, ``safetensors``…), ``signer`` (the name a
  signed version's signature gives), and any metadata key (bare like ``Accuracy`` or double-quoted like
  ``"Input-Data-Source"``, with ``""`` for a ``"`` inside);
- values: numbers, ``'strings'`` (``''`` for a ``'`` inside), ``true``, ``false``, ``null``;
- ``= != < <= > >=``, ``like``/``ilike`` (``%`` any text, ``_`` one character, ``\\`` escapes),
  ``in (…)``, ``not in``, ``not like``, ``exists FIELD``, ``and``, ``or``, ``not``, parentheses.

Comparisons are typed: a number literal matches only numbers, a string only strings, ``true``/``false``
only booleans. A comparison whose types differ, or whose field is missing, is false; ``a != x`` is
exactly ``not (a = x)``; ``a = null`` is true when ``a`` is missing or null. There is no third truth
value: every condition is true or false, so ``not`` always means "the other rows".

The package: ``syntax.py`` (the tree), ``parser.py`` (text to tree), ``evaluate.py`` (the reference
meaning), ``sql.py`` (the compiler), ``patterns.py`` (``like``). The same meaning is implemented twice: :meth:`Query.to_sql` compiles to one parameterized SQL
expression over the index (no user text is ever put into the SQL text: keys, values and patterns are
all parameters) and :meth:`Query.matches` evaluates a :class:`Record` in plain Python. The tests
generate queries and data and require both to agree.
"""

from __future__ import annotations

from ..errors import QuerySyntaxError
from .evaluate import Record, evaluate
from .parser import parse_text
from .patterns import LIKE_FUNCTION, like_match
from .sql import CompiledQuery, compile_node
from .syntax import (
    AUTOMATIC_FIELDS,
    BUILTIN_FIELDS,
    KEYWORDS,
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_PATTERN_LENGTH,
    MAX_QUERY_LENGTH,
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

__all__ = [
    "AUTOMATIC_FIELDS", "BUILTIN_FIELDS", "KEYWORDS", "LIKE_FUNCTION", "MAX_DEPTH",
    "MAX_IN_VALUES", "MAX_PATTERN_LENGTH", "MAX_QUERY_LENGTH", "And", "Compare", "CompiledQuery",
    "Exists", "Field", "In", "Like", "Node", "Not", "Or", "Query", "QuerySyntaxError", "Record",
    "Value", "like_match", "parse",
]


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
        return evaluate(self.ast, record)

    def keys(self) -> list[str]:
        """The metadata keys the query looks at, in the order they first appear."""
        return list(dict.fromkeys(name for name, _ in self.comparisons()))

    def comparisons(self) -> list[tuple[str, list[Value]]]:
        """Each condition on a metadata key: the key and the literal values it is compared
        with (none for ``exists``; the pattern for ``like``)."""
        out: list[tuple[str, list[Value]]] = []
        stack: list[Node] = [self.ast]
        while stack:
            node = stack.pop()
            if isinstance(node, (And, Or)):
                stack.extend(reversed(node.operands))
            elif isinstance(node, Not):
                stack.append(node.operand)
            elif not node.field.builtin:
                values: list[Value] = (
                    [node.value] if isinstance(node, Compare) else list(node.values)
                    if isinstance(node, In) else [node.pattern] if isinstance(node, Like) else [])
                out.append((node.field.name, values))
        return out

    def to_sql(self) -> CompiledQuery:
        """Compile to one parameterized SQL expression over the index row ``v`` (``versions``)."""
        return compile_node(self.ast)


def parse(text: str | Query) -> Query:
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
    return Query(text, parse_text(text))
