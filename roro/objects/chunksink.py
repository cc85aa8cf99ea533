"""Cut while pickling (issue 17, the save half): a binary sink that a format's ``dump`` writes
into, which cuts the bytes into FastCDC chunks as they arrive and hashes and stores each chunk on
a bounded pool *while the pickler is still running*; the whole blob's sha256 (the manifest's
``digest``) is computed in the same pass, on a thread of its own. Nothing is read back.

- The first ``threshold`` bytes (16 MiB) are held in memory: a blob that turns out smaller is
  stored as one object (:meth:`ChunkSink.finish` returns ``chunks=None``), as before.
- Small writes (a pickle's 64 KiB frames) are copied into a *window* (32 MiB); a full window is
  cut, its final chunks stored, and its last, unfinished chunk (at most one max chunk) starts the
  next window.
- A big write (a numpy array's buffer, pickle protocol 5, handed over without a copy) is cut in
  place: its chunks are views into the caller's memory, stored straight from there, and the write
  returns only once every chunk and hash update that reads that memory has finished.
- Chunk stores in flight are bounded (:data:`IN_FLIGHT` bytes of windows, and twice the pool's
  threads for views), so a save adds at most ~2 windows + one chunk to the process, whatever the
  model's size.

The gc rule (docs/trust.md): a chunk this save created is young; a chunk found present is relied
on through the :class:`~roro.objects.keep.ReuseGuard`. Its bytes are gone once stored, so if the
guard ever needs to write one again (a concurrent gc collected an old chunk before the keep marker
protected it, or the save outlived its deadline) the save fails cleanly with
:class:`ChunkLostError` and publishes nothing, unless the sink keeps a spool (``spool``): then,
once the blob turns out chunked, every byte is also written (sequentially, never read back, never
fsynced) to a spool file, the source a format reads its summary from and the guard writes a chunk
again from (docs/architecture.md, "Chunks"). A blob that stays small needs none: the caller
spools the held bytes itself.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from ..digests import digest_bytes, digest_of_hasher, new_hasher
from ..errors import StoreError
from ..localfs import quiet_unlink, write_failure, write_pieces
from ..storage.layout import object_key
from .chunks import WRITE_THREADS_REMOTE, ChunkIndex, ChunkParams, store_chunk

if TYPE_CHECKING:
    from ..storage import KeyInfo
    from .keep import ReuseGuard

MiB = 1 << 20
#: Bytes copied from small writes before they are cut (two max chunks: at least one max chunk
#: of final chunks comes out of each window).
WINDOW = 32 * MiB
#: Bytes of windows whose chunks are still being hashed or stored, at most (the window being
#: filled comes on top).
IN_FLIGHT = 32 * MiB
#: A write at least this big is cut in place (no copy into a window).
IN_PLACE = 4 * MiB
#: Threads that hash chunks (CPU work: no more than the cores the benchmarks run on) ...
HASH_THREADS = 2
#: ... and threads that store them, each waiting for its chunk's hash first. A folder store's
#: time there is mostly fsync (the file, then its directory, RELIABILITY.md rule 2): waits that
#: use no CPU, so more of them than cores keep the cores busy while they wait (issue 17, fifth
#: session: bench/README.md). S3 ingests at its own pace (4; 8 was no faster and cost 16 MiB).
STORE_THREADS_LOCAL = 6
STORE_THREADS_REMOTE = WRITE_THREADS_REMOTE


class ChunkLostError(StoreError):
    """A chunk this save relies on vanished before the version was published, and its bytes
    were not kept: nothing was published; saving again writes it."""


Stored = tuple[str, bool, "KeyInfo | None"]


class ChunkSink:
    """The writer a format's ``dump`` writes into (``write``, ``writable``, ``flush``); then
    :meth:`finish` (or :meth:`abort` on an error: pending stores are cancelled, running ones
    waited for, no thread is left). Every chunk goes through ``guard`` (the gc rule)."""

    def __init__(self, guard: ReuseGuard, params: ChunkParams, *, spool: bool = False,
                 spool_dir: str | None = None, on_chunked: Callable[[], None] | None = None):
        import pyfastcdc  # only by a save: `import roro` stays cheap
        self._guard, self._params = guard, params
        self._objects = guard.objects
        self._on_chunked = on_chunked
        self._cdc = pyfastcdc.FastCDC(params.avg, min_size=params.min, max_size=params.max)
        self._in_place = max(IN_PLACE, params.max)
        self.size = 0
        self.digest = ""
        self._hasher = new_hasher()
        self._small: bytearray | None = bytearray()  # the first `threshold` bytes, until chunking
        self._window = bytearray()
        self._chunks: list[tuple[str, int]] = []
        self._offset = 0  # bytes of the blob handed to the pool as chunks so far
        # (offset, length, store future, whole-blob hash future, bytes of window memory it
        # frees, chunk hash future)
        self._pending: deque[tuple[int, int, Future[Stored], Future[Any], int, Future[str]]] = \
            deque()
        self._window_bytes = 0
        self._threads = 0
        self._digests: ThreadPoolExecutor | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._hash: ThreadPoolExecutor | None = None
        self._spool_dir = (spool_dir or tempfile.gettempdir()) if spool else None
        self._spool: Any = None  # opened when the blob turns out chunked (_start)
        self.spool_path: str | None = None

    # -- the file interface ----------------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def write(self, data: Any) -> int:
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
        n = view.nbytes
        if self._small is not None:
            if n < self._params.threshold - len(self._small):
                self.size += n
                self._small += view
                return n
            self._start()  # the blob reaches the threshold: it is chunked
        self._write_spool(view, n)
        self.size += n
        self._feed(view)
        return n

    def _write_spool(self, view: memoryview, more: int) -> None:
        """Append ``view`` to the spool, if one is kept (``more``: the bytes of it that
        :attr:`size` does not count yet, for the message of a full disk)."""
        if self._spool is not None:
            try:
                write_pieces(self._spool, view)
            except OSError as e:
                self._raise_write_failure(e, self.spool_path or "", more)

    # -- cutting ---------------------------------------------------------------------------------
    def _start(self) -> None:
        """The blob is chunked: what was held becomes the first window."""
        assert self._small is not None
        if self._on_chunked is not None:
            self._on_chunked()  # e.g. record the store feature, before any chunk is written
        if self._spool_dir is not None:  # the spool starts with the bytes held so far
            try:
                fd, self.spool_path = tempfile.mkstemp(dir=self._spool_dir, prefix="obj-",
                                                       suffix=".tmp")
            except OSError as e:
                self._raise_write_failure(e, self._spool_dir)
            self._spool = os.fdopen(fd, "wb")
            self._write_spool(memoryview(self._small), 0)
        self._window, self._small = self._small, None
        self._guard.start()  # before the first chunk is looked at: the deadline counts from here
        self._threads = STORE_THREADS_REMOTE if self._objects.backend.remote \
            else STORE_THREADS_LOCAL
        self._digests = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="roro-chunks-hash")
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="roro-chunks")
        self._hash = ThreadPoolExecutor(1, thread_name_prefix="roro-hash")

    def _feed(self, view: memoryview) -> None:
        if len(view) >= self._in_place:
            self._cut_in_place(view)
            return
        size = max(WINDOW, 2 * self._params.max)
        at = 0
        while at < len(view):
            take = min(len(view) - at, size - len(self._window))
            self._window += view[at:at + take]
            at += take
            if len(self._window) >= size:
                self._cut_window(final=False)

    def _final_cuts(self, buf: memoryview, final: bool) -> tuple[list[tuple[int, int]], int]:
        """The chunks of ``buf`` that are cut exactly where a cut of the whole blob would cut
        them, and the offset where the rest (the unfinished chunk, at most one max chunk)
        starts. FastCDC scans a chunk's bytes in order with masks that more bytes after the
        buffer's end never change before the point where it cuts, so every chunk that ends
        before the end of ``buf`` (a cut point, or one max chunk) is final; the one that ends
        at its end is final only at the end of the blob (``final``)."""
        cuts, at = [], 0
        for c in self._cdc.cut_buf(buf):
            if not final and c.offset + c.length == len(buf):
                break
            cuts.append((c.offset, c.length))
            at = c.offset + c.length
        return cuts, at

    def _cut_window(self, final: bool) -> None:
        """Cut the window; store its final chunks (all of them if ``final``); the rest starts
        a fresh window (the old one lives on in the chunks being stored)."""
        window, self._window = self._window, bytearray()
        whole = memoryview(window)
        cuts, rest = self._final_cuts(whole, final)
        if rest < len(window):
            self._window = bytearray(whole[rest:])
        for i, (at, length) in enumerate(cuts):
            # The window's memory is counted with its last chunk: freed when that one settles.
            self._submit(whole[at:at + length], len(window) if i == len(cuts) - 1 else 0)

    def _cut_in_place(self, view: memoryview) -> None:
        """Cut a big write (at least one max chunk) where it lies; every store and hash that
        reads its memory has finished before this returns (the caller may reuse that memory)."""
        start = 0
        if len(self._window) >= self._params.max:
            self._cut_window(final=False)  # leaves less than one max chunk
        if self._window:
            # A chunk that starts in the window ends within one max chunk of its start, so
            # before the end of a copy of the window and the write's first max chunk: final.
            self._settle_all()  # the windows in flight first: at most ~2 max chunks held
            kept = len(self._window)
            window, self._window = self._window + view[:self._params.max], bytearray()
            whole = memoryview(window)
            for c in self._cdc.cut_buf(whole):  # every chunk starting in the window is final
                if c.offset >= kept:
                    break
                self._submit(whole[c.offset:c.offset + c.length], 0)
                start = c.offset + c.length - kept
            self._window_bytes += len(window)  # freed when every chunk has settled (below)
        rest = view[start:]
        held: tuple[int, int] | None = None  # the latest final cut: stored once the next is cut
        tail = 0
        for c in self._cdc.cut_buf(rest):  # lazily: chunk 1 is stored while chunk 2 is cut
            if c.offset + c.length == len(rest):
                break  # unfinished (see _final_cuts): it goes on with the next write
            if held is not None:
                self._submit(rest[held[0]:held[0] + held[1]], 0)
            held = (c.offset, c.length)
            tail = c.offset + c.length
        if held is not None:
            self._submit(rest[held[0]:held[0] + held[1]], 0)
        self._window = bytearray(rest[tail:])
        self._settle_all()  # nobody reads the caller's memory once this returns
        self._window_bytes = 0

    def _submit(self, chunk: memoryview, frees: int) -> None:
        assert self._pool is not None and self._hash is not None and self._digests is not None
        while self._pending and (self._window_bytes > IN_FLIGHT
                                 or len(self._pending) >= 2 * self._threads):
            self._settle()
        hashed = self._hash.submit(self._hasher.update, chunk)
        digest = self._digests.submit(digest_bytes, chunk)
        stored = self._pool.submit(self._store, digest, chunk)
        self._pending.append((self._offset, len(chunk), stored, hashed, frees, digest))
        self._window_bytes += frees
        self._offset += len(chunk)

    def _store(self, hashed: Future[str], data: memoryview) -> Stored:
        """Store one chunk once its hash is known (on the pool, :func:`store_chunk`);
        ``(digest, created, info)``."""
        digest = hashed.result()
        return (digest, *store_chunk(self._objects, digest, data, self._guard.url))

    def _settle(self) -> None:
        offset, length, stored, hashed, frees, _ = self._pending.popleft()
        hashed.result()
        digest, created, info = stored.result()
        self._window_bytes -= frees
        again = self._again(digest, length, offset)
        if created:
            self._guard.written(digest, length, again)
        else:
            self._guard.rely_on(digest, length, info, again)
        self._chunks.append((digest, length))

    def _settle_all(self) -> None:
        while self._pending:
            self._settle()

    def _again(self, digest: str, length: int, offset: int) -> Callable[[], None]:
        """How the guard writes a chunk again: from the spool, or (no spool) it cannot: the save
        fails cleanly, nothing published."""
        path = self.spool_path
        backend = self._objects.backend
        key = object_key(digest)
        url = self._guard.url

        def from_spool() -> None:
            assert path is not None
            with open(path, "rb") as f:
                data = os.pread(f.fileno(), length, offset)
            if len(data) != length or digest_bytes(data) != digest:
                raise ChunkLostError(f"chunk {digest} vanished from store {url} before the "
                                     f"version was published, and its spool no longer holds it; "
                                     f"nothing was published: save again")
            backend.delete(key)  # missing, or garbage of the wrong size: the guard's verdict
            backend.put(key, data)

        def lost() -> None:
            raise ChunkLostError(
                f"chunk {digest} vanished from store {url} before the version was published "
                f"(a gc collected it while this save ran, or the save outlived its "
                f"deadline); nothing was published: save again (it writes the chunk)")

        return lost if path is None else from_spool

    # -- the end ---------------------------------------------------------------------------------
    @property
    def chunked(self) -> bool:
        return self._small is None

    def small(self) -> memoryview:
        """The whole blob, when it turned out smaller than the threshold (held in memory)."""
        assert self._small is not None
        return memoryview(self._small)

    def finish(self) -> str:
        """Cut and store what is left, wait for every chunk: the whole blob's digest, and then
        :meth:`index`. A blob that turned out small (not :attr:`chunked`) is only held: the
        caller stores :meth:`small` as one object (its digest is "")."""
        if self._small is not None and self.size >= self._params.threshold:
            self._start()  # exactly at the threshold (or 0 bytes with a threshold of 0)
        self._close_spool()
        if self._small is not None:
            return ""
        if self._window:
            self._cut_window(final=True)
        self._settle_all()
        self.digest = digest_of_hasher(self._hasher)
        self._shutdown()
        return self.digest

    def index(self) -> ChunkIndex:
        return ChunkIndex(list(self._chunks), self.size, self._params.chunker())

    def abort(self) -> None:
        """After an error (the pickler raised, a disk filled): cancel what has not started,
        wait for what has, stop the threads, remove the spool. Chunks already stored are
        orphans that gc removes."""
        for _, _, stored, hashed, _, digest in self._pending:
            stored.cancel()
            hashed.cancel()
            digest.cancel()
        wait([f for p in self._pending for f in (p[2], p[3], p[5])])
        self._pending.clear()
        self._shutdown()
        self._window = bytearray()
        self._small = None if self._small is None else bytearray()
        try:
            self._close_spool()
        except OSError:
            pass
        self.discard()

    def discard(self) -> None:
        if self.spool_path is not None:
            quiet_unlink(self.spool_path)

    def _shutdown(self) -> None:
        for pool in (self._digests, self._pool, self._hash):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _close_spool(self) -> None:
        if self._spool is not None and not self._spool.closed:
            try:
                self._spool.close()
            except OSError as e:
                self._raise_write_failure(e, self.spool_path or "")

    def _raise_write_failure(self, e: OSError, path: str, more: int = 0) -> None:
        failure = write_failure(e, path, "the spool directory", self.size + more, at_least=True)
        if failure is None:
            raise e
        raise failure from e
