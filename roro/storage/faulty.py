"""FaultyBackend: a wrapper that misbehaves on demand, deterministically, for reliability tests.

Kept apart from :mod:`roro.storage.wrappers` so that nothing in production imports it.
"""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import StoreError
from .base import Backend
from .wrappers import WrappingBackend

__all__ = ["READS", "WRITES", "Fault", "FaultyBackend", "Injected"]


READS = ("get", "get_into", "open", "download")
WRITES = ("put", "put_file", "put_if_absent")
FAIL, SLOW, FLIP, TEAR = "fail", "slow", "flip", "tear"
KeyFilter = Callable[[str], bool] | None
ErrorFactory = Callable[[str, str], BaseException] | None


@dataclass
class Fault:
    """One rule of a :class:`FaultyBackend`: which calls it hits and what it does to them.

    The calls of ``ops`` whose key ``where`` accepts (every key if None) are *matching*; the
    first ``after`` matching calls pass, then each fires with ``probability`` (drawn from the
    backend's seeded random generator) until it has fired ``times`` times (None: no limit).
    """

    kind: str                  # FAIL, SLOW, FLIP or TEAR
    ops: frozenset[str]
    where: Callable[[str], bool] | None = None
    after: int = 0
    times: int | None = 1
    probability: float = 1.0
    delay: float = 0.0         # SLOW: seconds
    applied: bool = False      # FAIL: carry the call out, then raise (the answer was lost)
    error: Callable[[str, str], BaseException] | None = None  # (op, key) -> what FAIL/TEAR raise
    seen: int = 0              # matching calls so far
    fired: int = 0             # calls this rule acted on

    def raise_for(self, op: str, key: str) -> BaseException:
        if self.error is not None:
            return self.error(op, key)
        return StoreError(f"injected {self.kind} fault on {op} {key!r}")


Faults = list[Fault]


@dataclass(frozen=True)
class Injected:
    """A fault that fired: what the backend did, to which call (``FaultyBackend.log``)."""

    kind: str
    op: str
    key: str
    detail: str = ""


