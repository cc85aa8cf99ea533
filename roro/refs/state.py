"""The state of a repository is a fold over its log. The rules of that fold live here, once.

:func:`event_problem` is the single statement of what a valid next event is, and :func:`apply_event`
the single reducer: it judges an event with :func:`event_problem`, then dispatches on its type to
a few small mutators. The in-memory :class:`RepoState` (fsck, sync, tests), the SQLite index
(``refs/index.py``) and sync's view of the destination implement only those mutators
(:class:`RepoMutator`), so they cannot read a log differently. A new event type is one branch in
:func:`apply_event` (and in :func:`event_problem`) plus, where it changes state, a mutator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import IntegrityError
from .events import Event

#: What a closed repository's ``status`` is (a live one has None).
DESTROYED, RENAMED = "destroyed", "renamed"
#: The store policy's verdict on an event (``roro.policy.Policy.judge``): None (it passes) or
#: why the event is rejected.
Judge = Callable[[Event], "str | None"]


class RepoView(Protocol):
    """What the fold needs to know of a repository's state to judge its next event."""

    last_seq: int
    last_hash: str | None
    max_version: int
    status: str | None  # None (live), DESTROYED or RENAMED
    @property
    def rejected_count(self) -> int:
        """How many events the policy rejected so far."""

    def is_live(self, version: int) -> bool: ...
    def tag_target(self, tag: str) -> int | None: ...
    def tags_of(self, version: int) -> list[str]: ...


class RepoMutator(RepoView, Protocol):
    """A repository state the reducer can change. Each mutator records one fact; none judges."""

    def add_version(self, event: Event) -> None:
        """Version ``event["version"]`` is image ``event["image"]`` (saved by ``event.author``
        at ``event.time`` with ``event["comment"]``)."""

    def set_tag(self, event: Event) -> None:
        """Tag ``event["tag"]`` now points at ``event["version"]`` (None: removed), moved from
        ``event["previous"]``; the move is kept in the tag history."""

    def delete_version(self, event: Event) -> None:
        """Version ``event["version"]`` is no longer live (its number is never reused)."""

    def advance(self, event: Event, max_version: int) -> None:
        """The log now ends at ``event`` (``last_seq``, ``last_hash``) and ``max_version`` is
        the highest version number it ever assigned."""

    def close(self, event: Event) -> None:
        """The repository is closed by ``event``: a ``destroy``, or a ``rename`` away from it
        (``event["to"]`` holds its history now). Its versions and tags are kept, hidden, for a
        ``restore``."""

    def reopen(self, event: Event) -> None:
        """A ``restore``: the closed repository is live again, as it was."""

    def reject(self, event: Event, reason: str) -> None:
        """``event`` breaks the store policy (``reason``): it changes nothing but is listed as
        rejected (the hash chain runs through it)."""


def event_problem(view: RepoView, event: Event, repository: str | None = None) -> str | None:
    """Why ``event`` cannot follow ``view``'s state, or None if it can. ``repository`` is the
    name of the log (a ``rename`` from it closes it; one from another name is history that
    this log continues). Once the policy rejected an event of the log, a tag move's
    ``previous`` is not checked: a move decided while a later rejected event (a revoked
    ``--compromised`` key's) stood is still the move its signer made."""
    if event.seq != view.last_seq + 1:
        return f"expected event {view.last_seq + 1}, found {event.seq}"
    if event.prev != view.last_hash:
        return "hash chain broken: 'prev' does not match the hash of the previous event"
    if view.status is not None:
        if event.type == "restore":
            return None
        return f"a {event.type!r} event after the repository was {view.status}"
    if event.type == "restore":
        return "'restore' of a repository that is neither destroyed nor renamed"
    if event.type in ("destroy", "rename") and view.last_seq == 0:
        return f"a {event.type!r} event cannot start a log"
    if event.type == "destroy":
        return None
    if event.type == "rename":
        if event["from"] == event["to"]:
            return f"renames {event['from']!r} to itself"
        return None
    if event.type == "create":
        return None if event.seq == 1 else "'create' after the first event"
    if event.type == "version":
        if event["version"] != view.max_version + 1:
            return f"version {event['version']} is not the next version {view.max_version + 1}"
        return None
    if event.type == "tag":
        new, previous = event["version"], event["previous"]
        if previous != view.tag_target(event["tag"]) and not view.rejected_count:
            return (f"tag {event['tag']!r} moved from {previous}, but it pointed at "
                    f"{view.tag_target(event['tag'])}")
        if new is not None and not view.is_live(new):
            return f"tag {event['tag']!r} points at missing version {new}"
        return None
    if event.type == "delete":
        v = event["version"]
        if not view.is_live(v):
            return f"deletes missing version {v}"
        if view.tags_of(v):
            return f"deletes version {v} while tags {view.tags_of(v)} point at it"
        return None
    return f"unknown event type {event.type!r}"


