"""The SQLite index: derived data, refreshed incrementally from the ref logs, rebuildable at will.

Tables (one row per …): ``repositories`` (repository, with its log position and, once closed by
a ``destroy`` or a ``rename``, its ``status``), ``versions`` (saved version, with the manifest's
metadata as JSON; ``deleted`` is 0 live, 1 deleted, 2 hidden with its closed repository),
``tags`` (current tag), ``tag_events`` (tag move), ``version_keys`` (top-level metadata key of a
live version, with its value when it can be sorted: what sorting a page by a metadata key
reads). A version and a tag move keep who signed their event (``signer``: the name the signature gives, ``signer_key``: the key's fingerprint;
NULL when unsigned), as the log *claims* it: reads verify the signatures of the events they
serve (``Store.confirm_event``), ``roro verify`` and fsck all of them.
Each refresh reads only the log entries after the last indexed one (one listing), fetches their
manifests outside any lock, then applies them in one ``BEGIN IMMEDIATE`` transaction, re-checking
the position so concurrent refreshers never apply an event twice.

Every SQL statement of roro is in this module. It uses the standard library's ``sqlite3``: the
index needs a connection, dict rows and a transaction, and sqlite-utils, used before, cost ~28 ms
of import per command (and an import hook to keep it from importing numpy) for nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import IntegrityError, StoreError
from ..faults import crash_point
from ..localfs import free_bytes
from ..objects import ObjectStore
from ..objects.manifest import model_format, parse_manifest_or_damage, read_manifest_or_damage
from .events import Event
from .log import RefLog, Tail
from .state import Judge, apply_event

if TYPE_CHECKING:
    from .checkpoint import History

#: ``history(project, repository, source)``: the events a cold read deferred (``source``:
#: :attr:`~roro.refs.checkpoint.History.source`), read again, and the store's objects (for the
#: manifests a checkpoint lacks). Set by the store that owns the index.
HistorySource = Callable[[str, str, str], "tuple[History, ObjectStore]"]

#: 3: the lifecycle columns of ``repositories`` and ``versions.deleted = 2`` (issue 14).
#: 4: ``repositories.last_md5`` and ``versions.damaged`` (issue 13).
#: 5: ``version_keys`` and the partial index ``versions_deleted`` (the web UI's pages).
#: 6: ``versions.model_format`` (issue 15: a format is a search field).
#: 7: ``signer`` and ``signer_key`` of versions and tag moves (issue 16).
#: 8: ``rejected_events`` (events the store policy rejected) and ``repositories.policy_head``
#: (the policy head its rows were judged under), issue 16 part 2.
#: 9: ``repositories.keys_pending`` (``version_keys`` built when first asked for).
#: 10: ``repositories.describe_pending`` (rows from a checkpoint described when first asked for).
#: 11: ``repositories.deferred`` and ``deferred_from`` (rows of old versions from a checkpoint
#: written when first needed).
SCHEMA_VERSION = 11
BUSY_TIMEOUT_MS = 60_000
REFRESH_ATTEMPTS = 20
PARALLEL_READS = 16
#: A cold read from a checkpoint writes the rows of this many newest versions; the older ones'
#: rows are *deferred* (see :class:`_FreshView`).
EAGER_VERSIONS = 1000
#: What the ``metadata`` column holds instead of a top-level string containing U+0000: SQLite's
#: JSON functions (3.40) end such a string at the NUL, so it is indexed as an object, which no
#: query literal can match (see docs/query.md).
NUL_STRING_PLACEHOLDER = {"roro:string-with-nul": True}
#: Every table of indexed rows: what a store-id change or ``reset`` empties.
TABLES = ("repositories", "versions", "tags", "tag_events", "version_keys", "rejected_events")
#: The ``value`` of a ``version_keys`` row whose JSON value cannot be sorted (boolean, null, array,
#: object): a BLOB, which SQLite orders after every number and string, so ``value < x''`` selects
#: exactly the sortable rows, numbers (numerically) before strings (by code point).
UNSORTABLE = b""
#: The JSON of the ``metadata`` and ``attachments`` columns: ``json.dumps(value,
#: ensure_ascii=False)``, with one encoder for every call (``dumps`` with an option builds a new
#: one each time) and no cycle check (values parsed from JSON have no cycles).
_COLUMN_JSON = json.JSONEncoder(ensure_ascii=False, check_circular=False)
# ``encode`` builds a new C encoder at each call (a third of its time for a small dict): the one
# ``_COLUMN_JSON.encode`` would build, made once (none where the C accelerator is missing).
_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODER: Any = None if _make_c_encoder is None else _make_c_encoder(
    None, _COLUMN_JSON.default, json.encoder.encode_basestring, None,
    _COLUMN_JSON.key_separator, _COLUMN_JSON.item_separator, False, False, True)


def _column_json(value: dict[str, Any] | list[Any]) -> str:
    """``_COLUMN_JSON.encode(value)`` for a dict or a list, faster."""
    if _C_ENCODER is None:
        return _COLUMN_JSON.encode(value)
    return "".join(_C_ENCODER(value, 0))
Row = dict[str, Any]
#: A manifest as the index stores it: the parsed manifest and its JSON text.
Described = tuple[dict[str, Any], str]


class Manifests(dict[str, "Described | str | bytes"]):
    """What a refresh learnt of each manifest it needed, by digest: described, or why it is
    damaged (a str). A manifest the refresh was handed (a writer's own, a checkpoint's) is kept
    as its bytes until :meth:`get` parses it (read_manifest_or_damage, as when it is read), and
    is not kept parsed: a cold refresh of 100,000 versions never holds them all parsed at once."""

    objects: ObjectStore | None = None

    def get(self, digest: str, default: Any = None) -> Described | str | None:  # type: ignore[override]
        found = dict.get(self, digest, default)
        if isinstance(found, bytes):
            assert self.objects is not None
            return _described_or_damage(self.objects, digest, found)
        return found
#: The columns of a ``versions`` row that the index derives from the manifest.
DERIVED = ("metadata", "model_type", "model_size", "size", "attachments", "manifest",
           "model_format")

_SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE repositories (
        project TEXT NOT NULL, name TEXT NOT NULL, last_seq INTEGER NOT NULL,
        last_hash TEXT, max_version INTEGER NOT NULL, created TEXT, updated TEXT,
        status TEXT, renamed_to TEXT, closed_seq INTEGER, closed_time TEXT, closed_by TEXT,
        last_md5 TEXT, policy_head TEXT, keys_pending INTEGER NOT NULL DEFAULT 0,
        describe_pending INTEGER NOT NULL DEFAULT 0,
        deferred INTEGER NOT NULL DEFAULT 0, deferred_from TEXT,
        PRIMARY KEY (project, name))""",
    """CREATE TABLE versions (
        project TEXT NOT NULL, repository TEXT NOT NULL, version INTEGER NOT NULL,
        image TEXT NOT NULL, seq INTEGER NOT NULL, author TEXT, time TEXT, comment TEXT,
        deleted INTEGER NOT NULL DEFAULT 0, metadata TEXT, model_type TEXT,
        model_size INTEGER, size INTEGER, attachments TEXT, manifest TEXT, model_format TEXT,
        damaged TEXT, signer TEXT, signer_key TEXT,
        PRIMARY KEY (project, repository, version))""",
    "CREATE INDEX versions_by_time ON versions (project, time)",
    # Deleted versions are rare: counting them (live = max_version - deleted) costs O(deleted),
    # where counting live rows would cost O(history).
    "CREATE INDEX versions_deleted ON versions (project, repository) WHERE deleted = 1",
    """CREATE TABLE tags (
        project TEXT NOT NULL, repository TEXT NOT NULL, tag TEXT NOT NULL,
        version INTEGER NOT NULL, PRIMARY KEY (project, repository, tag))""",
    "CREATE INDEX tags_by_version ON tags (project, repository, version)",
    """CREATE TABLE tag_events (
        project TEXT NOT NULL, repository TEXT NOT NULL, seq INTEGER NOT NULL,
        tag TEXT NOT NULL, version INTEGER, previous INTEGER, author TEXT, time TEXT,
        signer TEXT, signer_key TEXT,
        PRIMARY KEY (project, repository, seq))""",
    "CREATE INDEX tag_events_by_tag ON tag_events (project, repository, tag, seq)",
    # One B-tree (WITHOUT ROWID) that answers "versions ordered by key K" and, through its
    # (project, repository, key) prefix, "which keys exist" (see indexed_keys).
    """CREATE TABLE version_keys (
        project TEXT NOT NULL, repository TEXT NOT NULL, key TEXT NOT NULL,
        value NOT NULL, version INTEGER NOT NULL,
        PRIMARY KEY (project, repository, key, value, version)) WITHOUT ROWID""",
    """CREATE TABLE rejected_events (
        project TEXT NOT NULL, repository TEXT NOT NULL, seq INTEGER NOT NULL,
        type TEXT NOT NULL, version INTEGER, tag TEXT, author TEXT, time TEXT, signer TEXT,
        signer_key TEXT, reason TEXT NOT NULL, PRIMARY KEY (project, repository, seq))""",
]


IN_MEMORY = ":memory:"


class PolicyView(Protocol):
    """What the index needs of the store policy (:class:`roro.store.StorePolicy`)."""

    head: str | None

    def judge(self, project: str, repository: str) -> Judge | None: ...

    def stale(self, head: str | None, project: str, repository: str) -> bool:
        """Whether rows judged under policy ``head`` may hold a verdict the current policy
        would not give (then the repository is indexed again)."""


