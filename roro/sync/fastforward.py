"""Sync between stores: fast-forward ref logs, copy only the missing objects, verified.

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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ConflictError, IntegrityError, InvalidNameError, NotFoundError, RoroError
from ..names import validate_name
from ..objects.manifest import blob_sizes_with_chunks, read_manifest
from ..objects.transfer import ObjectTransfer, missing_in
from ..refs import Event, RefLog, apply_event, fold, list_projects, list_repositories
from ..refs import checkpoint as checkpoints
from ..refs.events import MAX_EVENT_SIZE, check_signature
from ..refs.log import Tail
from ..storage import KeyInfo, KeyNotFoundError
from ..storage.layout import CHECKPOINT_FEATURE, POLICY_FEATURE, POLICY_PREFIX, log_key
from ..store import Store
from ..writer import after_commit, reuse_guard
from ..writer import checkpoint as writer_checkpoint

if TYPE_CHECKING:
    from ..refs.index import Index
from .report import (
    AHEAD,
    CONFLICT,
    FAILED,
    PENDING,
    SYNCED,
    UP_TO_DATE,
    RepositorySync,
    SyncProgress,
    SyncReport,
    requests_dict,
)
from .stores import StoreSpec, counted_pair

DEFAULT_WORKERS = 8


class _AppendView:
    """DST's state (from its refreshed index) with the events about to be appended applied on top,
    in memory: the reducer judges each against it (a :class:`~roro.refs.state.RepoMutator`)."""

    def __init__(self, index: Index | None, project: str, name: str, row: dict[str, Any] | None):
        self.index, self.project, self.name = index, project, name
        self.last_seq = row["last_seq"] if row else 0
        self.last_hash = row["last_hash"] if row else None
        self.max_version = row["max_version"] if row else 0
        self.status: str | None = row["status"] if row else None
        self._tags: dict[str, int] = index.tags(project, name) if index and row else {}
        self._live: dict[int, bool] = {}
        self.rejected_count = len(index.rejected(project, name)) if index and row else 0
        self.rejected: list[str] = []  # the new events the policy rejects (copied all the same)

    def reject(self, event: Event, reason: str) -> None:
        self.rejected_count += 1
        self.rejected.append(f"event {event.seq} was rejected by the store policy: {reason}")

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

    def close(self, event: Event) -> None:
        self.status = "renamed" if event.type == "rename" else "destroyed"

    def reopen(self, event: Event) -> None:
        self.status = None


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


class _Plan(NamedTuple):
    """The objects one repository's new events need: its manifests (``digest -> (bytes,
    manifest)``), those DST lacks (blobs, manifests), those it has (with what is known of them:
    the gc rule judges their age), and every object's size."""

    manifests: dict[str, tuple[bytes, dict[str, Any]]]
    missing_blobs: list[str]
    missing_manifests: list[str]
    found: dict[str, KeyInfo]
    sizes: dict[str, int]
    bytes_total: int

    @property
    def missing(self) -> list[str]:
        return self.missing_blobs + self.missing_manifests

    @property
    def objects_total(self) -> int:
        return len(self.missing)


