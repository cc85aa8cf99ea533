"""Chunked blobs (issue 17, DESIGN §9): a big blob stored as content-defined chunks, each its own
sha256 object, listed by a *chunk index* object that the manifest names.

The chunk index is canonical JSON::

    {"chunker": {"algo": "fastcdc2020", "avg": 4194304, "min": 1048576, "max": 16777216},
     "chunks": [["sha256:…", 5123456], …],
     "size": 536871068, "type": "roro.chunk-index", "v": 1}

Offsets are the prefix sums of the sizes. A manifest's blob entry (the model, or an attachment)
then has ``chunks: {"digest": <index digest>, "size": <index bytes>}`` beside ``digest`` and
``size``, which stay the sha256 and the length of the whole blob: a download hashes to
``digest``, but no object of that name is stored. A store that holds one records the format
feature ``chunked-blobs`` first, so an older roro refuses the store instead of calling the
object behind ``digest`` missing.

:class:`ChunkedReader` is the verified streaming reader: every chunk is read whole, hashed, and
only then are its bytes handed out (to the unpickler, or a caller of ``open_model``), while the
next chunks are fetched and hashed on a small pool (bounded read-ahead).
"""

from __future__ import annotations

import io
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..digests import digest_bytes, parse_digest
from ..errors import ConfigError, IntegrityError, NotFoundError, RoroError, StoreError
from ..storage import KeyNotFoundError, SizedReader, TooLargeError
from ..storage.layout import object_key
from .canonical import canonical_json, loads

if TYPE_CHECKING:
    from ..storage import KeyInfo
    from .keep import ReuseGuard
    from .store import ObjectStore

INDEX_TYPE = "roro.chunk-index"
INDEX_VERSION = 1
ALGO = "fastcdc2020"
#: The store format feature a chunked blob needs (DESIGN §14).
CHUNKED_FEATURE = "chunked-blobs"
MiB = 1 << 20
#: The largest chunk index a reader reads (a 10 GiB blob's is ~176 KB; a forged manifest may
#: name a 1 GiB object as its index).
MAX_INDEX_SIZE = 64 * MiB
#: The largest chunk a reader accepts whatever an index claims (pyfastcdc's own maximum).
MAX_CHUNK = 16 * MiB
#: ``RORO_CHUNKS=threshold,min,avg,max`` (bytes): a test-only setting, to chunk small blobs.
CHUNKS_ENV = "RORO_CHUNKS"


@dataclass(frozen=True)
class ChunkParams:
    """When a blob is chunked (``threshold`` bytes and up) and how (FastCDC 2020, NC 1, seed 0)."""

    threshold: int = 16 * MiB
    min: int = 1 * MiB
    avg: int = 4 * MiB
    max: int = 16 * MiB

    def chunker(self) -> dict[str, Any]:
        return {"algo": ALGO, "avg": self.avg, "min": self.min, "max": self.max}


def chunk_params() -> ChunkParams:
    """The parameters in force: the measured defaults (README of issue 17's research: avg 4 MiB,
    min 1 MiB, max 16 MiB, blobs of 16 MiB and up), or ``$RORO_CHUNKS`` (tests)."""
    raw = os.environ.get(CHUNKS_ENV)
    if not raw:
        return ChunkParams()
    try:
        threshold, low, avg, high = (int(x) for x in raw.split(","))
    except ValueError:
        raise ConfigError(f"{CHUNKS_ENV}={raw!r}: expected threshold,min,avg,max in bytes") \
            from None
    if not (64 <= low <= avg <= high <= MAX_CHUNK and 256 <= avg and 1024 <= high
            and threshold >= 0):
        raise ConfigError(f"{CHUNKS_ENV}={raw!r}: need 64 <= min <= avg <= max <= 16 MiB, "
                          f"avg >= 256, max >= 1024")
    return ChunkParams(threshold, low, avg, high)


