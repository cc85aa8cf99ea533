"""What a pickle would import, read from its opcodes without running it.

:func:`scan_pickle` walks the opcodes of a pickle stream (the ones :mod:`pickletools` describes)
with a small abstract interpreter: strings pushed on the stack or kept in the memo are known
values, everything else is opaque. That is enough to resolve ``GLOBAL``, ``INST`` and
``STACK_GLOBAL`` (whose module and name are the two strings below it on the stack, pushed directly
or fetched from the memo) to ``module.name``, to see the module names given to cloudpickle's
``subimport``, and to read the names inside the code objects cloudpickle embeds for functions and
classes defined in ``__main__`` (the string arguments of the ``types.CodeType`` call that rebuilds
them: the globals and attributes the code uses, ``os`` and ``system`` among them when it calls
``os.system``).

Nothing is unpickled and nothing is ``marshal``-loaded. Large byte arguments (a numpy array's
buffer) are skipped with ``seek``, never read into memory, so a scan of a 10 GiB pickle holds a
few megabytes.

The verdict is ``clean`` (only plain imports, none on the flagged list), ``contains code``
(functions or classes pickled by value: their code is shown for review), or ``flagged`` (an import
or a name inside code that no model needs — ``os``, ``subprocess``, ``builtins.eval``,
``posix.system``, ``socket`` … —, a ``STACK_GLOBAL`` whose name cannot be resolved statically, an
opcode no model pickle uses, or a stream that is not a valid pickle). A clean scan is not proof
of safety: the load gate (``trust: pickle: deny``) and, later, signatures are the control.
"""

from __future__ import annotations

import pickletools
import re
from dataclasses import dataclass, field
from typing import IO, Any

from .base import CLEAN, CODE, FLAGGED

VERDICTS = (CLEAN, CODE, FLAGGED)

#: Top-level modules no model needs at unpickling time: importing from them is flagged.
FLAGGED_MODULES = frozenset({
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "socket", "sys", "shutil",
    "importlib", "runpy", "pty", "ctypes", "pickle", "_pickle", "marshal", "dill", "webbrowser",
    "urllib", "urllib2", "http", "httplib", "requests", "ftplib", "telnetlib", "smtplib",
    "multiprocessing", "asyncio", "code", "codeop", "pdb", "bdb", "signal", "platform",
    "commands", "popen2", "pip", "setuptools", "tempfile", "glob", "io", "_io", "zipimport",
    "sqlite3", "shelve", "xmlrpc", "ssl", "select", "selectors", "threading", "_thread",
    "timeit", "trace", "profile", "cProfile", "inspect", "gc", "atexit", "linecache",
})
#: ``module.name`` globals flagged although their module is fine otherwise.
FLAGGED_GLOBALS = frozenset({
    "builtins.eval", "builtins.exec", "builtins.compile", "builtins.open", "builtins.__import__",
    "builtins.getattr", "builtins.setattr", "builtins.delattr", "builtins.globals",
    "builtins.locals", "builtins.vars", "builtins.breakpoint", "builtins.input",
    "builtins.exit", "builtins.quit", "builtins.help", "builtins.__builtins__",
    "__builtin__.eval", "__builtin__.exec", "__builtin__.execfile", "__builtin__.open",
    "__builtin__.getattr", "__builtin__.__import__", "__builtin__.apply",
    "operator.attrgetter", "operator.methodcaller", "functools.reduce", "functools.partial",
    "types.FunctionType", "types.CodeType", "types.ModuleType",
    "numpy.load", "numpy.lib.npyio.load", "numpy.testing._private.utils.runstring",
    "torch.load", "torch.hub.load", "torch.serialization.load",
})
#: Names which, inside an embedded code object, are flagged (a call of ``os.system`` names
#: ``os`` and ``system``): the flagged modules and these functions.
FLAGGED_CODE_NAMES = frozenset({
    "system", "popen", "Popen", "spawnl", "spawnv", "spawnve", "spawnlp", "execv", "execve",
    "execl", "execlp", "execvp", "fork", "forkpty", "check_output", "check_call", "getoutput",
    "getstatusoutput", "eval", "exec", "execfile", "__import__", "import_module", "compile",
    "remove", "unlink", "rmtree", "urlopen", "connect", "startfile", "kill", "setattr",
    "__subclasses__", "__globals__", "__builtins__", "__code__",
}) | FLAGGED_MODULES
#: Callables whose string argument is a module that unpickling imports.
_IMPORTERS = frozenset({
    "cloudpickle.cloudpickle.subimport", "cloudpickle.cloudpickle.dynamic_subimport",
    "cloudpickle.cloudpickle_fast.subimport", "importlib.import_module",
    "builtins.__import__",
})
#: What rebuilds a code object: ``types.CodeType``, or cloudpickle's ``_builtin_type('CodeType')``.
_BUILTIN_TYPE = frozenset({"cloudpickle.cloudpickle._builtin_type",
                           "cloudpickle.cloudpickle_fast._builtin_type"})
