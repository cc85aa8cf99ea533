"""A model's contract: the library versions it needs and the schema of its input.

Recorded at save under the manifest's ``contract`` key::

    {"libraries": {"numpy": "2.4.6", "scikit-learn": "1.9.1"},
     "input": {"kind": "ndarray", "dtype": "float64", "shape": [null, 4],
               "example": [[5.1, 3.5, 1.4, 0.2], ...]}}     (the first rows, when small)
     # or {"kind": "dataframe", "columns": [{"name": "age", "dtype": "int64"}, ...],
     #     "example": {"age": [30, 40, 50]}}

Libraries: the distribution of the model's top-level package, the format's own libraries, and
numpy, scikit-learn, pandas and torch when the saving process had already imported them (this
module never imports them). At load, a recorded library whose installed major.minor version
differs gives a :class:`~roro.image.RoroWarning` naming both versions.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

from ..errors import ContractError, IntegrityError, InvalidMetadataError
from ..lineage import package_of

#: Rows of an input example kept in the contract, and the most bytes of JSON they may take.
EXAMPLE_ROWS = 3
MAX_EXAMPLE = 16 * 1024
#: Recorded libraries checked at load at most (a real contract names a handful; a forged one may
#: name thousands, and each check looks through the installed distributions).
MAX_CHECKED = 64
#: Libraries recorded when the saving process has imported them: top-level module -> distribution.
WATCHED = {"numpy": "numpy", "sklearn": "scikit-learn", "pandas": "pandas", "torch": "torch"}
_MODULE_OF = {dist: module for module, dist in WATCHED.items()}


@functools.lru_cache(maxsize=256)
def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (None if it is not installed); looked up once
    per process (a lookup scans the installed distributions). A watched library this process
    has imported answers with its module's ``__version__`` (the version actually loaded):
    importing ``importlib.metadata`` and scanning cost the first load (and save) of a fresh
    process 10-15 ms, 15 % of a 128 MiB load (bench/README.md, issue 17 fifth session)."""
    module = sys.modules.get(_MODULE_OF.get(distribution, ""))
    version = getattr(module, "__version__", None)
    if isinstance(version, str) and version:
        return version
    from importlib import metadata  # importlib.metadata: only when a contract is made or checked
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def collect_libraries(model: Any, format_libraries: tuple[str, ...],
                      pickled: bool) -> dict[str, str]:
    """``{distribution: version}`` the model depends on (see the module docstring)."""
    names: set[str] = set(format_libraries)
    if pickled:
        package = package_of(model)
        if package is not None and package.get("distribution"):
            names.add(package["distribution"])
        names.update(dist for module, dist in WATCHED.items() if module in sys.modules)
    out = {}
    for name in sorted(names):
        version = installed_version(name)
        if version is not None:
            out[name] = version
    return out


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def library_mismatches(libraries: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """``(distribution, saved version, installed version or None)`` for every recorded library
    whose installed major.minor differs (or that is not installed), among the first
    :data:`MAX_CHECKED` by name."""
    out = []
    for name, saved in sorted(libraries.items())[:MAX_CHECKED]:
        if not isinstance(saved, str):
            continue
        mine = installed_version(name)
        if mine is None or _minor(mine) != _minor(saved):
            out.append((name, saved, mine))
    return out


def _kind(obj: Any) -> str | None:
    t = type(obj)
    module = t.__module__.split(".")[0]
    if module == "numpy" and t.__name__ == "ndarray":
        return "ndarray"
    if module == "pandas" and t.__name__ == "DataFrame":
        return "dataframe"
    return None


def schema_of(example: Any) -> dict[str, Any]:
    """The input schema of an example batch: a numpy array's dtype and shape (the first axis, the
    batch, is left open), or a pandas DataFrame's columns and dtypes; with ``example``, the first
    rows of the batch as JSON when they fit in :data:`MAX_EXAMPLE` bytes and are plain numbers,
    strings or booleans (else no example is kept, only the schema)."""
    kind = _kind(example)
    if kind == "ndarray":
        shape = list(example.shape)
        schema = {"kind": kind, "dtype": str(example.dtype),
                  "shape": [None, *shape[1:]] if shape else []}
        rows = example[:EXAMPLE_ROWS].tolist() if shape else None
    elif kind == "dataframe":
        schema = {"kind": kind, "columns": [{"name": str(c), "dtype": str(example[c].dtype)}
                                            for c in example.columns]}
        rows = {str(c): example[c].iloc[:EXAMPLE_ROWS].tolist() for c in example.columns}
    else:
        rows = None
    if kind is None:
        raise InvalidMetadataError(f"input_example must be a numpy array or a pandas DataFrame, "
                                   f"not a {type(example).__name__}")
    try:
        text = json.dumps(rows, allow_nan=False)
    except (TypeError, ValueError):
        return schema  # values JSON cannot hold (objects, NaN): the schema only
    if rows is not None and len(text) <= MAX_EXAMPLE:
        schema["example"] = rows
    return schema


def schema_problem(schema: Any) -> str | None:
    """What is wrong with an input schema read from a store (None: it has the shape
    :func:`schema_of` writes), so that a forged one is an error, never a crash."""
    if not isinstance(schema, dict):
        return "not a JSON object"
    kind = schema.get("kind")
    if kind == "ndarray":
        shape = schema.get("shape")
        if not (isinstance(schema.get("dtype"), str) and isinstance(shape, list) and all(
                d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape)):
            return "malformed array schema"
        return None
    if kind == "dataframe":
        columns = schema.get("columns")
        if not (isinstance(columns, list) and all(
                isinstance(c, dict) and isinstance(c.get("name"), str)
                and isinstance(c.get("dtype"), str) for c in columns)):
            return "malformed DataFrame schema"
        return None
    return f"unknown kind {str(kind)[:40]!r}"


def input_problems(schema: dict[str, Any], batch: Any) -> list[str]:
    """What is wrong with ``batch`` against ``schema`` (empty: it matches)."""
    kind = _kind(batch)
    expected = schema.get("kind")
    if kind != expected:
        return [f"expected a {expected}, got a {type(batch).__name__}"]
    problems = []
    if kind == "ndarray":
        if str(batch.dtype) != schema.get("dtype"):
            problems.append(f"dtype {batch.dtype} where the model expects {schema.get('dtype')}")
        shape = schema.get("shape") or []
        if len(batch.shape) != len(shape):
            problems.append(f"{len(batch.shape)} dimensions where the model expects {len(shape)}")
        else:
            for axis, (want, got) in enumerate(zip(shape, batch.shape, strict=True)):
                if want is not None and want != got:
                    problems.append(f"axis {axis} has size {got} where the model expects {want}")
    else:
        want_cols = {c["name"]: c["dtype"] for c in schema.get("columns") or []}
        got_cols = {str(c): str(batch[c].dtype) for c in batch.columns}
        for name in want_cols:
            if name not in got_cols:
                problems.append(f"column {name!r} is missing")
            elif got_cols[name] != want_cols[name]:
                problems.append(f"column {name!r} has dtype {got_cols[name]} where the model "
                                f"expects {want_cols[name]}")
        for name in got_cols:
            if name not in want_cols:
                problems.append(f"column {name!r} is not in the model's input")
    return problems


def check_input(schema: Any, batch: Any, what: str) -> None:
    """Raise :class:`ContractError` listing every mismatch of ``batch`` against ``schema``
    (:class:`~roro.errors.IntegrityError` for a recorded schema of the wrong shape)."""
    if schema is None:
        raise ContractError(f"{what} has no input schema (save it with input_example=...)")
    problem = schema_problem(schema)
    if problem is not None:
        raise IntegrityError(f"the input schema recorded for {what} is invalid: {problem}")
    problems = input_problems(schema, batch)
    if problems:
        raise ContractError(f"input does not match the schema of {what}: " + "; ".join(problems))


def flatten(contract: dict[str, Any] | None) -> dict[str, Any]:
    """A contract as flat ``{key: value}`` pairs for a diff: ``library numpy``, ``input dtype``,
    ``input column age``... (the example rows are data, not contract: left out)."""
    out: dict[str, Any] = {}
    if not isinstance(contract, dict):
        return out
    libraries = contract.get("libraries")
    for name, version in sorted(libraries.items() if isinstance(libraries, dict) else ()):
        out[f"library {name}"] = version
    schema = contract.get("input")
    if isinstance(schema, dict):
        out["input kind"] = schema.get("kind")
        if "dtype" in schema:
            out["input dtype"] = schema["dtype"]
        if "shape" in schema:
            out["input shape"] = schema["shape"]
        columns = schema.get("columns")
        for col in columns if isinstance(columns, list) else ():
            if isinstance(col, dict):
                out[f"input column {col.get('name')}"] = col.get("dtype")
    return out