class FaultyBackend(WrappingBackend):
    """A backend that misbehaves on demand, deterministically (for reliability tests, as restic's
    checker is tested against a bit-flipping backend).

    >>> faulty = FaultyBackend(open_backend("memory://x"), seed=7)
    >>> faulty.fail("put_file", after=3)          # the 4th put_file raises StoreError
    >>> faulty.slow("get", delay=0.2, where=lambda key: key.startswith("refs/"), times=None)
    >>> faulty.flip_bits(*READS, probability=0.1, times=None)  # 10 % of reads see one bit flipped
    >>> faulty.tear("put_if_absent")              # half-written, then an error
    >>> faulty.log                                # every fault that fired, in order

    Reads: ``slow`` sleeps before the call; ``flip_bits`` hands out the bytes with one bit
    flipped (the stored bytes are intact). Writes: ``fail`` raises before writing (or, with
    ``applied=True``, after writing: a lost answer); ``tear`` stores a strict prefix of the
    bytes and raises, as a non-atomic store would after a crash. Which bit flips and where a
    write is torn come from the generator seeded with ``seed``.
    """

    def __init__(self, inner: Backend, *, seed: int = 0):
        super().__init__(inner)
        self.faults: list[Fault] = []
        self.log: list[Injected] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    # -- the rules -------------------------------------------------------------------------------
    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def fail(self, *ops: str, applied: bool = False, where: KeyFilter = None, after: int = 0,
             times: int | None = 1, probability: float = 1.0, error: ErrorFactory = None) -> Fault:
        """Raise ``error(op, key)`` (default a StoreError) on the chosen calls (default: every
        read and write), before the call, or with ``applied`` after it (a lost answer)."""
        return self.inject(Fault(FAIL, _ops(ops, READS + WRITES), where, after, times,
                                 probability, applied=applied, error=error))

    def slow(self, *ops: str, delay: float, where: KeyFilter = None, after: int = 0,
             times: int | None = 1, probability: float = 1.0) -> Fault:
        """Sleep ``delay`` seconds before the chosen calls (default: every read and write)."""
        return self.inject(Fault(SLOW, _ops(ops, READS + WRITES), where, after, times,
                                 probability, delay=delay))

    def flip_bits(self, *ops: str, where: KeyFilter = None, after: int = 0,
                  times: int | None = 1, probability: float = 1.0) -> Fault:
        """Reads (``get``, ``get_into``, ``open``, ``download``) see one bit of the bytes
        flipped."""
        return self.inject(Fault(FLIP, _ops(ops, READS, READS), where, after, times, probability))

    def tear(self, *ops: str, where: KeyFilter = None, after: int = 0, times: int | None = 1,
             probability: float = 1.0, error: ErrorFactory = None) -> Fault:
        """Writes (``put``, ``put_file``, ``put_if_absent``) store a strict prefix, then raise."""
        return self.inject(Fault(TEAR, _ops(ops, WRITES, WRITES), where, after, times,
                                 probability, error=error))

    def clear(self) -> None:
        """Remove every rule (the log stays)."""
        with self._lock:
            self.faults.clear()

    def _firing(self, op: str, key: str) -> Faults:
        """The rules that act on this call, their counters advanced."""
        out = []
        with self._lock:
            for f in self.faults:
                if op not in f.ops or (f.where is not None and not f.where(key)):
                    continue
                f.seen += 1
                if f.seen <= f.after or (f.times is not None and f.fired >= f.times):
                    continue
                if f.probability < 1.0 and self._random.random() >= f.probability:
                    continue
                f.fired += 1
                out.append(f)
        return out

    def _note(self, kind: str, op: str, key: str, detail: str = "") -> None:
        with self._lock:
            self.log.append(Injected(kind, op, key, detail))

    def _before(self, op: str, key: str) -> Faults:
        """Apply the faults that act before a call (slow, fail); return those that act on its
        result or its bytes (flip, tear, fail after the call)."""
        later = []
        for f in self._firing(op, key):
            if f.kind == SLOW:
                self._note(SLOW, op, key, f"{f.delay}s")
                time.sleep(f.delay)
            elif f.kind == FAIL and not f.applied:
                self._note(FAIL, op, key)
                raise f.raise_for(op, key)
            else:
                later.append(f)
        return later

    def _after(self, faults: Faults, op: str, key: str) -> None:
        for f in faults:
            if f.kind == FAIL:
                self._note(FAIL, op, key, "after the call")
                raise f.raise_for(op, key)

    def _flipped(self, faults: Faults, op: str, key: str, data: bytes) -> bytes:
        if not data or not any(f.kind == FLIP for f in faults):
            return data
        with self._lock:
            bit = self._random.randrange(len(data) * 8)
        self._note(FLIP, op, key, f"bit {bit}")
        out = bytearray(data)
        out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)

    def _torn(self, faults: Faults, op: str, key: str, data: bytes) -> bytes | None:
        """The prefix to store instead of ``data`` if a tear fault fired, else None."""
        if not any(f.kind == TEAR for f in faults):
            return None
        with self._lock:
            cut = self._random.randrange(len(data)) if data else 0
        self._note(TEAR, op, key, f"{cut} of {len(data)} bytes")
        return data[:cut]

    def _tear_error(self, faults: Faults, op: str, key: str) -> BaseException:
        return next(f for f in faults if f.kind == TEAR).raise_for(op, key)

    # -- reads -----------------------------------------------------------------------------------
    def get(self, key: str, max_size: int | None = None) -> bytes:
        later = self._before("get", key)
        data = super().get(key, max_size)
        self._after(later, "get", key)
        return self._flipped(later, "get", key, data)

    def get_into(self, key: str, buffer: memoryview) -> int:
        later = self._before("get_into", key)
        n = super().get_into(key, buffer)
        self._after(later, "get_into", key)
        flipped = self._flipped(later, "get_into", key, bytes(buffer[:n]))
        buffer[:n] = flipped
        return n

    def open(self, key: str) -> BinaryIO:
        later = self._before("open", key)
        if any(f.kind == FLIP for f in later):
            with super().open(key) as f:
                data = f.read()
            self._after(later, "open", key)
            return io.BytesIO(self._flipped(later, "open", key, data))
        stream = super().open(key)
        try:
            self._after(later, "open", key)
        except BaseException:
            stream.close()
            raise
        return stream

    def download(self, key: str, path: str) -> None:
        later = self._before("download", key)
        super().download(key, path)
        self._after(later, "download", key)
        if any(f.kind == FLIP for f in later):
            with open(path, "rb") as src:
                data = src.read()
            with open(path, "wb") as dst:
                dst.write(self._flipped(later, "download", key, data))

    # -- writes ----------------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        later = self._before("put", key)
        torn = self._torn(later, "put", key, data)
        if torn is not None:
            super().put(key, torn)
            raise self._tear_error(later, "put", key)
        super().put(key, data)
        self._after(later, "put", key)

    def put_file(self, key: str, path: str) -> None:
        later = self._before("put_file", key)
        if any(f.kind == TEAR for f in later):
            with open(path, "rb") as f:
                torn = self._torn(later, "put_file", key, f.read())
            assert torn is not None
            super().put(key, torn)
            raise self._tear_error(later, "put_file", key)
        super().put_file(key, path)
        self._after(later, "put_file", key)

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        return self.put_if_absent(key, data)  # its faults apply to object writes too

    def put_file_if_absent(self, key: str, path: str) -> bool:
        """As the contract's default: look first, then :meth:`put_file` (so that its faults
        apply to object writes too)."""
        if self.exists(key):
            return False
        self.put_file(key, path)
        return True

    def put_if_absent(self, key: str, data: bytes) -> bool:
        later = self._before("put_if_absent", key)
        torn = self._torn(later, "put_if_absent", key, data)
        if torn is not None:
            super().put_if_absent(key, torn)
            raise self._tear_error(later, "put_if_absent", key)
        created = super().put_if_absent(key, data)
        self._after(later, "put_if_absent", key)
        return created


def _ops(given: Iterable[str], default: tuple[str, ...],
         allowed: tuple[str, ...] = READS + WRITES) -> frozenset[str]:
    ops = frozenset(given) or frozenset(default)
    unknown = sorted(ops - set(allowed))
    if unknown:
        raise ValueError(f"cannot inject this fault into {', '.join(unknown)}: "
                         f"choose among {', '.join(allowed)}")
    return ops

