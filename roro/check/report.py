"""What fsck and gc report: each problem found, and what was checked, kept or deleted."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Problem kinds. Each is a short stable string (the CLI's --json output and tests match on them).
BROKEN_LOG = "broken-log"            # an event missing, unreadable, out of chain or against the rules
STRAY_FILE = "stray-file"            # a key under refs/ or objects/ that roro cannot have written
MISSING_OBJECT = "missing-object"    # a manifest or blob that a live version needs is not stored
CORRUPT_OBJECT = "corrupt-object"    # an object whose bytes do not hash to its name
INVALID_MANIFEST = "invalid-manifest"  # a manifest that is not valid JSON or not a manifest
INDEX_MISMATCH = "index-mismatch"    # the local index saw log events that the store no longer has
INCOMPLETE_RENAME = "incomplete-rename"  # renamed, but the new name lacks the rename event
SPECIAL_FILE = "special-file"        # a symlink, FIFO, device, or a directory where a key's file goes
BAD_CHECKPOINT = "bad-checkpoint"    # the newest checkpoint of a repository is wrong or unreadable
UNREADABLE_MARKER = "unreadable-marker"  # gc: a young keep marker that cannot be read intact
BAD_BUNDLE = "bad-bundle"            # a version's OpenSSF Model Signing bundle does not fit it (or cannot be checked)
BAD_SIGNATURE = "bad-signature"      # a signed event whose signature does not verify (or cannot be checked)
REJECTED_EVENT = "rejected-event"    # an event the store policy rejects (skipped by every reader)
BAD_POLICY = "bad-policy"            # the policy log is broken, or holds an entry the owner did not sign
# Warning kinds (FsckReport.warnings: reported, never errors, never blocking gc).
VERSION_LIKE_TAG = "version-like-tag"  # a tag such as v2 (from before tags could not look so)
NAME_WARNING = "name-warning"        # a stored name a new write would refuse (e.g. a Windows device name)


@dataclass
class Problem:
    """One thing fsck found wrong. Fields that do not apply are None."""

    kind: str
    message: str
    project: str | None = None
    repository: str | None = None
    seq: int | None = None          # the ref-log event
    version: int | None = None
    digest: str | None = None       # the object (or, for a broken chain, the event) concerned
    expected: str | None = None     # what the digest should have been
    actual: str | None = None       # what it is
    object: str | None = None       # what the object is: "manifest", "model", "attachment NAME"
    key: str | None = None          # the storage key (stray files)
    references: list[str] = field(default_factory=list)  # every live version naming the object
    blocks_gc: bool = True          # reachability is unknown while this problem exists

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def where(self) -> str:
        """Where the problem is, for one-line display: ``project/repo:3 event 7 sha256:…``."""
        parts = []
        if self.repository is not None:
            name = f"{self.project}/{self.repository}" if self.project else self.repository
            parts.append(name if self.version is None else f"{name}:{self.version}")
        if self.seq is not None:
            parts.append(f"event {self.seq}")
        if self.digest is not None:
            parts.append(self.digest)
        if self.key is not None:
            parts.append(self.key)
        return " ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{self.kind}: {where}: {self.message}" if where else f"{self.kind}: {self.message}"


@dataclass
class FsckReport:
    """What :func:`fsck` checked and found. ``ok`` is True when there is no problem; unreferenced
    objects are reported, but are not problems."""

    store: str
    read_data: bool
    projects: int = 0
    repositories: int = 0
    events: int = 0
    versions: int = 0             # live versions
    deleted_versions: int = 0
    tags: int = 0
    destroyed_repositories: int = 0
    checkpoints: int = 0          # checkpoint pointers
    objects: int = 0              # objects in the store
    referenced: int = 0           # distinct objects that live versions reach
    verified: int = 0             # objects re-hashed (manifests always; everything with read_data)
    signed_events: int = 0        # signed events whose signature was checked (and verified)
    rejected_events: int = 0      # events the store policy rejects (each also a problem)
    policy_head: str | None = None  # the policy head the logs were judged under
    problems: list[Problem] = field(default_factory=list)
    #: What a new write would refuse but reading handles (DESIGN.md §14): not problems.
    warnings: list[Problem] = field(default_factory=list)
    unreferenced: list[str] = field(default_factory=list)  # digests, sorted
    #: objects only destroyed repositories name -> the time of the (newest) destroy: kept for a
    #: restore until gc's grace period has passed since then
    retained: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    reachable: set[str] = field(default_factory=set, repr=False)  # for gc; not in to_dict()
    #: every image any version event names, deleted versions' too (gc deletes these first)
    images: set[str] = field(default_factory=set, repr=False)
    #: objects of the newest checkpoint of each repository (kept by gc) and those older
    #: pointers name (gc deletes them): not unreferenced
    checkpoint_objects: set[str] = field(default_factory=set, repr=False)
    #: bundle digest -> the public key (base64 DER) of the signed version event naming it
    bundle_keys: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items()
               if k not in ("reachable", "images", "checkpoint_objects", "bundle_keys")}
        out["ok"] = self.ok
        return out


@dataclass
class CollectedObject:
    """An object (or temporary file) gc deleted, or would delete on a dry run."""

    digest: str | None
    key: str
    size: int
    age_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GcReport:
    """What :func:`gc` deleted (or, with ``dry_run``, would delete) and what it kept."""

    store: str
    dry_run: bool
    grace_seconds: float
    objects: int = 0                 # objects in the store before gc
    unreferenced: int = 0
    deleted: list[CollectedObject] = field(default_factory=list)
    temp_files: list[CollectedObject] = field(default_factory=list)
    kept_young: int = 0              # unreferenced but younger than the grace period
    kept_destroyed: int = 0          # of destroyed repositories, destroyed within the grace period
    kept_young_bytes: int = 0
    kept_protected: int = 0          # unreferenced and old, but named by a young keep marker
    markers_deleted: int = 0         # keep markers older than the grace period, deleted
    kept_checkpoints: int = 0        # objects of the newest checkpoint of each repository
    checkpoints_deleted: int = 0     # checkpoint pointers older than their repository's newest
    missing_blobs: int = 0           # live versions' blobs fsck found missing (gc cannot help)
    seconds: float = 0.0

    @property
    def freed_bytes(self) -> int:
        return sum(o.size for o in self.deleted) + sum(t.size for t in self.temp_files)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["freed_bytes"] = self.freed_bytes
        return out




def problem_order(p: Problem) -> tuple[str, str, int, int, str, str, str]:
    """The order problems are reported in: by repository, event, version, kind, object."""
    return (p.project or "", p.repository or "", p.seq or 0, p.version or 0, p.kind,
            p.digest or "", p.key or "")