def check_event(view: RepoView, event: Event, repository: str) -> None:
    """Raise :class:`~roro.errors.IntegrityError` if ``event`` cannot follow ``view``'s state."""
    problem = event_problem(view, event, repository)
    if problem is not None:
        raise IntegrityError(f"ref log of {repository!r} is broken at event {event.seq}: {problem}; "
                             f"run 'roro fsck'", repository=repository, seq=event.seq)


def _chain_problem(view: RepoView, event: Event) -> bool:
    return event.seq != view.last_seq + 1 or event.prev != view.last_hash


def apply_event(state: RepoMutator, event: Event, repository: str, *, judge: bool = True,
                policy: Judge | None = None) -> None:
    """The reducer: apply ``event`` to ``state`` after :func:`check_event` accepts it.

    ``policy`` (the store policy's verdict, :meth:`roro.policy.Policy.judge`): an event it
    rejects is *skipped* (DESIGN §11): recorded with :meth:`RepoMutator.reject`, the log position
    advanced past it (and a version number it took is never reused), nothing else changed. Once
    a repository holds a rejected event, an event that no longer fits the fold rules (e.g. a move
    from a version only a rejected event made) is rejected too instead of breaking the log; a
    broken hash chain or sequence is always an error.

    ``judge=False`` applies it as well as it can without judging it: fsck uses it to read on
    past a problem it has reported.
    """
    problem = event_problem(state, event, repository) if judge else None
    if problem is not None and _chain_problem(state, event):
        check_event(state, event, repository)
    reason = policy(event) if policy is not None else None
    if reason is None and problem is not None:
        if state.rejected_count == 0:
            check_event(state, event, repository)
        reason = f"it follows a rejected event and {problem}"
    max_version = state.max_version
    if reason is not None:
        if event.type == "version" and event["version"] == max_version + 1:
            max_version += 1  # its number is taken: honest writers go on after it
        state.reject(event, reason)
        state.advance(event, max_version)
        return
    if event.type == "version":
        state.add_version(event)
        max_version = max(max_version, event["version"])
    elif event.type == "tag":
        state.set_tag(event)
    elif event.type == "delete":
        state.delete_version(event)
    elif event.type == "destroy" or (event.type == "rename" and event["from"] == repository):
        state.close(event)
    elif event.type == "restore":
        state.reopen(event)
    elif event.type not in ("create", "rename"):  # a rename to this log: its history goes on  # parse_event refuses unknown types; a judged event never gets here
        raise IntegrityError(f"ref log of {repository!r} holds an event of unknown type "
                             f"{event.type!r} at {event.seq}", repository=repository, seq=event.seq)
    state.advance(event, max_version)


@dataclass
class VersionRef:
    version: int
    image: str
    comment: str
    author: str
    time: str
    seq: int
    signer: str | None = None
    signer_key: str | None = None
    bundle: str | None = None  # the digest of its OpenSSF Model Signing bundle (roro.bundle)


@dataclass
class TagMove:
    seq: int
    tag: str
    version: int | None
    previous: int | None
    author: str
    time: str
    signer: str | None = None
    signer_key: str | None = None


