"""Copying objects between two object stores: only those the destination lacks, each verified.

Used by sync (whole histories) and by copying one image (``roro.writer.copy_image``). An object
is streamed from the source into a hashing spool and put only if it hashes to its name, or copied
server-side (when the two backends can) and then re-hashed in the destination.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import BinaryIO, cast

from ..digests import digest_stream
from ..errors import IntegrityError, NotFoundError
from ..storage import KeyInfo, KeyNotFoundError
from ..storage.layout import object_key
from .store import ObjectStore

#: How often (seconds) :meth:`ObjectTransfer.copy_all` reports progress while objects stream.
TICK = 0.2


class _CountingReader:
    """A binary stream that reports how many bytes were read from it."""

    def __init__(self, inner: BinaryIO, count: Callable[[int], None]):
        self.inner, self.count = inner, count

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.count(len(data))
        return data


def corrupted_in(digest: str, actual: str, where: str) -> IntegrityError:
    return IntegrityError(f"object {digest} in {where} is corrupted: its bytes hash to {actual}; "
                          f"nothing of this repository's history was written to the destination; "
                          f"run 'roro fsck --read-data' on {where}",
                          digest=digest, expected=digest, actual=actual)


def missing_in(digest: str, where: str) -> NotFoundError:
    return NotFoundError(f"object {digest} is named by the history in {where} but missing from "
                         f"it; nothing of this repository's history was written to the "
                         f"destination; run 'roro fsck' on {where}", digest=digest)


class ObjectTransfer:
    """Copies objects from ``src`` to ``dst`` on ``pool``, remembering what ``dst`` holds."""

    def __init__(self, src: ObjectStore, dst: ObjectStore, pool: ThreadPoolExecutor):
        self.src, self.dst, self.pool = src, dst, pool
        self.server_side = False  # set once DST copied an object from SRC server-side
        # Known to be in DST during this run, with what was known of it then (for an object
        # this run copied: its size and the time just before the copy, a lower bound of its
        # modification time). The gc rule judges a reused object by that time.
        self._present: dict[str, KeyInfo] = {}
        self._lock = threading.Lock()
        self.streamed = 0  # bytes moved so far (objects in flight included)

    def classify(self, digests: Iterable[str]
                 ) -> tuple[list[str], dict[str, KeyInfo], dict[str, KeyInfo]]:
        """``(missing, found, known)``: absent from DST; present in DST (asked now, with what a
        stat said); known to be present from earlier in this run (not asked again)."""
        todo: list[str] = []
        known: dict[str, KeyInfo] = {}
        for d in dict.fromkeys(digests):
            with self._lock:
                info = self._present.get(d)
            if info is None:
                todo.append(d)
            else:
                known[d] = info
        infos = list(self.pool.map(self.dst.info, todo))
        missing = [d for d, i in zip(todo, infos, strict=True) if i is None]
        found = {d: i for d, i in zip(todo, infos, strict=True) if i is not None}
        with self._lock:
            self._present.update(found)
        return missing, found, known

    def assume_present(self, digests: Iterable[str]) -> None:
        """Dry run: count these as copied, so later repositories see them as already there."""
        now = time.time()
        with self._lock:
            for d in digests:
                self._present[d] = KeyInfo(object_key(d), 0, now)

    def _mark(self, digest: str, size: int, since: float) -> None:
        with self._lock:
            self._present[digest] = KeyInfo(object_key(digest), size, since)

    def copy(self, digest: str) -> int:
        """Copy one object DST lacks; returns its size. IntegrityError if it does not hash to its
        name (nothing is left under that name in DST), NotFoundError if SRC lacks it."""
        since = time.time()
        size = self._copy_server_side(digest)
        if size is None:
            size = self._copy_streaming(digest)
        self._mark(digest, size, since)
        return size

    def put_verified_bytes(self, digest: str, data: bytes) -> None:
        """Put bytes this run already read and verified (manifests) without reading them again."""
        since = time.time()
        self.dst.backend.put(object_key(digest), data)
        self._count(len(data))
        self._mark(digest, len(data), since)

    def _count(self, n: int) -> None:
        with self._lock:
            self.streamed += n

    def _copy_streaming(self, digest: str) -> int:
        key = object_key(digest)
        try:
            stream = self.src.backend.open(key)
        except KeyNotFoundError:
            raise missing_in(digest, self.src.backend.url) from None
        # The spool hashes while it writes; the file put is exactly the bytes that were hashed.
        with contextlib.closing(stream):
            spooled = self.dst.spool_stream(cast(BinaryIO, _CountingReader(stream, self._count)))
        try:
            if spooled.digest != digest:
                raise corrupted_in(digest, spooled.digest, self.src.backend.url)
            self.dst.backend.put_file(key, spooled.path)
        finally:
            spooled.discard()
        return spooled.size

    def _copy_server_side(self, digest: str) -> int | None:
        key = object_key(digest)
        try:
            if not self.dst.backend.copy_from(self.src.backend, key):
                return None  # not possible between these two stores: stream instead
        except KeyNotFoundError:
            raise missing_in(digest, self.src.backend.url) from None
        self.server_side = True
        # Never trust a server-side copy: re-hash what DST now holds under that name.
        try:
            with contextlib.closing(self.dst.backend.open(key)) as f:
                actual, size = digest_stream(f)
        except KeyNotFoundError:
            raise missing_in(digest, self.src.backend.url) from None
        if actual != digest:
            self.dst.backend.delete(key)
            raise corrupted_in(digest, actual, self.src.backend.url)
        self._count(size)
        return size

    def copy_all(self, digests: list[str], on_done: Callable[[int], None],
                 on_tick: Callable[[], None] | None = None) -> None:
        """Copy in parallel; ``on_done(size)`` after each (in this thread). On the first error the
        copies not yet started are cancelled, the running ones finish, and the error is raised.
        ``on_tick()`` is called (in this thread) every :data:`TICK` seconds meanwhile: progress
        reports read :attr:`streamed`, the bytes moved so far, partial objects included."""
        self._run_all([(self.copy, d) for d in digests], on_done, on_tick)

    def put_all_verified(self, items: dict[str, bytes], on_done: Callable[[int], None]) -> None:
        """:meth:`put_verified_bytes` for many objects, in parallel, as :meth:`copy_all`."""
        def put(digest: str) -> int:
            self.put_verified_bytes(digest, items[digest])
            return len(items[digest])

        self._run_all([(put, d) for d in items], on_done)

    def _run_all(self, calls: list[tuple[Callable[[str], int], str]],
                 on_done: Callable[[int], None],
                 on_tick: Callable[[], None] | None = None) -> None:
        futures: list[Future[int]] = [self.pool.submit(fn, d) for fn, d in calls]
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=TICK if on_tick else None,
                                         return_when=FIRST_COMPLETED)
                for f in finished:
                    on_done(f.result())
                if on_tick is not None:
                    on_tick()
        except BaseException:
            for f in futures:
                f.cancel()
            wait(futures)
            raise
