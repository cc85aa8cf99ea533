"""Checkpoints anchor a ref log (DESIGN §10): a reader that has never seen a repository reads its
newest checkpoint, verified, instead of every event and manifest, then only the log's tail.

A checkpoint *object* is an ordinary content-addressed object (``objects/sha256/…``) holding,
for one repository, the exact bytes of events ``start+1 .. end`` and of the manifests their
``version`` events name, zlib-compressed::

    roro.checkpoint/1\\n
    <canonical JSON header: format, project, repository, start, end, parent, parent_start,
     events, manifests>\\n
    then per event, then per manifest: 4-byte big-endian length, the bytes

``parent`` is the digest of the checkpoint object of events ``parent_start+1 .. start`` (None
when ``start`` is 0). Objects form a chain of at most :data:`PERIODS` levels: a checkpoint at
``N`` covers ``(P..N]`` where ``P`` is ``N`` rounded down to the period of the next level (0 at
the top), so the newest checkpoint of a 100,000-event log is three objects (up to 128 events,
up to 4,096 events, and the rest), and a writer adds a small one every 4 events.

A *pointer* (``checkpoints/<project>/<repo>/<9999999999-N>-<hex>.json``, create-only, the
``checkpoints`` format feature) names the newest object of a chain; the first key of a
listing is the newest pointer. Its JSON repeats what its name says and adds the hash of event
``N`` and the digests of the chain (what gc keeps; a pointer is never trusted for more).

Readers trust nothing in a checkpoint: every object is read verified (its digest), each
event is parsed as the log's own reader would, the events chain by hash from the first to
event ``N``, event ``N`` must be byte-identical to the real log's event ``N`` (one read; with
the chain, that pins every earlier event), and each manifest is keyed by the hash of its own
bytes, so a swapped manifest is only a manifest nobody asks for. Anything wrong is a
:class:`CheckpointError`; the reader then warns once and reads the log.
"""

from __future__ import annotations

import hashlib
import queue
import re
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, NamedTuple

from ..digests import digest_bytes, parse_digest
from ..errors import IntegrityError, NotFoundError, RoroWarning
from ..objects import ObjectStore
from ..objects.canonical import canonical_json, loads
from ..objects.manifest import MAX_MANIFEST_SIZE
from ..storage import Backend, KeyNotFoundError
from ..storage.layout import checkpoint_key, checkpoint_prefix, log_key, parse_checkpoint_key
from .events import MAX_EVENT_SIZE, Event, parse_event
from .log import RefLog

MAGIC = b"roro.checkpoint/1\n"
FORMAT = "roro.checkpoint/1"
POINTER_FORMAT = "roro.checkpoint-pointer/1"
#: Checkpoint periods of each level: a small one every 4 events, a middle one every 128, a
#: whole one every 4,096. The newest checkpoint is then at most 3 events behind a log whose
#: writers make them, and at most 3 objects long.
PERIODS = (4, 128, 4096)
#: Writers start making checkpoints once a log holds this many events: a shorter log reads as
#: fast from the log itself (and most stores never need the feature).
AUTO_FROM = 64
#: A writer's automatic checkpoint reads at most this many events from the log; further behind
#: the newest checkpoint, it leaves the work to ``roro checkpoint``.
AUTO_MAX_LOG_READS = 64
#: The largest checkpoint object a reader reads (compressed), and how much it may inflate.
MAX_CHECKPOINT_SIZE = 1 << 30
MIN_RAW_LIMIT = 64 << 20
INFLATION = 64
COMPRESS_LEVEL = 6
#: A checkpoint object of this many bytes or more is inflated by a thread of its own, in pieces
#: of PIECE bytes, while its records are split and hashed (see :class:`_Inflated`).
THREAD_FROM = 1 << 20
PIECE = 4 << 20
_LEN = struct.Struct(">I")


class CheckpointError(IntegrityError):
    """A checkpoint is missing, unreadable, or says something the log does not."""


class CheckpointWarning(RoroWarning):
    """A checkpoint was ignored (it is wrong or unreadable); the log was read instead."""


def level_of(seq: int) -> int:
    """The level of a checkpoint at event ``seq``: the highest period that divides it (0 for a
    sequence number no period divides: a checkpoint made on demand)."""
    level = 0
    for i, period in enumerate(PERIODS):
        if seq % period == 0:
            level = i
    return level


def parent_of(seq: int) -> int:
    """Where the checkpoint at ``seq`` starts: ``seq`` rounded down to the next level's period
    (0 for the top level: it holds the whole log)."""
    level = level_of(seq)
    if level + 1 >= len(PERIODS):
        return 0
    return seq - seq % PERIODS[level + 1]


def boundaries(seq: int) -> list[int]:
    """The ends of the objects of the chain of a checkpoint at ``seq``, newest first."""
    out = []
    while seq > 0:
        out.append(seq)
        seq = parent_of(seq)
    return out


