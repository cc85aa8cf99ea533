"""Ref events: the entries of a repository's append-only, hash-chained log.

Each event is one canonical JSON object stored create-only at ``log/<seq>.json``::

    {"seq": 3, "prev": "sha256:<hash of event 2's bytes>", "type": "version", "author": "ana",
     "time": "2026-11-26T15:13:29.123456Z", "version": 2, "image": "sha256:...", "comment": "..."}

Types and their payloads:

- ``create``: none (only at seq 1, written by ``create_model_repository``)
- ``version``: ``version`` (int), ``image`` (manifest digest), ``comment`` (str)
- ``tag``: ``tag``, ``version`` (int, or null when the tag is removed), ``previous`` (int or null)
- ``delete``: ``version`` (int)
- ``destroy``: none: the repository is retired (hidden, read-only) until a ``restore``
- ``restore``: none: a destroyed repository (or one whose rename did not complete) is live again
- ``rename``: ``from``, ``to`` (names): in the log of ``from`` it closes the repository; the log
  of ``to`` holds the same events (a byte copy of ``from``'s) and then this same event, after
  which its own history goes on (see docs/architecture.md, "Repository lifecycle")

``destroy``, ``restore`` and ``rename`` are the store feature ``repository-lifecycle``
(DESIGN §14): a roro that does not know them refuses such a store instead of misreading it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..digests import digest_bytes, parse_digest
from ..errors import IntegrityError, InvalidMetadataError
from ..names import validate_name
from ..objects.canonical import canonical_json, loads

#: The field types of each event type's payload (what ``isinstance`` accepts).
FieldTypes = dict[str, "type | tuple[type, ...]"]
EVENT_TYPES: dict[str, FieldTypes] = {
    "create": {},
    "version": {"version": int, "image": str, "comment": str},
    "tag": {"tag": str, "version": (int, type(None)), "previous": (int, type(None))},
    "delete": {"version": int},
    "destroy": {},
    "restore": {},
    "rename": {"from": str, "to": str},
}
#: The event types of the ``repository-lifecycle`` format feature.
LIFECYCLE_EVENTS = frozenset({"destroy", "restore", "rename"})
LIFECYCLE_FEATURE = "repository-lifecycle"
#: The most bytes an event may hold: a comment of at most 64 KiB (up to 6 bytes each when JSON
#: escapes it: 384 KiB), names, an author, and room for the signatures of DESIGN.md §11. A reader
#: never reads more of a stored event than this (a forged 200 MB event costs 1 MiB, then fails).
MAX_EVENT_SIZE = 1 << 20
_COMMON: FieldTypes = {"seq": int, "prev": (str, type(None)), "type": str, "author": str, "time": str}


@dataclass(frozen=True)
class Event:
    seq: int
    prev: str | None
    type: str
    author: str
    time: str
    payload: dict[str, Any] = field(default_factory=dict)
    raw: bytes = b""

    @property
    def hash(self) -> str:
        return digest_bytes(self.raw)

    @property
    def md5(self) -> str:
        """The MD5 (hex) of the event's bytes: what S3 lists as its ETag, so that a writer can
        check from a listing that the event is still there unchanged (not a security hash: the
        hash chain is sha256)."""
        return hashlib.md5(self.raw, usedforsecurity=False).hexdigest()

    def __getitem__(self, key: str) -> Any:
        return self.payload[key]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "prev": self.prev, "type": self.type, "author": self.author,
                "time": self.time, **self.payload}


def make_event(seq: int, prev: str | None, type_: str, author: str, time: str,
               **payload: Any) -> Event:
    body = {"seq": seq, "prev": prev, "type": type_, "author": author, "time": time, **payload}
    raw = canonical_json(body)
    if len(raw) > MAX_EVENT_SIZE:
        raise InvalidMetadataError(f"the {type_} event would be {len(raw)} bytes, more than the "
                                   f"{MAX_EVENT_SIZE} an event may hold (is the author name, "
                                   f"$RORO_AUTHOR, that long?)")
    return Event(seq, prev, type_, author, time, payload, raw)


def parse_event(raw: bytes, *, repository: str, seq: int) -> Event:
    """Parse and type-check the bytes of an event stored at ``seq``; IntegrityError if malformed."""
    def broken(why: str) -> IntegrityError:
        return IntegrityError(f"ref log of {repository!r} is broken at event {seq}: {why}; "
                              f"run 'roro fsck'", repository=repository, seq=seq)
    if len(raw) > MAX_EVENT_SIZE:
        raise broken(f"it is {len(raw)} bytes, more than the {MAX_EVENT_SIZE} an event may hold")
    try:
        body = loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise broken(f"not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise broken("not a JSON object")
    type_ = body.get("type")
    if type_ not in EVENT_TYPES:
        raise broken(f"unknown event type {type_!r}")
    spec = {**_COMMON, **EVENT_TYPES[type_]}
    if set(body) != set(spec):
        raise broken(f"unexpected fields {sorted(set(body) ^ set(spec))}")
    for key, typ in spec.items():
        value = body[key]
        if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
            raise broken(f"field {key!r} has the wrong type")
    if body["seq"] != seq:
        raise broken(f"it says it is event {body['seq']}")
    if canonical_json(body) != raw:
        raise broken("not in canonical form")
    try:
        if body["prev"] is not None:
            parse_digest(body["prev"])
        if type_ == "version":
            parse_digest(body["image"])
        if type_ == "rename":
            validate_name(body["from"])
            validate_name(body["to"])
    except ValueError as e:
        raise broken(str(e)) from None
    payload = {k: body[k] for k in EVENT_TYPES[type_]}
    return Event(seq, body["prev"], type_, body["author"], body["time"], payload, raw)
