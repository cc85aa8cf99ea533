"""The object-reuse rule (docs/trust.md, "gc and reuse"): how a writer relies on objects that are
already stored without gc deleting them under it, with no touch, no self-copy and no bytes sent
again, and the two keys it shares with gc: the gc lock and the keep markers.

- G is gc's grace period; G_min the smallest gc accepts (``RORO_GC_MIN_GRACE`` seconds, default
  1 h); H = G_min / 2 is the *reuse horizon*: an object younger than H is *young*.
- A writer (save, sync, copy) writes what is absent (create-if-absent: young by construction),
  relies on what is present and young as it is, and *protects* what is present and old: one keep
  marker ``gc/keep/<time>-<uuid>.json`` naming every old object it relies on, then a look at the
  gc lock (``gc/lock``); a live lock is waited for. Either way it then looks again at each
  protected object and writes it again if a gc deleted it.
- It publishes within H / 2 of its first reliance decision, or does it all again first
  (:meth:`ReuseGuard.before_publish`).
- gc (``roro.check.gc``) takes the lock, lists the objects with their times, reads the keep
  markers younger than G, reads the logs, and only then deletes.

The proof is in docs/trust.md. :class:`ReuseGuard` is the writer's side; :class:`GcLock` the
lock both sides read and gc holds.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ..digests import digest_bytes
from ..environment import now_utc
from ..errors import ConflictError, DiskFullError, RoroError, StoreError
from ..faults import delay_point
from ..storage import Backend, KeyInfo, KeyNotFoundError
from ..storage.layout import GC_LOCK_KEY, keep_key, object_key, takeover_key
from ..units import env_seconds
from .canonical import canonical_json, loads
from .store import ObjectStore, SpooledObject

GC_MIN_GRACE_ENV = "RORO_GC_MIN_GRACE"
DEFAULT_GC_MIN_GRACE = 3600.0
#: A gc lock older than this (by its holder's time, refreshed while gc runs) belongs to a dead gc
#: (``RORO_GC_LOCK_STALE`` seconds overrides it, for tests).
LOCK_STALE_ENV = "RORO_GC_LOCK_STALE"
LOCK_STALE_SECONDS = 3600.0
READ_ATTEMPTS = 3  # reads of the lock or a marker that do not check out are tried again
#: How long a writer that must protect old objects waits for a running gc before giving up.
WAIT_FOR_GC_SECONDS = 900.0
POLL_SECONDS = 0.25
#: S3 keeps modification times in whole seconds: both sides count an object one second older.
MTIME_SLACK = 1.0
REDO_ATTEMPTS = 5


def min_grace() -> float:
    """G_min: the smallest grace period gc accepts, in seconds (``RORO_GC_MIN_GRACE``; every
    process sharing a store must see the same value)."""
    return env_seconds(GC_MIN_GRACE_ENV, DEFAULT_GC_MIN_GRACE, zero=True)


def lock_stale() -> float:
    """How old a gc lock's time must be for the lock to count as a dead gc's."""
    return env_seconds(LOCK_STALE_ENV, LOCK_STALE_SECONDS)


def reuse_horizon() -> float:
    """H = G_min / 2: a writer relies on a present object as it is only if it is younger."""
    return min_grace() / 2


# -- the gc lock ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GcLock:
    """The content of ``gc/lock``: who holds it, since when (``time``, seconds since the epoch,
    the holder's clock, refreshed while it runs). It carries a checksum of itself: a lock read
    with a flipped bit must never look older (staler) than it is."""

    id: str
    time: float
    host: str
    pid: int

    def _fields(self) -> dict[str, object]:
        return {"id": self.id, "time": self.time, "host": self.host, "pid": self.pid}

    def raw(self) -> bytes:
        body = self._fields()
        return canonical_json({**body, "check": digest_bytes(canonical_json(body))})

    @classmethod
    def parse(cls, raw: bytes) -> GcLock | None:
        """The lock in ``raw``, or None if it is not a lock whose checksum is right."""
        try:
            body = loads(raw)
            lock = cls(str(body["id"]), float(body["time"]), str(body["host"]), int(body["pid"]))
            ok = body["check"] == digest_bytes(canonical_json(lock._fields()))
        except (ValueError, KeyError, TypeError):
            return None
        return lock if ok else None

    @classmethod
    def mine(cls) -> GcLock:
        return cls(uuid.uuid4().hex, time.time(), socket.gethostname(), os.getpid())

    def stale(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) - self.time > lock_stale()

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.time))
        return f"since {since} (host {self.host}, pid {self.pid})"


def read_lock(backend: Backend) -> GcLock | None:
    """The gc lock, or None if no gc holds one. A lock that cannot be read intact (after a few
    tries) counts as held since its modification time: it is never ignored for being damaged."""
    for _ in range(READ_ATTEMPTS):
        try:
            raw = backend.get(GC_LOCK_KEY)
        except KeyNotFoundError:
            return None
        lock = GcLock.parse(raw)
        if lock is not None:
            return lock
    try:
        mtime = backend.stat(GC_LOCK_KEY).mtime
    except KeyNotFoundError:
        return None
    return GcLock("unreadable", mtime, "?", 0)


class GcLockHolder:
    """gc's side of the lock: taken with create-if-absent, refreshed by a background thread
    while gc runs (every quarter of the stale bound), released at the end. A dead gc's stale
    lock is replaced through a create-only takeover key, so that two gcs that both found it
    stale cannot both proceed. :meth:`check_alive` stops gc before it deletes anything with a
    lock it could not keep fresh."""

    def __init__(self, backend: Backend, lock: GcLock):
        self.backend, self.lock = backend, lock
        self.lost = False
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="roro-gc-lock", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls, backend: Backend, url: str) -> GcLockHolder:
        for _ in range(5):
            me = GcLock.mine()
            try:
                created = backend.put_if_absent(GC_LOCK_KEY, me.raw())
            except DiskFullError:  # gc is how space is freed: use the room kept for it
                if not backend.free_reserve():
                    raise
                created = backend.put_if_absent(GC_LOCK_KEY, me.raw())
            if created:
                return cls(backend, me)
            held = read_lock(backend)
            if held is None:
                continue  # released meanwhile
            if not held.stale():
                raise ConflictError(f"gc already running on store {url}: it holds gc/lock "
                                    f"{held.describe()}; wait for it to finish (a dead gc's lock "
                                    f"counts as dead {lock_stale():g} s after it was last "
                                    f"refreshed)")
            claim = takeover_key(held.id if held.id != "unreadable" else f"mtime-{held.time:.0f}")
            if not backend.put_if_absent(claim, me.raw()):
                time.sleep(POLL_SECONDS)  # another gc is replacing it: look again
                continue
            try:
                if read_lock(backend) == held:
                    backend.delete(GC_LOCK_KEY)
                taken = backend.put_if_absent(GC_LOCK_KEY, me.raw())
            finally:
                backend.delete(claim)
            if taken:
                return cls(backend, me)
        raise ConflictError(f"gc already running on store {url}: could not take gc/lock")

    def _beat(self) -> None:
        while not self._stop.wait(lock_stale() / 16):
            try:
                self.refresh_if_due()
            except RoroError:
                pass  # unreachable for now: check_alive() stops gc if it lasts

    def refresh_if_due(self) -> None:
        """Rewrite the lock's time when a quarter of the stale bound has passed since it was
        written, so that a long gc is never taken for a dead one."""
        with self._guard:
            now = time.time()
            if self.lost or now - self.lock.time < lock_stale() / 4:
                return
            if read_lock(self.backend) != self.lock:
                self.lost = True
                return
            fresh = GcLock(self.lock.id, now, self.lock.host, self.lock.pid)
            self.backend.replace(GC_LOCK_KEY, fresh.raw())
            self.lock = fresh

    def check_alive(self) -> None:
        """StoreError if this gc no longer holds a fresh lock (another gc took it over, or it
        could not be refreshed for half the stale bound): gc must stop deleting."""
        with self._guard:
            stale_soon = time.time() - self.lock.time > lock_stale() / 2
            if self.lost or stale_soon:
                raise StoreError("gc could not keep its lock (gc/lock) fresh, or lost it to "
                                 "another gc; it stopped before deleting more: run gc again")

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        if read_lock(self.backend) == self.lock:
            self.backend.delete(GC_LOCK_KEY)


# -- keep markers -----------------------------------------------------------------------------------
def marker_name(body: bytes) -> str:
    """A marker's name: when it was written, and the hash of its content (so that a marker read
    with a flipped bit is never taken for a smaller one)."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{_marker_check(body)}"