@dataclass
class Rejected:
    """An event the store policy rejected: skipped by the fold, listed by log, history, fsck."""

    seq: int
    type: str
    reason: str
    author: str
    time: str
    version: int | None = None
    tag: str | None = None
    signer: str | None = None
    signer_key: str | None = None

    @classmethod
    def of(cls, event: Event, reason: str) -> Rejected:
        return cls(event.seq, event.type, reason, event.author, event.time,
                   event.payload.get("version"), event.payload.get("tag"), event.signer,
                   event.signer_key)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    def describe(self) -> str:
        """What the event tried, e.g. "a move of tag 'production' to version 3 by mallory"."""
        if self.type == "tag":
            what = (f"a move of tag {self.tag!r} to version {self.version}"
                    if self.version is not None else f"the removal of tag {self.tag!r}")
        elif self.type in ("version", "delete"):
            what = f"{'version' if self.type == 'version' else 'a delete of version'} {self.version}"
        else:
            what = f"a {self.type} event"
        signed = f", signed by {self.signer} ({self.signer_key})" if self.signer else ", unsigned"
        return f"{what} by {self.author}{signed}"


@dataclass
class RepoState:
    """The whole state of one repository, folded in memory."""

    name: str
    last_seq: int = 0
    last_hash: str | None = None
    max_version: int = 0
    versions: dict[int, VersionRef] = field(default_factory=dict)  # live versions only
    deleted: set[int] = field(default_factory=set)
    tags: dict[str, int] = field(default_factory=dict)
    tag_history: list[TagMove] = field(default_factory=list)
    created: bool = False
    status: str | None = None       # DESTROYED or RENAMED while closed
    renamed_to: str | None = None
    closed_seq: int | None = None   # the event that closed it
    closed_time: str | None = None
    rejected: list[Rejected] = field(default_factory=list)
    policy: Judge | None = None

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)

    def is_live(self, version: int) -> bool:
        return version in self.versions

    def tag_target(self, tag: str) -> int | None:
        return self.tags.get(tag)

    def tags_of(self, version: int) -> list[str]:
        return sorted(t for t, v in self.tags.items() if v == version)

    @property
    def latest(self) -> int | None:
        return max(self.versions) if self.versions else None

    # -- the mutators of the reducer ---------------------------------------------------------
    def add_version(self, event: Event) -> None:
        v = event["version"]
        self.versions[v] = VersionRef(v, event["image"], event["comment"], event.author,
                                      event.time, event.seq, event.signer, event.signer_key,
                                      event.payload.get("bundle"))

    def set_tag(self, event: Event) -> None:
        if event["version"] is None:
            self.tags.pop(event["tag"], None)
        else:
            self.tags[event["tag"]] = event["version"]
        self.tag_history.append(TagMove(event.seq, event["tag"], event["version"],
                                        event["previous"], event.author, event.time,
                                        event.signer, event.signer_key))

    def delete_version(self, event: Event) -> None:
        self.versions.pop(event["version"], None)
        self.deleted.add(event["version"])

    def advance(self, event: Event, max_version: int) -> None:
        self.created = True
        self.last_seq, self.last_hash, self.max_version = event.seq, event.hash, max_version

    def close(self, event: Event) -> None:
        self.status = RENAMED if event.type == "rename" else DESTROYED
        self.renamed_to = event["to"] if event.type == "rename" else None
        self.closed_seq, self.closed_time = event.seq, event.time

    def reopen(self, event: Event) -> None:
        self.status = self.renamed_to = self.closed_seq = self.closed_time = None

    def reject(self, event: Event, reason: str) -> None:
        self.rejected.append(Rejected.of(event, reason))

    def apply(self, event: Event, *, checked: bool = True) -> None:
        """Apply ``event`` through the reducer (:func:`apply_event`) with this state's
        ``policy``; ``checked=False`` applies it without judging it (fsck reads on past a
        reported problem)."""
        apply_event(self, event, self.name, judge=checked, policy=self.policy)


def fold(name: str, events: Iterable[Event], policy: Judge | None = None) -> RepoState:
    """The state of repository ``name`` after ``events``; IntegrityError at the first bad one."""
    state = RepoState(name, policy=policy)
    for e in events:
        apply_event(state, e, name)
    return state
