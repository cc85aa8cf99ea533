"""gc: delete the objects no live version reaches, older than a grace period (git gc --prune).

It follows the object-reuse rule (docs/trust.md, :mod:`roro.objects.keep`), in this order:

1. take the gc lock (``gc/lock``, create-if-absent; another live gc: refuse; a dead one's stale
   lock is taken over), refreshed while it runs and released at the end;
2. list the objects with their modification times: this listing is the only age gc trusts;
3. read the keep markers younger than the grace period: every object they name is protected;
4. read every log and the manifest of every live version (fsck's scan): refuse to delete
   anything if a problem makes reachability unknown;
5. delete the objects that are unreachable, unprotected, and were older than the grace period
   when listed; the manifests of deleted versions first, then the rest (a crash midway leaves
   orphans, never a manifest naming a deleted blob of a live version);
6. delete the keep markers older than the grace period, and a folder store's stale spool files.

The grace period is at least G_min (``RORO_GC_MIN_GRACE``, default 1 h): a save relies on a
young object without writing anything, which is safe only because gc spares every object younger
than G >= G_min = 2 H.
"""

from __future__ import annotations

import datetime
import time
from concurrent.futures import ThreadPoolExecutor

from ..errors import GcRefusedError, InvalidDurationError
from ..faults import delay_point
from ..objects import ObjectStore
from ..objects.keep import MTIME_SLACK, GcLockHolder, min_grace, read_marker
from ..storage import Backend, KeyInfo
from ..storage.layout import KEEP_PREFIX, OBJECTS_PREFIX, digest_from_object_key, is_gc_key
from ..store import Store
from .checkpoints import scan_checkpoints
from .fsck import WORKERS, report_missing_blobs, scan_refs
from .report import (
    STRAY_FILE,
    UNREADABLE_MARKER,
    CollectedObject,
    FsckReport,
    GcReport,
    Problem,
    problem_order,
)

DEFAULT_GRACE_SECONDS = 24 * 3600


def gc(store: Store, grace_seconds: float = DEFAULT_GRACE_SECONDS,
       dry_run: bool = False) -> GcReport:
    """Delete objects that no live version reaches and that are older than ``grace_seconds``,
    and a folder store's temporary files older than that; with ``dry_run``, only report them
    (a dry run takes no lock and writes nothing).

    Raises :class:`~roro.errors.InvalidDurationError` for a grace period below G_min,
    :class:`~roro.errors.ConflictError` if another gc holds the lock, and
    :class:`~roro.errors.GcRefusedError` without deleting anything if a problem makes
    reachability unknown.
    """
    started = time.monotonic()
    floor = min_grace()
    if grace_seconds < 0:
        raise InvalidDurationError(f"the grace period must not be negative, got {grace_seconds}")
    if grace_seconds < floor:
        raise InvalidDurationError(
            f"the grace period {grace_seconds:g} s is below the minimum {floor:g} s "
            f"({floor / 3600:g} h; RORO_GC_MIN_GRACE sets it, for every process that uses the "
            f"store): saves rely on objects younger than half of it without writing them")
    report = GcReport(store=store.url, dry_run=dry_run, grace_seconds=grace_seconds)
    if not store.is_initialized():
        return report
    backend = store.backend
    lock = None
    if not dry_run:
        store.ensure_initialized()
        lock = GcLockHolder.acquire(backend, store.url)
    try:
        _collect(store, report, grace_seconds, lock)
    finally:
        if lock is not None:
            lock.release()
            backend.keep_reserve()  # taken back if gc needed it on a full disk
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _collect(store: Store, report: GcReport, grace: float, lock: GcLockHolder | None) -> None:
    backend = store.backend
    checked = FsckReport(store=store.url, read_data=False)
    delay_point("gc:after-lock")
    listed_at = time.time()  # ages are counted from before the listing began
    listing = _list_objects(backend, checked)
    delay_point("gc:after-list")
    protected, old_markers, unreadable = _read_markers(backend, listed_at, grace)
    delay_point("gc:after-markers")
    with ThreadPoolExecutor(WORKERS) as pool:
        refs, manifests = scan_refs(store, checked, pool)
    checkpoints = scan_checkpoints(backend, ObjectStore(backend), checked,
                                   young=lambda mtime: listed_at - mtime < grace + _slack(grace))
    for key in unreadable:
        checked.problems.append(Problem(
            UNREADABLE_MARKER, "a keep marker of a save in flight that cannot be read intact: "
            "gc cannot know what it protects, and deletes nothing until it is older than the "
            "grace period", key=key))
    blocking = [p for p in sorted(checked.problems, key=problem_order) if p.blocks_gc]
    if blocking:
        lines = "; ".join(str(p) for p in blocking[:3])
        more = f" (and {len(blocking) - 3} more)" if len(blocking) > 3 else ""
        raise GcRefusedError(
            f"gc refused: the store has {len(blocking)} problem(s) that make it impossible to know "
            f"which objects are still needed, so nothing was deleted: {lines}{more}; run "
            f"'roro fsck' and repair the store first", report=checked)
    delay_point("gc:after-logs")
    report.objects = len(listing)
    report.missing_blobs = report_missing_blobs(backend, refs, manifests, set(listing), checked)
    kept_destroyed = _kept_destroyed(checked, listed_at, grace)
    doomed: list[tuple[str, KeyInfo, float]] = []
    for digest, info in listing.items():
        if digest in checked.reachable:
            continue
        if digest in checkpoints.kept:
            report.kept_checkpoints += 1
            continue
        if digest in kept_destroyed:
            report.kept_destroyed += 1
            continue
        report.unreferenced += 1
        age = listed_at - info.mtime
        if age < grace + _slack(grace):
            report.kept_young += 1
            report.kept_young_bytes += info.size
        elif digest in protected:
            report.kept_protected += 1
        else:
            doomed.append((digest, info, age))
    # Older checkpoint pointers before any object (a reader then never finds a pointer to an
    # object gc took; only the newest chain of each repository is kept).
    older = checkpoints.older_pointers()
    if lock is not None:
        for key in older:
            lock.check_alive()
            backend.delete(key)
    report.checkpoints_deleted = len(older)
    # Manifests of deleted versions before the blobs they name.
    doomed.sort(key=lambda d: (d[0] not in checked.images, d[0]))
    for digest, info, age in doomed:
        if lock is not None:
            lock.check_alive()
            backend.delete(info.key)
        report.deleted.append(CollectedObject(digest, info.key, info.size, round(age, 3)))
    if lock is not None:
        for key in old_markers:
            backend.delete(key)
        report.markers_deleted = len(old_markers)
    report.temp_files = _collect_temp_files(backend, grace, lock is None)