_CODE_GLOBALS = frozenset({"types.CodeType", "builtins.code"})
#: Opcodes a model pickle made by cloudpickle never needs; their presence is flagged.
_UNEXPECTED = frozenset({"PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4"})
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
                         "BINSTRING", "SHORT_BINSTRING"})
_MEMO_PUT = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_GET = frozenset({"GET", "BINGET", "LONG_BINGET"})
#: Strings longer than this are not kept as known values (no module or name is this long).
MAX_STRING = 4096
#: Known strings kept in the memo at most, in total characters; past it the memo keeps opaque
#: values (a name resolved through one is then unresolvable, hence flagged: the safe direction).
MAX_MEMO_CHARS = 16 << 20
MAX_TUPLE = 4096
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}(\.[A-Za-z_][A-Za-z0-9_]{0,200}){0,20}")
_NAME_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_.<>]{0,400}")


@dataclass
class PickleScan:
    """What :func:`scan_pickle` found: ``imports`` (``module.name``, or ``module`` for a module
    imported by name), those ``flagged``, names used by ``code`` objects embedded in the pickle
    (and how many there are), ``problems`` (why the pickle is flagged besides its imports) and the
    ``verdict``."""

    imports: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    code_objects: int = 0
    code_names: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.flagged or self.problems:
            return FLAGGED
        return CODE if self.code_objects else CLEAN

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "imports": list(self.imports),
                "flagged": list(self.flagged), "code_objects": self.code_objects,
                "code_names": list(self.code_names), "problems": list(self.problems)}


class _Opaque:
    __slots__ = ()

    def __repr__(self) -> str:
        return "?"


OPAQUE: Any = _Opaque()
_MARK: Any = object()


@dataclass(frozen=True)
class _Global:
    name: str  # module.name


@dataclass(frozen=True)
class _Module:
    name: str


class _CodeType:
    """The value of ``_builtin_type('CodeType')`` (or ``types.CodeType``): calling it builds code."""


_CODE_TYPE: Any = _CodeType()


class _Malformed(Exception):
    pass


def flagged_import(name: str) -> bool:
    """Whether importing ``name`` (``module.attr`` or ``module``) is flagged."""
    top = name.split(".", 1)[0]
    return top in FLAGGED_MODULES or name in FLAGGED_GLOBALS


class _Reader:
    """Reads opcode arguments from a binary stream, skipping large byte strings unread."""

    def __init__(self, f: IO[bytes]):
        self.f = f
        try:
            self.seekable = bool(f.seekable())
        except (AttributeError, OSError):
            self.seekable = False

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise _Malformed("the pickle ends in the middle of an opcode")
        return data

    def skip(self, n: int) -> None:
        if self.seekable:
            here = self.f.tell()
            end = self.f.seek(0, 2)
            if here + n > end:
                raise _Malformed("the pickle ends in the middle of an opcode")
            self.f.seek(here + n)
            return
        while n > 0:
            chunk = self.f.read(min(n, 1 << 20))
            if not chunk:
                raise _Malformed("the pickle ends in the middle of an opcode")
            n -= len(chunk)

    def line(self) -> bytes:
        data = self.f.readline(MAX_STRING + 2)
        if not data.endswith(b"\n"):
            raise _Malformed("a text argument is not terminated or is too long")
        return data[:-1]

    def int_of(self, n: int, signed: bool = False) -> int:
        return int.from_bytes(self.read(n), "little", signed=signed)


