"""Ref events: the entries of a repository's append-only, hash-chained log.

Each event is one canonical JSON object stored create-only at ``log/<seq>.json``::

    {"seq": 3, "prev": "sha256:<hash of event 2's bytes>", "type": "version", "author": "ana",
     "time": "2026-11-26T15:13:29.123456Z", "version": 2, "image": "sha256:...", "comment": "..."}

Types and their payloads:

- ``create``: none (only at seq 1, written by ``create_model_repository``)
- ``version``: ``version`` (int), ``image`` (manifest digest), ``comment`` (str)
- ``tag``: ``tag``, ``version`` (int, or null when the tag is removed), ``previous`` (int or null)
- ``delete``: ``version`` (int)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..digests import digest_bytes, parse_digest
from ..errors import IntegrityError
from ..objects.canonical import canonical_json, loads

#: The field types of each event type's payload (what ``isinstance`` accepts).
FieldTypes = dict[str, "type | tuple[type, ...]"]
EVENT_TYPES: dict[str, FieldTypes] = {
    "create": {},
    "version": {"version": int, "image": str, "comment": str},
    "tag": {"tag": str, "version": (int, type(None)), "previous": (int, type(None))},
    "delete": {"version": int},
}
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
    return Event(seq, prev, type_, author, time, payload, canonical_json(body))


def parse_event(raw: bytes, *, repository: str, seq: int) -> Event:
    """Parse and type-check the bytes of an event stored at ``seq``; IntegrityError if malformed."""
    def broken(why: str) -> IntegrityError:
        return IntegrityError(f"ref log of {repository!r} is broken at event {seq}: {why}; "
                              f"run 'roro fsck'", repository=repository, seq=seq)
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
    except ValueError as e:
        raise broken(str(e)) from None
    payload = {k: body[k] for k in EVENT_TYPES[type_]}
    return Event(seq, body["prev"], type_, body["author"], body["time"], payload, raw)