class IndexUnavailableError(StoreError):
    """The index file cannot be opened or written: ``reason`` is ``"read-only"`` (SQLite's WAL
    needs write access to the file and its directory), ``"full"`` (no space left on the
    device) or ``"other"``. The store decides where else to keep the index."""

    def __init__(self, path: str, error: BaseException):
        name = str(getattr(error, "sqlite_errorname", "") or "")
        text = str(error)
        if name.startswith("SQLITE_FULL") or "disk is full" in text or (
                isinstance(error, OSError) and error.errno == errno.ENOSPC):
            self.reason = "full"
        elif name.startswith("SQLITE_IOERR") and _nearly_full(path):
            self.reason = "full"  # a WAL or shared-memory write that met a full disk
        elif name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) or \
                "readonly" in text or "unable to open" in text or isinstance(error, PermissionError) \
                or (isinstance(error, OSError) and error.errno == errno.EROFS):
            self.reason = "read-only"
        else:
            self.reason = "other"
        super().__init__(f"cannot use the index {path}: {text}")
        self.path = path


class Index:
    """One connection to the index file at ``path`` (one per thread: see ``Store.index``), or
    to an index in memory (``path`` ``":memory:"``: for a store whose index cannot be written
    anywhere, for one command). ``seed`` is an index file to start from, copied (read-only,
    with SQLite's backup API) when ``path`` has no index yet."""

    def __init__(self, path: str, seed: str | None = None):
        self.path = path
        self._optimized = False
        #: Where deferred rows come from (None: a cold read defers none).
        self.history: HistorySource | None = None
        try:
            if path != IN_MEMORY:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fresh = path == IN_MEMORY or not os.path.exists(path)
            # isolation_level=None: no implicit transactions; every write is in transaction().
            self.conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000,
                                        check_same_thread=False, isolation_level=None)
            if seed is not None and fresh:
                copy_index(seed, self.conn)
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if path != IN_MEMORY and \
                    self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.conn.execute("PRAGMA journal_mode = wal")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self._create_schema()
        except (sqlite3.Error, OSError) as e:
            raise IndexUnavailableError(path, e) from e

    def close(self) -> None:
        self.conn.close()

    # -- statements and transactions -------------------------------------------------------------
    def _rows(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[Row]:
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor]

    def _one(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> Any:
        """The first column of the first row (None if there is no row)."""
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, ``BEGIN IMMEDIATE`` (it reads, then writes: taking the write
        lock first is what keeps two refreshers from applying one event twice). Committed when
        the block ends, rolled back if it raises."""
        try:
            if self.conn.in_transaction:
                self.conn.commit()
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise _unavailable(self.path, e) from e
        try:
            yield self.conn
            self.conn.commit()
        except BaseException as e:
            try:
                self.conn.rollback()
            except sqlite3.Error:
                pass
            if isinstance(e, sqlite3.OperationalError):
                raise _unavailable(self.path, e) from e
            raise

    def table_names(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]

    # -- schema ----------------------------------------------------------------------------------
    def _create_schema(self) -> None:
        if self._schema_is_current():
            return
        with self.transaction() as conn:
            # Re-check under the write lock: another process may have created the schema (and
            # indexed rows) between our look and our lock; dropping it then would lose them.
            if self._schema_is_current():
                return
            for name in ("meta", *TABLES):
                conn.execute(f"DROP TABLE IF EXISTS [{name}]")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO meta VALUES ('schema', ?)", [str(SCHEMA_VERSION)])

    def _schema_is_current(self) -> bool:
        return "meta" in self.table_names() and self._meta("schema") == str(SCHEMA_VERSION)

    def _meta(self, key: str) -> str | None:
        value: str | None = self._one("SELECT value FROM meta WHERE key = ?", [key])
        return value

    def bind_store(self, store_id: str) -> None:
        """Forget everything indexed if it came from another store (one recreated at the same URL)."""
        if self._meta("store_id") == store_id:
            return
        with self.transaction() as conn:
            if self._meta("store_id") != store_id:
                for t in TABLES:
                    conn.execute(f"DELETE FROM [{t}]")
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('store_id', ?)", [store_id])

    def reset(self) -> None:
        """Delete every indexed row (``roro index --rebuild`` then refreshes from the store)."""
        with self.transaction() as conn:
            for t in TABLES:
                conn.execute(f"DELETE FROM [{t}]")

    # -- refresh ---------------------------------------------------------------------------------
    def repository(self, project: str, name: str) -> Row | None:
        rows = self._rows("SELECT * FROM repositories WHERE project = ? AND name = ?",
                          [project, name])
        return rows[0] if rows else None

    def refresh(self, log: RefLog, objects: ObjectStore,
                known_manifests: dict[str, bytes] | None = None, *,
                check_tail: bool = False, appended: Event | None = None,
                checkpoint: Callable[[], History | None] | None = None,
                policy: PolicyView | None = None) -> Row | None:
        """Apply the events of ``log`` that are not indexed yet; return the repository row.

        With ``check_tail`` (a writer's refresh), first make sure that the event the index saw
        last is still in the log, unchanged: an :class:`~roro.errors.IntegrityError` says the
        log was truncated or rewritten behind the index (see :meth:`RefLog.check_tail`).
        ``appended`` is an event this process has just written: if it is the next one, it is
        applied without reading the log (a writer's refresh after its write costs nothing;
        events of others are read by the next refresh).
        ``checkpoint()``: for a repository the index has never seen, the events 1..N and the
        manifests of its newest checkpoint, verified against the log (or None: read the log);
        only the events after N are then read from the log, and the rows of all but the
        newest :data:`EAGER_VERSIONS` versions may be deferred (see :class:`_FreshView`).
        ``policy``: the store policy (:class:`PolicyView`): its verdict judges each new event,
        and rows judged under a head the policy changed since (in a way that may concern this
        repository) are indexed again from the log."""
        with _no_cyclic_gc():
            return self._refresh(log, objects, known_manifests, check_tail, appended, checkpoint,
                                 policy)

    def _refresh(self, log: RefLog, objects: ObjectStore,
                 known_manifests: dict[str, bytes] | None, check_tail: bool,
                 appended: Event | None,
                 checkpoint: Callable[[], History | None] | None,
                 policy: PolicyView | None) -> Row | None:
        project, name = log.project, log.repository
        judge = policy.judge(project, name) if policy is not None else None
        head = policy.head if policy is not None else None
        for _ in range(REFRESH_ATTEMPTS):
            row = self.repository(project, name)
            if row is not None and row["policy_head"] != head:
                if policy is None or policy.stale(row["policy_head"], project, name):
                    return self.rebuild_repository(log, objects, policy=policy)
                with self.transaction() as conn:
                    conn.execute("UPDATE repositories SET policy_head = ? WHERE project = ? AND "
                                 "name = ?", [head, project, name])
                continue
            seq = row["last_seq"] if row else 0
            tail = Tail(seq, row["last_hash"], row["last_md5"]) if check_tail and row else None
            known = known_manifests or {}
            lazy = False
            history: History | None = None
            deferred = 0
            if appended is not None and appended.seq == seq + 1:
                events = [appended]
            elif row is None and checkpoint is not None and (history := checkpoint()) is not None:
                deferred = _deferrable(history) if judge is None and self.history else 0
                events = [history.event(s) for s in _parsed_seqs(history, deferred)]
                try:
                    known = {**known, **history.manifests_for({
                        e["image"] for e in _needing_manifests(events, name)
                        if e.type == "version"})}
                except IntegrityError as e:  # a CheckpointError: a manifest no event names
                    if history.warn is not None:
                        history.warn(str(e))
                    history, deferred = None, 0
                    events = log.read_after(0, confirm=check_tail)
                else:
                    events += log.read_after(history.seq, confirm=check_tail)
                    lazy = True
            else:
                events = log.read_after(seq, tail, confirm=check_tail)
            if row is not None and row["deferred"] and _needs_rows(events):
                self._rows_for(project, name, events)
            if not events:
                return row
            manifests = _fetch_manifests(_needing_manifests(events, name), objects, known)
            with self.transaction() as conn:
                view = _view(conn, project, name, manifests, head, lazy)
                raced = deferred > 0 and not isinstance(view, _FreshView)
                if view.last_seq >= seq and not raced:
                    if deferred and isinstance(view, _FreshView) and history is not None:
                        view.fold_deferred(history, deferred, events)
                    for event in events:
                        if event.seq > view.last_seq:  # else applied meanwhile by another process
                            apply_event(view, event, name, policy=judge)
                    if isinstance(view, _FreshView):
                        view.flush()
                    crash_point("during-index-update")
            if raced:
                continue  # another process indexed it meanwhile: read on from its rows
            if view.last_seq >= seq:
                if any(e.type == "restore" for e in events) and self._lacks_manifests(project,
                                                                                    name):
                    # restored: its versions' manifests were dropped when it was closed
                    return self.rebuild_repository(log, objects, policy=policy)
                return self.repository(project, name)
            # The index lost rows since we looked (another process rebuilt it or bound it to a
            # recreated store): read the log again from where it now stands.
        raise StoreError(f"the index {self.path} kept changing under {project}/{name} while it was "
                         f"refreshed; try again")

    def rebuild_repository(self, log: RefLog, objects: ObjectStore,
                           policy: PolicyView | None = None) -> Row | None:
        """Index one repository again from its whole log, replacing its rows in one transaction.

        Readers (and writers deciding their next event) see the old rows or the new ones, never
        none, and never rows behind the log: events appended while the log was being read are
        read again under the lock. A broken log leaves the repository out of the index and
        raises :class:`~roro.errors.IntegrityError`.
        """
        project, name = log.project, log.repository
        try:
            with _no_cyclic_gc():
                return self._rebuild_repository(log, objects, policy)
        except IntegrityError:
            with self.transaction():
                self._delete_repository(project, name)
            raise

    def _rebuild_repository(self, log: RefLog, objects: ObjectStore,
                            policy: PolicyView | None) -> Row | None:
        project, name = log.project, log.repository
        events = log.read_after(0)
        manifests = _fetch_manifests(_needing_manifests(events, name), objects, {})
        with self.transaction() as conn:
            self._delete_repository(project, name)
            tail = log.read_after(events[-1].seq if events else 0)
            if tail:
                events += tail
                manifests.update(_fetch_manifests(
                    [e for e in _needing_manifests(events, name) if e.seq >= tail[0].seq],
                    objects, {}))
            view = _FreshView(conn, project, name, manifests,
                              policy.head if policy is not None else None)
            judge = policy.judge(project, name) if policy is not None else None
            for event in events:
                apply_event(view, event, name, policy=judge)
            view.flush()
        return self.repository(project, name)

    def _undefer(self, project: str, name: str, only: int | None = None) -> None:
        """Write the rows a cold refresh deferred (:meth:`_FreshView.fold_deferred`), if any:
        the events are read again (``self.history``), each deferred one parsed and checked to
        be the next version, and the rows written, described (what asks for every row is
        mostly about to read their columns: pending rows would be written twice), in one
        transaction.
        ``only``: just that version's row (the others stay deferred), its event found by its
        place among the ``version`` events."""
        sql = "SELECT deferred, deferred_from FROM repositories WHERE project = ? AND name = ?"
        found = self.conn.execute(sql, [project, name]).fetchone()
        if found is None or not found[0]:
            return
        deferred, source = found
        if self.history is None:
            raise StoreError(f"the index {self.path} holds rows of {project}/{name} only a store "
                             f"can complete; run 'roro index --rebuild'")
        with _no_cyclic_gc():
            history, objects = self.history(project, name, source)
            if only is not None and history.types is not None:
                events = [_version_event(history, only, name)]
                after = found  # the others stay deferred
            else:
                events = _deferred_events(history, deferred, name)
                after = (0, None)
            try:
                known = history.manifests_for({e["image"] for e in events})
            except IntegrityError as e:  # a CheckpointError: the store has them all the same
                if history.warn is not None:
                    history.warn(str(e))
                known = {}
            manifests = _fetch_manifests(events, objects, known)
            with self.transaction() as conn:
                if conn.execute(sql, [project, name]).fetchone() != found:
                    return  # written meanwhile by another process
                have = {v for (v,) in conn.execute(
                    "SELECT version FROM versions WHERE project = ? AND repository = ? AND "
                    "version <= ?", [project, name, deferred])}
                view = _FreshView(conn, project, name, manifests)  # described: written once
                for event in events:
                    if event["version"] not in have:
                        view.add_version(event)
                _insert_versions(conn, view.rows.values())
                conn.execute("UPDATE repositories SET deferred = ?, deferred_from = ?, "
                             "keys_pending = 1 WHERE project = ? AND name = ?",
                             [*after, project, name])

    def _rows_for(self, project: str, name: str, events: list[Event]) -> None:
        """Write the deferred rows ``events`` change: each deleted version's, or every row
        when one closes or reopens the repository."""
        if any(e.type in _LIFECYCLE for e in events):
            self._undefer(project, name)
        for event in events:
            if event.type == "delete":
                self.version(project, name, event["version"])

    def _whole(self, project: str, repository: str | None) -> None:
        """Every row of one repository, or of every repository of ``project`` (None), written:
        what a query over all of them calls first."""
        for name in self._repositories_where(project, repository, "deferred > 0"):
            self._undefer(project, name)

    def _repositories_where(self, project: str, repository: str | None,
                            condition: str) -> list[str]:
        """The names of the repositories of ``project`` (or just ``repository``) whose row meets
        ``condition`` (SQL over ``repositories``, written here, never from user text)."""
        sql = f"SELECT name FROM repositories WHERE project = ? AND {condition}"
        args = [project]
        if repository is not None:
            sql += " AND name = ?"
            args.append(repository)
        return [name for (name,) in self.conn.execute(sql, args).fetchall()]

    def _deferred(self, project: str, repository: str) -> int:
        """Versions 1..N of the repository may have no row yet (0: none)."""
        found: int | None = self._one("SELECT deferred FROM repositories WHERE project = ? AND "
                                      "name = ?", [project, repository])
        return found or 0

    def _lacks_manifests(self, project: str, name: str) -> bool:
        return self._one("SELECT count(*) FROM versions WHERE project = ? AND repository = ? AND "
                         "deleted = 0 AND manifest IS NULL", [project, name]) > 0

    def closed_versions(self, project: str, repository: str) -> list[dict[str, Any]]:
        """The versions hidden with their closed repository (what a restore brings back)."""
        return self._rows("SELECT version, image FROM versions WHERE project = ? AND "
                          "repository = ? AND deleted = 2 ORDER BY version", [project, repository])

    def forget_repositories(self, keep: set[tuple[str, str]],
                            still_absent: Callable[[str, str], bool]) -> list[tuple[str, str]]:
        """Delete the rows of every indexed repository not in ``keep`` (a set of ``(project,
        name)``) for which ``still_absent(project, name)`` confirms, under the lock, that the
        store has no log; returns those forgotten."""
        gone = []
        with self.transaction():
            for r in self._rows("SELECT project, name FROM repositories"):
                key = (r["project"], r["name"])
                if key not in keep and still_absent(*key):
                    self._delete_repository(*key)
                    gone.append(key)
        return gone

    def _delete_repository(self, project: str, name: str) -> None:
        self.conn.execute("DELETE FROM repositories WHERE project = ? AND name = ?",
                          [project, name])
        for t in ("versions", "tags", "tag_events", "version_keys", "rejected_events"):
            self.conn.execute(f"DELETE FROM [{t}] WHERE project = ? AND repository = ?",
                              [project, name])

    # -- queries ---------------------------------------------------------------------------------
    def repositories(self, project: str) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM repositories WHERE project = ? ORDER BY name", [project])

    def versions(self, project: str, repository: str, limit: int | None = None,
                 before: int | None = None) -> list[dict[str, Any]]:
        """Live versions, newest first; ``before`` pages by version number (keyset pagination)."""
        sql = "SELECT * FROM versions WHERE project = ? AND repository = ? AND deleted = 0"
        params: list[Any] = [project, repository]
        if before is not None:
            sql += " AND version < ?"
            params.append(before)
        sql += " ORDER BY version DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._rows(sql, params)
        deferred = self._deferred(project, repository)
        if deferred and (limit is None or len(rows) < limit or rows[-1]["version"] <= deferred):
            self._undefer(project, repository)  # the page reaches versions without a row
            rows = self._rows(sql, params)
        return _completed(rows)

    def project_versions(self, project: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Live versions of every repository of ``project``, newest save first."""
        self._whole(project, None)
        sql = ("SELECT * FROM versions WHERE project = ? AND deleted = 0 "
               "ORDER BY time DESC, repository, version DESC")
        params: list[Any] = [project]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return _completed(self._rows(sql, params))

    def version(self, project: str, repository: str, version: int) -> dict[str, Any] | None:
        sql = "SELECT * FROM versions WHERE project = ? AND repository = ? AND version = ?"
        rows = self._rows(sql, [project, repository, version])
        if not rows and 0 < version <= self._deferred(project, repository):
            self._undefer(project, repository, only=version)
            rows = self._rows(sql, [project, repository, version])
        return _completed(rows)[0] if rows else None

    def manifest_text(self, project: str, repository: str, version: int) -> str | None:
        """The manifest text the index keeps for a version (None: not kept: deleted,
        damaged, closed); one primary-key lookup."""
        row = self.version(project, repository, version)
        return row["manifest"] if row else None

    def versions_by_image_prefix(self, project: str, repository: str,
                                 prefix: str) -> list[dict[str, Any]]:
        """Live versions whose image digest starts with ``prefix`` (``sha256:`` and hex digits,
        validated by the caller), newest first, at most 100."""
        self._whole(project, repository)
        return self._rows(
            "SELECT version, image FROM versions WHERE project = ? AND repository = ? "
            "AND deleted = 0 AND substr(image, 1, ?) = ? ORDER BY version DESC LIMIT 100",
            [project, repository, len(prefix), prefix])

    def latest_version(self, project: str, repository: str) -> int | None:
        newest = self._newest_live(project, repository)
        return newest[0] if newest else None

    def _newest_live(self, project: str, repository: str) -> tuple[int, str | None] | None:
        """The newest live version and its save time (one seek from the end of the primary
        key); if that is no newer than the versions a cold read deferred, their rows are
        written first (one of them may be newer)."""
        sql = ("SELECT version, time FROM versions WHERE project = ? AND repository = ? "
               "AND deleted = 0 ORDER BY version DESC LIMIT 1")
        newest = self.conn.execute(sql, [project, repository]).fetchone()
        deferred = self._deferred(project, repository)
        if deferred and (newest is None or newest[0] <= deferred):
            self._undefer(project, repository)
            newest = self.conn.execute(sql, [project, repository]).fetchone()
        return newest

    def count_versions(self, project: str, repository: str) -> int:
        self._whole(project, repository)
        count: int = self._one(
            "SELECT count(*) FROM versions WHERE project = ? AND repository = ? AND deleted = 0",
            [project, repository])
        return count

    def positions(self) -> dict[tuple[str, str], tuple[int, str | None]]:
        """``(last_seq, last_hash)`` of every indexed repository: where the index last saw each
        log end (fsck compares it with the logs)."""
        return {(r["project"], r["name"]): (r["last_seq"], r["last_hash"])
                for r in self._rows("SELECT project, name, last_seq, last_hash FROM repositories")}

    def tags(self, project: str, repository: str) -> dict[str, int]:
        return {r["tag"]: r["version"] for r in self._rows(
            "SELECT tag, version FROM tags WHERE project = ? AND repository = ? ORDER BY tag",
            [project, repository])}

    def tags_by_version(self, project: str, repository: str,
                        versions: list[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        if not versions:
            return out
        marks = ",".join("?" * len(versions))
        for r in self._rows(
                f"SELECT tag, version FROM tags WHERE project = ? AND repository = ? "
                f"AND version IN ({marks}) ORDER BY tag", [project, repository, *versions]):
            out.setdefault(r["version"], []).append(r["tag"])
        return out

    def rejected(self, project: str, repository: str) -> list[dict[str, Any]]:
        """The events the store policy rejected, oldest first."""
        return self._rows("SELECT seq, type, version, tag, author, time, signer, signer_key, "
                          "reason FROM rejected_events WHERE project = ? AND repository = ? "
                          "ORDER BY seq", [project, repository])

    def rejected_version(self, project: str, repository: str,
                         version: int) -> dict[str, Any] | None:
        """The rejected event that claimed version ``version``, if one did."""
        rows = self._rows("SELECT seq, type, version, author, signer, signer_key, reason FROM "
                          "rejected_events WHERE project = ? AND repository = ? AND version = ? "
                          "AND type = 'version' ORDER BY seq LIMIT 1",
                          [project, repository, version])
        return rows[0] if rows else None

    def rejected_tag_move(self, project: str, repository: str, tag: str,
                          after: int) -> dict[str, Any] | None:
        """The newest rejected move of ``tag`` after event ``after``, if any."""
        rows = self._rows("SELECT * FROM rejected_events WHERE project = ? AND repository = ? "
                          "AND seq > ? AND type = 'tag' AND tag = ? ORDER BY seq DESC LIMIT 1",
                          [project, repository, after, tag])
        return rows[0] if rows else None

    def tag_history(self, project: str, repository: str,
                    tag: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM tag_events WHERE project = ? AND repository = ?"
        params: list[Any] = [project, repository]
        if tag is not None:
            sql += " AND tag = ?"
            params.append(tag)
        return self._rows(sql + " ORDER BY seq", params)

    def search(self, project: str, repository: str | None, where_sql: str,
               params: tuple[Any, ...] | list[Any], limit: int | None = None,
               functions: dict[str, tuple[int, Any]] | None = None) -> list[dict[str, Any]]:
        """Live versions matching ``where_sql``, newest first.

        ``where_sql`` is a boolean SQL expression over the ``versions`` row aliased ``v`` whose
        values are all ``?`` parameters (``params``), as compiled by :mod:`roro.query`; it is never
        built from user text here. ``repository`` None searches the whole project (newest save
        first); ``functions`` are SQLite functions it calls (name → (arity, callable)).
        """
        self.ensure_described(project, repository)
        for name, (arity, fn) in (functions or {}).items():
            self.conn.create_function(name, arity, fn, deterministic=True)
        sql = "SELECT v.* FROM versions AS v WHERE v.project = ? AND v.deleted = 0"
        args: list[Any] = [project]
        if repository is not None:
            sql += " AND v.repository = ?"
            args.append(repository)
        sql += f" AND ({where_sql})"
        args.extend(params)
        if repository is not None:
            sql += " ORDER BY v.version DESC"
        else:
            sql += " ORDER BY v.time DESC, v.repository, v.version DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self._rows(sql, args)
        self._optimize_once()
        return rows

    # -- pages (the web UI): each a bounded query, keyset-paginated ------------------------------
    _PAGE_COLUMNS = ("v.version, v.image, v.time, v.author, substr(v.comment, 1, 500) AS comment, "
                     "v.metadata, v.damaged")

    def page(self, project: str, repository: str, *, where_sql: str | None = None,
             params: tuple[Any, ...] | list[Any] = (),
             functions: dict[str, tuple[int, Any]] | None = None, sort_key: str | None = None,
             descending: bool = True, after: tuple[Any, ...] | None = None,
             limit: int = 50) -> tuple[list[Row], tuple[Any, ...] | None]:
        """One page of live versions and the cursor of the next page (None on the last one).

        Rows hold ``version, image, time, author, comment`` (its first 500 characters),
        ``metadata`` (the JSON column) and ``damaged`` (why its manifest is unreadable, or None). ``where_sql``/``params``/``functions`` are a compiled
        query (as for :meth:`search`). Without ``sort_key`` the order is by version; with it, by
        that top-level metadata key's value (numbers, then strings; ties by version) through
        ``version_keys``, then the versions without a sortable value, newest first. ``after`` is
        a cursor this method returned; each page costs O(limit) index steps (plus the rows a
        ``where_sql`` filters out).
        """
        self.ensure_described(project, repository)
        for name, (arity, fn) in (functions or {}).items():
            self.conn.create_function(name, arity, fn, deterministic=True)
        filt = f" AND ({where_sql})" if where_sql else ""
        if sort_key is None:
            op, order = ("<", "DESC") if descending else (">", "ASC")
            sql = (f"SELECT {self._PAGE_COLUMNS} FROM versions AS v WHERE v.project = ? "
                   "AND v.repository = ? AND v.deleted = 0")
            args: list[Any] = [project, repository]
            if after is not None:
                sql += f" AND v.version {op} ?"
                args.append(after[0])
            rows = self._rows(sql + filt + f" ORDER BY v.version {order} LIMIT ?",
                              [*args, *params, limit + 1])
            if where_sql:
                self._optimize_once()  # statistics for driving a query from the tags (see search)
            if len(rows) > limit:
                return rows[:limit], (rows[limit - 1]["version"],)
            return rows, None
        return self._page_by_key(project, repository, sort_key, filt, list(params), descending,
                                 after, limit)

    def _page_by_key(self, project: str, repository: str, key: str, filt: str,
                     params: list[Any], descending: bool, after: tuple[Any, ...] | None,
                     limit: int) -> tuple[list[Row], tuple[Any, ...] | None]:
        """:meth:`page` sorted by ``key``: first the ``version_keys`` rows with a sortable value
        (cursor ``("k", value, version)``), then the versions without one (``("m", version)``)."""
        self.ensure_keys(project, repository)
        cols = self._PAGE_COLUMNS
        rows: list[Row] = []
        if after is None or after[0] == "k":
            op, order = ("<", "DESC") if descending else (">", "ASC")
            sql = (f"SELECT {cols}, k.value AS sort_value FROM version_keys AS k JOIN versions AS v "
                   "ON v.project = k.project AND v.repository = k.repository "
                   "AND v.version = k.version WHERE k.project = ? AND k.repository = ? "
                   "AND k.key = ? AND k.value < x''")
            args: list[Any] = [project, repository, key]
            if after is not None:
                sql += f" AND (k.value, k.version) {op} (?, ?)"
                args += [after[1], after[2]]
            rows = self._rows(sql + " AND v.deleted = 0" + filt +
                              f" ORDER BY k.value {order}, k.version {order} LIMIT ?",
                              [*args, *params, limit + 1])
            if len(rows) > limit:
                last = rows[limit - 1]
                return rows[:limit], ("k", last["sort_value"], last["version"])
            after = None
        # Versions without a sortable value of the key, newest first.
        sql = (f"SELECT {cols}, NULL AS sort_value FROM versions AS v WHERE v.project = ? "
               "AND v.repository = ? AND v.deleted = 0 AND NOT EXISTS (SELECT 1 FROM "
               "json_each(v.metadata) AS j WHERE j.key = ? AND j.type IN ('integer', 'real', "
               "'text'))")
        args = [project, repository, key]
        if after is not None:
            sql += " AND v.version < ?"
            args.append(after[1])
        keyed = len(rows)
        rows += self._rows(sql + filt + " ORDER BY v.version DESC LIMIT ?",
                           [*args, *params, limit + 1 - keyed])
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        if limit <= keyed:  # the page ends on a keyed row: the next starts after it
            return rows[:limit], ("k", last["sort_value"], last["version"])
        return rows[:limit], ("m", last["version"])

    def ensure_keys(self, project: str, repository: str) -> None:
        """Build the repository's ``version_keys`` rows if a cold refresh or a rebuild left
        them to be built (``keys_pending``): one row per top-level metadata key of each live
        version, from the ``metadata`` column, in one transaction. What reads ``version_keys``
        calls this first; writers keep the rows up to date either way (a rebuild deletes what
        they added and starts over)."""
        pending = "SELECT keys_pending FROM repositories WHERE project = ? AND name = ?"
        if not self._one(pending, [project, repository]):
            return
        self.ensure_described(project, repository)
        with self.transaction() as conn:
            if not conn.execute(pending, [project, repository]).fetchone()[0]:
                return  # another process built them while this one waited for the lock
            conn.execute("DELETE FROM version_keys WHERE project = ? AND repository = ?",
                         [project, repository])
            rows = conn.execute(
                "SELECT version, metadata FROM versions WHERE project = ? AND repository = ? "
                "AND deleted = 0 AND metadata IS NOT NULL", [project, repository]).fetchall()
            conn.executemany("INSERT INTO version_keys VALUES (?, ?, ?, ?, ?)",
                             ((project, repository, key, value, version)
                              for version, metadata in rows
                              for key, value in key_values(metadata)))
            conn.execute("UPDATE repositories SET keys_pending = 0 WHERE project = ? AND "
                         "name = ?", [project, repository])

    def ensure_described(self, project: str, repository: str | None) -> None:
        """Describe the pending rows a cold refresh from a checkpoint left (``describe_pending``,
        see :class:`_FreshView`) of one repository, or of every repository of ``project``
        (``repository`` None): parse each manifest and write its columns, or why it is damaged,
        in one transaction per repository. What reads the manifest columns with SQL calls this
        first; rows handed out are described on the way (:func:`_completed`). Deferred rows
        are written first (:meth:`_undefer`)."""
        self._whole(project, repository)
        for name in self._repositories_where(project, repository, "describe_pending = 1"):
            with self.transaction() as conn:
                rows = conn.execute(
                    f"SELECT version, image, manifest FROM versions WHERE project = ? AND "
                    f"repository = ? AND {PENDING_ROW}", [project, name]).fetchall()
                conn.executemany(
                    f"UPDATE versions SET {', '.join(f'{c} = ?' for c in DERIVED)}, damaged = ? "
                    f"WHERE project = ? AND repository = ? AND version = ? AND {PENDING_ROW}",
                    ([*derived, damaged, project, name, version] for version, image, text in rows
                     for derived, damaged in [_describe_text(image, text)]))
                conn.execute("UPDATE repositories SET describe_pending = 0 WHERE project = ? AND "
                             "name = ?", [project, name])

    def indexed_keys(self, project: str, repository: str,
                     limit: int = 500) -> list[tuple[str, bool]]:
        """The distinct top-level metadata keys of a repository's live versions, in code point
        order, each with whether some value of it is a number: ``limit`` index seeks (a loose
        index scan of ``version_keys``), whatever the number of versions."""
        self.ensure_keys(project, repository)
        sql = """WITH RECURSIVE k(key) AS (
                SELECT (SELECT min(key) FROM version_keys WHERE project = ?1 AND repository = ?2)
                UNION ALL
                SELECT (SELECT min(key) FROM version_keys WHERE project = ?1 AND repository = ?2
                        AND key > k.key) FROM k WHERE k.key IS NOT NULL LIMIT ?3)
            SELECT key, (SELECT typeof(value) FROM version_keys WHERE project = ?1
                         AND repository = ?2 AND key = k.key ORDER BY value LIMIT 1) AS first
            FROM k WHERE key IS NOT NULL"""
        return [(r[0], r[1] in ("integer", "real"))
                for r in self.conn.execute(sql, [project, repository, limit + 1])][:limit]

    def numeric_series(self, project: str, repository: str, key: str, *,
                       newest: int | None = None,
                       versions: list[int] | None = None) -> list[tuple[int, int | float]]:
        """``(version, value)`` of the live versions whose top-level ``key`` is a number, oldest
        first, among the ``newest`` highest versions or among ``versions``; never more rows."""
        self.ensure_described(project, repository)
        if newest is not None and versions is None:
            source = ("(SELECT version, metadata FROM versions WHERE project = ? AND repository = ? "
                      "AND deleted = 0 ORDER BY version DESC LIMIT ?)")
            args: list[Any] = [project, repository, newest]
        elif versions is not None and newest is None:
            marks = ",".join("?" * len(versions)) or "NULL"
            source = (f"(SELECT version, metadata FROM versions WHERE project = ? AND repository = ? "
                      f"AND deleted = 0 AND version IN ({marks}))")
            args = [project, repository, *versions]
        else:
            raise ValueError("give newest or versions")
        sql = (f"SELECT v.version, j.value FROM {source} AS v JOIN json_each(v.metadata) AS j "
               "ON j.key = ? AND j.type IN ('integer', 'real') ORDER BY v.version")
        return [(r[0], r[1]) for r in self.conn.execute(sql, [*args, key])]

    def version_bounds(self, project: str, repository: str) -> tuple[int | None, int | None]:
        """The lowest and highest live version numbers (two seeks from the ends of the primary
        key: one ``min(), max()`` query would scan every row)."""
        self._whole(project, repository)
        sql = ("SELECT version FROM versions WHERE project = ? AND repository = ? AND deleted = 0 "
               "ORDER BY version {} LIMIT 1")
        return (self._one(sql.format("ASC"), [project, repository]),
                self._one(sql.format("DESC"), [project, repository]))

    def tag_history_page(self, project: str, repository: str, tag: str | None = None, *,
                         before: int | None = None,
                         limit: int = 100) -> tuple[list[Row], int | None]:
        """Tag moves newest first, ``limit`` at a time; the next page's ``before`` (a seq)."""
        sql = "SELECT * FROM tag_events WHERE project = ? AND repository = ?"
        args: list[Any] = [project, repository]
        if tag is not None:
            sql += " AND tag = ?"
            args.append(tag)
        if before is not None:
            sql += " AND seq < ?"
            args.append(before)
        rows = self._rows(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit + 1])
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1]["seq"]
        return rows, None

    def repository_summary(self, project: str, repository: str) -> Row:
        """Live version count, latest version and its save time, for a list of repositories:
        O(deleted versions), not O(history) (version numbers are gap-free; deleted ones keep
        their row). A closed (destroyed or renamed) repository has none."""
        max_version = self._one("SELECT max_version FROM repositories WHERE project = ? "
                                "AND name = ? AND status IS NULL", [project, repository])
        if max_version is None:
            return {"versions": 0, "latest": None, "last_saved": None}
        deleted = self._one("SELECT count(*) FROM versions WHERE project = ? AND repository = ? "
                            "AND deleted = 1", [project, repository])
        latest = self._newest_live(project, repository)
        return {"versions": max_version - deleted, "latest": latest[0] if latest else None,
                "last_saved": latest[1] if latest else None}

    @staticmethod
    def _recent_metadata(project: str, repository: str | None,
                         scan: int) -> tuple[str, list[Any]]:
        """A subquery of the metadata of the ``scan`` newest live versions (of one repository or
        the project), with its parameters."""
        sql = "SELECT metadata FROM versions WHERE project = ? AND deleted = 0"
        params: list[Any] = [project]
        if repository is not None:
            sql += " AND repository = ?"
            params.append(repository)
        return f"({sql} ORDER BY time DESC LIMIT ?)", [*params, scan]

    def metadata_key_types(self, project: str, repository: str | None, key: str,
                           scan: int = 10_000) -> dict[str, set[str]]:
        """The metadata keys equal to ``key`` ignoring case, each with the JSON types its values
        have (``integer``, ``real``, ``text``, ``true``…), over the ``scan`` newest live versions
        (of one repository or the project): what a search that matched nothing is told."""
        self.ensure_described(project, repository)
        recent, params = self._recent_metadata(project, repository, scan)
        out: dict[str, set[str]] = {}
        for r in self._rows(f"SELECT j.key AS key, j.type AS type FROM {recent} AS v, "
                            f"json_each(v.metadata) AS j WHERE lower(j.key) = lower(?) "
                            f"GROUP BY j.key, j.type", [*params, key]):
            out.setdefault(r["key"], set()).add(r["type"])
        return out

    def metadata_keys(self, project: str, repository: str | None,
                      scan: int = 10_000) -> list[str]:
        """Every metadata key of the ``scan`` newest live versions, sorted."""
        self.ensure_described(project, repository)
        recent, params = self._recent_metadata(project, repository, scan)
        return [r["key"] for r in self._rows(
            f"SELECT DISTINCT j.key AS key FROM {recent} AS v, json_each(v.metadata) AS j "
            f"ORDER BY j.key", params)]

    def _optimize_once(self) -> None:
        """Once per connection, after a search: ``PRAGMA optimize`` gathers the statistics SQLite's
        planner needs to drive a selective query (``tag = 'production'``) from the tags rather than
        scan every version in time order (50 ms -> 1 ms at 100,000 versions). Best effort: never
        waits for a lock, never fails a search."""
        if self._optimized:
            return
        conn = self.conn
        try:
            if conn.in_transaction:
                return
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA analysis_limit = 1000")
            conn.execute("PRAGMA optimize")
            self._optimized = True
        except sqlite3.Error:
            pass  # locked by a writer, or read-only: try again after the next search
        finally:
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            except sqlite3.Error:
                pass

    def damaged_versions(self, project: str, repository: str) -> dict[int, str]:
        """``{version: why}`` of the live versions whose manifest could not be read when they
        were indexed (missing, corrupt, not a manifest)."""
        self.ensure_described(project, repository)
        return {r["version"]: r["damaged"] for r in self._rows(
            "SELECT version, damaged FROM versions WHERE project = ? AND repository = ? AND "
            "deleted = 0 AND damaged IS NOT NULL ORDER BY version", [project, repository])}

    def heal_version(self, project: str, repository: str, version: int,
                     manifest: dict[str, Any], text: str) -> None:
        """A damaged version's manifest is readable again (restored): describe it. Best
        effort (a read must not fail because the index cannot be written): the next rebuild
        heals it otherwise."""
        derived = derived_columns(manifest, text)
        with contextlib.suppress(sqlite3.Error), self.transaction() as conn:
            healed = conn.execute(
                f"UPDATE versions SET {', '.join(f'{c} = ?' for c in DERIVED)}, damaged = NULL "
                "WHERE project = ? AND repository = ? AND version = ? AND deleted = 0 AND "
                "damaged IS NOT NULL", [*derived, project, repository, version]).rowcount
            if healed:  # and its version_keys rows, as add_version would have written them
                conn.executemany("INSERT OR IGNORE INTO version_keys VALUES (?, ?, ?, ?, ?)",
                                 [(project, repository, key, value, version)
                                  for key, value in key_values(derived[0])])

    def tag_move(self, project: str, repository: str, tag: str) -> dict[str, Any] | None:
        """The last recorded move of ``tag`` (the event that set its current target)."""
        rows = self._rows("SELECT * FROM tag_events WHERE project = ? AND repository = ? AND "
                          "tag = ? ORDER BY seq DESC LIMIT 1", [project, repository, tag])
        return rows[0] if rows else None

    def snapshot(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every repository's rows as one consistent read (fsck compares them with the logs):
        ``{(project, name): {"row": …, "versions": {v: row}, "tags": {tag: v},
        "tag_events": [row, …]}}``."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for project, name in self.conn.execute(
                "SELECT project, name FROM repositories WHERE deferred > 0").fetchall():
            with contextlib.suppress(IntegrityError):  # a broken log: fsck reports it
                self._undefer(project, name)
        if self.conn.in_transaction:
            self.conn.commit()
        self.conn.execute("BEGIN")  # one read transaction: a snapshot, whatever writers do
        try:
            for r in self._rows("SELECT * FROM repositories"):
                out[(r["project"], r["name"])] = {"row": r, "versions": {}, "tags": {},
                                                  "tag_events": []}

            def of(r: Row) -> dict[str, Any]:
                key = (r["project"], r["repository"])
                if key not in out:  # rows of a repository the index has no position for
                    out[key] = {"row": None, "versions": {}, "tags": {}, "tag_events": []}
                return out[key]

            for r in _completed(self._rows("SELECT * FROM versions")):
                of(r)["versions"][r["version"]] = r
            for r in self._rows("SELECT * FROM tags"):
                of(r)["tags"][r["tag"]] = r["version"]
            for r in self._rows("SELECT * FROM tag_events ORDER BY seq"):
                of(r)["tag_events"].append(r)
        finally:
            self.conn.commit()
        return out

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every indexed row, in a stable order (tests compare rebuilt and incremental indexes):
        ``version_keys`` built and rows described first where they are pending."""
        for project, name in self.conn.execute(
                "SELECT project, name FROM repositories WHERE keys_pending = 1 OR "
                "describe_pending = 1 OR deferred > 0").fetchall():
            self.ensure_described(project, name)
            self.ensure_keys(project, name)
        order = {"repositories": "project, name", "versions": "project, repository, version",
                 "tags": "project, repository, tag", "tag_events": "project, repository, seq",
                 "version_keys": "project, repository, key, value, version",
                 "rejected_events": "project, repository, seq"}
        return {t: self._rows(f"SELECT * FROM [{t}] ORDER BY {o}") for t, o in order.items()}


def peek_names(path: str, project: str, repository: str | None = None) -> list[str]:
    """For shell completion: the live repositories of ``project`` (or, with ``repository``, its
    tags) as the index file at ``path`` last saw them, read-only; ``[]`` if there is no such
    index or it cannot be read. Never refreshes, never creates a file."""
    if not os.path.isfile(path):
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            if repository is None:
                sql = ("SELECT name FROM repositories WHERE project = ? AND status IS NULL "
                       "ORDER BY name")
                rows = conn.execute(sql, [project]).fetchall()
            else:
                rows = conn.execute("SELECT tag FROM tags WHERE project = ? AND repository = ? "
                                    "ORDER BY tag", [project, repository]).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []
    return [r[0] for r in rows]


def _nearly_full(path: str) -> bool:
    """Is the file system of ``path`` (all but) full? SQLite reports some writes that met a full
    disk as a plain I/O error."""
    free = free_bytes(os.path.dirname(os.path.abspath(path)))
    return free is not None and free < 1 << 20


def _unavailable(path: str, error: sqlite3.OperationalError) -> BaseException:
    """A write refused because the index is read-only or its disk is full, as a StoreError the
    store can act on; any other SQLite error as it is (a bug, or a lock held past the timeout)."""
    unavailable = IndexUnavailableError(path, error)
    return unavailable if unavailable.reason != "other" else error


def copy_index(source: str, target: sqlite3.Connection) -> None:
    """Copy the index file ``source`` into the connection ``target`` with SQLite's backup API,
    opening ``source`` read-only (a store we may not write). ``immutable=1`` if a plain
    read-only open fails (a WAL database in a read-only directory cannot build its shared-memory
    file): then nothing may be writing it, which a read-only mount makes true. A copy that
    fails its quick check leaves ``target`` empty (the log rebuilds it)."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(source))
    for flags in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            src = sqlite3.connect(uri + flags, uri=True)
        except sqlite3.Error:
            continue
        try:
            src.backup(target)
            if target.execute("PRAGMA quick_check").fetchone()[0] == "ok":
                return
        except sqlite3.Error:
            pass
        finally:
            src.close()
        for (name,) in target.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            target.execute(f"DROP TABLE IF EXISTS [{name}]")


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """No cyclic garbage collection while a refresh holds its events, manifests and rows: they
    make no cycles, and with 100,000 versions alive each full collection walks them all (a
    fifth of the CPU time of a cold refresh at that size)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


#: The event types that close or reopen a repository (changing every version's row), and with
#: ``delete`` those that need rows a repository may have deferred (Index._rows_for).
_LIFECYCLE = frozenset({"destroy", "rename", "restore"})
_ROW_CHANGING = _LIFECYCLE | {"delete"}


def _needs_rows(events: list[Event]) -> bool:
    return any(e.type in _ROW_CHANGING for e in events)


def _deferrable(history: History) -> int:
    """How many of the oldest versions of ``history`` a cold refresh may leave without a row
    (:meth:`_FreshView.fold_deferred`): all but the newest :data:`EAGER_VERSIONS`, when every
    event's type is known from its bytes and none closes or reopens the repository."""
    types = history.types
    if types is None or _LIFECYCLE.intersection(types):
        return 0
    return max(0, types.count("version") - EAGER_VERSIONS)


def _parsed_seqs(history: History, deferred: int) -> list[int]:
    """The events of ``history`` a cold refresh parses: all but the ``version`` events of
    versions 2..``deferred`` (the first event is always parsed: its time is the
    repository's)."""
    if not deferred:
        return list(range(1, history.seq + 1))
    assert history.types is not None
    out = []
    version = 0
    for i, kind in enumerate(history.types):
        if kind == "version":
            version += 1
            if i and version <= deferred:
                continue
        out.append(i + 1)
    return out


def _deferred_events(history: History, deferred: int, repository: str) -> list[Event]:
    """The ``version`` events of versions 1..``deferred`` in ``history``, parsed and checked
    to number the versions from 1 as the fold would."""
    events: list[Event] = []
    if history.types is not None:
        known = min(len(history.version_seqs()), deferred)
        events = [_version_event(history, v, repository) for v in range(1, known + 1)]
    else:  # a history read from the log: its types are its events'
        for seq in range(1, history.seq + 1):
            event = history.event(seq)
            if event.type == "version":
                events.append(_deferred_event(event, len(events) + 1, repository))
                if len(events) == deferred:
                    break
    if len(events) < deferred:
        raise IntegrityError(f"ref log of {repository!r} holds {len(events)} versions up to "
                             f"event {history.seq}, not {deferred}; run 'roro fsck'",
                             repository=repository)
    return events


def _version_event(history: History, version: int, repository: str) -> Event:
    """The event of deferred ``version`` in ``history`` (whose types are known), parsed and
    checked (:func:`_deferred_event`)."""
    return _deferred_event(history.event(history.version_seqs()[version - 1]), version,
                           repository)


def _deferred_event(event: Event, version: int, repository: str) -> Event:
    """``event``, which must be the ``version`` event of ``version`` (an
    :class:`~roro.errors.IntegrityError` as the log's fold raises otherwise)."""
    seq = event.seq
    if event.type != "version" or event["version"] != version:
        found = f"version {event['version']}" if event.type == "version" else \
            f"a {event.type!r} event"
        raise IntegrityError(f"ref log of {repository!r} is broken at event {seq}: {found} "
                             f"where version {version} was next; run 'roro fsck'",
                             repository=repository, seq=seq)
    return event


def _insert_versions(conn: sqlite3.Connection, rows: Any) -> None:
    conn.executemany(
        f"INSERT INTO versions (project, repository, version, image, seq, author, time, "
        f"comment, deleted, {', '.join(DERIVED)}, damaged, signer, signer_key) "
        f"VALUES ({', '.join('?' * (12 + len(DERIVED)))})", rows)


def _needing_manifests(events: list[Event], repository: str) -> list[Event]:
    """The events whose manifest the index needs. A version deleted later in the same batch needs
    none, nor does any version of a repository the batch leaves closed (destroyed, renamed
    away): the index keeps only what the log says about them, and gc may already have
    collected their objects."""
    closed = False
    for e in events:
        if e.type == "destroy" or (e.type == "rename" and e["from"] == repository):
            closed = True
        elif e.type == "restore":
            closed = False
    if closed:
        return []
    deleted = {e["version"] for e in events if e.type == "delete"}
    return [e for e in events if not (e.type == "version" and e["version"] in deleted)]


def _fetch_manifests(events: list[Event], objects: ObjectStore,
                     known: dict[str, bytes]) -> Manifests:
    """The manifests the ``version`` events name, read in parallel (verified, shape-checked).

    A manifest that is missing, corrupt or not a manifest makes its version *damaged*, not the
    repository: its value is then the reason (a str), and the index lists the version as
    damaged while every other version stays readable. A failure to read at all (the store
    unreachable) still raises."""
    digests = {e["image"] for e in events if e.type == "version"}

    def fetch(digest: str) -> tuple[str, Described | str]:
        return digest, _described_or_damage(objects, digest, None)

    out = Manifests()
    out.objects = objects
    to_read = []
    for digest in digests:
        data = known.get(digest)
        if data is None:
            to_read.append(digest)
        else:
            out[digest] = data  # no read: parsed when the fold asks for it (Manifests.get)
    if len(to_read) <= 4:
        out.update(map(fetch, to_read))
    else:
        with ThreadPoolExecutor(PARALLEL_READS) as pool:
            out.update(pool.map(fetch, to_read))
    return out


def _described_or_damage(objects: ObjectStore, digest: str,
                         known: bytes | None) -> Described | str:
    """:func:`read_manifest_or_damage`, the manifest's bytes as text."""
    found = read_manifest_or_damage(objects, digest, known)
    return found if isinstance(found, str) else (found[0], found[1].decode("utf-8"))


def _view(conn: sqlite3.Connection, project: str, name: str, manifests: Manifests,
          policy_head: str | None = None, lazy: bool = False) -> _SqlView | _FreshView:
    """The reducer's view of a repository's rows: in memory while it has none (a cold refresh),
    else statement by statement. ``policy_head``: the store policy the events are judged by;
    ``lazy``: see :class:`_FreshView`."""
    view = _SqlView(conn, project, name, manifests, policy_head)
    return view if view.exists else _FreshView(conn, project, name, manifests, policy_head, lazy)


class _SqlView:
    """The index rows of one repository as the reducer's :class:`~roro.refs.state.RepoMutator`:
    each mutator is a statement, inside the caller's transaction. ``manifests`` describe the
    versions about to be added (a version deleted later in the same batch has none)."""

    def __init__(self, conn: sqlite3.Connection, project: str, name: str,
                 manifests: Manifests, policy_head: str | None = None):
        self.conn, self.project, self.name, self.manifests = conn, project, name, manifests
        self.policy_head = policy_head
        row = conn.execute("SELECT last_seq, last_hash, max_version, status, deferred FROM "
                           "repositories WHERE project = ? AND name = ?", [project, name]).fetchone()
        self.exists = row is not None
        self.last_seq: int = row[0] if row else 0
        self.last_hash: str | None = row[1] if row else None
        self.max_version: int = row[2] if row else 0
        self.status: str | None = row[3] if row else None
        self.deferred: int = row[4] if row else 0  # versions 1..deferred may have no row yet
        self.rejected_count: int = conn.execute(
            "SELECT count(*) FROM rejected_events WHERE project = ? AND repository = ?",
            [project, name]).fetchone()[0] if row else 0

    def reject(self, event: Event, reason: str) -> None:
        self.rejected_count += 1
        self.conn.execute(
            "INSERT INTO rejected_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [self.project, self.name, event.seq, event.type, event.payload.get("version"),
             event.payload.get("tag"), event.author, event.time, event.signer,
             event.signer_key, reason])

    def is_live(self, version: int) -> bool:
        row = self.conn.execute(
            "SELECT deleted FROM versions WHERE project = ? AND repository = ? AND version = ?",
            [self.project, self.name, version]).fetchone()
        return row[0] == 0 if row is not None else 0 < version <= self.deferred

    def tag_target(self, tag: str) -> int | None:
        row = self.conn.execute("SELECT version FROM tags WHERE project = ? AND repository = ? "
                                "AND tag = ?", [self.project, self.name, tag]).fetchone()
        return row[0] if row else None

    def tags_of(self, version: int) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT tag FROM tags WHERE project = ? AND repository = ? AND version = ? ORDER BY tag",
            [self.project, self.name, version])]

    def _described(self, image: str) -> tuple[list[Any], str | None]:
        """The manifest columns of a version of ``image`` and why it is damaged (None: it is
        not). The columns are None each when the manifest was not fetched (the version is
        deleted, or its repository closed, later in the same batch) or is damaged."""
        return _columns_of(self.manifests.get(image))

    def add_version(self, event: Event) -> None:
        described, damaged = self._described(event["image"])
        self.conn.execute(
            f"INSERT INTO versions (project, repository, version, image, seq, author, time, "
            f"comment, deleted, {', '.join(DERIVED)}, damaged, signer, signer_key) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, {', '.join('?' * len(DERIVED))}, ?, ?, ?)",
            [self.project, self.name, event["version"], event["image"], event.seq, event.author,
             event.time, event["comment"], *described, damaged, event.signer, event.signer_key])
        self._add_keys(event["version"], described[0])

    def _add_keys(self, version: int, metadata_column: str | None) -> None:
        if metadata_column is not None:
            self.conn.executemany(
                "INSERT INTO version_keys VALUES (?, ?, ?, ?, ?)",
                [(self.project, self.name, key, value, version)
                 for key, value in key_values(metadata_column)])

    def set_tag(self, event: Event) -> None:
        p, n = self.project, self.name
        if event["version"] is None:
            self.conn.execute("DELETE FROM tags WHERE project = ? AND repository = ? AND tag = ?",
                              [p, n, event["tag"]])
        else:
            self.conn.execute("INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?)",
                              [p, n, event["tag"], event["version"]])
        self.conn.execute("INSERT INTO tag_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          [p, n, event.seq, event["tag"], event["version"], event["previous"],
                           event.author, event.time, event.signer, event.signer_key])

    def delete_version(self, event: Event) -> None:
        # Keep only what the log says: the manifest of a deleted version may be collected by
        # gc, so a rebuilt index could not know more, and must answer the same.
        p, n, v = self.project, self.name, event["version"]
        row = self.conn.execute("SELECT metadata FROM versions WHERE project = ? AND "
                                "repository = ? AND version = ?", [p, n, v]).fetchone()
        if row is not None and row[0] is not None:  # its exact keys: one seek per key
            self.conn.executemany(
                "DELETE FROM version_keys WHERE project = ? AND repository = ? AND key = ? "
                "AND value = ? AND version = ?",
                [(p, n, key, value, v) for key, value in key_values(row[0])])
        self.conn.execute(
            f"UPDATE versions SET deleted = 1, {_UNDESCRIBE}, damaged = NULL "
            "WHERE project = ? AND repository = ? AND version = ?", [p, n, v])

    def advance(self, event: Event, max_version: int) -> None:
        self.last_seq, self.last_hash, self.max_version = event.seq, event.hash, max_version
        position = [self.last_seq, self.last_hash, self.max_version, event.time, event.md5,
                    self.policy_head]
        if self.exists:
            self.conn.execute(
                "UPDATE repositories SET last_seq = ?, last_hash = ?, max_version = ?, "
                "updated = ?, last_md5 = ?, policy_head = ? WHERE project = ? AND name = ?",
                [*position, self.project, self.name])
        else:
            self.conn.execute(
                "INSERT INTO repositories (project, name, last_seq, last_hash, max_version, "
                "updated, last_md5, policy_head, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [self.project, self.name, *position, event.time])
            self.exists = True

    def close(self, event: Event) -> None:
        # Its versions are hidden (deleted = 2) and, like a deleted version's, keep only what the
        # log says: gc may collect a destroyed repository's objects, so a rebuilt index could not
        # know more. A restore reads the manifests again (Index.refresh).
        self.status = "renamed" if event.type == "rename" else "destroyed"
        self.conn.execute(
            f"UPDATE versions SET deleted = 2, {_UNDESCRIBE} "
            "WHERE project = ? AND repository = ? AND deleted = 0", [self.project, self.name])
        self.conn.execute("DELETE FROM version_keys WHERE project = ? AND repository = ?",
                          [self.project, self.name])
        self._set_status(event, self.status, event["to"] if event.type == "rename" else None)

    def reopen(self, event: Event) -> None:
        self.status = None
        self.conn.execute("UPDATE versions SET deleted = 0 WHERE project = ? AND repository = ? "
                          "AND deleted = 2", [self.project, self.name])
        for version, image in self.conn.execute(
                "SELECT version, image FROM versions WHERE project = ? AND repository = ? AND "
                "deleted = 0 AND manifest IS NULL", [self.project, self.name]).fetchall():
            if image in self.manifests:  # else Index.refresh rebuilds the repository after
                described, damaged = self._described(image)
                self.conn.execute(
                    f"UPDATE versions SET {', '.join(f'{c} = ?' for c in DERIVED)}, "
                    "damaged = ? WHERE project = ? AND repository = ? AND version = ?",
                    [*described, damaged, self.project, self.name, version])
                self._add_keys(version, described[0])
        self._set_status(event, None, None)

    def _set_status(self, event: Event, status: str | None, renamed_to: str | None) -> None:
        closed = [event.seq, event.time, event.author] if status else [None, None, None]
        self.conn.execute(
            "UPDATE repositories SET status = ?, renamed_to = ?, closed_seq = ?, closed_time = ?, "
            "closed_by = ? WHERE project = ? AND name = ?",
            [status, renamed_to, *closed, self.project, self.name])


class _FreshView:
    """The rows of a repository the index has none of (a cold refresh, a rebuild), folded in
    memory and written at the end with one ``executemany`` per table: a cold refresh of 100,000
    events costs one statement per table instead of two or three per event. It answers the
    reducer's questions and writes exactly the rows :class:`_SqlView` would (tests compare).

    ``lazy`` (a cold refresh from a checkpoint): a version whose manifest the refresh holds as
    bytes (verified against its digest, not parsed) gets a row with the manifest's text and no
    other manifest column yet (*pending*); the repository is marked ``describe_pending`` and
    :meth:`Index.ensure_described` parses and describes the rows when something first asks for
    them (a row handed out is described on the way: :func:`_completed`). A cold ``models:log``
    of 100,000 versions so parses the 20 manifests it shows, not 100,000.

    :meth:`fold_deferred` (a cold refresh from a checkpoint of more than
    :data:`EAGER_VERSIONS` versions, in a store without a policy) goes further: the ``version``
    events of all but the newest :data:`EAGER_VERSIONS` versions are not even parsed (their
    bytes are verified: the checkpoint's chain) and get no row; every other event is parsed and
    applied as usual (a deleted version's row is written). The repository's ``deferred`` says
    that versions 1..``deferred`` without a row are live and unwritten, ``deferred_from`` where
    their events are; :meth:`Index._undefer` parses them and writes their rows when something
    first needs them. A cold ``models:log`` of 100,000 versions so folds 100,000 events but
    parses and writes ~1,000."""

    # positions in a ``versions`` row (the table's column order)
    _DELETED, _DERIVED, _DAMAGED = 8, 9, 9 + len(DERIVED)

    def __init__(self, conn: sqlite3.Connection, project: str, name: str,
                 manifests: Manifests, policy_head: str | None = None, lazy: bool = False):
        self.conn, self.project, self.name, self.manifests = conn, project, name, manifests
        self.policy_head = policy_head
        self.lazy = lazy
        self.pending = False  # a row was left to describe (lazy)
        self.rejected: list[tuple[Any, ...]] = []  # rejected_events rows
        self.exists = False
        self.last_seq = 0
        self.last_hash: str | None = None
        self.max_version = 0
        self.status: str | None = None
        self.rows: dict[int, list[Any]] = {}
        self.tags: dict[str, int] = {}
        self.tag_events: list[tuple[Any, ...]] = []
        self.last: Event | None = None  # the event last advanced to
        self.created: str | None = None  # the time of the first event
        self.closed: list[Any] = [None, None, None, None, None]  # status … closed_by
        self.deferred = 0  # versions 1..deferred without a row are live (fold_deferred)
        self.history: History | None = None  # where they are (fold_deferred)

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)

    def reject(self, event: Event, reason: str) -> None:
        self.rejected.append((self.project, self.name, event.seq, event.type,
                              event.payload.get("version"), event.payload.get("tag"),
                              event.author, event.time, event.signer, event.signer_key, reason))

    def is_live(self, version: int) -> bool:
        row = self.rows.get(version)
        return row[self._DELETED] == 0 if row is not None else 0 < version <= self.deferred

    def fold_deferred(self, history: History, deferred: int, parsed: list[Event]) -> None:
        """Apply events 1..N of ``history`` (verified, and free of lifecycle events: see
        :func:`_deferrable`): ``parsed`` holds the events :func:`_parsed_seqs` chose, the others
        are ``version`` events of versions 2..``deferred``, which get no row and only advance
        the fold (a valid one is the next version, by the next event, and changes nothing else).
        That each is such a version is checked when its row is written (:meth:`Index._undefer`)."""
        assert history.types is not None
        self.deferred, self.history = deferred, history
        by_seq = {e.seq: e for e in parsed}
        hashes = history.hashes
        version = 0
        for i, kind in enumerate(history.types):
            if kind == "version":
                version += 1
            event = by_seq.get(i + 1)
            if event is None:
                self.last_seq, self.last_hash, self.max_version = i + 1, hashes[i], version
            else:
                apply_event(self, event, self.name)

    def _add_deferred(self, version: int) -> None:
        """Write the row of deferred ``version`` (to delete it)."""
        assert self.history is not None
        self.add_version(_version_event(self.history, version, self.name))

    def tag_target(self, tag: str) -> int | None:
        return self.tags.get(tag)

    def tags_of(self, version: int) -> list[str]:
        return sorted(t for t, v in self.tags.items() if v == version)

    def _describe(self, version: int, image: str) -> tuple[list[Any], str | None]:
        if self.lazy and isinstance(raw := dict.get(self.manifests, image), bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                pass  # not a manifest: described (as damaged) now
            else:
                self.pending = True
                return _pending(text), None
        return _columns_of(self.manifests.get(image))

    def add_version(self, event: Event) -> None:
        v = event["version"]
        described, damaged = self._describe(v, event["image"])
        self.rows[v] = [self.project, self.name, v, event["image"], event.seq, event.author,
                        event.time, event["comment"], 0, *described, damaged, event.signer,
                        event.signer_key]

    def set_tag(self, event: Event) -> None:
        if event["version"] is None:
            self.tags.pop(event["tag"], None)
        else:
            self.tags[event["tag"]] = event["version"]
        self.tag_events.append((self.project, self.name, event.seq, event["tag"],
                                event["version"], event["previous"], event.author, event.time,
                                event.signer, event.signer_key))

    def _undescribe(self, row: list[Any]) -> None:
        row[self._DERIVED:self._DAMAGED] = [None] * len(DERIVED)

    def delete_version(self, event: Event) -> None:
        if event["version"] not in self.rows and self.is_live(event["version"]):
            self._add_deferred(event["version"])
        row = self.rows.get(event["version"])
        if row is not None:
            row[self._DELETED] = 1
            self._undescribe(row)
            row[self._DAMAGED] = None

    def advance(self, event: Event, max_version: int) -> None:
        self.last_seq, self.last_hash, self.max_version = event.seq, event.hash, max_version
        if self.last is None:
            self.created = event.time
        self.last = event  # the row is made by flush (one MD5, not one per event)
        self.exists = True

    def close(self, event: Event) -> None:
        self.status = "renamed" if event.type == "rename" else "destroyed"
        for row in self.rows.values():
            if row[self._DELETED] == 0:
                row[self._DELETED] = 2
                self._undescribe(row)
        self.closed = [self.status, event["to"] if event.type == "rename" else None, event.seq,
                       event.time, event.author]

    def reopen(self, event: Event) -> None:
        self.status = None
        for version, row in self.rows.items():
            if row[self._DELETED] == 2:
                row[self._DELETED] = 0
            if row[self._DELETED] == 0 and row[self._DERIVED + DERIVED.index("manifest")] is None \
                    and row[3] in self.manifests:
                described, damaged = self._describe(version, row[3])
                row[self._DERIVED:self._DAMAGED + 1] = [*described, damaged]
        self.closed = [None, None, None, None, None]

    def flush(self) -> None:
        """Write the rows (inside the caller's transaction)."""
        last = self.last
        if last is None:
            return
        p, n = self.project, self.name
        self.conn.execute(
            "INSERT INTO repositories (project, name, last_seq, last_hash, max_version, updated, "
            "last_md5, created, status, renamed_to, closed_seq, closed_time, closed_by, "
            "policy_head, keys_pending, describe_pending, deferred, deferred_from) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
            [p, n, self.last_seq, self.last_hash, self.max_version, last.time, last.md5,
             self.created, *self.closed, self.policy_head, int(self.pending), self.deferred,
             self.history.source if self.history is not None else None])
        _insert_versions(self.conn, self.rows.values())
        # No version_keys rows: they are built when first asked for (Index.ensure_keys), so a
        # cold read of a long history does not write one row per metadata key of every version.
        self.conn.executemany("INSERT INTO tags VALUES (?, ?, ?, ?)",
                              ((p, n, tag, v) for tag, v in self.tags.items()))
        self.conn.executemany("INSERT INTO tag_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              self.tag_events)
        self.conn.executemany("INSERT INTO rejected_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              self.rejected)


def derived_columns(manifest: dict[str, Any], text: str) -> list[Any]:
    """The values of :data:`DERIVED` for a manifest (and its exact JSON text)."""
    attachments = manifest["attachments"]
    size = manifest["model"]["size"] + sum(a["size"] for a in attachments)
    return [queryable_metadata(manifest["metadata"]), manifest["model"].get("type"),
            manifest["model"]["size"], size,
            _column_json(attachments) if attachments else "[]", text,
            model_format(manifest)]


_MANIFEST = DERIVED.index("manifest")
#: A pending row (see :class:`_FreshView`): its manifest's text and no other manifest column
#: (a described row always has a ``model_format``; a deleted, closed or damaged one no manifest).
PENDING_ROW = "manifest IS NOT NULL AND model_format IS NULL"


def _pending(text: str) -> list[Any]:
    """The :data:`DERIVED` values of a pending row."""
    out: list[Any] = [None] * len(DERIVED)
    out[_MANIFEST] = text
    return out


def _describe_text(image: str, text: str) -> tuple[list[Any], str | None]:
    """The :data:`DERIVED` values of a pending row's manifest (text already verified to hash to
    ``image``) and why it is damaged (None: it is not), as a refresh that parsed it would have
    written them."""
    found = parse_manifest_or_damage(text.encode("utf-8"), image)
    return _columns_of(found if isinstance(found, str) else (found, text))


def _columns_of(found: Described | str | None) -> tuple[list[Any], str | None]:
    """The :data:`DERIVED` values of a version and why it is damaged (None: it is not), from
    its described manifest, the reason it is damaged (a str), or nothing (None: the manifest
    was not fetched: the version is deleted, or its repository closed, later in the batch).
    A damaged or unfetched version has None in every column."""
    if found is None or isinstance(found, str):
        return [None] * len(DERIVED), found
    return derived_columns(*found), None


def _completed(rows: list[Row]) -> list[Row]:
    """``rows`` (``SELECT *`` of ``versions``) with every pending row described."""
    for row in rows:
        if row["model_format"] is None and row["manifest"] is not None:
            derived, damaged = _describe_text(row["image"], row["manifest"])
            row.update(zip(DERIVED, derived, strict=True))
            row["damaged"] = damaged
    return rows


#: ``column = NULL`` for each of :data:`DERIVED`: a deleted version, or one of a closed
#: repository, keeps none of them.
_UNDESCRIBE = ", ".join(f"{c} = NULL" for c in DERIVED)


def key_values(metadata_column: str) -> list[tuple[str, Any]]:
    """The ``version_keys`` rows of one version, from its ``metadata`` column: ``(key, value)``
    for every top-level key, the value being the number or string itself, or
    :data:`UNSORTABLE`."""
    out: list[tuple[str, Any]] = []
    for key, value in json.loads(metadata_column).items():
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            value = UNSORTABLE
        out.append((key, value))
    return out


def queryable_metadata(metadata: dict[str, Any]) -> str:
    """The ``metadata`` column: the metadata as JSON, except that a top-level string containing
    U+0000 becomes :data:`NUL_STRING_PLACEHOLDER` (only what queries see; the manifest is intact).
    JSON writes U+0000 as ``\\u0000``: text without that sequence has no such string to replace
    (one substring search instead of a look at every value)."""
    text = _column_json(metadata)
    if "\\u0000" not in text:
        return text
    if any(isinstance(v, str) and "\x00" in v for v in metadata.values()):
        metadata = {k: NUL_STRING_PLACEHOLDER if isinstance(v, str) and "\x00" in v else v
                    for k, v in metadata.items()}
    return _column_json(metadata)
