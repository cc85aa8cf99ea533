"""The syntax tree of a query: fields, comparisons, boolean operators, and its canonical text."""

from __future__ import annotations

from dataclasses import dataclass

#: The fields that are not metadata keys (bare names, case-sensitive).
BUILTIN_FIELDS = ("version", "author", "timestamp", "tag", "comment", "format", "signer")
#: Fields that are also keys of ``image.get_metadata()``: ``"timestamp"`` quoted means the same.
AUTOMATIC_FIELDS = ("timestamp", "author")
KEYWORDS = frozenset({"and", "or", "not", "like", "ilike", "in", "exists", "true", "false", "null"})

MAX_QUERY_LENGTH = 10_000
MAX_DEPTH = 32
MAX_IN_VALUES = 1_000
MAX_PATTERN_LENGTH = 2_000

Value = bool | int | float | str | None


@dataclass(frozen=True)
class Field:
    """A field: a built-in one (``version``, ``author``, ``timestamp``, ``tag``, ``comment``,
    ``format``, ``signer``) or a
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
#: A condition on one field (what And, Or and Not combine).
Leaf = Compare | Like | In | Exists


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