@dataclass
class Checkpoint:
    """The decoded content of one checkpoint object (events ``start+1 .. end``)."""

    project: str
    repository: str
    start: int
    end: int
    parent: str | None
    parent_start: int | None
    events: list[bytes]
    manifests: list[bytes] = field(default_factory=list)
    #: The digests of the events (what :func:`decode` hashed as it split them).
    sums: list[str] | None = field(default=None, compare=False, repr=False)
    #: The manifests not split yet (decode(defer_manifests=True)): the bytes inflated so far
    #: from where they start, how many there are, the object's error, and what inflates the
    #: rest of the object (the manifests are inflated when first asked for, too).
    _unsplit: tuple[list[bytes], int, Callable[[str], CheckpointError],
                    Callable[[], bytes | None]] | None = field(default=None, compare=False,
                                                              repr=False)

    def split_manifests(self) -> list[bytes]:
        """The manifests, split now if :func:`decode` left them (a :class:`CheckpointError` if
        they, or the rest of the object, are not what the header says)."""
        if self._unsplit is not None:
            held, count, bad, _ = self._unsplit
            pending = self._pending()
            raw, pos = _split(held[0], 0, pending, len(self.events), count, MAX_MANIFEST_SIZE,
                              bad, self.manifests)
            if pos != len(raw) or pending() is not None:
                raise bad("it holds more than its header says")
            self._unsplit = None
        return self.manifests

    def first_manifests(self, count: int) -> list[bytes]:
        """The first ``count`` manifests (or all, if fewer), inflating and splitting no more
        of those :func:`decode` left than that."""
        if self._unsplit is None:
            return self.manifests[:count]
        held, total, bad, _ = self._unsplit
        records: list[bytes] = []
        _split(held[0], 0, self._pending(), len(self.events), min(count, total),
               MAX_MANIFEST_SIZE, bad, records)
        return records

    def _pending(self) -> Callable[[], bytes | None]:
        """The pieces after the first held one: those held, then newly inflated ones (held
        too, for the next reader)."""
        assert self._unsplit is not None
        held, _, _, more = self._unsplit
        at = 1

        def pending() -> bytes | None:
            nonlocal at
            if at == len(held):
                piece = more()
                if piece is None:
                    return None
                held.append(piece)
            at += 1
            return held[at - 1]
        return pending

    def encode(self) -> bytes:
        header = canonical_json({
            "format": FORMAT, "project": self.project, "repository": self.repository,
            "start": self.start, "end": self.end, "parent": self.parent,
            "parent_start": self.parent_start, "events": len(self.events),
            "manifests": len(self.manifests)})
        parts = [MAGIC, header, b"\n"]
        for record in (*self.events, *self.manifests):
            parts += [_LEN.pack(len(record)), record]
        return zlib.compress(b"".join(parts), COMPRESS_LEVEL)


def decode(data: bytes, digest: str, project: str, repository: str, *,
           defer_manifests: bool = False) -> Checkpoint:
    """The checkpoint in ``data`` (the verified bytes of object ``digest``), with every shape
    check a reader needs; :class:`CheckpointError` for anything else. Each event's sha256 is
    taken as it is split (``Checkpoint.sums``, the events'): while a large object is inflated by
    a thread of its own (zlib lets go of the GIL), the split and the hashes of the pieces already
    inflated use the other core. ``defer_manifests``: the manifests are split when first asked
    for (:meth:`Checkpoint.split_manifests`), not now."""
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {digest} of {project}/{repository} is not valid: "
                               f"{why}", digest=digest, repository=repository)
    pieces = _Inflated(data, max(MIN_RAW_LIMIT, INFLATION * len(data)), bad)
    try:
        return _decode(pieces, project, repository, bad, defer_manifests)
    finally:
        pieces.close()


