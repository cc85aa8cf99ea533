"""The SQLite index: derived data, refreshed incrementally from the ref logs, rebuildable at will.

Tables (one row per …): ``repositories`` (repository, with its log position), ``versions`` (saved
version, with the manifest's metadata as JSON), ``tags`` (current tag), ``tag_events`` (tag move),
``version_keys`` (top-level metadata key of a live version, with its value when it can be sorted:
what sorting a page by a metadata key reads).
Each refresh reads only the log entries after the last indexed one (one listing), fetches their
manifests outside any lock, then applies them in one ``BEGIN IMMEDIATE`` transaction, re-checking
the position so concurrent refreshers never apply an event twice.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import IntegrityError, NotFoundError, StoreError
from ..faults import crash_point
from ..objects import ObjectStore
from ..objects.canonical import loads
from ..objects.manifest import check_manifest
from .events import Event
from .log import RefLog
from .state import check_event

if TYPE_CHECKING:
    import sqlite_utils

SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 60_000
REFRESH_ATTEMPTS = 20
#: What the ``metadata`` column holds instead of a top-level string containing U+0000: SQLite's
#: JSON functions (3.40) end such a string at the NUL, so it is indexed as an object, which no
#: query literal can match (see docs/query.md).
NUL_STRING_PLACEHOLDER = {"roro:string-with-nul": True}
#: Every table of the index: what a store-id change or ``reset`` empties.
DATA_TABLES = ("repositories", "versions", "tags", "tag_events", "version_keys")
#: The ``value`` of a ``version_keys`` row whose JSON value cannot be sorted (boolean, null, array,
#: object): a BLOB, which SQLite orders after every number and string, so ``value < x''`` selects
#: exactly the sortable rows, numbers (numerically) before strings (by code point).
UNSORTABLE = b""


#: Modules that sqlite-utils imports at import time, if installed, only to map their scalar types to
#: column types (which roro never uses): numpy alone costs ~0.15 s, half of a `roro models:log`.
_SQLITE_UTILS_OPTIONAL = frozenset({"numpy", "pandas"})


class _HideOptional(importlib.abc.MetaPathFinder):
    """Refuses :data:`_SQLITE_UTILS_OPTIONAL` to one thread only (the one importing sqlite-utils),
    so another thread importing numpy meanwhile is not affected."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in _SQLITE_UTILS_OPTIONAL and threading.get_ident() == self.thread:
            raise ModuleNotFoundError(f"{name} hidden from sqlite-utils by roro", name=name)
        return None


def _import_sqlite_utils() -> Any:
    """``sqlite_utils``, imported on first use (``roro --help`` never needs it) without pulling in
    numpy or pandas when the process has not imported them itself."""
    module = sys.modules.get("sqlite_utils")
    if module is not None:
        return module
    finder = _HideOptional()
    sys.meta_path.insert(0, finder)
    try:
        import sqlite_utils
    finally:
        sys.meta_path.remove(finder)
    return sqlite_utils


