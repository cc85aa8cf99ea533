"""Ref events: the entries of a repository's append-only, hash-chained log.

Each event is one canonical JSON object stored create-only at ``log/<seq>.json``::

    {"seq": 3, "prev": "sha256:<hash of event 2's bytes>", "type": "version", "author": "ana",
     "time": "2026-11-26T15:13:29.123456Z", "version": 2, "image": "sha256:...", "comment": "..."}

Types and their payloads:

- ``create``: none (only at seq 1, written by ``create_model_repository``)
- ``version``: ``version`` (int), ``image`` (manifest digest), ``comment`` (str), and in a
  signed event (version 2) optionally ``bundle``: the digest of the version's OpenSSF Model
  Signing bundle (:mod:`roro.bundle`; store feature ``model-bundles``)
- ``tag``: ``tag``, ``version`` (int, or null when the tag is removed), ``previous`` (int or null)
- ``delete``: ``version`` (int)
- ``destroy``: none: the repository is retired (hidden, read-only) until a ``restore``
- ``restore``: none: a destroyed repository (or one whose rename did not complete) is live again
- ``rename``: ``from``, ``to`` (names): in the log of ``from`` it closes the repository; the log
  of ``to`` holds the same events (a byte copy of ``from``'s) and then this same event, after
  which its own history goes on (see docs/architecture.md, "Repository lifecycle")

``destroy``, ``restore`` and ``rename`` are the store feature ``repository-lifecycle``
(DESIGN §14): a roro that does not know them refuses such a store instead of misreading it.

Event version 2 (the store feature ``signed-events``) adds ``"v": 2`` and an optional ``sig``:
the signature of the event's canonical bytes by the writer's key (:mod:`roro.signing`). An event
without ``v`` is version 1 and has neither. :func:`parse_event` checks only the shape of ``sig``
(cheap, on every read); :func:`verify_event` checks the signature itself (~0.1 ms), which reads do
only for the events they serve, and ``roro verify`` and fsck for all.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from ..digests import digest_bytes, parse_digest
from ..errors import IntegrityError, InvalidMetadataError, RoroWarning, SignatureError
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
#: Optional payload fields of event version 2, by event type: a version's OpenSSF Model Signing
#: bundle (an object; :mod:`roro.bundle`, store feature ``model-bundles``), in signed events only.
OPTIONAL_FIELDS: dict[str, FieldTypes] = {"version": {"bundle": str}}
#: The event types of the ``repository-lifecycle`` format feature.
LIFECYCLE_EVENTS = frozenset({"destroy", "restore", "rename"})
LIFECYCLE_FEATURE = "repository-lifecycle"
#: The most bytes an event may hold: a comment of at most 64 KiB (up to 6 bytes each when JSON
#: escapes it: 384 KiB), names, an author, and room for the signatures of DESIGN.md §11. A reader
#: never reads more of a stored event than this (a forged 200 MB event costs 1 MiB, then fails).
MAX_EVENT_SIZE = 1 << 20
_COMMON: FieldTypes = {"seq": int, "prev": (str, type(None)), "type": str, "author": str, "time": str}
#: The event version that may carry a signature, and the store feature it needs (DESIGN §14).
EVENT_V2 = 2
SIGNED_FEATURE = "signed-events"


@dataclass(frozen=True)
class Event:
    seq: int
    prev: str | None
    type: str
    author: str
    time: str
    payload: dict[str, Any] = field(default_factory=dict)
    raw: bytes = b""
    v: int = 1
    sig: dict[str, str] | None = None
    policy: str | None = None  # the policy head it was written under (``<seq>:<hash>``)

    @property
    def hash(self) -> str:
        # computed once (a cold refresh of 100,000 events asks twice each), without
        # functools.cached_property's lock
        found: str | None = self.__dict__.get("_hash")
        if found is None:
            found = digest_bytes(self.raw)
            object.__setattr__(self, "_hash", found)
        return found

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

    def body(self) -> dict[str, Any]:
        """The event's fields without ``sig``: what its signature signs (with the signature's
        own metadata, :func:`roro.signing.signed_bytes`)."""
        body = self.to_dict()
        if self.v != 1:
            body["v"] = self.v
        if self.policy is not None:
            body["policy"] = self.policy
        return body

    @property
    def signer(self) -> str | None:
        """The name the signature gives its signer (None: unsigned); verified only by
        :func:`verify_event`."""
        return self.sig["name"] if self.sig else None

    @property
    def signer_key(self) -> str | None:
        """The fingerprint of the key the signature names (None: unsigned)."""
        return self.sig["key"] if self.sig else None


def make_event(seq: int, prev: str | None, type_: str, author: str, time: str, *,
               signer: Any = None, policy: str | None = None, **payload: Any) -> Event:
    """A new event; with ``signer`` (a :class:`roro.signing.SigningKey`), a signed event of
    version 2 (the caller records the store feature ``signed-events`` first); with ``policy``
    (the store policy's head), an event of version 2 that names it (feature ``policy``)."""
    body: dict[str, Any] = {"seq": seq, "prev": prev, "type": type_, "author": author,
                            "time": time, **payload}
    sig = None
    if policy is not None:
        body["v"] = EVENT_V2
        body["policy"] = policy
    if signer is not None:
        body["v"] = EVENT_V2
        sig = signer.signature_for(body)
        raw = canonical_json({**body, "sig": sig})
    else:
        raw = canonical_json(body)
    if len(raw) > MAX_EVENT_SIZE:
        raise InvalidMetadataError(f"the {type_} event would be {len(raw)} bytes, more than the "
                                   f"{MAX_EVENT_SIZE} an event may hold (is the author name, "
                                   f"$RORO_AUTHOR, that long?)")
    return Event(seq, prev, type_, author, time, payload, raw,
                 EVENT_V2 if signer is not None or policy is not None else 1, sig, policy)


_warned_unverified = False


def check_signature(event: Event, repository: str) -> None:
    """:func:`verify_event` for a read: a bad signature raises; where ``cryptography`` is
    missing, the signature cannot be checked, and a :class:`~roro.errors.RoroWarning` says so
    once per process (``roro verify`` and fsck fail instead)."""
    global _warned_unverified
    from ..signing import SigningUnavailableError  # only for a signed event
    if event.sig is None:
        return
    try:
        verify_event(event, repository)
    except SigningUnavailableError as e:
        if not _warned_unverified:
            _warned_unverified = True
            warnings.warn(f"signatures in {repository!r} were not checked: {e}", RoroWarning,
                          stacklevel=3)


def verify_event(event: Event, repository: str) -> Any:
    """Check ``event``'s signature: the signer's :class:`roro.signing.PublicKey`, None for an
    unsigned event, or :class:`~roro.errors.SignatureError` naming the event."""
    if event.sig is None:
        return None
    from ..signing import verify_signature  # only where a signature is checked
    try:
        return verify_signature(event.body(), event.sig)
    except SignatureError as e:
        raise SignatureError(f"event {event.seq} of the ref log of {repository!r} has a bad "
                             f"signature: {e}", repository=repository, seq=event.seq) from None


#: The field types of each event type's whole body (what :func:`parse_event` checks).
_SPECS: dict[str, FieldTypes] = {t: {**_COMMON, **fields} for t, fields in EVENT_TYPES.items()}


# The fast path of parse_event: the exact canonical bytes of the unsigned ``version`` and ``tag``
# events roro writes (version 1), for strings without any JSON escape (an unescaped string with
# no '"', '\\' or control character is canonical as it stands) and small non-negative numbers.
# What matches is an event the full parser accepts, with the same fields; anything else, valid or
# not, is left to the full parser (tests/test_events_fast.py compares both on valid, unusual and
# corrupted events).
_STR = r'"([^"\\\x00-\x1f]*)"'
_DIGEST = r'sha256:[0-9a-f]{64}'
_INT = r'(0|[1-9][0-9]{0,17})'
_PREV = r'(?:null|"(' + _DIGEST + r')")'
_FAST_VERSION = re.compile(
    r'\{"author":' + _STR + r',"comment":' + _STR + r',"image":"(' + _DIGEST + r')","prev":'
    + _PREV + r',"seq":' + _INT + r',"time":' + _STR + r',"type":"version","version":' + _INT
    + r'\}')
_FAST_TAG = re.compile(
    r'\{"author":' + _STR + r',"prev":' + _PREV + r',"previous":(?:null|' + _INT + r'),"seq":'
    + _INT + r',"tag":' + _STR + r',"time":' + _STR + r',"type":"tag","version":(?:null|'
    + _INT + r')\}')


def _parse_fast(raw: bytes, seq: int) -> Event | None:
    """:func:`parse_event` for the common shapes (see ``_FAST_VERSION``), or None: not one of
    them (the caller then runs the full parser, which accepts it or says why not)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    m = _FAST_VERSION.fullmatch(text)
    if m is not None:
        author, comment, image, prev, at, time, version = m.groups()
        type_ = "version"
        payload: dict[str, Any] = {"version": int(version), "image": image, "comment": comment}
    else:
        m = _FAST_TAG.fullmatch(text)
        if m is None:
            return None
        author, prev, previous, at, tag, time, version = m.groups()
        type_ = "tag"
        payload = {"tag": tag, "version": None if version is None else int(version),
                   "previous": None if previous is None else int(previous)}
    if int(at) != seq:
        return None  # the full parser says why
    return Event(seq, prev, type_, author, time, payload, raw)


def parse_event(raw: bytes, *, repository: str, seq: int) -> Event:
    """Parse and type-check the bytes of an event stored at ``seq``; IntegrityError if malformed.
    The common shapes take a fast path (one regular expression); everything else, and every
    error, the full parser."""
    if len(raw) <= MAX_EVENT_SIZE:
        fast = _parse_fast(raw, seq)
        if fast is not None:
            return fast
    return parse_event_fully(raw, repository=repository, seq=seq)


def parse_event_fully(raw: bytes, *, repository: str, seq: int) -> Event:
    """:func:`parse_event` without its fast path: parse the JSON, check every field's type and
    that the bytes are the canonical form of what they hold."""
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
    spec = _SPECS.get(type_) if isinstance(type_, str) else None
    if spec is None or not isinstance(type_, str):
        raise broken(f"unknown event type {type_!r}")
    if "v" in body and "sig" in body:  # the optional fields of signed events (version 2)
        spec = {**spec, **{k: t for k, t in OPTIONAL_FIELDS.get(type_, {}).items() if k in body}}
    v = body.get("v", 1)
    if "v" in body:
        if v != EVENT_V2 or isinstance(v, bool):
            raise broken(f"unknown event version {v!r} (written by a newer roro? upgrade roro)")
        spec = {**spec, "v": int}
        if "sig" in body:
            spec["sig"] = dict
        if "policy" in body:
            spec["policy"] = str
    if body.keys() != spec.keys():
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
            if "bundle" in body:
                parse_digest(body["bundle"])
        if type_ == "rename":
            validate_name(body["from"])
            validate_name(body["to"])
    except ValueError as e:
        raise broken(str(e)) from None
    sig = body.get("sig")
    if sig is not None:
        from ..signing import sig_shape_problem  # only for a signed event
        problem = sig_shape_problem(sig)
        if problem is not None:
            raise broken(problem)
    policy = body.get("policy")
    if policy is not None and (len(policy) > 200 or not policy.partition(":")[0].isdigit()):
        raise broken("'policy' is not a policy head")
    payload = {k: body[k] for k in EVENT_TYPES[type_]}
    payload.update({k: body[k] for k in OPTIONAL_FIELDS.get(type_, {}) if k in body})
    return Event(seq, body["prev"], type_, body["author"], body["time"], payload, raw, v, sig,
                 policy)