def scan_pickle(f: IO[bytes]) -> PickleScan:
    """Scan the pickle at the current position of binary stream ``f`` (read up to its ``STOP``)."""
    result = PickleScan()
    imports: dict[str, None] = {}
    code_names: dict[str, None] = {}
    reader = _Reader(f)
    try:
        _run(reader, result, imports, code_names)
    except _Malformed as e:
        result.problems.append(f"not a valid pickle: {e}")
    except RecursionError:
        result.problems.append("not a valid pickle: nested too deeply")
    result.imports = sorted(imports)
    result.flagged = sorted({*(n for n in imports if flagged_import(n)),
                             *(f"code uses {n!r}" for n in code_names
                               if n in FLAGGED_CODE_NAMES)})
    result.code_names = sorted(code_names)
    return result


def _strings_in(value: Any, out: dict[str, None], depth: int = 0) -> None:
    """The identifiers among the strings of ``value`` (nested tuples): a code object's names,
    qualified names split at their dots. Other strings (docstrings, constants) are left out."""
    if isinstance(value, str):
        if _DOTTED.fullmatch(value):
            for part in value.split("."):
                out[part] = None
    elif isinstance(value, tuple) and depth < 8:
        for item in value:
            _strings_in(item, out, depth + 1)


def _run(r: _Reader, result: PickleScan, imports: dict[str, None],
         code_names: dict[str, None]) -> None:
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    memo_chars = 0

    def pop() -> Any:
        if not stack:
            raise _Malformed("stack underflow")
        return stack.pop()

    def pop_mark() -> list[Any]:
        items: list[Any] = []
        while True:
            v = pop()
            if v is _MARK:
                items.reverse()
                return items
            items.append(v)

    def record(name: str) -> _Global:
        if not _NAME_PART.fullmatch(name):
            result.problems.append(f"a global with an unusual name: {name[:80]!r}")
        imports[name] = None
        return _Global(name)

    def call(func: Any, args: Any) -> Any:
        if isinstance(func, _Global):
            if func.name in _IMPORTERS:
                first = args[0] if isinstance(args, tuple) and args else None
                if isinstance(first, str):
                    imports[first] = None
                    return _Module(first)
                result.problems.append(f"{func.name} called with an argument that is not a "
                                       f"plain string")
                return OPAQUE
            if func.name in _BUILTIN_TYPE:
                if args == ("CodeType",):
                    return _CODE_TYPE
                if not (isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], str)):
                    result.problems.append(f"{func.name} called with an unresolvable argument")
                return OPAQUE
            if func.name in _CODE_GLOBALS:
                func = _CODE_TYPE
        if func is _CODE_TYPE:
            result.code_objects += 1
            _strings_in(args, code_names)
        return OPAQUE

    code2op = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
    while True:
        code = r.f.read(1)
        if not code:
            raise _Malformed("the pickle ends without a STOP opcode")
        op = code2op.get(code)
        if op is None:
            raise _Malformed(f"unknown opcode {code!r}")
        name = op.name
        if name == "STOP":
            return
        if name in _UNEXPECTED:
            result.problems.append(f"opcode {name} (persistent ids and extension codes are not "
                                   f"used by model pickles)")
        arg = _argument(r, op)
        if name in _STRING_OPS:
            stack.append(arg if isinstance(arg, str) else OPAQUE)
        elif name == "GLOBAL":
            module, _, attr = arg.partition(" ")
            stack.append(record(f"{module}.{attr}"))
        elif name == "INST":
            module, _, attr = arg.partition(" ")
            record(f"{module}.{attr}")
            pop_mark()
            stack.append(OPAQUE)
        elif name == "STACK_GLOBAL":
            attr, module = pop(), pop()
            if isinstance(module, str) and isinstance(attr, str):
                stack.append(record(f"{module}.{attr}"))
            else:
                result.problems.append("a STACK_GLOBAL whose module or name is not a plain string "
                                       "(cannot be resolved without running the pickle)")
                stack.append(OPAQUE)
        elif name in _MEMO_PUT:
            if not stack:
                raise _Malformed("memo write with an empty stack")
            index = len(memo) if name == "MEMOIZE" else arg
            value = stack[-1]
            if isinstance(value, str):
                memo_chars += len(value)
                if memo_chars > MAX_MEMO_CHARS:
                    value = OPAQUE
            elif isinstance(value, tuple):
                value = OPAQUE if memo_chars > MAX_MEMO_CHARS else value
            memo[index] = value
        elif name in _MEMO_GET:
            if arg not in memo:
                raise _Malformed(f"memo read of an unset slot {arg}")
            stack.append(memo[arg])
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "TUPLE":
            items = pop_mark()
            stack.append(tuple(items) if len(items) <= MAX_TUPLE else OPAQUE)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = [pop() for _ in range(n)][::-1]
            if any(i is _MARK for i in items):
                raise _Malformed("a tuple across a mark")
            stack.append(tuple(items))
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "REDUCE":
            args, func = pop(), pop()
            stack.append(call(func, args))
        elif name in ("NEWOBJ", "NEWOBJ_EX"):
            if name == "NEWOBJ_EX":
                pop()
            args, cls = pop(), pop()
            stack.append(call(cls, args))
        elif name == "OBJ":
            items = pop_mark()
            if not items:
                raise _Malformed("OBJ without a class")
            stack.append(call(items[0], tuple(items[1:])))
        else:
            _generic(op, stack, pop, pop_mark)


