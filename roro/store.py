"""A store: a backend, its objects, its ref logs and the local index, opened lazily.

Constructing a :class:`Store` touches no network and creates no file. Reading an empty or
nonexistent store answers "nothing here"; the first write creates the format marker ``roro.json``.
Before the first write through each handle the backend checks that writing is safe (on S3: that the
bucket honours conditional writes).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .environment import cache_dir, now_utc
from .errors import IntegrityError, InvalidNameError, RoroWarning, StoreError
from .names import validate_name
from .objects import ObjectStore
from .objects.cache import ObjectCache, cache_max_bytes
from .objects.canonical import canonical_json
from .refs import Event, RefLog, list_projects, list_repositories
from .refs.events import check_signature
from .storage import Backend, KeyNotFoundError, StoreLocation, layout, open_backend, parse_store_url
from .storage.layout import (
    FEATURES_FORMAT,
    FEATURES_PREFIX,
    FORMAT_KEY,
    FORMAT_VERSION,
    INDEX_KEY,
    READABLE_FORMATS,
    feature_from_key,
    feature_key,
)
from .storage.url import check_options

if TYPE_CHECKING:
    from .policy import StorePolicy
    from .refs.checkpoint import History
    from .refs.index import Index

INDEX_FILE = INDEX_KEY
MAX_MARKER_SIZE = 64 << 10  # roro.json is ~60 bytes; more is not a marker roro wrote
_MANIFEST_MEMO = 256
_EVENT_MEMO = 4096


class IndexWarning(RoroWarning):
    """The index could not be written where it lives (a full disk): kept in memory meanwhile."""


def _writable_index(path: str) -> bool:
    """May this process write the SQLite index at ``path`` (and its folder and WAL files)?"""
    if not os.access(os.path.dirname(path), os.W_OK):
        return False
    return all(os.access(p, os.W_OK) for p in (path, path + "-wal", path + "-shm")
               if os.path.exists(p))


@dataclass
class IndexRebuildReport:
    """What :meth:`Store.rebuild_index` indexed; ``failed`` maps ``project/repository`` to the
    error that kept a repository out of the index (a broken log: run ``roro fsck``)."""

    index: str
    projects: int = 0
    repositories: int = 0
    versions: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    #: ``project/repository:version`` -> why: versions indexed as damaged (their manifest is
    #: missing or unreadable); their repositories are indexed, the rest of them readable.
    damaged: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class Store:
    """One store: a URL (a folder path, ``s3://bucket/prefix``, or ``memory://NAME`` in tests)
    with backend ``options``, or a :class:`~roro.storage.Backend` already opened (a wrapped one,
    for instance: the store then closes it with itself)."""

    def __init__(self, url: str | os.PathLike[str] | Backend, **options: Any):
        self._backend: Backend | None = None
        self._location: StoreLocation | None = None
        if isinstance(url, Backend):
            if options:
                raise TypeError("options are for a store URL; this store was given a backend")
            self._backend = url
            self.url = url.url
        else:
            self._location = parse_store_url(url)
            self.url = self._location.url
        self.options = {k: v for k, v in options.items() if v is not None}
        if self._location is not None:
            check_options(self._location, self.options)
        self._objects: ObjectStore | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._store_id: str | None = None
        self._features: frozenset[str] | None = None
        self.recent_manifests: dict[str, bytes] = {}
        self._confirmed: dict[tuple[str, str, int], Event] = {}  # see confirm_event
        self._policy: Any = None  # a roro.policy.StorePolicy, or False: none (see policy())
        self._read_rows: dict[tuple[str, str], dict[str, Any] | None] | None = None
        #: What a writer's next small checkpoint needs without a read: the events this handle
        #: appended lately (their bytes) and the last small checkpoint object it wrote.
        self.recent_events: dict[tuple[str, str, int], bytes] = {}
        self.recent_checkpoints: dict[str, Any] = {}
        #: The history this handle's last cold refresh read: what its index's deferred rows
        #: are written from in this process, without reading it again.
        self._last_history: History | None = None

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # -- lazily opened parts ---------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    assert self._location is not None
                    self._backend = open_backend(self._location, **self.options)
        return self._backend

    @property
    def remote(self) -> bool:
        """True where reads cross a network: verified objects are then cached locally."""
        return self.backend.remote

    @property
    def objects(self) -> ObjectStore:
        if self._objects is None:
            cache = ObjectCache(os.path.join(self.cache_root(), "cache"), cache_max_bytes(),
                                os.path.join(cache_dir(), "stores")) if self.remote else None
            self._objects = ObjectStore(self.backend, cache=cache)
        return self._objects

    def cache_root(self) -> str:
        """This store's directory under the user cache: its index (unless the store keeps it
        itself) and its object cache. Keyed by the backend's cache identity (for S3, the URL and
        the endpoint it resolved to: the same bucket name on two servers is two stores)."""
        key = self.backend.cache_identity()
        return os.path.join(cache_dir(), "stores", hashlib.sha256(key.encode()).hexdigest()[:16])

    def index_path(self) -> str:
        """Where this store's index lives: a folder store keeps it in itself when this user may
        write it there (SQLite's WAL needs write access to the file, its ``-wal`` and ``-shm``
        files and the folder); any other store, and a folder store we may only read, in the
        user cache."""
        own = self.backend.local_path(INDEX_KEY)
        if own is not None and _writable_index(own):
            return own
        return os.path.join(self.cache_root(), INDEX_FILE)

    @property
    def index(self) -> Index:
        """This thread's connection to the index (SQLite connections are not shared by threads).

        A read-only folder store's index lives in the user cache, seeded from the store's own
        ``index.sqlite3`` if it has one (then brought up to date from the log, as any index). If
        no index can be written at all (a full disk), this handle keeps one in memory, seeded
        from the file if there is one: reads, fsck and gc still work."""
        index = getattr(self._local, "index", None)
        if index is None:
            from .refs.index import Index, IndexUnavailableError  # sqlite3 (~1 ms): when used
            path = self.index_path()
            own = self.backend.local_path(INDEX_KEY)
            seed = own if own is not None and own != path and os.path.exists(own) else None
            try:
                index = self._bound(Index(path, seed=seed))
            except IndexUnavailableError as e:
                if e.reason == "other":
                    raise
                index = self._bound(self._index_in_memory(path, seed, e))
            self._local.index = index
        return index

    def _bound(self, index: Index) -> Index:
        index.history = self._history
        if self.is_initialized():  # an index is bound to a store id only once there is one
            index.bind_store(self.store_id())
        return index

    def _index_in_memory(self, path: str, seed: str | None, why: BaseException) -> Index:
        from .refs.index import IN_MEMORY, Index  # sqlite3: the index module is loaded already
        warnings.warn(f"{why}; this command keeps its index in memory (the next command that can "
                      f"write it brings it up to date)", IndexWarning, stacklevel=3)
        return Index(IN_MEMORY, seed=path if os.path.exists(path) else seed)

    def local_paths(self) -> list[str]:
        """Local folders this store writes to (its folder, or its cache), for lineage's dirty check."""
        root = self.backend.local_path(INDEX_KEY)
        if root is not None:
            return [os.path.dirname(root)]
        return [self.cache_root()] if self.remote else []

    def reflog(self, project: str, repository: str) -> RefLog:
        return RefLog(self.backend, project, repository)

    # -- format marker ---------------------------------------------------------------------------
    def _read_marker(self) -> dict[str, Any] | None:
        try:
            raw = self.backend.get(FORMAT_KEY, MAX_MARKER_SIZE)
        except KeyNotFoundError:
            return None
        except IntegrityError as e:  # too large, or not a regular file
            raise StoreError(f"store {self.url} has an unreadable {FORMAT_KEY}: {e}") from None
        try:
            marker = json.loads(raw)
        except ValueError:
            raise StoreError(f"store {self.url} has an unreadable {FORMAT_KEY}; is it a roro "
                             f"store?") from None
        found = marker.get("format") if isinstance(marker, dict) else marker
        if not isinstance(marker, dict) or found not in READABLE_FORMATS \
                or not isinstance(marker.get("id"), str):
            raise StoreError(f"store {self.url} has format {found!r}, which this roro does not "
                             f"know (it reads formats {', '.join(map(str, READABLE_FORMATS))}); "
                             f"upgrade roro")
        return marker

    def _read_features(self, marker: dict[str, Any]) -> frozenset[str]:
        """The features a format-2 store records; StoreError for one this roro does not know."""
        if marker["format"] < FEATURES_FORMAT:
            return frozenset()
        names = {feature_from_key(k) for k in self.backend.list(FEATURES_PREFIX)}
        features = frozenset(n for n in names if n is not None)
        unknown = sorted(features - layout.KNOWN_FEATURES)
        if unknown:
            raise StoreError(f"store {self.url} uses format features this roro does not know "
                             f"({', '.join(unknown)}): it was written by a newer roro; upgrade "
                             f"roro")
        return features

    def is_initialized(self) -> bool:
        """True if the store has a valid format marker; False for an empty or missing store.
        Raises StoreError for an unknown format or a format feature this roro does not know, or
        for a store that holds roro's ``objects/`` or ``refs/`` without a marker (damage:
        reading it as empty would hide every version)."""
        if self._store_id is None:
            marker = self._read_marker()
            if marker is None:
                marker = self._refuse_unmarked()
                if marker is None:
                    return False
            self._features = self._read_features(marker)
            self._store_id = marker["id"]
            idx = getattr(self._local, "index", None)
            if idx is not None:  # opened while the store did not exist yet
                idx.bind_store(self._store_id)
        return True

    def _refuse_unmarked(self) -> dict[str, Any] | None:
        """Raise StoreError if the store holds roro data but no ``roro.json`` (one listing of
        the store's top level, only while the marker is missing). The marker is read again
        before refusing: a first writer writes it before any data, so data seen after a read
        that missed the marker may be that writer's (returned: the store is initialized)."""
        found = sorted({"objects", "refs", "features", "checkpoints"}
                       & set(self.backend.list_dirs("")))
        if found:
            marker = self._read_marker()
            if marker is not None:
                return marker
            what = " and ".join(f"{d}/" for d in found)
            raise StoreError(f"store {self.url} has {what} but no {FORMAT_KEY} (its format "
                             f"marker): it was damaged or copied incompletely; restore "
                             f"{FORMAT_KEY} from a backup or from the store it was copied from")
        return None

    def features(self) -> frozenset[str]:
        """The format features this store uses (DESIGN §14); empty for a store not written yet."""
        if not self.is_initialized() or self._features is None:
            return frozenset()
        return self._features

    def require_features(self, names: frozenset[str] | set[str]) -> None:
        """Before a write that needs format features: record each one the store does not have
        yet, so that a roro that does not know it refuses the store ("upgrade roro") instead of
        misreading what follows. The marker is raised to format 2 first (every writer writes the
        same bytes), then each feature is written create-only; only then may the data follow."""
        unknown = sorted(set(names) - layout.KNOWN_FEATURES)
        if unknown:
            raise ValueError(f"unknown format features {unknown}")
        self.ensure_initialized()
        missing = set(names) - self.features()
        if not missing:
            return
        marker = self._read_marker()
        assert marker is not None
        if marker["format"] < FEATURES_FORMAT:
            self.backend.replace(FORMAT_KEY, canonical_json(
                {"format": FEATURES_FORMAT, "id": marker["id"]}))
        for name in sorted(missing):
            self.backend.put_if_absent(feature_key(name), canonical_json(
                {"feature": name, "time": now_utc()}))
        self._features = self.features() | missing

    def require_feature(self, name: str) -> None:
        """:meth:`require_features` for one feature."""
        self.require_features({name})

    def store_id(self) -> str:
        if self.is_initialized() and self._store_id is not None:
            return self._store_id
        return "uninitialized"

    def ensure_initialized(self) -> None:
        """Before a write: let the backend check that writing is safe (once per handle; on S3 a
        StoreError refuses a store that does not honour conditional writes, before anything is
        written), and write the format marker if the store has none yet."""
        self.backend.prepare_for_writes()
        if self.is_initialized():
            return
        marker = {"format": FORMAT_VERSION, "id": str(uuid.uuid4())}
        self.backend.put_if_absent(FORMAT_KEY, json.dumps(marker).encode())
        if not self.is_initialized():
            raise StoreError(f"cannot initialize store {self.url}")
        self.backend.keep_reserve()
        idx = getattr(self._local, "index", None)
        if idx is not None:
            idx.bind_store(self._store_id)

    # -- refresh ---------------------------------------------------------------------------------
    def refresh(self, project: str, repository: str, *, check_tail: bool = False,
                appended: Event | None = None) -> dict[str, Any] | None:
        """Bring the index up to date for one repository; its row, or None if it has no log.

        ``check_tail`` (before a write): first make sure the event the index saw last is still
        in the log, unchanged; :class:`~roro.errors.IntegrityError` if the log was truncated or
        rewritten behind the index (writing after it would break the log for everyone).
        ``appended``: an event this process has just written (applied without a read).
        If the index file cannot be written (a full disk), this handle goes on with a copy of
        it in memory, so that reading still works."""
        reads = self._read_rows
        if reads is not None and not check_tail and appended is None \
                and (project, repository) in reads:
            return reads[(project, repository)]
        row = self._refresh(project, repository, check_tail=check_tail, appended=appended)
        if reads is not None:
            reads[(project, repository)] = row
        return row

    def read_once(self) -> None:
        """From now on, a read's refresh of a repository this handle has already refreshed
        answers from the index without looking at the log (a writer's refresh still does):
        for one command that asks about a repository several times (``models:log`` resolves
        it, lists it, then reads its tags), one listing instead of one per question. Not
        for a long-lived handle: it would not see others' writes."""
        self._read_rows = {}

    def _refresh(self, project: str, repository: str, *, check_tail: bool,
                 appended: Event | None) -> dict[str, Any] | None:
        if not self.is_initialized():
            return None
        from .refs.index import IN_MEMORY, IndexUnavailableError  # loaded with self.index
        index = self.index
        log = self.reflog(project, repository)
        start = (lambda: self._checkpoint_start(log)) \
            if layout.CHECKPOINT_FEATURE in self.features() else None
        try:
            return self._refresh_judged(index, log, check_tail, appended, start)
        except IndexUnavailableError as e:
            if e.reason == "other" or index.path == IN_MEMORY:
                raise
            index.close()
            self._local.index = self._bound(self._index_in_memory(index.path, None, e))
            return self._refresh_judged(self._local.index, log, check_tail, appended, start)

    def _refresh_judged(self, index: Index, log: RefLog, check_tail: bool,
                        appended: Event | None, start: Any) -> dict[str, Any] | None:
        """``index.refresh`` with the store policy; an event naming a policy head newer than
        the one this handle read makes it read the policy again (once) and refresh again."""
        from .policy import PolicyBehind  # a light module; its checks run only with a policy
        try:
            return index.refresh(log, self.objects, self.recent_manifests, check_tail=check_tail,
                                 appended=appended, checkpoint=start, policy=self.policy())
        except PolicyBehind:
            self._policy = None
            policy = self.policy()
            if policy is not None:
                policy.check_heads = False  # still unknown: a forged head, judged by this one
            return index.refresh(log, self.objects, self.recent_manifests, check_tail=check_tail,
                                 appended=appended, checkpoint=start, policy=policy)

    def policy(self) -> StorePolicy | None:
        """The store's policy as this reader accepts it (None: the store has none), read once
        and again after ``roro.policy.POLICY_TTL`` seconds; :class:`~roro.errors.TrustError`
        where the reader's pins refuse it (docs/architecture.md, "Store policy")."""
        if not self.is_initialized():
            return None
        from . import policy as policy_module  # only for a store with a policy (or pins)
        cached = self._policy
        if cached is False and layout.POLICY_FEATURE not in self.features():
            return None
        if cached is not None and cached is not False and \
                time.monotonic() - cached.read_at < policy_module.POLICY_TTL:
            return cast("StorePolicy", cached)
        found = policy_module.load_store_policy(self)
        self._policy = found if found is not None else False
        return found

    def forget_policy(self) -> None:
        """Read the policy again at the next refresh (after this process changed it)."""
        self._policy = None

    def _checkpoint_start(self, log: RefLog) -> History | None:
        """A cold refresh's start: the newest checkpoint, verified (None: read the log). A
        wrong one is ignored with one :class:`~roro.refs.checkpoint.CheckpointWarning`."""
        from .refs import checkpoint  # zlib and struct: only for a repository never indexed
        self._last_history = checkpoint.read_verified(
            log, self.objects, lambda message: warnings.warn(
                message, checkpoint.CheckpointWarning, stacklevel=6))
        return self._last_history

    def _history(self, project: str, repository: str, source: str) -> tuple[History, ObjectStore]:
        """What the index's deferred rows are written from (``Index.history``)."""
        from .refs import checkpoint  # zlib and struct: only where rows were deferred
        last = self._last_history
        if last is not None and last.source == source and \
                (last.project, last.repository) == (project, repository):
            return last, self.objects
        history = checkpoint.history_again(self.reflog(project, repository), self.objects,
                                           source)
        history.warn = lambda message: warnings.warn(
            f"the checkpoint of {project}/{repository} holds a wrong manifest ({message}); the "
            f"store's manifests were read instead (run 'roro fsck', then 'roro checkpoint "
            f"{repository}')", checkpoint.CheckpointWarning, stacklevel=2)
        return history, self.objects

    def rebuild_index(self) -> IndexRebuildReport:
        """Index every repository of every project again from the store alone (``roro index
        --rebuild``); the answers are the same as the incremental index's.

        Each repository's rows are replaced in one transaction, so processes using the index
        meanwhile see its old rows or its new ones, never none (emptying the whole index first
        would let a writer decide its next event on an empty index). A repository whose log is
        broken is left out and named in the report; the others are still indexed. Rows of
        repositories the store no longer has are dropped.
        """
        index = self.index
        report = IndexRebuildReport(index=self.index_path())
        seen: set[tuple[str, str]] = set()
        if self.is_initialized():
            for project in list_projects(self.backend):
                try:
                    validate_name(project, "project")
                except InvalidNameError:
                    continue  # not a directory roro could have written; fsck reports it
                report.projects += 1
                for name in list_repositories(self.backend, project):
                    try:
                        validate_name(name)
                    except InvalidNameError:
                        continue
                    seen.add((project, name))
                    try:
                        row = index.rebuild_repository(self.reflog(project, name), self.objects,
                                                       policy=self.policy())
                    except IntegrityError as e:
                        report.failed[f"{project}/{name}"] = str(e)
                        continue
                    if row is not None:
                        report.repositories += 1
                        report.versions += index.count_versions(project, name)
                        for v, why in index.damaged_versions(project, name).items():
                            report.damaged[f"{project}/{name}:{v}"] = why

        def absent(project: str, name: str) -> bool:
            try:
                return not self.is_initialized() or not self.reflog(project, name).keys_after(0)
            except (IntegrityError, InvalidNameError):
                return False

        index.forget_repositories(seen, absent)
        return report

    def index_positions(self) -> dict[tuple[str, str], tuple[int, str | None]]:
        """Where the local index last saw each repository's log end, ``(last_seq, last_hash)``;
        nothing if this store has no index yet (and none is created)."""
        if not os.path.exists(self.index_path()):
            return {}
        return self.index.positions()

    def index_snapshot(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every row of the local index, read at once (``Index.snapshot``; fsck compares them
        with the logs); nothing if this store has no index yet (and none is created)."""
        if not os.path.exists(self.index_path()):
            return {}
        return self.index.snapshot()

    def confirm_event(self, project: str, repository: str, seq: int, what: str,
                      **expected: Any) -> None:
        """Make sure event ``seq`` of the log says what the index says it does (``type`` and
        payload fields in ``expected``), before serving what the index derived from it: one
        read of that event (a local file on a folder, one GET on S3), memoised per process
        (events are immutable). ``what`` names the claim for the error, e.g. "version 2 is
        image sha256:…". Raises :class:`~roro.errors.IntegrityError` if the log disagrees, and
        :class:`~roro.errors.SignatureError` (naming the event) if the event is signed and its
        signature does not verify: a read checks the signatures of the events it serves, and
        only those (DESIGN §11)."""
        key = (project, repository, seq)
        event = self._confirmed.get(key)
        if event is None:
            try:
                event = self.reflog(project, repository).read_event(seq)
            except IntegrityError as e:
                raise self._index_disagrees(repository, seq, what, str(e)) from None
            check_signature(event, repository)
            if len(self._confirmed) >= _EVENT_MEMO:
                self._confirmed.clear()
            self._confirmed[key] = event
        found = {"type": event.type, **event.payload}
        wrong = sorted(k for k, v in expected.items() if found.get(k, object()) != v)
        if wrong:
            said = ", ".join(f"{k} {found.get(k)!r}" for k in wrong)
            raise self._index_disagrees(repository, seq, what, f"event {seq} says {said}")

    def confirmed_event(self, project: str, repository: str, seq: int) -> Event | None:
        """The event :meth:`confirm_event` read and checked, if it did (else None)."""
        return self._confirmed.get((project, repository, seq))

    def _index_disagrees(self, repository: str, seq: int, what: str, why: str) -> IntegrityError:
        return IntegrityError(
            f"the local index says {what} of {repository!r}, but the log does not ({why}): the "
            f"index was edited or damaged; refusing to serve it. Run 'roro index --rebuild' "
            f"(and 'roro fsck' to see what else differs)", repository=repository, seq=seq)

    def remember_event(self, project: str, repository: str, event: Event) -> None:
        if len(self.recent_events) >= _EVENT_MEMO:
            self.recent_events.clear()
        self.recent_events[(project, repository, event.seq)] = event.raw

    def remember_manifest(self, digest: str, data: bytes) -> None:
        if len(self.recent_manifests) >= _MANIFEST_MEMO:
            self.recent_manifests.clear()
        self.recent_manifests[digest] = data

    def close(self) -> None:
        idx = getattr(self._local, "index", None)
        if idx is not None:
            idx.close()
            self._local.index = None
        if self._backend is not None:
            self._backend.close()