def _decode(pieces: _Inflated, project: str, repository: str,
            bad: Callable[[str], CheckpointError], defer_manifests: bool) -> Checkpoint:
    raw = pieces.next()
    while raw is not None and b"\n" not in raw[len(MAGIC):] and len(raw) < 2 * MAX_EVENT_SIZE:
        more = pieces.next()
        if more is None:
            break
        raw += more
    if raw is None or not raw.startswith(MAGIC):
        raise bad("not a checkpoint")
    end = raw.find(b"\n", len(MAGIC))
    if end < 0:
        raise bad("no header")
    try:
        header = loads(raw[len(MAGIC):end])
    except ValueError as e:
        raise bad(f"its header is not JSON ({e})") from None
    spec: dict[str, type | tuple[type, ...]] = {"format": str, "project": str, "repository": str, "start": int, "end": int,
            "parent": (str, type(None)), "parent_start": (int, type(None)), "events": int,
            "manifests": int}
    if not isinstance(header, dict) or set(header) != set(spec) or any(
            not isinstance(header[k], t) or isinstance(header[k], bool) for k, t in spec.items()):
        raise bad("its header has the wrong fields")
    if header["format"] != FORMAT:
        raise bad(f"unknown format {header['format']!r}")
    if (header["project"], header["repository"]) != (project, repository):
        raise bad(f"it is a checkpoint of {header['project']}/{header['repository']}")
    start, stop, parent = header["start"], header["end"], header["parent"]
    if not 0 <= start < stop or header["events"] != stop - start or header["manifests"] < 0:
        raise bad("its range is not what it holds")
    if (parent is None) != (start == 0) or (parent is None) != (header["parent_start"] is None):
        raise bad("its parent does not match its start")
    if parent is not None:
        try:
            parse_digest(parent)
        except ValueError:
            raise bad("its parent is not a digest") from None
        if not 0 <= header["parent_start"] < start:
            raise bad("its parent's range does not end where it starts")
    events: list[bytes] = []
    sums: list[str] = []
    raw, pos = _split(raw, end + 1, pieces.next, 0, header["events"], MAX_EVENT_SIZE, bad,
                      events, sums)
    cp = Checkpoint(project, repository, start, stop, parent, header["parent_start"], events,
                    [], sums)
    cp._unsplit = ([raw[pos:]], header["manifests"], bad, pieces.next)
    if not defer_manifests:
        cp.split_manifests()
    return cp


def _split(raw: bytes, pos: int, more: Callable[[], bytes | None], first: int, count: int,
           most: int, bad: Callable[[str], CheckpointError], records: list[bytes],
           sums: list[str] | None = None) -> tuple[bytes, int]:
    """Split ``count`` records (numbered from ``first``) from ``raw`` at ``pos`` and what
    ``more()`` gives after it into ``records`` (and their digests into ``sums``); where the
    next record starts."""
    size = len(raw)
    unpack = _LEN.unpack_from
    sha = hashlib.sha256
    append = records.append
    add_sum = sums.append if sums is not None else None
    i = first
    while i < first + count:
        if pos + 4 <= size:
            (n,) = unpack(raw, pos)
            if n > most:
                raise bad(f"record {i} is too large or truncated")
            if pos + 4 + n <= size:
                record = raw[pos + 4:pos + 4 + n]
                append(record)
                if add_sum is not None:
                    add_sum("sha256:" + sha(record).hexdigest())
                pos += 4 + n
                i += 1
                continue
        piece = more()  # the record goes on in the next piece
        if piece is None:
            raise bad("it is truncated" if pos + 4 > size else
                      f"record {i} is too large or truncated")
        raw = raw[pos:] + piece
        pos, size = 0, len(raw)
    return raw, pos


class _Inflated:
    """The pieces ``data`` inflates to, at most ``limit`` bytes in all, each ``next()`` (None
    after the last); a :class:`CheckpointError` (``bad``) if it is not one whole zlib stream.
    Objects of more than :data:`THREAD_FROM` bytes are inflated ahead by a thread (and the
    interpreter switches threads every millisecond meanwhile, so that the inflater gets the GIL
    back as soon as zlib returns): the caller splits and hashes one piece while the next is
    inflated. After :meth:`close` the thread stops; ``next()`` then gives what it left, and
    inflates the rest itself."""

    def __init__(self, data: bytes, limit: int, bad: Callable[[str], CheckpointError]):
        self.bad, self.limit = bad, limit
        self._inflater = zlib.decompressobj()
        self._tail = data
        self._total = 0
        self._done = False
        self._queue: queue.SimpleQueue[bytes | BaseException | None] | None = None
        self._left: list[bytes | BaseException | None] = []  # by the thread, once stopped
        self._stop = threading.Event()
        self._switching = False
        self._thread: threading.Thread | None = None
        if len(data) >= THREAD_FROM:
            self._queue = queue.SimpleQueue()
            _fast_switches(+1)
            self._switching = True
            self._thread = threading.Thread(target=self._ahead, daemon=True,
                                            name="roro-inflate")
            self._thread.start()

    def _piece(self) -> bytes | None:
        """The next piece (None: the stream ended where the data does)."""
        if self._done:
            return None
        try:
            out = self._inflater.decompress(self._tail, PIECE)
        except zlib.error as e:
            raise self.bad(f"not zlib data ({e})") from None
        self._tail = self._inflater.unconsumed_tail
        self._total += len(out)
        if self._total > self.limit:
            raise self.bad(f"it inflates to more than {self.limit} bytes")
        if self._inflater.eof:
            if self._inflater.unused_data:
                raise self.bad("it does not end where it should")
            self._done = True
        elif not out and not self._tail:
            raise self.bad("it is truncated")
        return out if out or not self._done else None

    def _ahead(self) -> None:
        assert self._queue is not None
        try:
            while not self._stop.is_set():
                out = self._piece()
                self._queue.put(out)
                if out is None:
                    return
        except BaseException as e:  # a CheckpointError: raised by next()
            self._queue.put(e)

    def next(self) -> bytes | None:
        if self._queue is not None and self._stop.is_set():  # closed: take over from the thread
            assert self._thread is not None
            self._thread.join()
            while not self._queue.empty():
                self._left.append(self._queue.get())
            self._queue = None
        if self._queue is not None:
            found = self._queue.get()
            if found is None:
                self._queue.put(None)  # every later next() is None too
        elif self._left:
            found = self._left.pop(0)
        else:
            return self._piece()
        if isinstance(found, BaseException):
            raise found
        return found

    def close(self) -> None:
        self._stop.set()
        if self._switching:
            _fast_switches(-1)
            self._switching = False