# -- the chunk index -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChunkIndex:
    """A parsed chunk index: ``chunks`` = ``[(digest, size), …]`` in order, ``size`` their sum."""

    chunks: list[tuple[str, int]]
    size: int
    chunker: dict[str, Any]

    def data(self) -> bytes:
        return canonical_json({"chunker": self.chunker,
                               "chunks": [[d, n] for d, n in self.chunks],
                               "size": self.size, "type": INDEX_TYPE, "v": INDEX_VERSION})

    def offsets(self) -> list[int]:
        out, at = [], 0
        for _, n in self.chunks:
            out.append(at)
            at += n
        return out


def parse_index(data: bytes, digest: str, size: int | None = None) -> ChunkIndex:
    """The chunk index in ``data`` (the verified bytes of object ``digest``), checked: its shape,
    every chunk 1 .. 16 MiB, sizes adding up to ``size`` (the blob's, from the manifest) and to
    its own total; else IntegrityError naming the index."""
    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"object {digest} is not a valid chunk index: {why}", digest=digest)

    try:
        value = loads(data)
    except ValueError as e:
        raise bad(f"not valid JSON: {e}") from None
    if not isinstance(value, dict) or value.get("type") != INDEX_TYPE:
        raise bad("not a chunk index object")
    if value.get("v") != INDEX_VERSION:
        raise bad(f"unknown version {value.get('v')!r} (a newer roro wrote it: upgrade roro)")
    chunks, total, chunker = value.get("chunks"), value.get("size"), value.get("chunker")
    if not isinstance(chunks, list) or not isinstance(chunker, dict) \
            or not isinstance(total, int) or isinstance(total, bool):
        raise bad("fields 'chunks', 'chunker' or 'size' are missing or have the wrong type")
    out: list[tuple[str, int]] = []
    for i, entry in enumerate(chunks):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], int)
                and not isinstance(entry[1], bool) and 0 < entry[1] <= MAX_CHUNK):
            raise bad(f"chunk {i} is malformed")
        try:
            out.append((parse_digest(entry[0]), entry[1]))
        except ValueError:
            raise bad(f"chunk {i} has no valid digest") from None
    if sum(n for _, n in out) != total:
        raise bad(f"its chunks add up to {sum(n for _, n in out)} bytes, not {total}")
    if size is not None and total != size:
        raise bad(f"it describes {total} bytes, but the manifest says {size}")
    return ChunkIndex(out, total, chunker)


def read_index(objects: ObjectStore, digest: str, size: int | None = None) -> ChunkIndex:
    """The chunk index ``digest`` of a blob of ``size`` bytes, verified (NotFoundError if missing,
    IntegrityError if corrupt or malformed)."""
    return parse_index(objects.read_as(digest, MAX_INDEX_SIZE, "chunk index"), digest, size)


def index_of(entry: dict[str, Any]) -> tuple[str, int] | None:
    """``(digest, size)`` of the chunk index a manifest's blob entry names, or None (one object)."""
    chunks = entry.get("chunks")
    if not isinstance(chunks, dict):
        return None
    return chunks["digest"], chunks["size"]


# -- writing --------------------------------------------------------------------------------------
#: Threads that hash and store chunks: a folder store fsyncs each chunk (3 hide that wait on 2
#: cores), S3 ingests at its own pace (4; 8 was no faster and cost 16 MiB more).
WRITE_THREADS_LOCAL = 3
WRITE_THREADS_REMOTE = 4


#: Bytes of chunks read from the spool and not yet stored, at most (plus one chunk).
WRITE_IN_FLIGHT = 16 * MiB
#: Attempts at storing a chunk whose key holds a torn copy or vanished between two looks.
STORE_ATTEMPTS = 3


def store_chunk(objects: ObjectStore, digest: str, data: bytes | memoryview,
                url: str) -> tuple[bool, KeyInfo | None]:
    """Store chunk ``digest`` (``data``, already hashed) unless it is present: ``(created,
    info)``, ``info`` being what the look found of a present chunk. It is looked for first (a
    HEAD on S3): a present chunk's bytes are never sent. A key that holds something of the
    wrong size (a torn copy), or vanished between two looks, is written (again) from ``data``:
    the chunk leaves here present with its size. ``url`` names the store in the error."""
    for _ in range(STORE_ATTEMPTS):
        info = objects.info(digest)
        if info is not None and info.size == len(data):
            return False, info
        if info is not None:
            objects.delete(digest)  # a torn copy: garbage, replaced by the right bytes
        if objects.backend.put_bytes_if_absent(object_key(digest), data):  # type: ignore[arg-type]
            return True, None
    raise StoreError(f"could not store chunk {digest}: its key kept changing under this save "
                     f"(store {url}); nothing was published: try again")


