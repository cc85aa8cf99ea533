"""The state of a repository is a fold over its log. The rules of that fold live here, once.

:func:`check_event` is the single statement of what a valid next event is. The in-memory
:class:`RepoState` (used by fsck, sync and the tests) and the SQLite index both apply events only
after it accepts them, so they cannot disagree on what a log means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..errors import IntegrityError
from .events import Event


class RepoView(Protocol):
    """What the fold needs to know of a repository's state to judge its next event."""

    last_seq: int
    last_hash: str | None
    max_version: int

    def is_live(self, version: int) -> bool: ...
    def tag_target(self, tag: str) -> int | None: ...
    def tags_of(self, version: int) -> list[str]: ...


def event_problem(view: RepoView, event: Event) -> str | None:
    """Why ``event`` cannot follow ``view``'s state, or None if it can."""
    if event.seq != view.last_seq + 1:
        return f"expected event {view.last_seq + 1}, found {event.seq}"
    if event.prev != view.last_hash:
        return "hash chain broken: 'prev' does not match the hash of the previous event"
    if event.type == "create":
        return None if event.seq == 1 else "'create' after the first event"
    if event.type == "version":
        if event["version"] != view.max_version + 1:
            return f"version {event['version']} is not the next version {view.max_version + 1}"
        return None
    if event.type == "tag":
        new, previous = event["version"], event["previous"]
        if previous != view.tag_target(event["tag"]):
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
    problem = event_problem(view, event)
    if problem is not None:
        raise IntegrityError(f"ref log of {repository!r} is broken at event {event.seq}: {problem}; "
                             f"run 'roro fsck'", repository=repository, seq=event.seq)


@dataclass
class VersionRef:
    version: int
    image: str
    comment: str
    author: str
    time: str
    seq: int


@dataclass
class TagMove:
    seq: int
    tag: str
    version: int | None
    previous: int | None
    author: str
    time: str


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

    def is_live(self, version: int) -> bool:
        return version in self.versions

    def tag_target(self, tag: str) -> int | None:
        return self.tags.get(tag)

    def tags_of(self, version: int) -> list[str]:
        return sorted(t for t, v in self.tags.items() if v == version)

    @property
    def latest(self) -> int | None:
        return max(self.versions) if self.versions else None

    def apply(self, event: Event, *, checked: bool = True) -> None:
        """Apply ``event`` after :func:`check_event` accepts it. ``checked=False`` applies it as
        well as it can without judging it: fsck uses it to read on past a reported problem."""
        if checked:
            check_event(self, event, self.name)
        if event.type == "version":
            v = event["version"]
            self.versions[v] = VersionRef(v, event["image"], event["comment"], event.author,
                                          event.time, event.seq)
            self.max_version = max(self.max_version, v)
        elif event.type == "tag":
            if event["version"] is None:
                self.tags.pop(event["tag"], None)
            else:
                self.tags[event["tag"]] = event["version"]
            self.tag_history.append(TagMove(event.seq, event["tag"], event["version"],
                                            event["previous"], event.author, event.time))
        elif event.type == "delete":
            self.versions.pop(event["version"], None)
            self.deleted.add(event["version"])
        self.created = True
        self.last_seq = event.seq
        self.last_hash = event.hash


def fold(name: str, events) -> RepoState:
    state = RepoState(name)
    for e in events:
        state.apply(e)
    return state