_switches_lock = threading.Lock()
_switches = [0, 0.0]  # inflaters running, the switch interval before the first


def _fast_switches(change: int) -> None:
    """Switch threads every millisecond while any inflater runs (``change`` +1 when one
    starts, -1 when it ends); the interval the process had before, once none does."""
    with _switches_lock:
        if change > 0 and _switches[0] == 0:
            _switches[1] = sys.getswitchinterval()
            sys.setswitchinterval(0.001)
        _switches[0] += change
        if change < 0 and _switches[0] == 0:
            sys.setswitchinterval(_switches[1])


class Pointer(NamedTuple):
    """A checkpoint pointer, from its key: events 1..``seq`` are in the chain ending at
    object ``digest``; ``mtime``: when it was written, where a listing said (gc keeps the
    chain of every pointer younger than its grace period, so a writer may build on a young
    pointer's chain without protecting it: docs/trust.md)."""

    key: str
    seq: int
    digest: str
    mtime: float | None = None


def pointers(backend: Backend, project: str, repository: str) -> Iterator[Pointer]:
    """The checkpoint pointers of a repository, newest first (one listing; a key that is not a
    pointer is skipped: fsck reports it)."""
    for info in backend.list_info(checkpoint_prefix(project, repository)):
        parsed = parse_checkpoint_key(info.key)
        if parsed is not None and parsed[:2] == (project, repository):
            yield Pointer(info.key, parsed[2], parsed[3], info.mtime)


def newest_pointer(backend: Backend, project: str, repository: str) -> Pointer | None:
    """The newest checkpoint pointer: the first key of the listing (one request)."""
    return next(pointers(backend, project, repository), None)


def pointer_body(seq: int, digest: str, event_hash: str, start: int) -> bytes:
    """A pointer's bytes: what its key says, the hash of event ``seq`` and where the newest
    object starts (for people and fsck; readers verify the objects, not this)."""
    return canonical_json({"format": POINTER_FORMAT, "seq": seq, "checkpoint": digest,
                           "event": event_hash, "start": start})


def chain_digests(objects: ObjectStore, pointer: Pointer, project: str,
                  repository: str) -> list[str]:
    """The objects of a pointer's chain, newest first, found by reading them (what gc keeps
    and sync copies). As far as they can be read: a missing or bad object ends the list."""
    out: list[str] = []
    try:
        for digest, _ in load_chain(objects, project, repository, pointer.digest, pointer.seq):
            out.append(digest)
    except CheckpointError as e:
        if e.digest is not None and e.digest not in out and objects.has(e.digest):
            out.append(e.digest)  # present but wrong: kept for fsck to show
    return out


def read_object(objects: ObjectStore, digest: str, project: str,
                repository: str, defer_manifests: bool = False) -> Checkpoint:
    """The checkpoint object ``digest``, read verified and decoded (:class:`CheckpointError`
    if it is missing or not a checkpoint of that repository)."""
    try:
        data = objects.read(digest, MAX_CHECKPOINT_SIZE)
    except NotFoundError:
        raise CheckpointError(f"checkpoint {digest} of {project}/{repository} is missing from "
                              f"the store", digest=digest, repository=repository) from None
    except IntegrityError as e:
        raise CheckpointError(f"checkpoint {digest} of {project}/{repository} is unreadable: {e}",
                              digest=digest, repository=repository) from None
    return decode(data, digest, project, repository, defer_manifests=defer_manifests)


