"""Checking and collecting a store: ``fsck`` (git fsck / restic check) and ``gc`` (git gc --prune).

Both work on a whole store, every project: objects are shared by all of them.

:func:`fsck` reads every ref log, folds it with the rules of :mod:`roro.refs.state` without stopping
at the first problem, reads every manifest a live version names, and checks that every blob those
manifests name exists; with ``read_data`` it also re-hashes every object in the store. It returns an
:class:`FsckReport`: the problems (each naming what it can of project, repository, event, version,
object digest, expected and actual hash), and the objects no live version reaches.

:func:`gc` deletes the objects no live version reaches that are older than a grace period, and stale
temporary files of a folder store. It refuses to run when fsck finds a problem that makes
reachability unknown (a broken log, a missing or unreadable manifest).

Reachability: an object is *live* if a live (not deleted) version's manifest is it or names it.
Objects that only deleted versions name are collectable, like objects of a save that crashed.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .digests import digest_bytes
from .errors import (
    GcRefusedError,
    IntegrityError,
    InvalidDurationError,
    InvalidNameError,
    NotFoundError,
)
from .names import validate_name
from .objects import ObjectStore
from .objects.canonical import canonical_json, loads
from .objects.manifest import read_manifest
from .refs.events import Event, parse_event
from .refs.state import RepoState, event_problem
from .storage import Backend, KeyNotFoundError
from .storage.layout import (
    OBJECTS_PREFIX,
    REFS_PREFIX,
    digest_from_object_key,
    object_key,
    seq_from_log_key,
)

if TYPE_CHECKING:
    from .store import Store

__all__ = ["FsckReport", "GcReport", "Problem", "fsck", "gc", "parse_duration",
           "DEFAULT_GRACE_SECONDS"]

DEFAULT_GRACE_SECONDS = 24 * 3600
WORKERS = 16

# Problem kinds. Each is a short stable string (the CLI's --json output and tests match on them).
BROKEN_LOG = "broken-log"            # an event missing, unreadable, out of chain or against the rules
STRAY_FILE = "stray-file"            # a key under refs/ or objects/ that roro cannot have written
MISSING_OBJECT = "missing-object"    # a manifest or blob that a live version needs is not stored
CORRUPT_OBJECT = "corrupt-object"    # an object whose bytes do not hash to its name
INVALID_MANIFEST = "invalid-manifest"  # a manifest that is not valid JSON or not a manifest
INDEX_MISMATCH = "index-mismatch"    # the local index saw log events that the store no longer has


@dataclass
class Problem:
    """One thing fsck found wrong. Fields that do not apply are None."""

    kind: str
    message: str
    project: str | None = None
    repository: str | None = None
    seq: int | None = None          # the ref-log event
    version: int | None = None
    digest: str | None = None       # the object (or, for a broken chain, the event) concerned
    expected: str | None = None     # what the digest should have been
    actual: str | None = None       # what it is
    object: str | None = None       # what the object is: "manifest", "model", "attachment NAME"
    key: str | None = None          # the storage key (stray files)
    references: list[str] = field(default_factory=list)  # every live version naming the object
    blocks_gc: bool = True          # reachability is unknown while this problem exists

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def where(self) -> str:
        """Where the problem is, for one-line display: ``project/repo:3 event 7 sha256:…``."""
        parts = []
        if self.repository is not None:
            name = f"{self.project}/{self.repository}" if self.project else self.repository
            parts.append(name if self.version is None else f"{name}:{self.version}")
        if self.seq is not None:
            parts.append(f"event {self.seq}")
        if self.digest is not None:
            parts.append(self.digest)
        if self.key is not None:
            parts.append(self.key)
        return " ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{self.kind}: {where}: {self.message}" if where else f"{self.kind}: {self.message}"


@dataclass
class FsckReport:
    """What :func:`fsck` checked and found. ``ok`` is True when there is no problem; unreferenced
    objects are reported, but are not problems."""

    store: str
    read_data: bool
    projects: int = 0
    repositories: int = 0
    events: int = 0
    versions: int = 0             # live versions
    deleted_versions: int = 0
    tags: int = 0
    objects: int = 0              # objects in the store
    referenced: int = 0           # distinct objects that live versions reach
    verified: int = 0             # objects re-hashed (manifests always; everything with read_data)
    problems: list[Problem] = field(default_factory=list)
    unreferenced: list[str] = field(default_factory=list)  # digests, sorted
    seconds: float = 0.0
    reachable: set[str] = field(default_factory=set, repr=False)  # for gc; not in to_dict()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "reachable"}
        out["ok"] = self.ok
        return out


@dataclass
class CollectedObject:
    """An object (or temporary file) gc deleted, or would delete on a dry run."""

    digest: str | None
    key: str
    size: int
    age_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GcReport:
    """What :func:`gc` deleted (or, with ``dry_run``, would delete) and what it kept."""

    store: str
    dry_run: bool
    grace_seconds: float
    objects: int = 0                 # objects in the store before gc
    unreferenced: int = 0
    deleted: list[CollectedObject] = field(default_factory=list)
    temp_files: list[CollectedObject] = field(default_factory=list)
    kept_young: int = 0              # unreferenced but younger than the grace period
    kept_young_bytes: int = 0
    missing_blobs: int = 0           # live versions' blobs fsck found missing (gc cannot help)
    seconds: float = 0.0

    @property
    def freed_bytes(self) -> int:
        return sum(o.size for o in self.deleted) + sum(t.size for t in self.temp_files)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["freed_bytes"] = self.freed_bytes
        return out


# -- fsck -----------------------------------------------------------------------------------------

def fsck(store: Store, read_data: bool = False) -> FsckReport:
    """Check every ref log and every object live versions reach; see the module documentation.

    Logs are read before objects are listed, so a save running concurrently never looks like a
    missing object (its objects are written before its event).
    """
    started = time.monotonic()
    report = FsckReport(store=store.url, read_data=read_data)
    if not store.is_initialized():  # nothing was ever written (an unknown format raises)
        return report
    backend = store.backend
    refs: dict[str, list[tuple[str, str, int, str]]] = {}  # digest -> (project, repo, version, what)

    # The index before the logs: it never runs ahead of a log, so read in this order a writer
    # appending meanwhile cannot make it look as if the log lost events.
    positions = store.index_positions()
    logs = _group_log_keys(backend.list(REFS_PREFIX), report)
    report.projects = len({p for p, _ in logs})
    report.repositories = len(logs)
    with ThreadPoolExecutor(WORKERS) as pool:
        for (project, name), items in sorted(logs.items()):
            position = positions.get((project, name))
            state, seen = _check_log(backend, project, name, items, report, pool,
                                     position[0] if position else 0)
            _check_against_index(position, project, name, state, seen, report)
            report.versions += len(state.versions)
            report.deleted_versions += len(state.deleted)
            report.tags += len(state.tags)
            for v, ref in sorted(state.versions.items()):
                refs.setdefault(ref.image, []).append((project, name, v, "manifest"))

        uncached = ObjectStore(backend)  # fsck reads the store itself, never a local cache
        read = list(pool.map(lambda d: (d, *_read_manifest(uncached, d, refs[d], report)),
                             sorted(refs)))
        manifests = {d: manifest for d, manifest, _ in read}
        report.verified += sum(hashed for _, _, hashed in read)
        for mdigest, manifest in manifests.items():
            if manifest is None:
                continue
            for project, name, v, _ in refs[mdigest]:
                refs.setdefault(manifest["model"]["digest"], []).append((project, name, v, "model"))
                for a in manifest["attachments"]:
                    refs.setdefault(a["digest"], []).append(
                        (project, name, v, f"attachment {a['name']}"))

        stored: set[str] = set()
        for key in backend.list(OBJECTS_PREFIX):
            d = digest_from_object_key(key)
            if d is None:
                report.problems.append(Problem(
                    STRAY_FILE, "not an object key roro writes (objects/sha256/<2 hex>/<62 hex>); "
                    "move it out of the store", key=key, blocks_gc=False))
            else:
                stored.add(d)
        report.objects = len(stored)
        report.referenced = len(refs)
        report.reachable = set(refs)

        for d in sorted(set(refs) - stored):
            if d in manifests or backend.exists(object_key(d)):
                continue  # a manifest is reported when it is read; exists() guards a listing race
            report.problems.append(_object_problem(
                MISSING_OBJECT, d, refs[d], "is missing from the store", blocks_gc=False))

        if read_data:
            todo = sorted(stored - set(manifests))
            for d, err in pool.map(lambda d: (d, _verify(store, d)), todo):
                report.verified += 1
                if isinstance(err, IntegrityError):
                    who = refs.get(d, [])
                    note = "" if who else "; no live version uses it, gc will remove it"
                    report.problems.append(_object_problem(
                        CORRUPT_OBJECT, d, who, f"is corrupted: its bytes hash to {err.actual}{note}",
                        expected=d, actual=err.actual, blocks_gc=False))
                elif err is not None and d in refs:  # vanished since the listing: report it
                    report.problems.append(_object_problem(
                        MISSING_OBJECT, d, refs[d], "is missing from the store", blocks_gc=False))

    report.unreferenced = sorted(stored - set(refs))
    report.problems.sort(key=_problem_order)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _group_log_keys(keys, report: FsckReport) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """Group the keys under refs/ by repository; report every key that is not a log event."""
    logs: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for key in keys:
        parts = key[len(REFS_PREFIX):].split("/")
        seq = seq_from_log_key(key)
        valid = len(parts) == 4 and parts[2] == "log" and seq is not None and seq > 0
        if valid:
            try:
                validate_name(parts[0], "project")
                validate_name(parts[1])
            except InvalidNameError:
                valid = False
        if not valid:
            project = parts[0] if len(parts) > 1 else None
            repository = parts[1] if len(parts) > 2 else None
            report.problems.append(Problem(
                STRAY_FILE, "not a ref-log event roro writes (refs/<project>/<repository>/log/"
                "<10 digits>.json); roro ignores nothing here, so move it out of the store",
                project=project, repository=repository, key=key))
            continue
        assert seq is not None
        logs.setdefault((parts[0], parts[1]), []).append((seq, key))
    for items in logs.values():
        items.sort()
    return logs


def _check_log(backend, project: str, name: str, items: list[tuple[int, str]],
               report: FsckReport, pool: ThreadPoolExecutor,
               watch_seq: int) -> tuple[RepoState, str | None]:
    """Fold one log, reporting every problem and reading on past it. Returns the state and the
    hash of event ``watch_seq`` (None if there is no such event)."""
    def problem(message: str, **kw: Any) -> None:
        report.problems.append(Problem(BROKEN_LOG, message, project=project, repository=name, **kw))

    def fetch(item: tuple[int, str]) -> bytes | None:
        try:
            return backend.get(item[1])
        except KeyNotFoundError:
            return None

    state = RepoState(name)
    seen = None
    for (seq, _), raw in zip(items, pool.map(fetch, items), strict=True):
        report.events += 1
        if seq == watch_seq and raw is not None:
            seen = digest_bytes(raw)
        gap = seq != state.last_seq + 1
        if gap:
            first, last = state.last_seq + 1, seq - 1
            which = f"event {first} is" if first == last else f"events {first} to {last} are"
            problem(f"{which} missing: the log was edited (an entry removed or renamed)",
                    seq=first)
        if raw is None:
            problem("the event vanished while it was read", seq=seq)
            state.last_seq, state.last_hash = seq, None
            continue
        try:
            event = parse_event(raw, repository=name, seq=seq)
        except IntegrityError as e:
            problem(_reason(str(e)), seq=seq, digest=digest_bytes(raw))
            lenient = _parse_leniently(raw, name, seq)
            if lenient is not None:  # e.g. re-indented by hand: read on with what it says
                state.apply(lenient, checked=False)
            state.last_seq, state.last_hash = seq, digest_bytes(raw)
            continue
        if not gap and event.prev != state.last_hash:
            before = seq - 1
            problem(f"hash chain broken: event {seq} records {event.prev} as the hash of event "
                    f"{before}, but event {before} hashes to {state.last_hash}: event {before} was "
                    f"changed, or event {seq} was not written after it",
                    seq=seq, version=_version_of(event), digest=event.hash,
                    expected=event.prev, actual=state.last_hash)
        state.last_seq, state.last_hash = seq - 1, event.prev  # judge the event on its own merits
        why = event_problem(state, event)
        if why is not None:
            problem(why, seq=seq, version=_version_of(event),
                    digest=event["image"] if event.type == "version" else event.hash)
            state.apply(event, checked=False)
        else:
            state.apply(event)
    return state, seen


def _parse_leniently(raw: bytes, name: str, seq: int) -> Event | None:
    """The event ``raw`` would be in canonical form, if that is its only fault."""
    try:
        return parse_event(canonical_json(loads(raw)), repository=name, seq=seq)
    except (ValueError, TypeError, IntegrityError):
        return None


def _reason(message: str) -> str:
    """The why of a parse_event message, without its "ref log of 'x' is broken at event n" frame."""
    message = message.removesuffix("; run 'roro fsck'")
    _, sep, why = message.partition(": ")
    return why if sep else message


def _version_of(event: Event) -> int | None:
    v = event.payload.get("version")
    return v if isinstance(v, int) else None


def _check_against_index(position: tuple[int, str | None] | None, project: str, name: str,
                         state: RepoState, seen: str | None, report: FsckReport) -> None:
    """A log is append-only, so the event the index saw last must still be there, unchanged. The
    hash chain cannot show by itself that events were cut from the end, or that the whole chain
    was rewritten from some event on; the index remembers what it saw."""
    if position is None or position[0] <= 0:
        return
    seq, last_hash = position
    if seq > state.last_seq:
        why = (f"the local index saw event {seq}, but the log ends at event {state.last_seq}: "
               f"events were removed from its end")
    elif seen != last_hash:
        why = (f"event {seq} is not the event the local index saw there: the history was "
               f"rewritten")
    else:
        return
    report.problems.append(Problem(
        INDEX_MISMATCH, f"{why}, or the store was restored from an older copy (if so, run "
        f"'roro index --rebuild')", project=project, repository=name, seq=seq,
        expected=last_hash, actual=seen))


def _read_manifest(objects: ObjectStore, digest: str, who: list[tuple[str, str, int, str]],
                   report: FsckReport) -> tuple[dict[str, Any] | None, bool]:
    """Read and verify a live version's manifest from the store itself (``objects`` has no
    cache); report what is wrong. Returns the manifest (None if unusable) and whether its bytes
    were hashed."""
    try:
        return read_manifest(objects, digest)[0], True
    except NotFoundError:
        report.problems.append(_object_problem(MISSING_OBJECT, digest, who,
                                               "is missing from the store"))
        return None, False
    except IntegrityError as e:
        if e.actual is not None:
            report.problems.append(_object_problem(
                CORRUPT_OBJECT, digest, who, f"is corrupted: its bytes hash to {e.actual}",
                expected=digest, actual=e.actual))
        else:
            report.problems.append(_object_problem(
                INVALID_MANIFEST, digest, who,
                f"is not a valid image manifest: {_reason(str(e))}"))
        return None, True


def _verify(store: Store, digest: str) -> Exception | None:
    try:
        store.objects.verify(digest)
    except (IntegrityError, LookupError) as e:
        return e
    return None


def _first(who: list[tuple[str, str, int, str]]) -> tuple[str, str, int, str]:
    return min(who)


def _object_problem(kind: str, digest: str, who: list[tuple[str, str, int, str]], what: str,
                    blocks_gc: bool = True, **kw: Any) -> Problem:
    if not who:
        return Problem(kind, f"object {digest} {what}", digest=digest, blocks_gc=blocks_gc, **kw)
    project, name, version, role = _first(who)
    return Problem(kind, f"{role} {digest} of {name}:{version} {what}", project=project,
                   repository=name, version=version, digest=digest, object=role,
                   references=[f"{p}/{n}:{v} ({r})" for p, n, v, r in sorted(who)],
                   blocks_gc=blocks_gc, **kw)


def _problem_order(p: Problem) -> tuple:
    return (p.project or "", p.repository or "", p.seq or 0, p.version or 0, p.kind,
            p.digest or "", p.key or "")


# -- gc -------------------------------------------------------------------------------------------

def gc(store: Store, grace_seconds: float = DEFAULT_GRACE_SECONDS,
       dry_run: bool = False) -> GcReport:
    """Delete objects that no live version reaches and that are older than ``grace_seconds``, and
    a folder store's temporary files older than that; with ``dry_run``, only report them.

    The grace period protects saves in flight: their objects are written (or, when already present,
    touched) before the event that makes them reachable. Raises
    :class:`~roro.errors.GcRefusedError` without deleting anything if fsck finds a problem that
    makes reachability unknown.
    """
    started = time.monotonic()
    if grace_seconds < 0:
        raise InvalidDurationError(f"the grace period must not be negative, got {grace_seconds}")
    report = GcReport(store=store.url, dry_run=dry_run, grace_seconds=grace_seconds)
    checked = fsck(store)
    blocking = [p for p in checked.problems if p.blocks_gc]
    if blocking:
        lines = "; ".join(str(p) for p in blocking[:3])
        more = f" (and {len(blocking) - 3} more)" if len(blocking) > 3 else ""
        raise GcRefusedError(
            f"gc refused: the store has {len(blocking)} problem(s) that make it impossible to know "
            f"which objects are still needed, so nothing was deleted: {lines}{more}; run "
            f"'roro fsck' and repair the store first", report=checked)
    report.objects = checked.objects
    report.unreferenced = len(checked.unreferenced)
    report.missing_blobs = sum(p.kind == MISSING_OBJECT for p in checked.problems)
    backend = store.backend

    def stat_object(digest: str) -> tuple[str, Any]:
        try:
            return digest, backend.stat(object_key(digest))
        except KeyNotFoundError:
            return digest, None

    with ThreadPoolExecutor(WORKERS) as pool:
        infos = list(pool.map(stat_object, checked.unreferenced))
    for digest, info in infos:
        if info is None:
            continue  # deleted meanwhile (another gc)
        age = time.time() - info.mtime
        if age < grace_seconds:
            report.kept_young += 1
            report.kept_young_bytes += info.size
            continue
        if not dry_run:
            # A save that re-uses this object touches it before writing its event: look again
            # right before deleting, to keep the window for that race as small as it can be.
            again = stat_object(digest)[1]
            if again is None or time.time() - again.mtime < grace_seconds:
                continue
            backend.delete(info.key)
        report.deleted.append(CollectedObject(digest, info.key, info.size, round(age, 3)))

    report.temp_files = _collect_temp_files(backend, grace_seconds, dry_run)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _collect_temp_files(backend: Backend, grace_seconds: float,
                        dry_run: bool) -> list[CollectedObject]:
    """Spool files that a crashed writer left behind (a folder store's ``tmp/`` directory)."""
    now = time.time()
    return [CollectedObject(None, info.key, info.size, round(now - info.mtime, 3))
            for info in backend.collect_temp(grace_seconds, dry_run)]


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration such as ``24h``, ``30m``, ``7d``, ``2w``, ``1h30m``, ``90s`` or a
    plain number of seconds; ``0`` is allowed (gc then spares nothing, not even saves in flight)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise InvalidDurationError(f"invalid duration {text!r}: it must not be negative")
        return float(text)
    s = str(text).strip().lower()
    try:
        value = float(s)
    except ValueError:
        pos, total = 0, 0.0
        for m in _DURATION_RE.finditer(s):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(s) or not s:
            raise InvalidDurationError(
                f"invalid duration {text!r}: use a number with a unit s, m, h, d or w, such as "
                f"'24h', '30m' or '7d'") from None
        return total
    if value < 0 or value != value or value == float("inf"):
        raise InvalidDurationError(f"invalid duration {text!r}: it must be a finite number >= 0")
    return value
