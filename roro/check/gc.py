"""gc: delete the objects no live version reaches, older than a grace period (git gc --prune).

It refuses to run when fsck finds a problem that makes reachability unknown (a broken log, a
missing or unreadable manifest). The grace period protects saves in flight: their objects are
written (or, when already present, touched) before the event that makes them reachable.
"""

from __future__ import annotations

import datetime
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import GcRefusedError, InvalidDurationError
from ..storage import Backend, IrregularKeyError, KeyNotFoundError
from ..storage.layout import object_key
from ..store import Store
from .fsck import WORKERS, fsck
from .report import MISSING_OBJECT, CollectedObject, FsckReport, GcReport

DEFAULT_GRACE_SECONDS = 24 * 3600


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
    candidates = _candidates(checked, grace_seconds, report)
    report.unreferenced = len(candidates)
    report.missing_blobs = sum(p.kind == MISSING_OBJECT for p in checked.problems)
    backend = store.backend

    def stat_object(digest: str) -> tuple[str, Any]:
        try:
            return digest, backend.stat(object_key(digest))
        except (KeyNotFoundError, IrregularKeyError):  # gone, or not an object (fsck says)
            return digest, None

    with ThreadPoolExecutor(WORKERS) as pool:
        infos = list(pool.map(stat_object, candidates))
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


def _candidates(checked: FsckReport, grace_seconds: float, report: GcReport) -> list[str]:
    """The objects gc may delete if they are old enough: those nothing names, and those only
    destroyed repositories name once the destroy is older than the grace period (until then a
    restore finds them; it touches them first)."""
    now = time.time()
    expired = sorted(d for d, when in checked.retained.items()
                     if now - _epoch(when) >= grace_seconds)
    report.kept_destroyed = len(checked.retained) - len(expired)
    return [*checked.unreferenced, *expired]


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