def load_chain(objects: ObjectStore, project: str, repository: str, digest: str, end: int,
               down_to: int = 0, cached: dict[str, Checkpoint] | None = None,
               defer_manifests: bool = False) -> list[tuple[str, Checkpoint]]:
    """The checkpoint objects from ``digest`` (which must end at ``end``) back to the one that
    starts at or below ``down_to``, newest first, each read verified and decoded; their ranges
    must join. :class:`CheckpointError` otherwise. ``cached``: objects this process wrote
    itself, by digest (not read again); ``defer_manifests``: see :func:`decode`."""
    chain: list[tuple[str, Checkpoint]] = []
    expected_end: int = end
    current: str | None = digest
    while current is not None:
        if len(chain) > len(PERIODS) + 1:
            raise CheckpointError(f"checkpoint {digest} of {project}/{repository} has a chain "
                                  f"longer than {len(PERIODS) + 1} objects", digest=digest,
                                  repository=repository)
        found = cached.get(current) if cached is not None else None
        cp = found if found is not None and (found.project, found.repository) == (
            project, repository) else read_object(objects, current, project, repository,
                                                  defer_manifests)
        if cp.end != expected_end:
            raise CheckpointError(f"checkpoint {current} of {project}/{repository} ends at event "
                                  f"{cp.end}, not at event {expected_end}", digest=current,
                                  repository=repository)
        chain.append((current, cp))
        if cp.start <= down_to:
            break
        current, expected_end = cp.parent, cp.start
    return chain


def verified_events(chain: list[tuple[str, Checkpoint]], project: str, repository: str,
                    after: int = 0) -> list[Event]:
    """The events after ``after`` that ``chain`` holds (oldest first), each parsed as the log's
    reader parses it, chained by hash (from a first event with no predecessor when ``after``
    is 0). :class:`CheckpointError` on anything else."""
    raws: list[bytes] = []
    first = None
    for _, cp in reversed(chain):
        if first is None:
            first = max(cp.start, after)
        raws += cp.events[max(0, after - cp.start):]
    events: list[Event] = []
    prev: str | None = None
    for i, raw in enumerate(raws):
        seq = (first or 0) + 1 + i
        try:
            event = parse_event(raw, repository=repository, seq=seq)
        except IntegrityError as e:
            raise CheckpointError(f"a checkpoint of {project}/{repository} holds a bad event "
                                  f"{seq}: {e}", repository=repository, seq=seq) from None
        if (i > 0 or seq == 1) and event.prev != prev:
            raise CheckpointError(f"a checkpoint of {project}/{repository} breaks the hash "
                                  f"chain at event {seq}", repository=repository, seq=seq)
        prev = event.hash
        events.append(event)
    return events


def chain_manifests(chain: list[tuple[str, Checkpoint]],
                    events: list[Event] | None = None) -> dict[str, bytes]:
    """Every manifest the chain holds, keyed by the hash of its own bytes (so none can be
    wrong: a swapped one is only a manifest nobody asks for). With ``events`` (the chain's),
    a manifest that no ``version`` event of them names is a :class:`CheckpointError`."""
    found = {digest_bytes(m): m for _, cp in chain for m in cp.manifests}
    if events is not None:
        _refuse_strays(found, {e["image"] for e in events if e.type == "version"})
    return found


def _refuse_strays(manifests: dict[str, bytes], named: set[str]) -> None:
    """A :class:`CheckpointError` if a checkpoint holds a manifest (by digest) that none of
    its events names (``named``: the images its ``version`` events name)."""
    stray = sorted(set(manifests) - named)
    if stray:
        raise CheckpointError(f"it holds manifest {stray[0]}, which none of its events names",
                              digest=stray[0])


# What a reader checks of every event of a history it does not parse (see History): each
# holds the key "prev" exactly once (a JSON string cannot hold an unescaped '"', so the bytes
# '"prev":' are that key or no valid event), with a value of this shape; likewise "type".
# (Each pattern starts with its literal key: re then looks for the key, not at every byte.)
_PREV_KEY, _TYPE_KEY = b'"prev":', b'"type":'
_PREV = re.compile(r'"prev":(?:null|"(sha256:[0-9a-f]{64})")')
_TYPE = re.compile(r'"type":"([a-z]+)"')
_IMAGE = re.compile(r'"image":"(sha256:[0-9a-f]{64})"')