class _Syncer:
    def __init__(self, src: Store, dst: Store, pool: ThreadPoolExecutor, dry_run: bool,
                 progress: Callable[[SyncProgress], None] | None):
        self.src, self.dst, self.pool = src, dst, pool
        self.dry_run = dry_run
        self.progress = progress
        self.transfer = ObjectTransfer(src.objects, dst.objects, pool)
        self.policy: Any = None  # SRC's store policy (roro.policy.StorePolicy), see copy_policy

    def copy_policy(self) -> None:
        """Copy SRC's policy log to DST byte for byte (entries DST lacks, create-only) before any
        event, so that DST's readers judge the events by the same policy; SRC's policy is what
        the new events are judged by here (a reader's pins on SRC refuse it: TrustError)."""
        if not self.src.is_initialized():
            return
        self.policy = self.src.policy()
        if self.policy is not None:
            self.policy.check_heads = False  # judged by the policy read now, whatever events name
        if self.policy is None or self.dry_run:
            return
        self.dst.ensure_initialized()
        self.dst.require_feature(POLICY_FEATURE)
        for key in sorted(self.src.backend.list(POLICY_PREFIX)):
            data = self.src.backend.get(key)
            if not self.dst.backend.put_if_absent(key, data) and \
                    self.dst.backend.get(key) != data:
                raise ConflictError(f"the policy logs of {self.src.url} and {self.dst.url} "
                                    f"differ at {key}: they are different policies; nothing was "
                                    f"synced")
        self.dst.forget_policy()

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

    def _notify(self, res: RepositorySync, phase: str, plan: _Plan, events_total: int,
                streamed: int = 0) -> None:
        if self.progress is not None:
            self.progress(SyncProgress(res.project, res.repository, phase,
                                       res.objects_transferred, plan.objects_total,
                                       max(res.bytes_transferred, streamed), plan.bytes_total,
                                       res.events_appended, events_total))

    def _sync_repository(self, res: RepositorySync) -> None:
        p, r = res.project, res.repository
        src_log, dst_log = self.src.reflog(p, r), self.dst.reflog(p, r)
        new = self._new_events(res, src_log, dst_log)
        if not new:
            return
        plan = self._plan_objects(res, new)
        if self.dry_run:
            self.transfer.assume_present(plan.missing)  # as a real run would
            res.status = PENDING
            res.objects_transferred, res.bytes_transferred = plan.objects_total, plan.bytes_total
            res.events_appended = len(new)
            return
        self.dst.require_features(self.src.features())  # DESIGN §14: before what needs them
        # The objects DST already has are relied on as the gc rule allows (young ones as they
        # are, old ones protected); the deadline counts from before the plan's look at them.
        guard = reuse_guard(self.dst)
        guard.start()
        for d, info in plan.found.items():
            guard.rely_on(d, plan.sizes[d], info, self._again(d, plan))

        start = self.transfer.streamed

        def done(size: int) -> None:
            res.objects_transferred += 1
            res.bytes_transferred += size
            self._notify(res, "objects", plan, len(new), self.transfer.streamed - start)

        def tick() -> None:  # bytes of the objects still streaming
            self._notify(res, "objects", plan, len(new), self.transfer.streamed - start)

        self._notify(res, "objects", plan, len(new))  # the totals, before the first byte
        # Blobs first, then manifests, then events: whatever DST holds names only what it holds.
        self.transfer.copy_all(plan.missing_blobs, done, tick)
        self.transfer.put_all_verified({d: plan.manifests[d][0] for d in plan.missing_manifests},
                                       done)
        for d in plan.missing:
            guard.written(d, plan.sizes[d], self._again(d, plan))
        guard.protect()
        self._append_events(res, new, plan, src_log, dst_log, guard.before_publish)
        known = {d: data for d, (data, _) in plan.manifests.items()}
        def update() -> None:
            self.dst.index.refresh(dst_log, self.dst.objects, known, policy=self.dst.policy())

        if res.events_appended:  # committed: an index failure is only a warning now
            after_commit(update, f"{res.events_appended} events of {res.name} were synced")
        else:
            update()
        if res.status == SYNCED:
            self._checkpoint(res, new)
        self._notify(res, "done", plan, len(new))

    def _checkpoint(self, res: RepositorySync, new: list[Event]) -> None:
        """Give DST a checkpoint where SRC uses them (derived data, best effort: a failure loses
        nothing): a copy of SRC's newest one (its objects, verified, then its pointer) when
        DST's log reaches it, else one built from the events just appended when they are DST's
        whole log and long enough for writers to have made one (no read: they are at hand)."""
        p, r = res.project, res.repository
        head = new[-1].seq
        if CHECKPOINT_FEATURE not in self.src.features():
            return  # DST mirrors SRC: no checkpoint there, none here ('roro checkpoint' makes one)
        try:
            pointer = checkpoints.newest_pointer(self.src.backend, p, r)
            if pointer is not None and pointer.seq <= head:
                have = checkpoints.newest_pointer(self.dst.backend, p, r)
                if have is not None and have.seq >= pointer.seq:
                    return
                self.dst.require_feature(CHECKPOINT_FEATURE)
                for d in reversed(checkpoints.chain_digests(self.src.objects, pointer, p, r)):
                    self.dst.objects.create_bytes(self.src.objects.read(d))
                self.dst.backend.put_if_absent(pointer.key, self.src.backend.get(pointer.key))
            elif new[0].seq == 1 and head >= checkpoints.AUTO_FROM:
                writer_checkpoint(self.dst, p, r, known=new)
        except (RoroError, OSError, ValueError):
            pass

    def _new_events(self, res: RepositorySync, src_log: RefLog, dst_log: RefLog) -> list[Event]:
        """The events of SRC that DST lacks, judged by the fold's rules on top of DST's state;
        none (with ``res.status`` set) when DST is up to date, ahead or diverged."""
        p, r = res.project, res.repository
        try:
            dst_row = self.dst.refresh(p, r)  # None: DST has no such repository (or no store)
        except IntegrityError as e:
            raise IntegrityError(f"in DST {self.dst.url}: {e}", repository=r) from None
        m, h = (dst_row["last_seq"], dst_row["last_hash"]) if dst_row else (0, None)
        try:
            tail = src_log.read_after(max(m - 1, 0))
        except IntegrityError as e:
            raise IntegrityError(f"in SRC {self.src.url}: {e}", repository=r) from None
        if m > 0 and not tail:
            self._behind_or_diverged(res, src_log, dst_log)
            return []
        if m > 0 and tail[0].hash != h:
            self._diverged(res, src_log.read_all(), dst_log.read_all())
            return []
        new = tail[1:] if m > 0 else tail
        if not new:
            res.status = UP_TO_DATE
            return []
        try:
            src_log.confirm(new[-1])  # the chain vouches for the others: DST gets SRC's bytes
        except IntegrityError as e:
            raise IntegrityError(f"in SRC {self.src.url}: {e}", repository=r) from None
        if dst_row is not None:
            # The events go after DST's last event: it must still be there, unchanged (a log
            # cut behind DST's index would get a hole). Only now: an up-to-date repository
            # costs nothing more.
            try:
                dst_log.verify_tail(Tail(m, h, dst_row["last_md5"]))
            except IntegrityError as e:
                raise IntegrityError(f"in DST {self.dst.url}: {e}", repository=r) from None
        # Never copy a broken log: judge every new event on top of DST's state, and check the
        # signature of each signed one (~0.1 ms each: sync reads O(new events) anyway).
        view = _AppendView(self.dst.index if dst_row else None, p, r, dst_row)
        judge = self.policy.judge(p, r) if self.policy is not None else None
        try:
            for event in new:
                check_signature(event, r)
                apply_event(view, event, r, policy=judge)
        except IntegrityError as e:
            raise IntegrityError(f"in SRC {self.src.url}: {e}", repository=r) from None
        res.rejected = view.rejected
        return new

    def _plan_objects(self, res: RepositorySync, new: list[Event]) -> _Plan:
        """The objects the new events name (manifests, and the blobs they name), sorted into
        those DST lacks and those it has; counts the latter in ``res`` as skipped."""
        images = list(dict.fromkeys(e["image"] for e in new if e.type == "version"))
        live = _live_images(new)
        read = dict(self.pool.map(lambda d: self._read_manifest(d, required=d in live), images))
        manifests = {d: m for d, m in read.items() if m is not None}
        blob_sizes: dict[str, int] = {}
        required: set[str] = set()
        for image, (_, manifest) in manifests.items():
            blobs = blob_sizes_with_chunks(self.src.objects, manifest, required=image in live)
            blob_sizes.update(blobs)
            if image in live:
                required.update(blobs)
        self._plan_bundles(new, manifests, live, blob_sizes, required)
        optional = [d for d in blob_sizes if d not in required]
        if optional:  # of deleted versions or a destroyed repository: copied while they last
            present = dict(zip(optional, self.pool.map(self.src.objects.has, optional),
                               strict=True))
            blob_sizes = {d: n for d, n in blob_sizes.items() if d in required or present[d]}
        manifest_sizes = {d: len(data) for d, (data, _) in manifests.items()}
        sizes = {**blob_sizes, **manifest_sizes}
        missing_blobs, found_blobs, known_blobs = self.transfer.classify(blob_sizes)
        missing_mans, found_mans, known_mans = self.transfer.classify(manifest_sizes)
        found = {**found_blobs, **known_blobs, **found_mans, **known_mans}
        res.objects_skipped = len(found)
        res.bytes_skipped = sum(sizes[d] for d in found)
        return _Plan(manifests, missing_blobs, missing_mans, found, sizes,
                     sum(sizes[d] for d in missing_blobs + missing_mans))

    def _plan_bundles(self, new: list[Event], manifests: dict[str, Any], live: set[str],
                      sizes: dict[str, int], required: set[str]) -> None:
        """Add the OpenSSF bundles the new version events name (and those of the sources of
        copies) to ``sizes`` (read from SRC, verified: they are small), required when their
        version stays live; a bundle gc took with its deleted version is skipped."""
        from ..bundle import MAX_BUNDLE_SIZE, source_bundles  # beside roro.signing: light
        named = {e["bundle"]: e["image"] for e in new
                 if e.type == "version" and "bundle" in e.payload}
        for image, (_, manifest) in manifests.items():
            named.update(dict.fromkeys(source_bundles(manifest), image))
        todo = [d for d in named if d not in sizes]

        def size(digest: str) -> int | None:
            try:
                return len(self.src.objects.read(digest, MAX_BUNDLE_SIZE))
            except NotFoundError:
                if named[digest] in live:
                    raise missing_in(digest, self.src.url) from None
                return None

        for digest, n in zip(todo, self.pool.map(size, todo), strict=True):
            if n is not None:
                sizes[digest] = n
                if named[digest] in live:
                    required.add(digest)

    def _again(self, digest: str, plan: _Plan) -> Callable[[], None]:
        """How to write one of the plan's objects into DST again (the gc rule's repair)."""
        if digest in plan.manifests:
            return lambda: self.transfer.put_verified_bytes(digest, plan.manifests[digest][0])
        return lambda: None if self.transfer.copy(digest) else None

    def _append_events(self, res: RepositorySync, new: list[Event], plan: _Plan,
                       src_log: RefLog, dst_log: RefLog,
                       before_write: Callable[[], None]) -> None:
        """Append the events byte for byte with create-if-absent; a slot another writer took
        with other bytes makes the repository a conflict. ``before_write`` runs before each
        (the gc rule's deadline)."""
        for event in new:
            before_write()
            key = log_key(res.project, res.repository, event.seq)
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
                return
            self._notify(res, "events", plan, len(new))
        res.status = SYNCED

    def _read_or_none(self, key: str) -> bytes | None:
        try:
            return self.dst.backend.get(key, MAX_EVENT_SIZE)
        except KeyNotFoundError:
            return None

    def _read_manifest(self, digest: str, required: bool = True
                       ) -> tuple[str, tuple[bytes, dict[str, Any]] | None]:
        """The manifest (verified); one that is not ``required`` (no version live at the end of
        the copied events names it) may be gone, collected by gc: None."""
        try:
            manifest, data = read_manifest(self.src.objects, digest)  # verified
        except NotFoundError:
            if not required:
                return digest, None
            raise missing_in(digest, self.src.url) from None
        return digest, (data, manifest)

    def _behind_or_diverged(self, res: RepositorySync, src_log: RefLog, dst_log: RefLog) -> None:
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