class Index:
    def __init__(self, path: str):
        sqlite_utils = _import_sqlite_utils()

        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the index {path}: {e}") from e
        # No sqlite-utils plugins: the index is derived data that no third-party hook should
        # change, and loading them scans every installed package (~15 ms per command).
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = NORMAL")
        self._create_schema()

    def close(self) -> None:
        self.db.conn.close()

    # -- schema ----------------------------------------------------------------------------------
    def _create_schema(self) -> None:
        db = self.db
        if "meta" in db.table_names() and self._meta("schema") == str(SCHEMA_VERSION):
            return
        self._begin()
        try:
            # Re-check under the write lock: another process may have created the schema (and
            # indexed rows) between our look and our lock; dropping it then would lose them.
            if "meta" in db.table_names() and self._meta("schema") == str(SCHEMA_VERSION):
                self._commit()
                return
            for name in ("meta", *DATA_TABLES):
                db.execute(f"DROP TABLE IF EXISTS [{name}]")
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            db.execute("""CREATE TABLE repositories (
                project TEXT NOT NULL, name TEXT NOT NULL, last_seq INTEGER NOT NULL,
                last_hash TEXT, max_version INTEGER NOT NULL, created TEXT, updated TEXT,
                PRIMARY KEY (project, name))""")
            db.execute("""CREATE TABLE versions (
                project TEXT NOT NULL, repository TEXT NOT NULL, version INTEGER NOT NULL,
                image TEXT NOT NULL, seq INTEGER NOT NULL, author TEXT, time TEXT, comment TEXT,
                deleted INTEGER NOT NULL DEFAULT 0, metadata TEXT, model_type TEXT,
                model_size INTEGER, size INTEGER, attachments TEXT, manifest TEXT,
                PRIMARY KEY (project, repository, version))""")
            db.execute("CREATE INDEX versions_by_time ON versions (project, time)")
            # Deleted versions are rare: counting them (live = max_version - deleted) costs
            # O(deleted), where counting live rows would cost O(history).
            db.execute("CREATE INDEX versions_deleted ON versions (project, repository) "
                       "WHERE deleted = 1")
            db.execute("""CREATE TABLE tags (
                project TEXT NOT NULL, repository TEXT NOT NULL, tag TEXT NOT NULL,
                version INTEGER NOT NULL, PRIMARY KEY (project, repository, tag))""")
            db.execute("CREATE INDEX tags_by_version ON tags (project, repository, version)")
            db.execute("""CREATE TABLE tag_events (
                project TEXT NOT NULL, repository TEXT NOT NULL, seq INTEGER NOT NULL,
                tag TEXT NOT NULL, version INTEGER, previous INTEGER, author TEXT, time TEXT,
                PRIMARY KEY (project, repository, seq))""")
            db.execute("CREATE INDEX tag_events_by_tag ON tag_events (project, repository, tag, seq)")
            # One B-tree (WITHOUT ROWID) that answers "versions ordered by key K" and, through
            # its (project, repository, key) prefix, "which keys exist" (see sortable_keys).
            db.execute("""CREATE TABLE version_keys (
                project TEXT NOT NULL, repository TEXT NOT NULL, key TEXT NOT NULL,
                value NOT NULL, version INTEGER NOT NULL,
                PRIMARY KEY (project, repository, key, value, version)) WITHOUT ROWID""")
            db.execute("INSERT INTO meta VALUES ('schema', ?)", [str(SCHEMA_VERSION)])
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    # -- transactions ----------------------------------------------------------------------------
    def _begin(self) -> None:
        if self.db.conn.in_transaction:
            self.db.conn.commit()
        self.db.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self.db.conn.commit()

    def _rollback(self) -> None:
        self.db.conn.rollback()

    def bind_store(self, store_id: str) -> None:
        """Forget everything indexed if it came from another store (one recreated at the same URL)."""
        if self._meta("store_id") == store_id:
            return
        self._begin()
        try:
            if self._meta("store_id") != store_id:
                for t in DATA_TABLES:
                    self.db.execute(f"DELETE FROM [{t}]")
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('store_id', ?)", [store_id])
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def reset(self) -> None:
        """Delete every indexed row (``roro index --rebuild`` then refreshes from the store)."""
        self._begin()
        try:
            for t in DATA_TABLES:
                self.db.execute(f"DELETE FROM [{t}]")
            self._commit()
        except BaseException:
            self._rollback()
            raise

    # -- refresh ---------------------------------------------------------------------------------
    def repository(self, project: str, name: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM repositories WHERE project = ? AND name = ?",
                                  [project, name]))
        return rows[0] if rows else None

    def refresh(self, log: RefLog, objects: ObjectStore,
                known_manifests: dict[str, bytes] | None = None) -> dict[str, Any] | None:
        """Apply the events of ``log`` that are not indexed yet; return the repository row."""
        project, name = log.project, log.repository
        for _ in range(REFRESH_ATTEMPTS):
            row = self.repository(project, name)
            seq = row["last_seq"] if row else 0
            events = log.read_after(seq)
            if not events:
                return row
            manifests = self._fetch_manifests(_needing_manifests(events), objects,
                                              known_manifests or {})
            self._begin()
            try:
                view = _SqlView(self.db, project, name)
                if view.last_seq < seq:
                    # The index lost rows since we looked (another process rebuilt it or bound
                    # it to a recreated store): read the log again from where it now stands.
                    self._rollback()
                    continue
                for event in events:
                    if event.seq <= view.last_seq:
                        continue  # applied meanwhile by another process
                    check_event(view, event, name)
                    view.apply(event, manifests.get(event.payload.get("image")))
                crash_point("during-index-update")
                self._commit()
            except BaseException:
                self._rollback()
                raise
            return self.repository(project, name)
        raise StoreError(f"the index {self.path} kept changing under {project}/{name} while it was "
                         f"refreshed; try again")


    def rebuild_repository(self, log: RefLog, objects: ObjectStore) -> dict[str, Any] | None:
        """Index one repository again from its whole log, replacing its rows in one transaction.

        Readers (and writers deciding their next event) see the old rows or the new ones, never
        none, and never rows behind the log: events appended while the log was being read are
        read again under the lock. A broken log leaves the repository out of the index and
        raises :class:`~roro.errors.IntegrityError`.
        """
        project, name = log.project, log.repository
        error: IntegrityError | None = None
        try:
            events = log.read_after(0)
            manifests = self._fetch_manifests(_needing_manifests(events), objects, {})
        except IntegrityError as e:
            events, manifests, error = [], {}, e
        self._begin()
        try:
            self._delete_repository(project, name)
            if error is None:
                tail = log.read_after(events[-1].seq if events else 0)
                if tail:
                    events += tail
                    manifests.update(self._fetch_manifests(
                        [e for e in _needing_manifests(events) if e.seq >= tail[0].seq],
                        objects, {}))
                view = _SqlView(self.db, project, name)
                for event in events:
                    check_event(view, event, name)
                    view.apply(event, manifests.get(event.payload.get("image")))
            self._commit()
        except IntegrityError as e:
            self._rollback()
            error = e
            self._begin()
            try:
                self._delete_repository(project, name)
                self._commit()
            except BaseException:
                self._rollback()
                raise
        except BaseException:
            self._rollback()
            raise
        if error is not None:
            raise error
        return self.repository(project, name)

    def forget_repositories(self, keep, still_absent) -> list[tuple[str, str]]:
        """Delete the rows of every indexed repository not in ``keep`` (a set of ``(project,
        name)``) for which ``still_absent(project, name)`` confirms, under the lock, that the
        store has no log; returns those forgotten."""
        gone = []
        self._begin()
        try:
            for r in list(self.db.query("SELECT project, name FROM repositories")):
                key = (r["project"], r["name"])
                if key not in keep and still_absent(*key):
                    self._delete_repository(*key)
                    gone.append(key)
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return gone

    def _delete_repository(self, project: str, name: str) -> None:
        self.db.execute("DELETE FROM repositories WHERE project = ? AND name = ?", [project, name])
        for t in ("versions", "tags", "tag_events", "version_keys"):
            self.db.execute(f"DELETE FROM [{t}] WHERE project = ? AND repository = ?",
                            [project, name])

    @staticmethod
    def _fetch_manifests(events: list[Event], objects: ObjectStore,
                         known: dict[str, bytes]) -> dict[str, tuple[dict, str]]:
        digests = sorted({e["image"] for e in events if e.type == "version"})

        def fetch(digest: str) -> tuple[str, tuple[dict, str]]:
            data = known.get(digest)
            if data is None:
                try:
                    data = objects.read(digest)
                except NotFoundError:
                    raise IntegrityError(f"manifest {digest} named by the ref log is missing from "
                                         f"the store; run 'roro fsck'", digest=digest) from None
            try:
                manifest, text = loads(data), data.decode("utf-8")
            except ValueError as e:
                raise IntegrityError(f"object {digest} is not valid JSON: {e}", digest=digest) from None
            return digest, (check_manifest(manifest, digest), text)

        if len(digests) <= 4:
            return dict(map(fetch, digests))
        with ThreadPoolExecutor(16) as pool:
            return dict(pool.map(fetch, digests))

    # -- queries ---------------------------------------------------------------------------------
    def repositories(self, project: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "SELECT * FROM repositories WHERE project = ? ORDER BY name", [project]))

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
        return list(self.db.query(sql, params))

    def project_versions(self, project: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Live versions of every repository of ``project``, newest save first."""
        sql = ("SELECT * FROM versions WHERE project = ? AND deleted = 0 "
               "ORDER BY time DESC, repository, version DESC")
        params: list[Any] = [project]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return list(self.db.query(sql, params))

    def version(self, project: str, repository: str, version: int) -> dict[str, Any] | None:
        rows = list(self.db.query(
            "SELECT * FROM versions WHERE project = ? AND repository = ? AND version = ?",
            [project, repository, version]))
        return rows[0] if rows else None

    def latest_version(self, project: str, repository: str) -> int | None:
        row = self.db.execute(
            "SELECT max(version) FROM versions WHERE project = ? AND repository = ? AND deleted = 0",
            [project, repository]).fetchone()
        return row[0]

    def count_versions(self, project: str, repository: str) -> int:
        return self.db.execute(
            "SELECT count(*) FROM versions WHERE project = ? AND repository = ? AND deleted = 0",
            [project, repository]).fetchone()[0]

    def tags(self, project: str, repository: str) -> dict[str, int]:
        return {r["tag"]: r["version"] for r in self.db.query(
            "SELECT tag, version FROM tags WHERE project = ? AND repository = ? ORDER BY tag",
            [project, repository])}

    def tags_by_version(self, project: str, repository: str,
                        versions: list[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        if not versions:
            return out
        marks = ",".join("?" * len(versions))
        for r in self.db.query(
                f"SELECT tag, version FROM tags WHERE project = ? AND repository = ? "
                f"AND version IN ({marks}) ORDER BY tag", [project, repository, *versions]):
            out.setdefault(r["version"], []).append(r["tag"])
        return out

    def tag_history(self, project: str, repository: str,
                    tag: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM tag_events WHERE project = ? AND repository = ?"
        params: list[Any] = [project, repository]
        if tag is not None:
            sql += " AND tag = ?"
            params.append(tag)
        return list(self.db.query(sql + " ORDER BY seq", params))

    def search(self, project: str, repository: str | None, where_sql: str,
               params: tuple[Any, ...] | list[Any], limit: int | None = None,
               functions: dict[str, tuple[int, Any]] | None = None) -> list[dict[str, Any]]:
        """Live versions matching ``where_sql``, newest first.

        ``where_sql`` is a boolean SQL expression over the ``versions`` row aliased ``v`` whose
        values are all ``?`` parameters (``params``), as compiled by :mod:`roro.query`; it is never
        built from user text here. ``repository`` None searches the whole project (newest save
        first); ``functions`` are SQLite functions it calls (name → (arity, callable)).
        """
        for name, (arity, fn) in (functions or {}).items():
            self.db.conn.create_function(name, arity, fn, deterministic=True)
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
        rows = list(self.db.query(sql, args))
        self._optimize_once()
        return rows

    # -- pages (the web UI): each a bounded query, keyset-paginated ------------------------------
    def page(self, project: str, repository: str, *, where_sql: str | None = None,
             params: tuple[Any, ...] | list[Any] = (),
             functions: dict[str, tuple[int, Any]] | None = None, sort_key: str | None = None,
             descending: bool = True, after: tuple[Any, ...] | None = None,
             limit: int = 50) -> tuple[list[dict[str, Any]], tuple[Any, ...] | None]:
        """One page of live versions and the cursor of the next page (None on the last one).

        Rows hold ``version, image, time, author, comment`` (its first 500 characters) and
        ``metadata`` (the JSON column). ``where_sql``/``params``/``functions`` are a compiled
        query (as for :meth:`search`). Without ``sort_key`` the order is by version; with it, by
        that top-level metadata key's value (numbers, then strings; ties by version) through
        ``version_keys``, then the versions without a sortable value, newest first. ``after`` is
        a cursor this method returned; each page costs O(limit) index steps (plus the rows a
        ``where_sql`` filters out).
        """
        for name, (arity, fn) in (functions or {}).items():
            self.db.conn.create_function(name, arity, fn, deterministic=True)
        cols = ("v.version, v.image, v.time, v.author, substr(v.comment, 1, 500) AS comment, "
                "v.metadata")
        filt = f" AND ({where_sql})" if where_sql else ""
        op, order = ("<", "DESC") if descending else (">", "ASC")

        def run(sql: str, args: list[Any]) -> list[dict[str, Any]]:
            return list(self.db.query(sql, args))

        if sort_key is None:
            sql = (f"SELECT {cols} FROM versions AS v WHERE v.project = ? AND v.repository = ? "
                   "AND v.deleted = 0")
            args: list[Any] = [project, repository]
            if after is not None:
                sql += f" AND v.version {op} ?"
                args.append(after[0])
            rows = run(sql + filt + f" ORDER BY v.version {order} LIMIT ?",
                       [*args, *params, limit + 1])
            if where_sql:
                self._optimize_once()  # statistics for driving a query from the tags (see search)
            if len(rows) > limit:
                return rows[:limit], (rows[limit - 1]["version"],)
            return rows, None
        rows = []
        if after is None or after[0] == "k":
            sql = (f"SELECT {cols}, k.value AS sort_value FROM version_keys AS k JOIN versions AS v "
                   "ON v.project = k.project AND v.repository = k.repository "
                   "AND v.version = k.version WHERE k.project = ? AND k.repository = ? "
                   "AND k.key = ? AND k.value < x''")
            args = [project, repository, sort_key]
            if after is not None:
                sql += f" AND (k.value, k.version) {op} (?, ?)"
                args += [after[1], after[2]]
            rows = run(sql + " AND v.deleted = 0" + filt +
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
        args = [project, repository, sort_key]
        if after is not None:
            sql += " AND v.version < ?"
            args.append(after[1])
        want = limit + 1 - len(rows)
        keyed = len(rows)
        rows += run(sql + filt + " ORDER BY v.version DESC LIMIT ?", [*args, *params, want])
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        if limit <= keyed:  # the page ends on a keyed row: the next starts after it
            return rows[:limit], ("k", last["sort_value"], last["version"])
        return rows[:limit], ("m", last["version"])

    def metadata_keys(self, project: str, repository: str,
                      limit: int = 500) -> list[tuple[str, bool]]:
        """The distinct top-level metadata keys of a repository's live versions, in code point
        order, each with whether some value of it is a number: ``limit`` index seeks (a loose
        index scan of ``version_keys``), whatever the number of versions."""
        sql = """WITH RECURSIVE k(key) AS (
                SELECT (SELECT min(key) FROM version_keys WHERE project = ?1 AND repository = ?2)
                UNION ALL
                SELECT (SELECT min(key) FROM version_keys WHERE project = ?1 AND repository = ?2
                        AND key > k.key) FROM k WHERE k.key IS NOT NULL LIMIT ?3)
            SELECT key, (SELECT typeof(value) FROM version_keys WHERE project = ?1
                         AND repository = ?2 AND key = k.key ORDER BY value LIMIT 1) AS first
            FROM k WHERE key IS NOT NULL"""
        return [(r[0], r[1] in ("integer", "real"))
                for r in self.db.execute(sql, [project, repository, limit + 1])][:limit]

    def numeric_series(self, project: str, repository: str, key: str, *,
                       newest: int | None = None,
                       versions: list[int] | None = None) -> list[tuple[int, int | float]]:
        """``(version, value)`` of the live versions whose top-level ``key`` is a number, oldest
        first, among the ``newest`` highest versions or among ``versions``; never more rows."""
        if (newest is None) == (versions is None):
            raise ValueError("give newest or versions")
        if newest is not None:
            source = ("(SELECT version, metadata FROM versions WHERE project = ? AND repository = ? "
                      "AND deleted = 0 ORDER BY version DESC LIMIT ?)")
            args: list[Any] = [project, repository, newest]
        else:
            assert versions is not None
            marks = ",".join("?" * len(versions)) or "NULL"
            source = (f"(SELECT version, metadata FROM versions WHERE project = ? AND repository = ? "
                      f"AND deleted = 0 AND version IN ({marks}))")
            args = [project, repository, *versions]
        sql = (f"SELECT v.version, j.value FROM {source} AS v JOIN json_each(v.metadata) AS j "
               "ON j.key = ? AND j.type IN ('integer', 'real') ORDER BY v.version")
        return [(r[0], r[1]) for r in self.db.execute(sql, [*args, key])]

    def version_bounds(self, project: str, repository: str) -> tuple[int | None, int | None]:
        """The lowest and highest live version numbers (two seeks from the ends of the primary
        key: one ``min(), max()`` query would scan every row)."""
        ends = []
        for order in ("ASC", "DESC"):
            row = self.db.execute(f"SELECT version FROM versions WHERE project = ? AND "
                                  f"repository = ? AND deleted = 0 ORDER BY version {order} "
                                  f"LIMIT 1", [project, repository]).fetchone()
            ends.append(row[0] if row else None)
        return ends[0], ends[1]

    def tag_history_page(self, project: str, repository: str, tag: str | None = None, *,
                         before: int | None = None,
                         limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
        """Tag moves newest first, ``limit`` at a time; the next page's ``before`` (a seq)."""
        sql = "SELECT * FROM tag_events WHERE project = ? AND repository = ?"
        args: list[Any] = [project, repository]
        if tag is not None:
            sql += " AND tag = ?"
            args.append(tag)
        if before is not None:
            sql += " AND seq < ?"
            args.append(before)
        rows = list(self.db.query(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit + 1]))
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1]["seq"]
        return rows, None

    def repository_summary(self, project: str, repository: str) -> dict[str, Any]:
        """Live version count, latest version and its save time, for a list of repositories:
        O(deleted versions), not O(history) (version numbers are gap-free; deleted ones keep
        their row)."""
        row = self.db.execute("SELECT max_version FROM repositories WHERE project = ? AND name = ?",
                              [project, repository]).fetchone()
        if row is None:
            return {"versions": 0, "latest": None, "last_saved": None}
        deleted = self.db.execute(
            "SELECT count(*) FROM versions WHERE project = ? AND repository = ? AND deleted = 1",
            [project, repository]).fetchone()[0]
        latest = self.db.execute(
            "SELECT version, time FROM versions WHERE project = ? AND repository = ? "
            "AND deleted = 0 ORDER BY version DESC LIMIT 1", [project, repository]).fetchone()
        return {"versions": row[0] - deleted, "latest": latest[0] if latest else None,
                "last_saved": latest[1] if latest else None}

    def _optimize_once(self) -> None:
        """Once per connection, after a search: ``PRAGMA optimize`` gathers the statistics SQLite's
        planner needs to drive a selective query (``tag = 'production'``) from the tags rather than
        scan every version in time order (50 ms -> 1 ms at 100,000 versions). Best effort: never
        waits for a lock, never fails a search."""
        if getattr(self, "_optimized", False):
            return
        conn = self.db.conn
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

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every indexed row, in a stable order (tests compare rebuilt and incremental indexes)."""
        order = {"repositories": "project, name", "versions": "project, repository, version",
                 "tags": "project, repository, tag", "tag_events": "project, repository, seq",
                 "version_keys": "project, repository, key, value, version"}
        return {t: list(self.db.query(f"SELECT * FROM [{t}] ORDER BY {o}")) for t, o in order.items()}


def _needing_manifests(events: list[Event]) -> list[Event]:
    """The events whose manifest the index needs. A version deleted later in the same batch needs
    none: the index keeps only what the log says about deleted versions, and gc may already have
    collected their objects."""
    deleted = {e["version"] for e in events if e.type == "delete"}
    return [e for e in events if not (e.type == "version" and e["version"] in deleted)]


class _SqlView:
    """A :class:`~roro.refs.state.RepoView` over the index rows, applying events with SQL."""

    def __init__(self, db: sqlite_utils.Database, project: str, name: str):
        self.db, self.project, self.name = db, project, name
        row = db.execute("SELECT last_seq, last_hash, max_version FROM repositories "
                         "WHERE project = ? AND name = ?", [project, name]).fetchone()
        self.exists = row is not None
        self.last_seq, self.last_hash, self.max_version = row if row else (0, None, 0)

    def is_live(self, version: int) -> bool:
        return self.db.execute(
            "SELECT 1 FROM versions WHERE project = ? AND repository = ? AND version = ? "
            "AND deleted = 0", [self.project, self.name, version]).fetchone() is not None

    def tag_target(self, tag: str) -> int | None:
        row = self.db.execute("SELECT version FROM tags WHERE project = ? AND repository = ? "
                              "AND tag = ?", [self.project, self.name, tag]).fetchone()
        return row[0] if row else None

    def tags_of(self, version: int) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT tag FROM tags WHERE project = ? AND repository = ? AND version = ? ORDER BY tag",
            [self.project, self.name, version])]

    def apply(self, event: Event, manifest: tuple[dict, str] | None) -> None:
        p, n, ex = self.project, self.name, self.db.execute
        if event.type == "version":
            described: list[Any] = [None] * 6  # a version deleted later in the same batch
            if manifest is not None:
                m, text = manifest
                size = m["model"]["size"] + sum(a["size"] for a in m["attachments"])
                described = [queryable_metadata(m["metadata"]), m["model"]["type"],
                             m["model"]["size"], size,
                             json.dumps(m["attachments"], ensure_ascii=False), text]
            ex("INSERT INTO versions (project, repository, version, image, seq, author, time, "
               "comment, deleted, metadata, model_type, model_size, size, attachments, manifest) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
               [p, n, event["version"], event["image"], event.seq, event.author, event.time,
                event["comment"], *described])
            if described[0] is not None:
                self.db.conn.executemany(
                    "INSERT INTO version_keys VALUES (?, ?, ?, ?, ?)",
                    [(p, n, key, value, event["version"])
                     for key, value in key_values(described[0])])
            self.max_version = event["version"]
        elif event.type == "tag":
            if event["version"] is None:
                ex("DELETE FROM tags WHERE project = ? AND repository = ? AND tag = ?",
                   [p, n, event["tag"]])
            else:
                ex("INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?)",
                   [p, n, event["tag"], event["version"]])
            ex("INSERT INTO tag_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               [p, n, event.seq, event["tag"], event["version"], event["previous"], event.author,
                event.time])
        elif event.type == "delete":
            # Keep only what the log says: the manifest of a deleted version may be collected by
            # gc, so a rebuilt index could not know more, and must answer the same.
            row = ex("SELECT metadata FROM versions WHERE project = ? AND repository = ? "
                     "AND version = ?", [p, n, event["version"]]).fetchone()
            if row is not None and row[0] is not None:  # its exact keys: one seek per key
                self.db.conn.executemany(
                    "DELETE FROM version_keys WHERE project = ? AND repository = ? AND key = ? "
                    "AND value = ? AND version = ?",
                    [(p, n, key, value, event["version"]) for key, value in key_values(row[0])])
            ex("UPDATE versions SET deleted = 1, metadata = NULL, model_type = NULL, "
               "model_size = NULL, size = NULL, attachments = NULL, manifest = NULL "
               "WHERE project = ? AND repository = ? AND version = ?", [p, n, event["version"]])
        self.last_seq, self.last_hash = event.seq, event.hash
        if self.exists:
            ex("UPDATE repositories SET last_seq = ?, last_hash = ?, max_version = ?, updated = ? "
               "WHERE project = ? AND name = ?",
               [self.last_seq, self.last_hash, self.max_version, event.time, p, n])
        else:
            ex("INSERT INTO repositories VALUES (?, ?, ?, ?, ?, ?, ?)",
               [p, n, self.last_seq, self.last_hash, self.max_version, event.time, event.time])
            self.exists = True


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
    U+0000 becomes :data:`NUL_STRING_PLACEHOLDER` (only what queries see; the manifest is intact)."""
    if any(isinstance(v, str) and "\x00" in v for v in metadata.values()):
        metadata = {k: NUL_STRING_PLACEHOLDER if isinstance(v, str) and "\x00" in v else v
                    for k, v in metadata.items()}
    return json.dumps(metadata, ensure_ascii=False)