def _generic(op: Any, stack: list[Any], pop: Any, pop_mark: Any) -> None:
    """Any other opcode: pop what it consumes (down to the mark if it takes one: what lies after
    a mark is always a slice of the stack) and push opaque values for what it produces."""
    before = op.stack_before
    if pickletools.markobject in before:
        pop_mark()
        before = before[:before.index(pickletools.markobject)]
    for _ in before:
        pop()
    for item in op.stack_after:
        stack.append(_MARK if item is pickletools.markobject else OPAQUE)


def _argument(r: _Reader, op: Any) -> Any:
    """Read (or skip) the argument of ``op``: strings come back decoded when short enough,
    integers as ints, everything else is skipped and comes back as None."""
    arg = op.arg
    if arg is None:
        return None
    name = op.name
    if name in ("GLOBAL", "INST"):
        module = r.line().decode("utf-8", "replace")
        attr = r.line().decode("utf-8", "replace")
        return f"{module} {attr}"
    if name in ("PUT", "GET"):
        text = r.line()
        try:
            return int(text)
        except ValueError:
            raise _Malformed(f"{name} with a bad index {text[:20]!r}") from None
    if name in ("BINPUT", "BINGET"):
        return r.int_of(1)
    if name in ("LONG_BINPUT", "LONG_BINGET"):
        return r.int_of(4)
    if name == "SHORT_BINUNICODE":
        return _text(r, r.int_of(1))
    if name == "BINUNICODE":
        return _text(r, r.int_of(4))
    if name == "BINUNICODE8":
        return _text(r, r.int_of(8))
    if name == "SHORT_BINSTRING":
        return _text(r, r.int_of(1), "latin-1")
    if name == "BINSTRING":
        n = r.int_of(4, signed=True)
        if n < 0:
            raise _Malformed("BINSTRING with a negative length")
        return _text(r, n, "latin-1")
    if name in ("UNICODE", "STRING"):
        line = r.line()
        if name == "STRING":
            return line.strip(b"'\"").decode("latin-1")
        return line.decode("raw_unicode_escape", "replace")
    n = arg.n
    if n >= 0:
        r.skip(n)
        return None
    if n == pickletools.UP_TO_NEWLINE:
        r.line()
        return None
    width = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
             pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}.get(n)
    if width is None:
        raise _Malformed(f"opcode {name} with an argument this scanner does not know")
    length = r.int_of(width, signed=n == pickletools.TAKEN_FROM_ARGUMENT4)
    if length < 0:
        raise _Malformed(f"{name} with a negative length")
    r.skip(length)
    return None


def _text(r: _Reader, n: int, encoding: str = "utf-8") -> str | None:
    if n > MAX_STRING:
        r.skip(n)
        return None
    try:
        return r.read(n).decode(encoding)
    except UnicodeDecodeError:
        return None
