"""Sync and copy between stores: fast-forward ref logs, copy only the missing objects, verified.

:func:`sync` makes DST hold SRC's history (DESIGN.md §6). For each repository:

1. DST's log must be a prefix of SRC's, compared by hash chain: DST's last event (from DST's
   index, refreshed first) must be byte-identical (same sha256) to SRC's event at the same
   sequence number. Otherwise the repository is a *conflict* (diverged), or *ahead* (DST already
   holds all of SRC's events and more), and it is left untouched.
2. The events DST lacks are read from SRC and judged by the fold rules on top of DST's state, so a
   broken SRC log is never copied.
3. The objects they name (manifests, and the blobs the manifests name) that DST lacks are copied in
   parallel, each verified on the way: streamed from SRC into a hashing spool, put only if it hashes
   to its name (or copied server-side and then re-hashed in DST). Blobs land before manifests,
   manifests before the events that name them. A mismatch aborts that repository before any of
   its events is written in DST, naming the object.
4. The events are appended byte-for-byte, in order, with create-if-absent. A slot taken by
   different bytes means another writer won the race: that repository stops and is a conflict.

A run killed anywhere leaves DST with orphan objects and/or a prefix of SRC's events, which is a
valid state the next run continues from. A finished sync re-run transfers nothing.

:func:`copy_image` appends one image to a repository whatever its history (the promotion path when
histories differ), recording where it came from in the manifest's ``lineage.copied_from``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .config import current_settings, resolve_store
from .errors import IntegrityError, InvalidNameError, NotFoundError, RoroError
from .names import parse_refspec, validate_name
from .objects.manifest import read_manifest
from .objects.transfer import ObjectTransfer, missing_in
from .project import Project
from .refs import Event, Index, apply_event, fold, list_projects, list_repositories
from .repository import copy_into
from .storage import KeyNotFoundError
from .storage.layout import log_key
from .storage.wrappers import CountingBackend
from .store import Store
from .units import format_bytes

__all__ = ["CopyReport", "RepositorySync", "SyncProgress", "SyncReport", "copy_image", "sync"]

DEFAULT_WORKERS = 8
CHUNK = 1 << 20

# Statuses of one repository in a sync report.
SYNCED = "synced"          # events were appended to DST
UP_TO_DATE = "up-to-date"  # DST already had every event of SRC
AHEAD = "ahead"            # DST holds all of SRC's events and more; nothing to do
PENDING = "pending"        # dry run: DST is behind; this is what a real run would do
CONFLICT = "conflict"      # histories diverged, or another writer won an append race
FAILED = "failed"          # SRC could not be trusted (corrupted/missing object, broken log)


def _counted(store: Store) -> tuple[Store, CountingBackend]:
    """A second handle on ``store`` (same backend, so the same index file) whose requests are
    counted."""
    counter = CountingBackend(store.backend)
    return Store(counter), counter


# -- reports --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncProgress:
    """What a progress callback receives; ``bytes_total`` is what the manifests announce."""

    project: str
    repository: str
    phase: str  # "objects", "events" or "done"
    objects_done: int
    objects_total: int
    bytes_done: int
    bytes_total: int
    events_done: int
    events_total: int


@dataclass
class RepositorySync:
    """The outcome for one repository. In a dry run the counts are what a real run would do."""

    project: str
    repository: str
    status: str = UP_TO_DATE
    events_appended: int = 0
    objects_transferred: int = 0
    bytes_transferred: int = 0
    objects_skipped: int = 0
    bytes_skipped: int = 0
    message: str = ""
    common_seq: int | None = None       # conflicts: how many events both logs share
    src_last: dict[str, Any] | None = None  # conflicts: SRC's last event and latest version
    dst_last: dict[str, Any] | None = None  # conflicts: DST's last event and latest version

    @property
    def name(self) -> str:
        return f"{self.project}/{self.repository}"

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "repository": self.repository, "status": self.status,
                "events_appended": self.events_appended,
                "objects_transferred": self.objects_transferred,
                "bytes_transferred": self.bytes_transferred,
                "objects_skipped": self.objects_skipped, "bytes_skipped": self.bytes_skipped,
                "message": self.message, "common_seq": self.common_seq,
                "src_last": self.src_last, "dst_last": self.dst_last}


def _requests_dict(src: CountingBackend, dst: CountingBackend) -> dict[str, dict[str, int]]:
    return {"src": dict(sorted(src.counts.items())), "dst": dict(sorted(dst.counts.items()))}


def _total(requests: dict[str, dict[str, int]]) -> int:
    return sum(n for side in requests.values() for n in side.values())


@dataclass
class SyncReport:
    """What :func:`sync` did (or, with ``dry_run``, would do). ``ok`` is False if any repository
    conflicted or failed; a CLI exits non-zero then."""

    src: str
    dst: str
    dry_run: bool = False
    repositories: list[RepositorySync] = field(default_factory=list)
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    elapsed: float = 0.0
    server_side_copy: bool = False

    def _status(self, status: str) -> list[RepositorySync]:
        return [r for r in self.repositories if r.status == status]

    @property
    def synced(self) -> list[RepositorySync]:
        return self._status(SYNCED)

    @property
    def up_to_date(self) -> list[RepositorySync]:
        return self._status(UP_TO_DATE)

    @property
    def ahead(self) -> list[RepositorySync]:
        return self._status(AHEAD)

    @property
    def pending(self) -> list[RepositorySync]:
        return self._status(PENDING)

    @property
    def conflicted(self) -> list[RepositorySync]:
        return self._status(CONFLICT)

    @property
    def failed(self) -> list[RepositorySync]:
        return self._status(FAILED)

    @property
    def ok(self) -> bool:
        return not self.conflicted and not self.failed

    def _sum(self, attr: str) -> int:
        return sum(getattr(r, attr) for r in self.repositories)

    @property
    def events_appended(self) -> int:
        return self._sum("events_appended")

    @property
    def objects_transferred(self) -> int:
        return self._sum("objects_transferred")

    @property
    def bytes_transferred(self) -> int:
        return self._sum("bytes_transferred")

    @property
    def objects_skipped(self) -> int:
        return self._sum("objects_skipped")

    @property
    def bytes_skipped(self) -> int:
        return self._sum("bytes_skipped")

    @property
    def request_count(self) -> int:
        return _total(self.requests)

    @property
    def transferred_nothing(self) -> bool:
        return self.events_appended == 0 and self.objects_transferred == 0

    def summary(self) -> str:
        """One line for humans, e.g. for the end of ``roro sync``."""
        n = len(self.repositories)
        tail = f"{self.request_count:,} requests in {self.elapsed:.1f} s"
        if self.transferred_nothing and self.ok and not self.pending:
            what = "repository" if n == 1 else "repositories"
            return f"DST is up to date: nothing to transfer ({n} {what} checked; {tail})"
        verb = "would copy" if self.dry_run else "copied"
        parts = []
        for label, items in (("would sync" if self.dry_run else "synced", self.pending
                              if self.dry_run else self.synced),
                             ("up to date", self.up_to_date), ("ahead", self.ahead),
                             ("conflicted", self.conflicted), ("failed", self.failed)):
            if items:
                parts.append(f"{len(items)} {label}")
        return (f"{', '.join(parts)}; {self.events_appended:,} events, "
                f"{self.objects_transferred:,} objects ({format_bytes(self.bytes_transferred)}) {verb}, "
                f"{self.objects_skipped:,} objects ({format_bytes(self.bytes_skipped)}) already in DST; "
                f"{tail}")

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "dry_run": self.dry_run, "ok": self.ok,
                "synced": [r.name for r in self.synced],
                "up_to_date": [r.name for r in self.up_to_date],
                "ahead": [r.name for r in self.ahead],
                "pending": [r.name for r in self.pending],
                "conflicted": [r.name for r in self.conflicted],
                "failed": [r.name for r in self.failed],
                "events_appended": self.events_appended,
                "objects_transferred": self.objects_transferred,
                "bytes_transferred": self.bytes_transferred,
                "objects_skipped": self.objects_skipped, "bytes_skipped": self.bytes_skipped,
                "requests": self.request_count, "requests_by_operation": self.requests,
                "server_side_copy": self.server_side_copy,
                "elapsed": round(self.elapsed, 3),
                "repositories": [r.to_dict() for r in self.repositories],
                "summary": self.summary()}


@dataclass
class CopyReport:
    """What :func:`copy_image` did. ``created`` is False when DST's latest version already was
    this very copy (a re-run appends nothing). Object counts are of the image's blobs (model and
    attachments); the new manifest is written in addition."""

    src: str
    dst: str
    project: str
    repository: str
    version: int
    image: str
    dst_project: str
    dst_repository: str
    dst_version: int
    dst_image: str
    created: bool
    objects_transferred: int = 0
    bytes_transferred: int = 0
    objects_skipped: int = 0
    bytes_skipped: int = 0
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    elapsed: float = 0.0
    ok: bool = True

    @property
    def request_count(self) -> int:
        return _total(self.requests)

    def summary(self) -> str:
        src = f"{self.project}/{self.repository}:{self.version}"
        dst = f"{self.dst_project}/{self.dst_repository}:{self.dst_version}"
        if not self.created:
            return (f"{dst} already is a copy of {src}: nothing appended "
                    f"({self.request_count:,} requests in {self.elapsed:.1f} s)")
        return (f"copied {src} to {dst} ({self.objects_transferred:,} objects, "
                f"{format_bytes(self.bytes_transferred)} transferred; {self.objects_skipped:,} already "
                f"in DST; {self.request_count:,} requests in {self.elapsed:.1f} s)")

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "ok": self.ok, "project": self.project,
                "repository": self.repository, "version": self.version, "image": self.image,
                "dst_project": self.dst_project, "dst_repository": self.dst_repository,
                "dst_version": self.dst_version, "dst_image": self.dst_image,
                "created": self.created, "objects_transferred": self.objects_transferred,
                "bytes_transferred": self.bytes_transferred,
                "objects_skipped": self.objects_skipped, "bytes_skipped": self.bytes_skipped,
                "requests": self.request_count, "requests_by_operation": self.requests,
                "elapsed": round(self.elapsed, 3), "summary": self.summary()}


# -- judging the events to append -----------------------------------------------------------------
class _AppendView:
    """DST's state (from its refreshed index) with the events about to be appended applied on top,
    in memory: the reducer judges each against it (a :class:`~roro.refs.state.RepoMutator`)."""

    def __init__(self, index: Index | None, project: str, name: str, row: dict[str, Any] | None):
        self.index, self.project, self.name = index, project, name
        self.last_seq = row["last_seq"] if row else 0
        self.last_hash = row["last_hash"] if row else None
        self.max_version = row["max_version"] if row else 0
        self._tags: dict[str, int] = index.tags(project, name) if index and row else {}
        self._live: dict[int, bool] = {}

    def is_live(self, version: int) -> bool:
        if version not in self._live:
            row = self.index.version(self.project, self.name, version) if self.index else None
            self._live[version] = row is not None and not row["deleted"]
        return self._live[version]

    def tag_target(self, tag: str) -> int | None:
        return self._tags.get(tag)

    def tags_of(self, version: int) -> list[str]:
        return sorted(t for t, v in self._tags.items() if v == version)

    def add_version(self, event: Event) -> None:
        self._live[event["version"]] = True

    def set_tag(self, event: Event) -> None:
        if event["version"] is None:
            self._tags.pop(event["tag"], None)
        else:
            self._tags[event["tag"]] = event["version"]

    def delete_version(self, event: Event) -> None:
        self._live[event["version"]] = False

    def advance(self, event: Event, max_version: int) -> None:
        self.last_seq, self.last_hash, self.max_version = event.seq, event.hash, max_version


def _describe(name: str, events: list[Event]) -> dict[str, Any] | None:
    """A side of a conflict: its last event, and its latest version (what users recognise)."""
    if not events:
        return None
    last = events[-1]
    try:
        state = fold(name, events)
        latest = state.latest
        image = state.versions[latest].image if latest is not None else None
    except IntegrityError:  # a broken log: still say what its last version event was
        versions = [e for e in events if e.type == "version"]
        latest = versions[-1]["version"] if versions else None
        image = versions[-1]["image"] if versions else None
    return {"seq": last.seq, "hash": last.hash, "type": last.type, "author": last.author,
            "time": last.time, "version": latest, "image": image}


# -- sync -----------------------------------------------------------------------------------------
class _Syncer:
    def __init__(self, src: Store, dst: Store, pool: ThreadPoolExecutor, dry_run: bool,
                 progress: Callable[[SyncProgress], None] | None):
        self.src, self.dst, self.pool = src, dst, pool
        self.dry_run = dry_run
        self.progress = progress
        self.transfer = ObjectTransfer(src.objects, dst.objects, pool)

    def select(self, project: str | None,
               repositories: Iterable[str] | None) -> list[tuple[str, str]]:
        if not self.src.is_initialized():
            raise NotFoundError(f"{self.src.url} is not a roro store (it has no roro.json); "
                                f"check the source path or URL")
        if project is not None:
            projects = [validate_name(project, "project")]
        else:
            projects = [p for p in list_projects(self.src.backend) if _valid(p, "project")]
        pairs = [(p, r) for p in projects
                 for r in list_repositories(self.src.backend, p) if _valid(r)]
        if isinstance(repositories, str):
            repositories = [repositories]
        if not repositories:
            if project is not None and not pairs:
                raise NotFoundError(f"project {project!r} has no repositories in {self.src.url}")
            return pairs
        chosen: list[tuple[str, str]] = []
        for spec in repositories:
            want_project, _, want = spec.rpartition("/")
            validate_name(want)
            if want_project:
                validate_name(want_project, "project")
            hits = [(p, r) for p, r in pairs if r == want and want_project in ("", p)]
            if not hits:
                raise NotFoundError(f"no repository {spec!r} in {self.src.url}"
                                    + (f" (project {project!r})" if project else ""),
                                    repository=want)
            chosen.extend(h for h in hits if h not in chosen)
        return sorted(chosen)

    def run(self, pairs: list[tuple[str, str]]) -> list[RepositorySync]:
        out = []
        for project, name in pairs:
            res = RepositorySync(project, name)
            try:
                self._sync_repository(res)
            except RoroError as e:
                res.status, res.message = FAILED, f"{res.name}: {e}"
            out.append(res)
        return out

    def _notify(self, res: RepositorySync, phase: str, objects_total: int, bytes_total: int,
                events_total: int) -> None:
        if self.progress is not None:
            self.progress(SyncProgress(res.project, res.repository, phase,
                                       res.objects_transferred, objects_total,
                                       res.bytes_transferred, bytes_total, res.events_appended,
                                       events_total))

    def _sync_repository(self, res: RepositorySync) -> None:
        p, r = res.project, res.repository
        src_log, dst_log = self.src.reflog(p, r), self.dst.reflog(p, r)
        try:
            dst_row = self.dst.refresh(p, r)  # None: DST has no such repository (or no store)
        except IntegrityError as e:
            raise IntegrityError(f"in DST {self.dst.url}: {e}", repository=r) from None
        m, h = (dst_row["last_seq"], dst_row["last_hash"]) if dst_row else (0, None)
        try:
            tail = src_log.read_after(max(m - 1, 0))
        except IntegrityError as e:
            raise IntegrityError(f"in SRC {self.src.url}: {e}", repository=r) from None
        if m > 0:
            if not tail:
                self._behind_or_diverged(res, src_log, dst_log)
                return
            if tail[0].hash != h:
                self._diverged(res, src_log.read_all(), dst_log.read_all())
                return
            new = tail[1:]
        else:
            new = tail
        if not new:
            res.status = UP_TO_DATE
            return

        # Never copy a broken log: judge every new event on top of DST's state.
        view = _AppendView(self.dst.index if dst_row else None, p, r, dst_row)
        try:
            for event in new:
                apply_event(view, event, r)
        except IntegrityError as e:
            raise IntegrityError(f"in SRC {self.src.url}: {e}", repository=r) from None

        # The objects the new events name: manifests, and the blobs they name.
        images = list(dict.fromkeys(e["image"] for e in new if e.type == "version"))
        manifests = dict(self.pool.map(self._read_manifest, images))
        blob_sizes: dict[str, int] = {}
        for _, manifest in manifests.values():
            blob_sizes[manifest["model"]["digest"]] = manifest["model"]["size"]
            for a in manifest["attachments"]:
                blob_sizes[a["digest"]] = a["size"]
        manifest_sizes = {d: len(data) for d, (data, _) in manifests.items()}
        sizes = {**blob_sizes, **manifest_sizes}
        missing_blobs, found_blobs, known_blobs = self.transfer.classify(blob_sizes)
        missing_mans, found_mans, known_mans = self.transfer.classify(manifest_sizes)
        skipped = found_blobs + known_blobs + found_mans + known_mans
        res.objects_skipped = len(skipped)
        res.bytes_skipped = sum(sizes[d] for d in skipped)
        objects_total = len(missing_blobs) + len(missing_mans)
        bytes_total = sum(sizes[d] for d in missing_blobs + missing_mans)

        if self.dry_run:
            self.transfer.assume_present(missing_blobs + missing_mans)  # as a real run would
            res.status = PENDING
            res.objects_transferred, res.bytes_transferred = objects_total, bytes_total
            res.events_appended = len(new)
            return

        self.dst.ensure_initialized()
        self.transfer.touch(found_blobs + found_mans)

        def done(size: int) -> None:
            res.objects_transferred += 1
            res.bytes_transferred += size
            self._notify(res, "objects", objects_total, bytes_total, len(new))

        # Blobs first, then manifests, then events: whatever DST holds names only what it holds.
        self.transfer.copy_all(missing_blobs, done)
        self.transfer.put_all_verified({d: manifests[d][0] for d in missing_mans}, done)

        for event in new:
            key = log_key(p, r, event.seq)
            if self.dst.backend.put_if_absent(key, event.raw):
                res.events_appended += 1
            elif self._read_or_none(key) != event.raw:
                # Another writer took this slot. (The same bytes would mean a concurrent sync of
                # the same history wrote it: nothing lost, go on.)
                self._diverged(res, src_log.read_all(), dst_log.read_all())
                res.message = (f"{res.name}: another writer appended event {event.seq} to DST "
                               f"while this sync ran, after {res.events_appended} of {len(new)} "
                               f"events were appended; the histories now differ (DST is at "
                               f"version {res.dst_last and res.dst_last['version']}, SRC at "
                               f"{res.src_last and res.src_last['version']}). Promote an image "
                               f"across with 'roro models:copy' instead")
                break
            self._notify(res, "events", objects_total, bytes_total, len(new))
        else:
            res.status = SYNCED
        known = {d: data for d, (data, _) in manifests.items()}
        self.dst.index.refresh(self.dst.reflog(p, r), self.dst.objects, known)
        self._notify(res, "done", objects_total, bytes_total, len(new))

    def _read_or_none(self, key: str) -> bytes | None:
        try:
            return self.dst.backend.get(key)
        except KeyNotFoundError:
            return None

    def _read_manifest(self, digest: str) -> tuple[str, tuple[bytes, dict[str, Any]]]:
        try:
            manifest, data = read_manifest(self.src.objects, digest)  # verified
        except NotFoundError:
            raise missing_in(digest, self.src.url) from None
        return digest, (data, manifest)

    def _behind_or_diverged(self, res: RepositorySync, src_log: Any, dst_log: Any) -> None:
        """SRC has fewer events than DST: "ahead" if SRC's log is a prefix of DST's."""
        n = len(src_log.keys_after(0))
        if n > 0:
            src_last = src_log.read_after(n - 1)[:1]
            dst_same = dst_log.read_after(n - 1)[:1]
            if src_last and dst_same and src_last[0].hash == dst_same[0].hash:
                res.status = AHEAD
                res.message = (f"{res.name}: DST already holds all {n} events of SRC and more; "
                               f"nothing to do (sync DST to SRC to bring SRC up to date)")
                return
        self._diverged(res, src_log.read_all(), dst_log.read_all())

    def _diverged(self, res: RepositorySync, src_events: list[Event],
                  dst_events: list[Event]) -> None:
        common = 0
        for a, b in zip(src_events, dst_events, strict=False):
            if a.hash != b.hash:
                break
            common += 1
        res.status = CONFLICT
        res.common_seq = common
        res.src_last = _describe(res.repository, src_events)
        res.dst_last = _describe(res.repository, dst_events)
        sv = res.src_last["version"] if res.src_last else None
        dv = res.dst_last["version"] if res.dst_last else None
        res.message = (f"{res.name}: histories diverged after event {common} (SRC is at "
                       f"version {sv}, DST at version {dv}); DST was left untouched. Promote "
                       f"an image across with 'roro models:copy' instead")


def _valid(name: str, kind: str = "repository") -> bool:
    try:
        validate_name(name, kind)
    except InvalidNameError:
        return False
    return True


@contextlib.contextmanager
def _counted_pair(src: Any, dst: Any) -> Iterator[tuple[Store, Store, CountingBackend,
                                                        CountingBackend]]:
    """Resolve SRC and DST, and give request-counting handles on both; closes what it opened."""
    opened: list[Store] = []
    stores = []
    for spec in (src, dst):
        store = resolve_store(spec)
        if store is not spec:
            opened.append(store)
        stores.append(store)
    src_c, src_counter = _counted(stores[0])
    dst_c, dst_counter = _counted(stores[1])
    try:
        yield src_c, dst_c, src_counter, dst_counter
    finally:
        for s in (src_c, dst_c, *opened):
            s.close()


def sync(src: Store | str, dst: Store | str, repositories: Iterable[str] | None = None,
         dry_run: bool = False, project: str | None = None,
         progress: Callable[[SyncProgress], None] | None = None, *,
         workers: int = DEFAULT_WORKERS) -> SyncReport:
    """Make DST hold SRC's history: fast-forward every repository whose DST log is a prefix of
    SRC's, copying only the objects DST lacks (verified, in parallel) before the events.

    Args:
        src, dst: :class:`~roro.Store` objects, store URLs or folder paths, or names of remotes
            declared in ``roro.yml`` (see :func:`roro.config.resolve_store`).
        repositories: names of repositories to sync (``name`` or ``project/name``); default all.
        dry_run: report what would be done; write nothing to DST.
        project: only this project; default every project of SRC.
        progress: called with a :class:`SyncProgress` after each object and event (from the
            calling thread).
        workers: parallel object transfers.

    Returns:
        A :class:`SyncReport`; ``report.ok`` is False if a repository conflicted or failed (the
        others were still synced). Errors that concern one repository (a corrupted or missing
        object in SRC, a broken log) are reported in it, not raised.
    """
    start = time.monotonic()
    with _counted_pair(src, dst) as (src_c, dst_c, src_n, dst_n), \
            ThreadPoolExecutor(max(1, workers), thread_name_prefix="roro-sync") as pool:
        syncer = _Syncer(src_c, dst_c, pool, dry_run, progress)
        pairs = syncer.select(project, repositories)
        results = syncer.run(pairs)
        return SyncReport(src_c.url, dst_c.url, dry_run, results, _requests_dict(src_n, dst_n),
                          time.monotonic() - start, syncer.transfer.server_side)


# -- copy one image -------------------------------------------------------------------------------
def copy_image(src: Store | str, ref: str, dst: Store | str, new_name: str | None = None,
               project: str | None = None, dst_project: str | None = None, *,
               workers: int = DEFAULT_WORKERS) -> CopyReport:
    """Append one image of SRC as a new version of a repository in DST, whatever DST's history:
    the promotion path when histories differ (where :func:`sync` reports a conflict).

    The blobs the image needs are copied (only those DST lacks, verified); then a new manifest,
    equal to the source's plus ``lineage.copied_from = {store, project, repository, version,
    image}`` (and ``previous``: the source's own ``copied_from``, if it was itself a copy), is
    published as the next version through the normal write path. The event records who copied
    and when. If DST's latest version already is that very copy, nothing is appended
    (``created`` is False), so re-running a promotion script is harmless.

    Args:
        src, dst: stores, URLs/paths or ``roro.yml`` remote names (they may be the same store).
        ref: ``NAME[:VERSION|TAG]`` in SRC (default ``latest``).
        new_name: the repository in DST (default: the same name).
        project: the project in SRC (default: the current project, from ``roro.yml`` etc.).
        dst_project: the project in DST (default: ``project``).
    """
    start = time.monotonic()
    name, version, tag = parse_refspec(ref)
    project = validate_name(project or current_settings().project, "project")
    dst_project = validate_name(dst_project or project, "project")
    new_name = validate_name(new_name or name)
    with _counted_pair(src, dst) as (src_c, dst_c, src_n, dst_n), \
            ThreadPoolExecutor(max(1, workers), thread_name_prefix="roro-copy") as pool:
        image = Project(project, src_c).get_model_repository(name).get_model_image(version, tag)
        target = Project(dst_project, dst_c).get_model_repository(new_name)
        copied, created, stats = copy_into(image, target, pool)
        assert image.version is not None and image.digest is not None
        assert copied.version is not None and copied.digest is not None
        return CopyReport(src_c.url, dst_c.url, project, name, image.version, image.digest,
                          dst_project, new_name, copied.version, copied.digest, created,
                          stats.objects_transferred, stats.bytes_transferred,
                          stats.objects_skipped, stats.bytes_skipped,
                          _requests_dict(src_n, dst_n), time.monotonic() - start)
