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

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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


def decode(data: bytes, digest: str, project: str, repository: str) -> Checkpoint:
    """The checkpoint in ``data`` (the verified bytes of object ``digest``), with every shape
    check a reader needs; :class:`CheckpointError` for anything else."""
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {digest} of {project}/{repository} is not valid: "
                               f"{why}", digest=digest, repository=repository)
    limit = max(MIN_RAW_LIMIT, INFLATION * len(data))
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, limit)
    except zlib.error as e:
        raise bad(f"not zlib data ({e})") from None
    if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
        raise bad(f"it inflates to more than {limit} bytes, or does not end where it should")
    if not raw.startswith(MAGIC):
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
    pos = end + 1
    size = len(raw)
    unpack = _LEN.unpack_from
    parts: list[list[bytes]] = []
    for first, count, most in ((0, header["events"], MAX_EVENT_SIZE),
                               (header["events"], header["manifests"], MAX_MANIFEST_SIZE)):
        records: list[bytes] = []
        append = records.append
        for i in range(first, first + count):
            if pos + 4 > size:
                raise bad("it is truncated")
            (n,) = unpack(raw, pos)
            pos += 4
            if n > most or pos + n > size:
                raise bad(f"record {i} is too large or truncated")
            append(raw[pos:pos + n])
            pos += n
        parts.append(records)
    if pos != size:
        raise bad("it holds more than its header says")
    return Checkpoint(project, repository, start, stop, parent, header["parent_start"],
                      parts[0], parts[1])


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
                repository: str) -> Checkpoint:
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
    return decode(data, digest, project, repository)


def load_chain(objects: ObjectStore, project: str, repository: str, digest: str, end: int,
               down_to: int = 0,
               cached: dict[str, Checkpoint] | None = None) -> list[tuple[str, Checkpoint]]:
    """The checkpoint objects from ``digest`` (which must end at ``end``) back to the one that
    starts at or below ``down_to``, newest first, each read verified and decoded; their ranges
    must join. :class:`CheckpointError` otherwise. ``cached``: objects this process wrote
    itself, by digest (not read again)."""
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
            project, repository) else read_object(objects, current, project, repository)
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
        named = {e["image"] for e in events if e.type == "version"}
        stray = sorted(set(found) - named)
        if stray:
            raise CheckpointError(f"it holds manifest {stray[0]}, which none of its events "
                                  f"names", digest=stray[0])
    return found


def read_verified(log: RefLog, objects: ObjectStore,
                  warn: Callable[[str], None]) -> tuple[list[Event], dict[str, bytes]] | None:
    """A cold reader's start: events 1..N and the manifests of the newest checkpoint, verified
    against the real log (one read of event N), or None when there is no checkpoint or it is
    wrong (``warn`` says why, once; the caller reads the log instead)."""
    project, repository = log.project, log.repository
    pointer = newest_pointer(log.backend, project, repository)
    if pointer is None:
        return None
    try:
        chain = load_chain(objects, project, repository, pointer.digest, pointer.seq)
        events = verified_events(chain, project, repository)
        if len(events) != pointer.seq:
            raise CheckpointError("its chain does not start at event 1")
        try:
            real = log.backend.get(log_key(project, repository, pointer.seq), MAX_EVENT_SIZE)
        except KeyNotFoundError:
            raise CheckpointError(f"the log has no event {pointer.seq}") from None
        if real != events[-1].raw:
            raise CheckpointError(f"its event {pointer.seq} is not the log's event "
                                  f"{pointer.seq}")
        return events, chain_manifests(chain, events)
    except IntegrityError as e:  # CheckpointError, or an unreadable event of the log
        warn(f"the checkpoint {pointer.key} of {project}/{repository} was ignored ({e}); the "
             f"log was read instead (run 'roro fsck', then 'roro checkpoint {repository}')")
        return None


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