def _list_objects(backend: Backend, checked: FsckReport) -> dict[str, KeyInfo]:
    """Every object with its size and modification time, from one listing."""
    listing: dict[str, KeyInfo] = {}
    for info in backend.list_info(OBJECTS_PREFIX):
        digest = digest_from_object_key(info.key)
        if digest is None:
            checked.problems.append(Problem(
                STRAY_FILE, "not an object key roro writes; move it out of the store",
                key=info.key, blocks_gc=False))
        else:
            listing[digest] = info
    return listing


def _read_markers(backend: Backend, listed_at: float,
                  grace: float) -> tuple[set[str], list[str], list[str]]:
    """The objects keep markers younger than ``grace`` protect, the markers older than it (to
    delete at the end), and the young ones that cannot be read intact (gc then deletes
    nothing: it cannot know what they protect)."""
    protected: set[str] = set()
    old: list[str] = []
    unreadable: list[str] = []
    for info in backend.list_info(KEEP_PREFIX):
        if not is_gc_key(info.key):
            continue  # fsck reports it
        if listed_at - info.mtime >= grace + _slack(grace):
            old.append(info.key)
            continue
        digests = read_marker(backend, info.key)
        if digests is None:
            unreadable.append(info.key)
        else:
            protected.update(digests)
    return protected, old, unreadable


def _slack(grace: float) -> float:
    """S3 keeps whole seconds: gc counts an object one second younger than its listed time says
    (except with no grace period at all, which spares nothing)."""
    return MTIME_SLACK if grace > 0 else 0.0


def _kept_destroyed(checked: FsckReport, now: float, grace: float) -> set[str]:
    """The objects only destroyed repositories name whose destroy is younger than the grace
    period: kept, so that a restore finds them (it relies on them as a save does, protecting
    old ones with a keep marker); after it they are collected like unreferenced objects."""
    return {d for d, when in checked.retained.items() if now - _epoch(when) < grace}


def _epoch(iso: str) -> float:
    """An event's ISO 8601 UTC time as seconds since the epoch (0 if it cannot be read: such an
    object is as old as can be, and still only collected past its own mtime grace)."""
    try:
        return datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return 0.0


def _collect_temp_files(backend: Backend, grace_seconds: float,
                        dry_run: bool) -> list[CollectedObject]:
    """Spool files that a crashed writer left behind (a folder store's ``tmp/`` directory)."""
    now = time.time()
    return [CollectedObject(None, info.key, info.size, round(now - info.mtime, 3))
            for info in backend.collect_temp(grace_seconds, dry_run)]