@dataclass
class History:
    """Events 1..``seq`` of a repository as a checkpoint (or the log) holds them, verified: the
    events chain by hash and event ``seq`` hashes to ``event_hash`` (the real log's). The events
    are not parsed here: :meth:`event` parses one as the log's reader does (an
    :class:`~roro.errors.IntegrityError` names a malformed one).

    The manifests (in ``chain``, its objects oldest first) are checked against their digests
    before they are used: :meth:`manifests_for` hashes the newest until it has those asked for
    (a cold read asks for its newest versions'), :meth:`manifest_map` all of them, and refuses
    a checkpoint holding one that none of its events names (:class:`CheckpointError`).

    ``types`` (each event's type, from its bytes) is set when the history may be folded
    without parsing its ``version`` events (see ``refs/index.py``, deferred rows): every event
    holds the keys ``prev`` and ``type`` once."""

    digest: str | None  # the newest checkpoint object of the chain (None: read from the log)
    events: list[bytes]
    hashes: list[str]
    chain: list[Checkpoint] = field(default_factory=list)
    types: list[str] | None = None
    project: str = ""
    repository: str = ""
    #: Says (once) that the checkpoint was found wrong after it was read (the caller then
    #: reads the log, or the store, instead).
    warn: Callable[[str], None] | None = None
    _map: dict[str, bytes] | None = None
    _version_seqs: list[int] | None = None

    @property
    def seq(self) -> int:
        return len(self.events)

    @property
    def event_hash(self) -> str:
        return self.hashes[-1]

    @property
    def source(self) -> str:
        """Where to find these events again (``Index`` keeps it with the deferred rows)."""
        return f"{self.seq} {self.event_hash} {self.digest or ''}"

    def event(self, seq: int) -> Event:
        return parse_event(self.events[seq - 1], repository=self.repository, seq=seq)

    def version_seqs(self) -> list[int]:
        """Where each version's event is, by version number (``types`` must be known): a
        valid log's ``version`` events are versions 1, 2, … in order."""
        if self._version_seqs is None:
            assert self.types is not None
            self._version_seqs = [i + 1 for i, kind in enumerate(self.types)
                                  if kind == "version"]
        return self._version_seqs

    def manifests_for(self, wanted: set[str]) -> dict[str, bytes]:
        """The manifests of the ``wanted`` digests that the chain holds. A checkpoint holds its
        manifests in the order of their events, so those of a cold read's newest versions are
        the last, and its first version's the first: they are hashed from the newest back,
        then from the oldest on, each way until one is not wanted (a version whose manifest
        the checkpoint lacks, a manifest saved twice, one no event names), and once all are
        found. Whatever is still missing then makes every manifest checked
        (:meth:`manifest_map`)."""
        if self._map is not None:
            return {d: self._map[d] for d in wanted if d in self._map}
        found: dict[str, bytes] = {}
        for backwards in (True, False):
            for cp in (reversed(self.chain) if backwards else self.chain):
                if backwards:
                    manifests = cp.split_manifests()
                    order: Iterable[int] = range(len(manifests) - 1, -1, -1)
                else:  # (the oldest object's first manifests: split no more than those)
                    manifests = cp.first_manifests(len(wanted) - len(found))
                    order = range(len(manifests))
                for i in order:
                    if len(found) == len(wanted):
                        return found
                    digest = digest_bytes(manifests[i])
                    if digest not in wanted:
                        break
                    found[digest] = manifests[i]
                else:
                    continue
                break
        if len(found) == len(wanted):
            return found
        full = self.manifest_map()
        return {d: full[d] for d in wanted if d in full}

    def manifest_map(self) -> dict[str, bytes]:
        """Every manifest of the chain by its digest (the hash of its own bytes, so none can be
        wrong); a :class:`CheckpointError` if one is not named by any of the events."""
        if self._map is None:
            found: dict[str, bytes] = {}
            for cp in self.chain:
                found.update((digest_bytes(m), m) for m in cp.split_manifests())
            if found:
                text = b"\n".join(e for cp in self.chain for e in cp.events).decode(
                    "utf-8", "replace")
                _refuse_strays(found, set(_IMAGE.findall(text)))
            self._map = found
        return self._map


def history_of(chain: list[tuple[str, Checkpoint]], project: str,
               repository: str) -> History:
    """The events 1..N the chain holds (``chain[0]`` ends at N, the last starts at 0), checked
    to chain by hash from a first event with no predecessor, without parsing them (when every
    event holds ``prev`` once, the checks are a few passes in C over all of them; anything
    unusual is left to :func:`verified_events`, which parses each and names what is wrong).
    The manifests are checked when first looked up (see :class:`History`)."""
    if chain[-1][1].start != 0:
        raise CheckpointError("its chain does not start at event 1")
    raws = [e for _, cp in reversed(chain) for e in cp.events]
    hashes = [h for _, cp in reversed(chain)
              for h in (cp.sums[:len(cp.events)] if cp.sums is not None else
                        [digest_bytes(e) for e in cp.events])]
    types = None
    try:
        text = b"\n".join(raws).decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    prevs = _PREV.findall(text)
    one = [1] * len(raws)
    if text and len(prevs) == len(raws) and prevs[0] == "" and prevs[1:] == hashes[:-1] and \
            list(map(bytes.count, raws, repeat(_PREV_KEY))) == one:
        if list(map(bytes.count, raws, repeat(_TYPE_KEY))) == one:
            found_types = _TYPE.findall(text)
            types = found_types if len(found_types) == len(raws) else None
    else:
        verified_events(chain, project, repository)  # raises, naming the event
    return History(chain[0][0], raws, hashes, [cp for _, cp in reversed(chain)], types, project,
                   repository)


