"""The per-repository ref log on a storage backend: read events, append with create-if-absent."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from ..digests import digest_bytes
from ..errors import IntegrityError, RoroError
from ..storage import Backend, KeyInfo, KeyNotFoundError
from ..storage.layout import log_key, log_prefix, project_prefix, seq_from_log_key
from .events import MAX_EVENT_SIZE, Event, make_event, parse_event

PARALLEL_READS = 16
_PLAIN_MD5 = re.compile(r"[0-9a-f]{32}")


class Tail(NamedTuple):
    """Where a reader last saw a log end: event ``seq``, its sha256 ``hash`` and its ``md5``
    (None if unknown). A writer appends after it only once it knows that event is still there."""

    seq: int
    hash: str | None
    md5: str | None


class RefLog:
    """The log of one repository: ``refs/<project>/<repo>/log/<seq>.json``."""

    def __init__(self, backend: Backend, project: str, repository: str):
        self.backend = backend
        self.project = project
        self.repository = repository
        self.prefix = log_prefix(project, repository)

    def keys_after(self, seq: int = 0, tail: Tail | None = None) -> list[tuple[int, str]]:
        """(seq, key) of every event after ``seq``, in order; IntegrityError on a stray file name.

        Where ``exists`` is cheap and ``seq > 0``, probes ``seq + 1, seq + 2, …`` until one is
        missing: O(new events) instead of a listing of the whole log (fsck reads with seq 0, which
        lists, so it still sees stray files and gaps).

        With ``tail`` (``tail.seq == seq``), first makes sure that event ``seq`` is still there,
        unchanged (:meth:`check_tail`): what a writer must know before it appends after it.
        """
        return [(n, key) for n, key, _ in self._listed(seq, tail)]

    def _listed(self, seq: int, tail: Tail | None) -> list[tuple[int, str, KeyInfo | None]]:
        """:meth:`keys_after`, with what a listing said of each key (None: not listed)."""
        if tail is not None and tail.seq != seq:
            raise ValueError(f"tail {tail} is not at event {seq}")
        if seq > 0 and self.backend.cheap_exists:
            if tail is not None:
                self.check_tail(tail)
            out: list[tuple[int, str, KeyInfo | None]] = []
            while self.backend.exists(key := log_key(self.project, self.repository, seq + 1)):
                seq += 1
                out.append((seq, key, None))
            return out
        if tail is not None and seq > 0:
            # One listing, started one key earlier, shows event `seq` (with its ETag) and the
            # events after it: the check costs no request of its own.
            start = log_key(self.project, self.repository, seq - 1) if seq > 1 else None
            infos = self._checked(self.backend.list_info(self.prefix, start_after=start))
            if not infos or infos[0][0] != seq:
                raise self._behind(tail, "is missing")
            self.check_tail(tail, infos[0][2])
            return list(infos[1:])
        start = log_key(self.project, self.repository, seq) if seq > 0 else None
        return [(n, key, None) for n, key, _ in self._checked(
            KeyInfo(k, 0, 0) for k in self.backend.list(self.prefix, start_after=start))]

    def _checked(self, infos: Any) -> list[tuple[int, str, KeyInfo]]:
        out = []
        for info in infos:
            key = info.key
            n = seq_from_log_key(key)
            if n is None or key.count("/") != self.prefix.count("/"):
                raise IntegrityError(f"ref log of {self.repository!r} holds a stray file {key!r}; "
                                     f"run 'roro fsck'", repository=self.repository)
            out.append((n, key, info))
        return out

    def verify_tail(self, tail: Tail) -> None:
        """:meth:`check_tail` on its own, in one request: a listing from the event before it
        (for its ETag) where listings carry them, else a read of the event."""
        if tail.seq <= 0:
            return
        listed = None
        if not self.backend.cheap_exists:
            start = log_key(self.project, self.repository, tail.seq - 1) if tail.seq > 1 else None
            first = next(iter(self.backend.list_info(self.prefix, start_after=start)), None)
            if first is None or seq_from_log_key(first.key) != tail.seq:
                raise self._behind(tail, "is missing")
            listed = first
        self.check_tail(tail, listed)

    def check_tail(self, tail: Tail, listed: KeyInfo | None = None) -> None:
        """Raise :class:`~roro.errors.IntegrityError` unless event ``tail.seq`` is still there
        with hash ``tail.hash``. ``listed`` is what a listing said of it: an ETag that is a plain
        MD5 is compared with ``tail.md5`` (no request); otherwise the event is read and hashed
        (one read; a folder's event is a small local file)."""
        if listed is not None and listed.etag and tail.md5 and _PLAIN_MD5.fullmatch(listed.etag):
            if listed.etag != tail.md5:
                raise self._behind(tail, "is different")
            return
        try:
            raw = self.backend.get(log_key(self.project, self.repository, tail.seq))
        except KeyNotFoundError:
            raise self._behind(tail, "is missing") from None
        if digest_bytes(raw) != tail.hash:
            raise self._behind(tail, "is different")

    def _behind(self, tail: Tail, what: str) -> IntegrityError:
        return IntegrityError(
            f"the ref log of {self.repository!r} was truncated or rewritten behind the local "
            f"index: event {tail.seq}, the last one the index saw, {what}; refusing to write "
            f"after it. Run 'roro fsck' to see what happened, then 'roro index --rebuild' to "
            f"accept the log as it now is (after restoring an older backup, for instance)",
            repository=self.repository, seq=tail.seq, expected=tail.hash)

    def read_after(self, seq: int = 0, tail: Tail | None = None, *,
                   confirm: bool = False) -> list[Event]:
        """Every event after ``seq``, parsed, contiguous (a gap is an IntegrityError); with
        ``tail``, only once event ``seq`` is known to be still there (see :meth:`keys_after`).

        ``confirm`` (a writer's refresh, which appends after the last event read): the last
        event is confirmed as stored (:meth:`confirm`; free where the listing gave its ETag)."""
        listed = self._listed(seq, tail)
        keys = [(n, key) for n, key, _ in listed]
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
            events = [fetch(k) for k in keys]
        else:
            with ThreadPoolExecutor(min(PARALLEL_READS, len(keys))) as pool:
                events = list(pool.map(fetch, keys))
        if confirm and events:
            self.confirm(events[-1], listed[-1][2])
        return events

    def confirm(self, event: Event, listed: KeyInfo | None = None) -> None:
        """Make sure ``event``, as read, is the stored event (:meth:`check_tail`: its listed
        ETag, else a second read): before writing after it or copying it. The hash chain
        vouches for every event read but the last (the next one names its hash); a read that
        changed a bit of the last and still parsed (in a date or a digest) would otherwise have
        a writer chain its event to bytes that are not in the log, or sync copy them."""
        try:
            self.check_tail(Tail(event.seq, event.hash, event.md5), listed)
        except IntegrityError:
            raise IntegrityError(
                f"event {event.seq} of the ref log of {self.repository!r} read differently "
                f"twice (a faulty read?); nothing was written after it; try again",
                repository=self.repository, seq=event.seq) from None

    def read_range(self, seqs: list[int]) -> list[Event]:
        """Events ``seqs`` (known to exist), read in parallel and parsed; IntegrityError if one
        is missing or malformed."""
        def fetch(seq: int) -> Event:
            try:
                raw = self.backend.get(log_key(self.project, self.repository, seq),
                                       MAX_EVENT_SIZE)
            except KeyNotFoundError:
                raise IntegrityError(f"ref log of {self.repository!r} has no event {seq}",
                                     repository=self.repository, seq=seq) from None
            return parse_event(raw, repository=self.repository, seq=seq)

        if len(seqs) <= 4:
            return [fetch(s) for s in seqs]
        with ThreadPoolExecutor(min(PARALLEL_READS, len(seqs))) as pool:
            return list(pool.map(fetch, seqs))

    def read_event(self, seq: int) -> Event:
        """Event ``seq``, parsed; IntegrityError if it is missing or malformed."""
        try:
            raw = self.backend.get(log_key(self.project, self.repository, seq))
        except KeyNotFoundError:
            raise IntegrityError(f"ref log of {self.repository!r} has no event {seq}",
                                 repository=self.repository, seq=seq) from None
        return parse_event(raw, repository=self.repository, seq=seq)

    def read_all(self) -> list[Event]:
        return self.read_after(0)

    def append(self, seq: int, prev: str | None, type_: str, author: str, time: str, *,
               signer: Any = None, policy: str | None = None, check: Any = None,
               **payload: Any) -> Event | None:
        """Write event ``seq`` if nobody has: the event, or None if another writer won the slot.
        With ``signer`` (a :class:`roro.signing.SigningKey`) the event is signed; ``policy``
        names the store policy's head; ``check(event)`` may refuse the event before it is
        written (the store policy's verdict)."""
        event = make_event(seq, prev, type_, author, time, signer=signer, policy=policy,
                           **payload)
        if check is not None:
            check(event)
        key = log_key(self.project, self.repository, seq)
        try:
            created = self.backend.put_if_absent(key, event.raw)
        except RoroError:
            # The answer was lost, not necessarily the write: an event's bytes are unique (its
            # author, time and predecessor), so the slot holding exactly them means it is ours.
            try:
                if self.backend.get(key) == event.raw:
                    return event
            except RoroError:
                pass
            raise
        return event if created else None


def list_repositories(backend: Backend, project: str) -> list[str]:
    """Names of the repositories of ``project`` that have a log directory, sorted."""
    return backend.list_dirs(project_prefix(project))


def list_projects(backend: Backend) -> list[str]:
    return backend.list_dirs("refs/")
