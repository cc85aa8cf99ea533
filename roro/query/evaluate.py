"""The reference evaluator: the meaning of a query on one :class:`Record`, in plain Python.

The SQL compiler (``sql.py``) must agree with it; the tests generate queries and data and check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .patterns import like_match
from .syntax import And, Compare, Exists, Field, In, Like, Node, Not, Or, Value


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
    signer: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    format: str | None = None

    @classmethod
    def from_image(cls, image: Any, tags: Sequence[str] = ()) -> Record:
        """The record of a saved :class:`~roro.image.ModelImage` with its current ``tags``."""
        manifest = image.manifest
        signature = image.signature
        return cls(version=image.version, author=manifest["author"],
                   timestamp=manifest["timestamp"], comment=manifest["comment"],
                   tags=tuple(tags), metadata=manifest["metadata"],
                   format=image.model_format,
                   signer=signature["signer"] if signature else None)


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


def evaluate(node: Node, record: Record) -> bool:
    if isinstance(node, And):
        return all(evaluate(o, record) for o in node.operands)
    if isinstance(node, Or):
        return any(evaluate(o, record) for o in node.operands)
    if isinstance(node, Not):
        return not evaluate(node.operand, record)
    if isinstance(node, Compare) and node.op == "!=":
        return not evaluate(Compare(node.field, "=", node.value), record)
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