def read_verified(log: RefLog, objects: ObjectStore,
                  warn: Callable[[str], None]) -> History | None:
    """A cold reader's start: events 1..N and the manifests of the newest checkpoint, verified
    against the real log (one read of event N), or None when there is no checkpoint or it is
    wrong (``warn`` says why, once; the caller reads the log instead)."""
    project, repository = log.project, log.repository
    pointer = newest_pointer(log.backend, project, repository)
    if pointer is None:
        return None
    def ignored(why: object) -> None:
        warn(f"the checkpoint {pointer.key} of {project}/{repository} was ignored ({why}); the "
             f"log was read instead (run 'roro fsck', then 'roro checkpoint {repository}')")
    try:
        chain = load_chain(objects, project, repository, pointer.digest, pointer.seq,
                           defer_manifests=True)
        history = history_of(chain, project, repository)
        history.warn = ignored
        if history.seq != pointer.seq:
            raise CheckpointError("its chain does not start at event 1")
        try:
            real = log.backend.get(log_key(project, repository, pointer.seq), MAX_EVENT_SIZE)
        except KeyNotFoundError:
            raise CheckpointError(f"the log has no event {pointer.seq}") from None
        if real != history.events[-1]:
            raise CheckpointError(f"its event {pointer.seq} is not the log's event "
                                  f"{pointer.seq}")
        return history
    except IntegrityError as e:  # CheckpointError, or an unreadable event of the log
        ignored(e)
        return None


def history_again(log: RefLog, objects: ObjectStore, source: str) -> History:
    """The history a cold read folded (``source``: :attr:`History.source`), read again: from
    the checkpoint it came from, else from the newest checkpoint, else from the log; each
    checked to end with the same event (its hash) at the same place. An
    :class:`~roro.errors.IntegrityError` if none can be read."""
    project, repository = log.project, log.repository
    seq_text, event_hash, digest = source.split(" ")
    seq = int(seq_text)
    tries: list[tuple[str, int]] = [(digest, seq)] if digest else []
    newest = newest_pointer(log.backend, project, repository)
    if newest is not None and newest.seq >= seq and newest.digest != digest:
        tries.append((newest.digest, newest.seq))
    for chain_digest, end in tries:
        try:
            history = history_of(load_chain(objects, project, repository, chain_digest, end,
                                            defer_manifests=True), project, repository)
        except CheckpointError:
            continue
        if history.seq >= seq and history.hashes[seq - 1] == event_hash:
            history.events, history.hashes = history.events[:seq], history.hashes[:seq]
            if history.types is not None:
                history.types = history.types[:seq]
            return history
    events = log.read_after(0)[:seq]
    if len(events) != seq or events[-1].hash != event_hash:
        raise IntegrityError(f"the log of {project}/{repository} no longer holds the event "
                             f"{seq} it held when indexed; run 'roro index --rebuild'",
                             repository=repository)
    return History(None, [e.raw for e in events], [e.hash for e in events],
                   project=project, repository=repository)


# -- writing ---------------------------------------------------------------------------------

#: ``manifest(digest, version)``: the bytes of the manifest of that version, or None.
ManifestSource = Callable[[str, int], "bytes | None"]


@dataclass
class Written:
    """What :func:`build` did: the pointer of the newest checkpoint (None: the log is empty),
    whether it is new, and the checkpoint objects it wrote."""

    pointer: Pointer | None
    created: bool = False
    objects: list[str] = field(default_factory=list)
    size: int = 0  # bytes of the objects written

    def to_dict(self) -> dict[str, Any]:
        p = self.pointer
        return {"seq": p.seq if p else 0, "checkpoint": p.digest if p else None,
                "key": p.key if p else None, "created": self.created,
                "objects_written": len(self.objects), "size": self.size}


class TooFarBehind(Exception):
    """A writer's automatic checkpoint would read more of the log than it may."""