def _marker_check(body: bytes) -> str:
    return digest_bytes(body).split(":", 1)[1][:32]


def marker_digests(key: str, raw: bytes) -> list[str] | None:
    """The digests the keep marker ``key`` protects, or None if ``raw`` is not that marker
    intact (its name carries the hash of its content)."""
    if not key.endswith(f"-{_marker_check(raw)}.json"):
        return None
    try:
        digests = loads(raw)["digests"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
        return None
    return digests


def read_marker(backend: Backend, key: str) -> list[str] | None:
    """The digests keep marker ``key`` protects ([] if it vanished), read again if a read does
    not check out; None if it cannot be read intact."""
    for _ in range(READ_ATTEMPTS):
        try:
            raw = backend.get(key)
        except KeyNotFoundError:
            return []
        digests = marker_digests(key, raw)
        if digests is not None:
            return digests
    return None


# -- the writer's side ------------------------------------------------------------------------------
Again = Callable[[], None]


class ReuseGuard:
    """Everything one save (or sync, or copy) will reference, kept safe from gc until it
    publishes. Feed it every object the new version(s) will reference (:meth:`put_spooled`,
    :meth:`put_bytes`, :meth:`rely_on`), then :meth:`protect`, then call
    :meth:`before_publish` right before each create-if-absent of an event.

    ``require_feature`` records the ``gc-keep`` format feature (DESIGN §14) before the first keep
    marker is written.
    """

    def __init__(self, objects: ObjectStore, require_feature: Callable[[], None], url: str = ""):
        self.objects = objects
        self.backend = objects.backend
        self.url = url or self.backend.url
        self._require_feature = require_feature
        self.started: float | None = None  # the time of the first reliance decision (t_c)
        self._again: dict[str, Again] = {}  # digest -> write it again (it vanished)
        self._sizes: dict[str, int] = {}
        self._old: set[str] = set()  # present and old: to protect before publishing
        self.reused = 0  # objects found present
        self.markers = 0  # keep markers written
        #: Bytes of the objects this write created (newly stored), and bytes it sent: those,
        #: plus small objects offered to a remote store's conditional write that found them.
        self.stored = 0
        self.sent = 0

    def start(self) -> None:
        """Start the clock (the first reliance decision) now, if it has not started: before
        the first object is looked at or written."""
        if self.started is None:
            self.started = time.time()

    # -- feeding it ------------------------------------------------------------------------------
    def put_spooled(self, obj: SpooledObject) -> None:
        """Write a spooled object unless present; rely on it either way (the spool must live
        until the version is published: it is written again from there if gc took the object)."""
        self.start()
        key = object_key(obj.digest)
        self._again[obj.digest] = lambda: self._repair(key, obj.size,
                                                       lambda: self.backend.put_file(key, obj.path))
        self._sizes[obj.digest] = obj.size
        if not self.objects.put_spooled(obj):
            self._judge(obj.digest, self.objects.info(obj.digest))
        else:
            self._count(obj.size, sent=True, stored=True)

    def put_bytes(self, data: bytes, look_first: bool = False) -> str:
        """Write small bytes (a manifest) unless present; rely on them either way.
        ``look_first``: look for the object before sending it (a chunk index: a re-save of an
        unchanged model sends nothing but its manifest and event)."""
        self.start()
        digest = digest_bytes(data)
        key = object_key(digest)
        self._again[digest] = lambda: self._repair(key, len(data),
                                                   lambda: self.backend.put(key, data))
        self._sizes[digest] = len(data)
        if look_first:
            info = self.objects.info(digest)
            if info is not None and info.size == len(data):
                self._judge(digest, info)
                return digest
        created = self.objects.create_bytes(data)[1]
        if not created:
            self._judge(digest, self.objects.info(digest))
        self._count(len(data), sent=created or self.backend.remote, stored=created)
        return digest

    def put_range(self, digest: str, size: int, path: str, offset: int, created: bool,
                  info: KeyInfo | None) -> None:
        """A chunk: bytes ``offset .. offset + size`` of the local file ``path`` (which must
        live until the version is published), just stored (``created``) or found present
        (``info``: what a stat said). Its bytes are read again from ``path`` if it must be
        written again."""
        self.start()
        key = object_key(digest)

        def write() -> None:
            with open(path, "rb") as f:
                self.backend.put(key, os.pread(f.fileno(), size, offset))

        self._again[digest] = lambda: self._repair(key, size, write)
        self._sizes[digest] = size
        if created:
            self._count(size, sent=True, stored=True)
        else:
            self._judge(digest, info)

    def _count(self, size: int, *, sent: bool, stored: bool) -> None:
        if stored:
            self.stored += size
        if sent:
            self.sent += size

    def rely_on(self, digest: str, size: int, info: KeyInfo | None, again: Again) -> None:
        """An object the caller found present (``info``: what a stat just said; None if it
        has vanished since); ``again()`` writes it if it must be written again."""
        self.start()
        self._again[digest] = again
        self._sizes[digest] = size
        self._judge(digest, info)

    def written(self, digest: str, size: int, again: Again) -> None:
        """An object the caller has just written (young by construction)."""
        self.start()
        self._count(size, sent=True, stored=True)
        self._again[digest] = again
        self._sizes[digest] = size

    # -- the rule --------------------------------------------------------------------------------
    def _repair(self, key: str, size: int, write: Again) -> None:
        """Write an object again: it is missing, or holds a wrong size (a torn write by a store
        that is not atomic): it is garbage then, replaced by the right bytes."""
        try:
            if self.backend.stat(key).size != size:
                self.backend.delete(key)
        except KeyNotFoundError:
            pass
        write()

    def _judge(self, digest: str, info: KeyInfo | None) -> None:
        self.reused += 1
        if info is None or info.size != self._sizes[digest]:
            self._again[digest]()  # gone (or garbage) since it was found: written, young
        elif not self._young(info):
            self._old.add(digest)
        delay_point("reuse:after-check")

    @staticmethod
    def _young(info: KeyInfo) -> bool:
        return time.time() - info.mtime < reuse_horizon() - MTIME_SLACK

    def protect(self) -> None:
        """Protect the old objects relied on: one keep marker naming them all, then a look at
        the gc lock (waiting while a live gc holds it), then a look at each of them (written
        again if a gc deleted it). Cheap when nothing is old: nothing at all."""
        if self._old:
            old = sorted(self._old)
            self._require_feature()
            body = canonical_json({"digests": old, "time": now_utc(),
                                   "host": socket.gethostname(), "pid": os.getpid()})
            self.backend.put_if_absent(keep_key(marker_name(body)), body)
            self.markers += 1
            delay_point("reuse:after-marker")
            self._wait_for_gc()
            for digest in old:
                info = self.objects.info(digest)
                if info is None or info.size != self._sizes[digest]:
                    self._again[digest]()
            self._old.clear()
        if self.reused:
            delay_point("reuse:after-protect")

    def _wait_for_gc(self) -> None:
        lock = read_lock(self.backend)
        if lock is None or lock.stale():
            return
        delay_point("reuse:waiting-for-gc")
        deadline = time.monotonic() + WAIT_FOR_GC_SECONDS
        while lock is not None and not lock.stale():
            if time.monotonic() > deadline:
                raise ConflictError(
                    f"a gc has held the lock of store {self.url} {lock.describe()}, and this "
                    f"save, which relies on old objects, waited {WAIT_FOR_GC_SECONDS:g} s for "
                    f"it; nothing was published: try again when that gc has finished")
            time.sleep(POLL_SECONDS)
            lock = read_lock(self.backend)

    def before_publish(self) -> None:
        """The deadline: the event must be written within H / 2 of the first reliance decision.
        A slower writer (a long upload, lost races, a wait for gc) looks at every object again
        first: absent ones are written again, old ones protected."""
        horizon = reuse_horizon()
        if self.started is None or horizon <= 0:
            return  # G_min = 0: no horizon to keep (gc may then rob saves; docs/trust.md)
        for _ in range(REDO_ATTEMPTS):
            if time.time() - self.started <= horizon / 2:
                return
            self.started = time.time()
            for digest in sorted(self._again):
                self._judge(digest, self.objects.info(digest))
            self.reused -= len(self._again)  # a second look is no new reuse
            self.protect()
        raise StoreError(f"could not publish within {horizon / 2:g} s of checking the objects "
                         f"it relies on, {REDO_ATTEMPTS} times in a row (store {self.url} too "
                         f"slow for RORO_GC_MIN_GRACE={min_grace():g}?); nothing was published")
