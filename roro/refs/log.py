"""The per-repository ref log on a storage backend: read events, append with create-if-absent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import IntegrityError
from ..storage import Backend, KeyNotFoundError
from ..storage.layout import log_key, log_prefix, project_prefix, seq_from_log_key
from .events import MAX_EVENT_SIZE, Event, make_event, parse_event

PARALLEL_READS = 16


class RefLog:
    """The log of one repository: ``refs/<project>/<repo>/log/<seq>.json``."""

    def __init__(self, backend: Backend, project: str, repository: str):
        self.backend = backend
        self.project = project
        self.repository = repository
        self.prefix = log_prefix(project, repository)

    def keys_after(self, seq: int = 0) -> list[tuple[int, str]]:
        """(seq, key) of every event after ``seq``, in order; IntegrityError on a stray file name.

        Where ``exists`` is cheap and ``seq > 0``, probes ``seq + 1, seq + 2, …`` until one is
        missing: O(new events) instead of a listing of the whole log (fsck reads with seq 0, which
        lists, so it still sees stray files and gaps).
        """
        if seq > 0 and self.backend.cheap_exists:
            out = []
            while self.backend.exists(key := log_key(self.project, self.repository, seq + 1)):
                seq += 1
                out.append((seq, key))
            return out
        start = log_key(self.project, self.repository, seq) if seq > 0 else None
        out = []
        for key in self.backend.list(self.prefix, start_after=start):
            n = seq_from_log_key(key)
            if n is None or key.count("/") != self.prefix.count("/"):
                raise IntegrityError(f"ref log of {self.repository!r} holds a stray file {key!r}; "
                                     f"run 'roro fsck'", repository=self.repository)
            out.append((n, key))
        return out

    def read_after(self, seq: int = 0) -> list[Event]:
        """Every event after ``seq``, parsed, contiguous (a gap is an IntegrityError)."""
        keys = self.keys_after(seq)
        for expected, (n, _) in enumerate(keys, start=seq + 1):
            if n != expected:
                raise IntegrityError(f"ref log of {self.repository!r} is broken: event {expected} is "
                                     f"missing; run 'roro fsck'", repository=self.repository,
                                     seq=expected)

        def fetch(item: tuple[int, str]) -> Event:
            n, key = item
            try:
                raw = self.backend.get(key, MAX_EVENT_SIZE)
            except KeyNotFoundError:
                raise IntegrityError(f"ref log of {self.repository!r} lost event {n} while it was "
                                     f"read; run 'roro fsck'", repository=self.repository,
                                     seq=n) from None
            except IntegrityError as e:  # too large, or not a regular file: never read whole
                raise IntegrityError(f"ref log of {self.repository!r} is broken at event {n}: "
                                     f"{e}", repository=self.repository, seq=n) from None
            return parse_event(raw, repository=self.repository, seq=n)

        if len(keys) <= 4:
            return [fetch(k) for k in keys]
        with ThreadPoolExecutor(min(PARALLEL_READS, len(keys))) as pool:
            return list(pool.map(fetch, keys))

    def read_all(self) -> list[Event]:
        return self.read_after(0)

    def append(self, seq: int, prev: str | None, type_: str, author: str, time: str,
               **payload: Any) -> Event | None:
        """Write event ``seq`` if nobody has: the event, or None if another writer won the slot."""
        event = make_event(seq, prev, type_, author, time, **payload)
        created = self.backend.put_if_absent(log_key(self.project, self.repository, seq), event.raw)
        return event if created else None


def list_repositories(backend: Backend, project: str) -> list[str]:
    """Names of the repositories of ``project`` that have a log directory, sorted."""
    return backend.list_dirs(project_prefix(project))


def list_projects(backend: Backend) -> list[str]:
    return backend.list_dirs("refs/")