def put_index(guard: ReuseGuard, index: ChunkIndex) -> dict[str, Any]:
    """Write a blob's chunk index through ``guard`` (looked for first: a re-save of an unchanged
    blob sends nothing) once all its chunks are stored: the blob entry's ``chunks`` value."""
    data = index.data()
    return {"digest": guard.put_bytes(data, look_first=True), "size": len(data)}


def put_chunked(guard: ReuseGuard, path: str, params: ChunkParams) -> dict[str, Any]:
    """Store the local file ``path`` (a spool, which must live until the version is published)
    as chunks through ``guard`` (the gc rule covers each chunk), then its chunk index; returns
    the blob entry's ``chunks`` (:func:`put_index`). Each chunk is stored by
    :func:`store_chunk`. The file is cut as it is read; chunks are hashed and stored
    on a small pool, at most :data:`WRITE_IN_FLIGHT` bytes of them at a time."""
    import pyfastcdc  # only by a save of a big blob: `import roro` stays cheap
    objects = guard.objects
    guard.start()  # before the first chunk is looked at: the gc rule's deadline counts from here

    def store(data: bytes) -> tuple[str, bool, KeyInfo | None]:
        digest = digest_bytes(data)
        return (digest, *store_chunk(objects, digest, data, guard.url))

    cdc = pyfastcdc.FastCDC(params.avg, min_size=params.min, max_size=params.max)
    threads = WRITE_THREADS_REMOTE if objects.backend.remote else WRITE_THREADS_LOCAL
    chunks: list[tuple[str, int]] = []
    size = 0
    pending: deque[tuple[int, int, Future[tuple[str, bool, KeyInfo | None]]]] = deque()
    in_flight = 0

    def settle() -> None:
        nonlocal in_flight
        offset, length, future = pending.popleft()
        digest, created, info = future.result()
        in_flight -= length
        guard.put_range(digest, length, path, offset, created, info)
        chunks.append((digest, length))

    with open(path, "rb") as f, ThreadPoolExecutor(threads, thread_name_prefix="roro-chunks") \
            as pool:
        try:
            for chunk in cdc.cut_stream(f):
                while pending and in_flight >= WRITE_IN_FLIGHT:
                    settle()
                data = bytes(chunk.data)  # valid until the next chunk is cut: our own copy
                pending.append((size, len(data), pool.submit(store, data)))
                in_flight += len(data)
                size += len(data)
            while pending:
                settle()
        except BaseException:
            for _, _, future in pending:
                future.cancel()
            raise
    return put_index(guard, ChunkIndex(chunks, size, params.chunker()))


# -- the verified streaming reader ----------------------------------------------------------------
#: Chunks fetched and hashed at once, ahead of the reader (each at most 16 MiB, 4 MiB on average:
#: at most 4 x 16 MiB beside the model). S3's wait on the network. A folder's are the hash's
#: when the chunks are in the page cache (2 threads or 4: the same on 2 cores, 0.264 s for
#: 512 MiB) and the disk's when they are not: a 10 GiB load from a cold page cache read at
#: 600-731 MiB/s with 2 threads, 845-857 with 4 (more reads in flight; `cloudpickle.load` of
#: one file 944), bench/README.md "Issue 17 and 18 after the fifth session".
READ_THREADS_LOCAL = 4
READ_THREADS_REMOTE = 4
READ_AHEAD = READ_THREADS_LOCAL


