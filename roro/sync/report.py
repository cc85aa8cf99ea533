"""What sync and copy report: per-repository outcomes, totals, request counts, progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..storage.wrappers import CountingBackend
from ..units import format_bytes

# Statuses of one repository in a sync report.
SYNCED = "synced"          # events were appended to DST
UP_TO_DATE = "up-to-date"  # DST already had every event of SRC
AHEAD = "ahead"            # DST holds all of SRC's events and more; nothing to do
PENDING = "pending"        # dry run: DST is behind; this is what a real run would do
CONFLICT = "conflict"      # histories diverged, or another writer won an append race
FAILED = "failed"          # SRC could not be trusted (corrupted/missing object, broken log)


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
    rejected: list[str] = field(default_factory=list)  # new events the store policy rejects

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
                "src_last": self.src_last, "dst_last": self.dst_last, "rejected": self.rejected}


def requests_dict(src: CountingBackend, dst: CountingBackend) -> dict[str, dict[str, int]]:
    return {"src": dict(sorted(src.counts.items())), "dst": dict(sorted(dst.counts.items()))}


def total_requests(requests: dict[str, dict[str, int]]) -> int:
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
        return total_requests(self.requests)

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
        return total_requests(self.requests)

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


