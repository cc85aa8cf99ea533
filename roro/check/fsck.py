"""fsck: check every ref log and every object live versions reach (git fsck, restic check).

It folds every log with the rules of :mod:`roro.refs.state` without stopping at the first problem,
reads every manifest a live version names, checks that every blob those manifests name exists,
and with ``read_data`` re-hashes every object in the store.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..digests import digest_bytes
from ..errors import IntegrityError, InvalidNameError, NotFoundError
from ..names import validate_name
from ..objects import ObjectStore
from ..objects.canonical import canonical_json, loads
from ..objects.manifest import named_blobs, read_manifest
from ..refs import Event, RepoState
from ..refs.events import parse_event
from ..refs.state import event_problem
from ..storage import Backend, KeyNotFoundError
from ..storage.layout import (
    OBJECTS_PREFIX,
    REFS_PREFIX,
    digest_from_object_key,
    object_key,
    seq_from_log_key,
)
from ..store import Store
from .report import (
    BROKEN_LOG,
    CORRUPT_OBJECT,
    INDEX_MISMATCH,
    INVALID_MANIFEST,
    MISSING_OBJECT,
    STRAY_FILE,
    FsckReport,
    Problem,
    problem_order,
)

WORKERS = 16


def fsck(store: Store, read_data: bool = False) -> FsckReport:
    """Check every ref log and every object live versions reach; see :mod:`roro.check`.

    Logs are read before objects are listed, so a save running concurrently never looks like a
    missing object (its objects are written before its event).
    """
    started = time.monotonic()
    report = FsckReport(store=store.url, read_data=read_data)
    if not store.is_initialized():  # nothing was ever written (an unknown format raises)
        return report
    with ThreadPoolExecutor(WORKERS) as pool:
        refs = _check_logs(store, report, pool)
        manifests = _check_manifests(store.backend, refs, report, pool)
        stored = _list_objects(store.backend, report)
        report.objects = len(stored)
        report.referenced = len(refs)
        report.reachable = set(refs)
        for d in sorted(set(refs) - stored):
            if d in manifests or store.backend.exists(object_key(d)):
                continue  # a manifest is reported when it is read; exists() guards a listing race
            report.problems.append(_object_problem(
                MISSING_OBJECT, d, refs[d], "is missing from the store", blocks_gc=False))
        if read_data:
            _read_data(store, sorted(stored - set(manifests)), refs, report, pool)
    report.unreferenced = sorted(stored - set(refs))
    report.problems.sort(key=problem_order)
    report.seconds = round(time.monotonic() - started, 3)
    return report


#: digest -> every (project, repository, version, role) of a live version that names the object
Refs = dict[str, list[tuple[str, str, int, str]]]


def _check_logs(store: Store, report: FsckReport, pool: ThreadPoolExecutor) -> Refs:
    """Fold every log (reporting each problem) and compare it with what the index saw; returns
    the manifests live versions name."""
    refs: Refs = {}
    # The index before the logs: it never runs ahead of a log, so read in this order a writer
    # appending meanwhile cannot make it look as if the log lost events.
    positions = store.index_positions()
    logs = _group_log_keys(store.backend.list(REFS_PREFIX), report)
    report.projects = len({p for p, _ in logs})
    report.repositories = len(logs)
    for (project, name), items in sorted(logs.items()):
        position = positions.get((project, name))
        state, seen = _check_log(store.backend, project, name, items, report, pool,
                                 position[0] if position else 0)
        _check_against_index(position, project, name, state, seen, report)
        report.versions += len(state.versions)
        report.deleted_versions += len(state.deleted)
        report.tags += len(state.tags)
        for v, ref in sorted(state.versions.items()):
            refs.setdefault(ref.image, []).append((project, name, v, "manifest"))
    return refs


def _check_manifests(backend: Backend, refs: Refs, report: FsckReport,
                     pool: ThreadPoolExecutor) -> dict[str, dict[str, Any] | None]:
    """Read and verify every manifest in ``refs``, adding the blobs each names to ``refs``."""
    uncached = ObjectStore(backend)  # fsck reads the store itself, never a local cache
    read = list(pool.map(lambda d: (d, *_read_manifest(uncached, d, refs[d], report)),
                         sorted(refs)))
    manifests = {d: manifest for d, manifest, _ in read}
    report.verified += sum(hashed for _, _, hashed in read)
    for mdigest, manifest in manifests.items():
        if manifest is None:
            continue
        for project, name, v, _ in refs[mdigest]:
            for digest, _size, role in named_blobs(manifest):
                refs.setdefault(digest, []).append((project, name, v, role))
    return manifests


def _list_objects(backend: Backend, report: FsckReport) -> set[str]:
    """The digests of the objects stored; a key that is not an object key is a stray file."""
    stored: set[str] = set()
    for key in backend.list(OBJECTS_PREFIX):
        d = digest_from_object_key(key)
        if d is None:
            report.problems.append(Problem(
                STRAY_FILE, "not an object key roro writes (objects/sha256/<2 hex>/<62 hex>); "
                "move it out of the store", key=key, blocks_gc=False))
        else:
            stored.add(d)
    return stored


def _read_data(store: Store, todo: list[str], refs: Refs, report: FsckReport,
               pool: ThreadPoolExecutor) -> None:
    """Re-hash every object of ``todo`` in the store itself."""
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


def _group_log_keys(keys: Iterable[str], report: FsckReport) -> dict[tuple[str, str], list[tuple[int, str]]]:
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


def _check_log(backend: Backend, project: str, name: str, items: list[tuple[int, str]],
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




