"""The shape of roro/, read from the modules' own imports with ``ast`` (docs/architecture.md draws it).

- Every module belongs to one layer; it imports (at module level or inside a function) only
  modules of its own layer or of layers below it. Imports under ``if TYPE_CHECKING:`` are for
  annotations only and do not count.
- The runtime import graph has no cycle.
- An import inside a function is there to keep ``import roro`` cheap: it carries its one-line
  reason as a comment.
- No module reads a private attribute (``x._name``) that another module defines.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "roro"

#: Bottom to top. A name ending in ".*" is a package and every module in it.
LAYERS: list[tuple[str, list[str]]] = [
    ("leaf", ["roro.errors", "roro.digests", "roro.names", "roro.refspec", "roro.suggest", "roro.metadata", "roro.environment",
              "roro.faults", "roro.units", "roro.lineage", "roro.localfs"]),
    ("storage", ["roro.storage.*"]),
    ("objects", ["roro.objects.*"]),
    ("formats", ["roro.formats.*"]),
    ("refs", ["roro.refs.*", "roro.signing", "roro.bundle"]),
    ("store, query", ["roro.store", "roro.policy", "roro.config", "roro.query.*"]),
    ("writer", ["roro.writer"]),
    ("image", ["roro.image", "roro.diff", "roro.notebook"]),
    ("repository", ["roro.repository"]),
    ("project", ["roro.project"]),
    ("sync, check", ["roro.sync.*", "roro.check.*"]),
    ("api", ["roro"]),
    ("ui", ["roro.ui.*"]),
    ("cli", ["roro.cli.*", "roro.__main__"]),
]


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    for n, (_, members) in enumerate(LAYERS):
        for m in members:
            if module == m or (m.endswith(".*") and (module == m[:-2]
                                                      or module.startswith(m[:-1]))):
                return n
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement not under ``if TYPE_CHECKING``, and whether it is in a function."""
    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom,
                                                                 bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from walk(other, in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            yield from walk(child, inner)

    yield from walk(tree, False)


def imported_modules(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The roro modules an import statement loads (a ``from pkg import name`` of a submodule
    names the submodule)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name == "roro" or a.name.startswith("roro.")}
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    if base != "roro" and not base.startswith("roro."):
        return set()
    out = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.add(sub if sub in MODULES else base)
    return out


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        edges[module] = set()
        for node, _ in runtime_imports(tree):
            edges[module] |= imported_modules(module, node) - {module}
    return edges


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_from_a_layer_above_it():
    wrong = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
             for m, targets in graph().items() for t in sorted(targets)
             if layer_of(t) > layer_of(m)]
    assert not wrong, "\n".join(wrong)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_inside_functions_say_why():
    silent = []
    for path in MODULES.values():
        lines = path.read_text().splitlines()
        for node, in_function in runtime_imports(ast.parse(path.read_text())):
            if in_function and "#" not in lines[node.lineno - 1]:
                silent.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1]}")
    assert not silent, "an import inside a function needs its reason beside it:\n" + "\n".join(
        silent)


def _defined_names(tree: ast.AST) -> set[str]:
    """Names a module defines: functions, classes, assigned names and attributes, parameters,
    and attributes set with ``object.__setattr__(self, "name", ...)``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif (isinstance(node, ast.Call) and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            names.add(node.args[1].value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


#: Private names of the standard library roro uses on purpose.
STDLIB_PRIVATE = {"_exit"}


def test_no_module_reads_another_modules_private_attributes():
    reads = []
    for path in MODULES.values():
        tree = ast.parse(path.read_text())
        own = _defined_names(tree) | STDLIB_PRIVATE
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and node.attr not in own
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                reads.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not reads, "\n".join(reads)


def test_the_checker_sees_a_cycle_and_an_upward_import():
    """The checks above can fail: made-up sources with an upward import that closes a cycle."""
    fake = {"roro.storage.base": "from ..writer import append\n",
            "roro.writer": "from .storage import base\n"}
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, source in fake.items():
        for node, _ in runtime_imports(ast.parse(source)):
            edges[m] |= imported_modules(m, node)
    assert edges["roro.storage.base"] == {"roro.writer"}
    assert edges["roro.writer"] == {"roro.storage.base"}
    assert layer_of("roro.writer") > layer_of("roro.storage.base")
    assert find_cycle(edges) == ["roro.storage.base", "roro.writer", "roro.storage.base"]
