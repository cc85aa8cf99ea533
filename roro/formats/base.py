"""What every model format provides, and the errors formats raise.

A format is a small module with a :class:`ModelFormat` object: ``detect(obj)`` (can it hold this
object?), ``dump(obj, writer)`` (stream it into a binary writer), ``load(file, **options)`` (the
object, from a verified binary file), ``check_file(path)`` (is this file in the format? without
running anything) and ``summarize(path)`` (a small JSON-able description, read from the file's
header where the format has one). Heavy libraries (numpy, safetensors, onnx, skops) are imported
only inside these functions, through :func:`require`, which names the pip extra when one is
missing.
"""

from __future__ import annotations

import importlib
from typing import Any, BinaryIO

from ..errors import FormatError, MissingDependencyError

__all__ = ["CLEAN", "CODE", "FLAGGED", "FormatError", "MissingDependencyError", "ModelFormat",
           "Writer", "is_ndarray", "require", "summary_problem", "type_name"]

#: The verdicts of a pickle scan (:mod:`roro.formats.scan`), kept here so that naming them does not
#: import the scanner (and pickletools).
CLEAN = "clean"
CODE = "contains code"
FLAGGED = "flagged"


#: What ``dump`` writes into: a binary sink with ``write(bytes-like) -> int`` (the hashing spool).
Writer = Any


class ModelFormat:
    """One model format (see the module docstring); each format module defines a subclass and
    one instance of it. (A plain base class: a ``typing.Protocol`` costs ``import roro`` time.)"""

    name: str = ""
    #: What it stores, for messages ("a dict of numpy arrays").
    holds: str = ""
    #: True when loading runs pickle code (the load gate's ``pickle`` setting applies).
    pickled: bool = False
    #: The libraries (distribution names) whose versions a model in this format depends on.
    libraries: tuple[str, ...] = ()
    #: True when ``summarize`` reads the stored file (a save then keeps a spool file of it).
    summary_from_file: bool = True

    def detect(self, obj: Any) -> bool:
        raise NotImplementedError

    def model_type(self, obj: Any) -> str:
        raise NotImplementedError

    def dump(self, obj: Any, writer: Writer) -> None:
        raise NotImplementedError

    def load(self, f: BinaryIO, **options: Any) -> Any:
        raise NotImplementedError

    def check_file(self, path: str) -> None:
        raise NotImplementedError

    def summarize(self, path: str) -> dict[str, Any] | None:
        raise NotImplementedError


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(
        d is None or isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool))
        for d in value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entries_ok(value: Any, nullable_dtype: bool) -> bool:
    return isinstance(value, list) and all(
        isinstance(e, dict) and isinstance(e.get("name"), str)
        and (isinstance(e.get("dtype"), str) or (nullable_dtype and e.get("dtype") is None))
        and (_is_shape(e.get("shape")) or (nullable_dtype and e.get("shape") is None))
        for e in value)


def summary_problem(summary: Any) -> str | None:
    """What is wrong with a summary object read from a store (None: it has the shape a format
    writes), so that a forged one is an error, never a crash of whatever shows it."""
    if not isinstance(summary, dict):
        return "not a JSON object"
    if "tensors" in summary:
        if not (_entries_ok(summary["tensors"], False) and _is_count(summary.get("parameters"))
                and isinstance(summary.get("metadata", {}), dict)):
            return "malformed safetensors summary"
    elif "inputs" in summary:
        if not (_entries_ok(summary["inputs"], True) and _entries_ok(summary.get("outputs"), True)
                and _entries_ok(summary.get("initializer_list", []), False)
                and all(_is_count(summary.get(k)) for k in ("initializers", "parameters", "nodes"))
                and isinstance(summary.get("opset"), list)
                and all(isinstance(o, dict) and isinstance(o.get("domain"), str)
                        and _is_count(o.get("version")) for o in summary["opset"])):
            return "malformed ONNX summary"
    elif "untrusted_types" in summary:
        types = summary["untrusted_types"]
        if not (isinstance(types, list) and all(isinstance(t, str) for t in types)):
            return "malformed skops summary"
    return None


def require(module: str, extra: str) -> Any:
    """``import module``, or :class:`MissingDependencyError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"the {extra} format needs the {module.split('.')[0]} package, which is not "
            f"installed ({e}); install it with: pip install 'roro[{extra}]' (or 'roro[formats]' "
            f"for every format)") from None


def type_name(obj: Any) -> str:
    """``module.QualName`` of ``obj``'s class."""
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def is_ndarray(obj: Any) -> bool:
    """A numpy array, recognised without importing numpy."""
    t = type(obj)
    return t.__name__ == "ndarray" and t.__module__ == "numpy"