def _live_images(events: list[Event]) -> set[str]:
    """The images of the versions these events leave live: not deleted, and not in a repository
    they leave destroyed. Only their objects must exist in SRC; gc may have collected the
    others' (DST's index keeps no manifest of such versions either)."""
    images: dict[int, str] = {}
    destroyed = False
    for e in events:
        if e.type == "version":
            images[e["version"]] = e["image"]
        elif e.type == "delete":
            images.pop(e["version"], None)
        elif e.type == "destroy":
            destroyed = True
        elif e.type == "restore":
            destroyed = False
    return set() if destroyed else set(images.values())


def _valid(name: str, kind: str = "repository") -> bool:
    try:
        validate_name(name, kind)
    except InvalidNameError:
        return False
    return True


def sync(src: StoreSpec, dst: StoreSpec, repositories: Iterable[str] | None = None,
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
        progress: called with a :class:`SyncProgress` before a repository's objects, after
            each object and event, and about every 0.2 s while objects stream (always from the
            calling thread); ``bytes_done`` counts the bytes of objects still in flight too.
        workers: parallel object transfers.

    Returns:
        A :class:`SyncReport`; ``report.ok`` is False if a repository conflicted or failed (the
        others were still synced). Errors that concern one repository (a corrupted or missing
        object in SRC, a broken log) are reported in it, not raised.
    """
    start = time.monotonic()
    with counted_pair(src, dst) as (src_c, dst_c, src_n, dst_n), \
            ThreadPoolExecutor(max(1, workers), thread_name_prefix="roro-sync") as pool:
        syncer = _Syncer(src_c, dst_c, pool, dry_run, progress)
        pairs = syncer.select(project, repositories)
        syncer.copy_policy()
        results = syncer.run(pairs)
        return SyncReport(src_c.url, dst_c.url, dry_run, results, requests_dict(src_n, dst_n),
                          time.monotonic() - start, syncer.transfer.server_side)