class ChunkedReader(SizedReader):
    """A binary file over a chunked blob: chunk i is read whole from ``objects`` and hashed (on
    a pool, up to :data:`READ_AHEAD` chunks ahead) before any of its bytes is handed out; a
    chunk that does not hash to its name is an IntegrityError naming the chunk (its number and
    digest) and ``what`` (the version). Seekable: a seek restarts the fetches at that chunk."""

    def __init__(self, objects: ObjectStore, index: ChunkIndex, what: str,
                 threads: int = READ_AHEAD, keep: bool = True):
        super().__init__()
        self._objects, self._index, self._what = objects, index, what
        #: Verified chunks go into the objects' cache (a remote store's), unless the blob is
        #: larger than the cache may hold: then they stream through.
        self._keep = keep and objects.cache is not None
        self._offsets = index.offsets()
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="roro-chunks")
        self._ahead = max(1, threads)
        self._pending: deque[tuple[int, Future[bytes]]] = deque()
        self._next = 0  # the next chunk to submit
        #: No read-ahead for the first chunk read from a local store: the unpickler's next read
        #: is as likely the big ``readinto`` of an array (whose chunks then go straight into its
        #: buffer, in parallel) as a small one, and a local fetch is quick.
        self._read_ahead = objects.backend.remote
        self._current: memoryview | None = None  # the verified bytes of chunk self._at
        self._at = -1
        self._pos = 0

    # -- fetching --------------------------------------------------------------------------------
    def _name(self, i: int) -> str:
        return f"chunk {i} ({self._index.chunks[i][0]}) of {self._what}"

    def _fetch_error(self, i: int, e: Exception) -> RoroError:
        """What a failed read of chunk i (missing, larger than its index says, or not hashing
        to its name) tells the caller: the chunk and the version named, nothing handed out."""
        digest, size = self._index.chunks[i]
        name = self._name(i)
        if isinstance(e, NotFoundError):  # KeyNotFoundError too
            return NotFoundError(f"{name} is missing from the store; run 'roro fsck' to check "
                                 f"it", digest=digest)
        if isinstance(e, TooLargeError):
            return IntegrityError(f"{name} is corrupted: it holds more than its {size} bytes; "
                                  f"nothing of it was handed out; run 'roro fsck --read-data'",
                                  digest=digest, expected=digest)
        return self._corrupted(i, getattr(e, "actual", None))

    def _corrupted(self, i: int, actual: str | None, note: str = "") -> IntegrityError:
        """Chunk i's bytes hash to ``actual`` (``note``: what else was wrong with them)."""
        digest = self._index.chunks[i][0]
        return IntegrityError(f"{self._name(i)} is corrupted: its bytes hash to {actual}{note}; "
                              f"nothing of it was handed out; run 'roro fsck --read-data' to "
                              f"check the store", digest=digest, expected=digest, actual=actual)

    def _fetch(self, i: int) -> bytes:
        digest, size = self._index.chunks[i]
        try:
            data = self._objects.read(digest, size, keep=self._keep)
        except (NotFoundError, IntegrityError) as e:
            raise self._fetch_error(i, e) from None
        if len(data) != size:
            raise IntegrityError(f"{self._name(i)} holds {len(data)} bytes, but its chunk index "
                                 f"says {size}", digest=digest, expected=digest)
        return data

    def _chunk(self, i: int, ahead: bool = True) -> memoryview:
        """Chunk i, verified (fetches restart when the reader jumped elsewhere); with
        ``ahead``, the next chunks are fetched meanwhile."""
        if self._pending and self._pending[0][0] != i:
            self._drop_pending()
        if not self._pending:
            self._next = i
        n = len(self._index.chunks)
        ahead = ahead and self._read_ahead
        self._read_ahead = True
        while self._next < n and len(self._pending) < (self._ahead if ahead else 1):
            self._pending.append((self._next, self._pool.submit(self._fetch, self._next)))
            self._next += 1
        _, future = self._pending.popleft()
        return memoryview(future.result())

    def _drop_pending(self) -> None:
        for _, f in self._pending:
            f.cancel()
        for _, f in self._pending:
            if not f.cancelled():
                f.exception()  # wait; an error of a chunk never read is no error
        self._pending.clear()

    def _locate(self, pos: int) -> int:
        """The chunk holding byte ``pos`` (bisect over the offsets)."""
        lo, hi = 0, len(self._offsets) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._offsets[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo

    # -- io.RawIOBase (readable, seekable, tell, seek: SizedReader) ------------------------------
    def _size(self) -> int:
        return self._index.size

    def _fill(self, i: int, target: memoryview) -> None:
        """Read chunk i straight into ``target`` (the caller's buffer, exactly the chunk's
        size: no copy in between) and hash it there; IntegrityError or NotFoundError as
        :meth:`_fetch`, before :meth:`readinto` returns (the caller never sees the bytes).
        From the local cache if it holds the chunk (no request), else from the backend (a
        folder's file, or S3's GET body read from the socket); a chunk fetched from a remote
        store then goes into the cache, from ``target`` (no fsync: it is a cache)."""
        digest, size = self._index.chunks[i]
        cache = self._objects.cache
        if cache is not None and cache.read_into(digest, target):
            return
        try:
            got = self._objects.backend.get_into(object_key(digest), target)
        except (KeyNotFoundError, TooLargeError) as e:
            raise self._fetch_error(i, e) from None
        actual = digest_bytes(target[:got])
        if got != size or actual != digest:
            raise self._corrupted(i, actual, "" if got == size else f" ({got} bytes, not {size})")
        if self._keep and cache is not None:
            cache.write(digest, target)

    def _fill_whole_chunks(self, out: memoryview) -> int:
        """When the read starts at a chunk's start: every whole chunk the read covers goes
        straight into ``out``, all of them at once on the pool, each verified before this
        returns; returns the bytes filled (0: none, the read goes through the chunk buffers)."""
        i = self._locate(self._pos)
        if self._offsets[i] != self._pos:
            return 0
        jobs, at = [], 0
        while i < len(self._index.chunks) and at + self._index.chunks[i][1] <= len(out):
            jobs.append((i, out[at:at + self._index.chunks[i][1]]))
            at += self._index.chunks[i][1]
            i += 1
        if not jobs:
            return 0
        # Chunks already fetched ahead (verified bytes, or on their way) are copied in, not
        # fetched again; the others of the read-ahead are dropped.
        ahead = dict(self._pending)
        self._pending.clear()
        self._current, self._at = None, -1
        # The chunk the read ends in (a pickle's last array ends a few bytes before the blob)
        # is fetched first, so that it is ready for the chunk-by-chunk read that follows
        # instead of being read alone after every whole chunk.
        last: tuple[int, Future[bytes]] | None = None
        if i < len(self._index.chunks) and at < len(out):
            last = (i, ahead.pop(i) if i in ahead else self._pool.submit(self._fetch, i))
        parts: list[tuple[memoryview | None, Future[Any]]] = []
        for j, view in jobs:
            if j in ahead:
                parts.append((view, ahead.pop(j)))
            else:
                parts.append((None, self._pool.submit(self._fill, j, view)))
        dropped = list(ahead.values())
        for future in dropped:
            future.cancel()
        futures = [future for _, future in parts] + dropped
        try:
            wait(futures)  # every job has ended before an error is raised: none writes on after
        except BaseException:  # interrupted: stop what has not started, let the rest end
            started = futures + ([last[1]] if last else [])
            for future in started:
                future.cancel()
            wait(started)
            raise
        if last is not None:  # dropped by close() or a seek if an error comes first
            self._pending.append(last)
            self._next = last[0] + 1
        for target, future in parts:
            data = future.result()
            if target is not None:
                target[:] = data  # verified by _fetch, and of the chunk's size
        self._pos += at
        return at

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        while done < len(out) and self._pos < self._index.size:
            filled = self._fill_whole_chunks(out[done:])
            if filled:
                done += filled
                continue
            i = self._locate(self._pos)
            if i != self._at:
                self._current = None
                # A read that goes on past this chunk takes the next ones whole (above): no
                # read-ahead, whose chunks it would drop.
                beyond = self._offsets[i] + self._index.chunks[i][1] - self._pos < len(out) - done
                self._current = self._chunk(i, ahead=not beyond)
                self._at = i
            assert self._current is not None
            start = self._pos - self._offsets[i]
            n = min(len(out) - done, len(self._current) - start)
            out[done:done + n] = self._current[start:start + n]
            done += n
            self._pos += n
        return done

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(MiB * 16):
            parts.append(chunk)
        return b"".join(parts)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a chunked blob has no file descriptor")

    def close(self) -> None:
        if not self.closed:
            self._drop_pending()
            self._pool.shutdown(wait=True)
            self._current = None
        super().close()