def build(log: RefLog, objects: ObjectStore, head: int, *, manifest: ManifestSource,
          known: dict[int, bytes] | None = None, max_log_reads: int | None = None,
          before_first_write: Callable[[], None] | None = None,
          rely: Callable[[Pointer, Pointer], None] | None = None,
          before_pointer: Callable[[], None] | None = None,
          cached: dict[str, Checkpoint] | None = None,
          crash: Callable[[str], None] | None = None) -> Written:
    """Make the checkpoint of events 1..``head`` (the caller's view of the log's end) unless a
    pointer at ``head`` or later exists: reuse what the newest checkpoint's chain holds, read
    the rest of the log (``known`` holds event bytes the caller has: no read), write the objects
    the chain lacks (oldest first), then the pointer, create-only.

    ``manifest(digest, version)`` gives a manifest's bytes (checked against the digest here) or None to
    leave it out. ``max_log_reads``: raise :class:`TooFarBehind` rather than read more events.
    ``before_first_write()`` runs before anything is written (the format feature);
    ``rely(newest, reused)`` before that, when the new chain reuses objects of the newest
    pointer's chain: ``reused`` names the newest reused object and where it ends (a pointer
    without a key; its chain is what is reused); the caller protects them from gc as a save
    protects the objects it reuses. ``before_pointer()`` runs right before the pointer is
    written (the caller's deadline). ``cached`` (the caller's, kept between calls): small
    objects this process wrote, by digest; the newest one written is put there, replacing the
    rest (a writer's next small checkpoint then reads no object)."""
    project, repository = log.project, log.repository
    backend = log.backend
    newest = newest_pointer(backend, project, repository)
    if newest is not None and newest.seq >= head:
        return Written(newest)
    if head <= 0:
        return Written(None)
    ranges = [(parent_of(e), e) for e in reversed(boundaries(head))]  # oldest first
    events: dict[int, Event] = {}
    manifests: dict[str, bytes] = {}
    have: dict[tuple[int, int], str] = {}
    reuse = 0
    if newest is not None:
        # The newest chain's ranges follow from its end: reuse the longest oldest-first run of
        # ours that it has, and read its objects above that (for their events).
        predicted = {(parent_of(e), e) for e in boundaries(newest.seq)}
        while reuse < len(ranges) and ranges[reuse] in predicted:
            reuse += 1
        if reuse == len(ranges):
            reuse -= 1  # cannot happen (newest.seq < head); rebuild the top to be safe
        low = ranges[reuse][0]
        try:
            if newest.seq > low:
                chain = load_chain(objects, project, repository, newest.digest, newest.seq,
                                   low, cached)
                for e in verified_events(chain, project, repository, low):
                    events[e.seq] = e
                manifests = chain_manifests(chain)
                have = {(cp.start, cp.end): d for d, cp in chain}
                last = chain[-1][1]
                if last.parent is not None and last.parent_start is not None:
                    have[(last.parent_start, last.start)] = last.parent
            else:
                have[(parent_of(newest.seq), newest.seq)] = newest.digest
            if reuse and have.get(ranges[reuse - 1]) is None:
                raise CheckpointError("the newest checkpoint's chain is not as its end says")
        except IntegrityError:  # a wrong or missing checkpoint: build the whole chain anew
            reuse, events, manifests, have = 0, {}, {}, {}
    low = ranges[reuse][0]
    missing = [s for s in range(low + 1, head + 1) if s not in events
               and s not in (known or {})]
    if max_log_reads is not None and len(missing) > max_log_reads:
        raise TooFarBehind(f"{len(missing)} events to read")
    for seq, raw in (known or {}).items():
        if low < seq <= head and seq not in events:
            events[seq] = parse_event(raw, repository=repository, seq=seq)
    if missing:
        events.update({e.seq: e for e in log.read_range(missing)})
    ordered = [events[s] for s in range(low + 1, head + 1)]
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.prev != a.hash:
            raise CheckpointError(f"the log of {project}/{repository} and its newest "
                                  f"checkpoint disagree at event {b.seq}; run 'roro fsck'",
                                  repository=repository, seq=b.seq)
    # The reused part of the chain is the object of ranges[reuse - 1] (its parents are named
    # inside it): the new objects start above it.
    parent: str | None = None
    parent_start: int | None = None
    if reuse:
        parent, parent_start = have[ranges[reuse - 1]], ranges[reuse - 1][0]
        if rely is not None:
            assert newest is not None
            rely(newest, Pointer("", ranges[reuse - 1][1], parent))
    if before_first_write is not None:
        before_first_write()
    written: list[str] = []
    size = 0
    for start, end in ranges[reuse:]:  # oldest first: a parent before its child
        body = Checkpoint(project, repository, start, end, parent, parent_start,
                          [events[s].raw for s in range(start + 1, end + 1)],
                          _manifests_of([events[s] for s in range(start + 1, end + 1)],
                                        manifests, manifest))
        data = body.encode()
        digest, _ = objects.create_bytes(data)
        written.append(digest)
        size += len(data)
        parent, parent_start = digest, start
        if cached is not None and end - start <= PERIODS[1]:
            cached.clear()
            cached[digest] = body
    assert parent is not None
    if crash is not None:
        crash("checkpoint:before-pointer")
    if before_pointer is not None:
        before_pointer()
    key = checkpoint_key(project, repository, head, parent)
    created = backend.put_if_absent(key, pointer_body(head, parent, events[head].hash,
                                                       parent_of(head)))
    return Written(Pointer(key, head, parent), created, written, size)


def _manifests_of(events: list[Event], from_chain: dict[str, bytes],
                  manifest: ManifestSource) -> list[bytes]:
    """The manifests the ``version`` events name that can be had intact (a version deleted in
    these events needs none), in the order of the events."""
    deleted = {e["version"] for e in events if e.type == "delete"}
    out: list[bytes] = []
    seen: set[str] = set()
    for e in events:
        if e.type != "version" or e["version"] in deleted or e["image"] in seen:
            continue
        digest = e["image"]
        data = from_chain.get(digest)
        if data is None:
            data = manifest(digest, e["version"])
            if data is not None and digest_bytes(data) != digest:
                data = None
        if data is not None:
            seen.add(digest)
            out.append(data)
    return out
