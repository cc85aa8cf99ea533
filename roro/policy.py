"""A store's policy: who may write what (DESIGN §11; README "Signatures").

The policy is its own log, ``policy/log/<seq, 10 digits>.json``: create-only, hash-chained, each
entry signed by the owner key that ``init`` names (the store feature ``policy``). Entries::

    {"seq": 2, "prev": "sha256:…", "type": "protect", "author": "ana", "time": "…", "v": 2,
     "since": {"p/credit-risk": 41}, "project": "p", "repository": null, "tag": "production",
     "keys": ["SHA256:…"], "sig": {…}}

- ``init``: ``owner`` (the fingerprint of the key that signs it and every later entry)
- ``allow``: ``key``, ``name``: a key whose signatures count where a repository requires them
- ``revoke``: ``key``, ``compromised`` (bool): the key no longer counts; with ``compromised``
  every event it ever signed is rejected, else only those written after the change
- ``protect``: ``project``, ``repository`` (None: every repository of the project), ``tag``,
  ``keys``: only these keys may move the tag
- ``unprotect``: ``project``, ``repository``, ``tag``
- ``require-signed``: ``project``, ``repository``: every event must be signed by an allowed key

**When a rule applies: the watermark.** An event names the policy head it was written under
(``policy``), but a bucket writer could name an old head, so that name only tells a reader it is
behind. Instead each entry records in ``since`` the log end (``last_seq``) of every repository a
rule applied to, before or after the change, when it was made. Event ``s`` of repository ``R`` is
judged by the entries ``k`` with ``s > since_k.get(R, 0)``: what was written before a change is
judged by the rules before it, whatever head it names, and a change cannot be backdated. A
repository not in ``since`` had no rule that could judge its events differently, so all its
events are judged by the rules after the change. ``--compromised`` is the one retroactive rule.

**Cost.** The fold judges each event with the rules in force (a dict look-up). It verifies a
signature (~0.1 ms) only where the verdict depends on it: a move of a protected tag and any event
of a repository that requires signatures; an event of a repository without rules costs nothing.
The index judges each event once (the refresh is incremental); a policy change that affects a
repository re-indexes that repository from its log once.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .digests import digest_bytes, parse_digest
from .environment import cache_dir, current_author, now_utc
from .errors import (
    ConfigError,
    IntegrityError,
    NotFoundError,
    RoroError,
    RoroWarning,
    SignatureError,
    TrustError,
)
from .names import validate_name, validate_tag
from .objects.canonical import canonical_json, loads
from .storage.layout import POLICY_FEATURE, POLICY_PREFIX, policy_key, seq_from_log_key

if TYPE_CHECKING:
    from .refs.events import Event
    from .signing import SigningKey
    from .store import Store

MAX_ENTRY_SIZE = 1 << 20
ENTRY_TYPES: dict[str, dict[str, Any]] = {
    "init": {"owner": str},
    "allow": {"key": str, "name": str},
    "revoke": {"key": str, "compromised": bool},
    "protect": {"project": str, "repository": (str, type(None)), "tag": str, "keys": list},
    "unprotect": {"project": str, "repository": (str, type(None)), "tag": str},
    "require-signed": {"project": str, "repository": str},
}
_COMMON: dict[str, Any] = {"seq": int, "prev": (str, type(None)), "type": str, "author": str,
                           "time": str, "v": int, "since": dict, "sig": dict}
#: How long a store handle trusts the policy it read before listing the log again (an event
#: naming a head it does not know makes it look at once).
POLICY_TTL = 10.0


class PolicyBehind(RoroError):
    """An event names a policy head newer than the one this handle read: read it again."""


def _head_seq(head: str) -> int:
    text = head.partition(":")[0]
    return int(text) if text.isdigit() and len(text) <= 10 else 0


class PolicyWarning(RoroWarning):
    """A store has a policy but this reader pinned no owner key for it."""


@dataclass(frozen=True)
class Entry:
    seq: int
    prev: str | None
    type: str
    author: str
    time: str
    since: dict[str, int]
    payload: dict[str, Any]
    sig: dict[str, str]
    raw: bytes

    @property
    def hash(self) -> str:
        return digest_bytes(self.raw)

    @property
    def signer_key(self) -> str:
        return self.sig["key"]

    def body(self) -> dict[str, Any]:
        return {"seq": self.seq, "prev": self.prev, "type": self.type, "author": self.author,
                "time": self.time, "v": 2, "since": self.since, **self.payload}

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "signer": self.sig["name"], "signer_key": self.sig["key"],
                "hash": self.hash}

    def describe(self) -> str:
        p = self.payload
        where = (f"{p['project']}/{p['repository']}" if p.get("repository")
                 else f"every repository of {p.get('project')}")
        return {
            "init": lambda: f"owner {p.get('owner')}",
            "allow": lambda: f"allow {p.get('name')} ({p.get('key')})",
            "revoke": lambda: (f"revoke {p.get('key')}"
                               + (" (compromised)" if p.get("compromised") else "")),
            "protect": lambda: f"protect tag {p.get('tag')!r} in {where}: keys "
                               f"{', '.join(p.get('keys', []))}",
            "unprotect": lambda: f"unprotect tag {p.get('tag')!r} in {where}",
            "require-signed": lambda: f"require signatures in {where}",
        }[self.type]()


def _broken(seq: int, why: str) -> IntegrityError:
    return IntegrityError(f"the store's policy log is broken at entry {seq}: {why}", seq=seq)


def parse_entry(raw: bytes, seq: int) -> Entry:
    """Parse and type-check a stored policy entry (not its signature)."""
    if len(raw) > MAX_ENTRY_SIZE:
        raise _broken(seq, "too large")
    try:
        body = loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise _broken(seq, f"not valid JSON ({e})") from None
    if not isinstance(body, dict) or body.get("type") not in ENTRY_TYPES:
        raise _broken(seq, f"unknown entry type {body.get('type') if isinstance(body, dict) else None!r}")
    spec = {**_COMMON, **ENTRY_TYPES[body["type"]]}
    if set(body) != set(spec):
        raise _broken(seq, f"unexpected fields {sorted(set(body) ^ set(spec))}")
    for key, typ in spec.items():
        value = body[key]
        if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
            raise _broken(seq, f"field {key!r} has the wrong type")
    if body["seq"] != seq or body["v"] != 2:
        raise _broken(seq, "wrong sequence number or entry version")
    if canonical_json(body) != raw:
        raise _broken(seq, "not in canonical form")
    if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
               for k, v in body["since"].items()):
        raise _broken(seq, "'since' must map repositories to sequence numbers")
    try:
        if body["prev"] is not None:
            parse_digest(body["prev"])
        for name in ("project", "repository"):
            if body.get(name) is not None:
                validate_name(body[name], name if name == "project" else "repository")
        if body.get("tag") is not None:
            validate_name(body["tag"], "tag")
    except ValueError as e:
        raise _broken(seq, str(e)) from None
    from .signing import is_fingerprint  # signing: only where a policy is read
    if not all(isinstance(k, str) and is_fingerprint(k)
               for k in [*body.get("keys", []), *[body[f] for f in ("owner", "key") if f in body]]):
        raise _broken(seq, "a key that is not a fingerprint")
    from .signing import sig_shape_problem  # signing: only where a policy is read
    problem = sig_shape_problem(body["sig"])
    if problem is not None:
        raise _broken(seq, problem)
    payload = {k: body[k] for k in ENTRY_TYPES[body["type"]]}
    return Entry(seq, body["prev"], body["type"], body["author"], body["time"], body["since"],
                 payload, body["sig"], raw)


@dataclass
class Rules:
    """The rules after some entries: what judges an event."""

    owner: str | None = None
    allowed: dict[str, str] = field(default_factory=dict)   # fingerprint -> name
    revoked: set[str] = field(default_factory=set)
    protected: dict[tuple[str, str | None, str], frozenset[str]] = field(default_factory=dict)
    required: set[tuple[str, str]] = field(default_factory=set)

    def copy(self) -> Rules:
        return Rules(self.owner, dict(self.allowed), set(self.revoked), dict(self.protected),
                     set(self.required))

    def apply(self, entry: Entry) -> None:
        p = entry.payload
        if entry.type == "init":
            self.owner = p["owner"]
            self.allowed[p["owner"]] = entry.sig["name"]
        elif entry.type == "allow":
            self.allowed[p["key"]] = p["name"]
            self.revoked.discard(p["key"])
        elif entry.type == "revoke":
            self.revoked.add(p["key"])
            self.allowed.pop(p["key"], None)
        elif entry.type == "protect":
            self.protected[(p["project"], p["repository"], p["tag"])] = frozenset(p["keys"])
        elif entry.type == "unprotect":
            self.protected.pop((p["project"], p["repository"], p["tag"]), None)
        elif entry.type == "require-signed":
            self.required.add((p["project"], p["repository"]))

    def protection(self, project: str, repository: str, tag: str) -> frozenset[str] | None:
        found = self.protected.get((project, repository, tag))
        return found if found is not None else self.protected.get((project, None, tag))

    def applies_to(self, project: str, repository: str) -> bool:
        return (project, repository) in self.required or any(
            p == project and r in (None, repository) for p, r, _ in self.protected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "allowed": [{"key": k, "name": n} for k, n in sorted(self.allowed.items())],
            "revoked": sorted(self.revoked),
            "protected": [{"project": p, "repository": r, "tag": t, "keys": sorted(keys)}
                          for (p, r, t), keys in sorted(self.protected.items(),
                                                        key=lambda i: (i[0][0], i[0][1] or "",
                                                                       i[0][2]))],
            "require_signed": [{"project": p, "repository": r} for p, r in sorted(self.required)],
        }


@dataclass
class Policy:
    """A store's policy log as read and checked: the entries that verify (``entries``), those
    that do not (``rejected``: forged or signed by a key that is not the owner's; skipped)."""

    entries: list[Entry] = field(default_factory=list)
    rejected: list[tuple[Entry, str]] = field(default_factory=list)
    head_seq: int = 0
    head_hash: str | None = None
    broken: str | None = None  # why the log ends early (a missing entry, a broken chain)
    stray: list[str] = field(default_factory=list)  # keys under policy/log/ roro never writes

    @property
    def head(self) -> str | None:
        """``<seq>:<hash>`` of the last entry (None: no policy)."""
        return f"{self.head_seq}:{self.head_hash}" if self.head_hash else None

    @property
    def owner(self) -> str | None:
        return self.entries[0].payload["owner"] if self.entries else None

    def rules(self) -> Rules:
        rules = Rules()
        for e in self.entries:
            rules.apply(e)
        return rules

    def compromised(self) -> set[str]:
        return {e.payload["key"] for e in self.entries
                if e.type == "revoke" and e.payload["compromised"]}

    def rules_at(self, project: str, repository: str) -> Callable[[int], Rules]:
        """The rules that judge event ``seq`` of one repository (the watermark rule)."""
        name = f"{project}/{repository}"
        marks = [e.since.get(name, 0) for e in self.entries]
        cache: dict[tuple[int, ...], Rules] = {}

        def at(seq: int) -> Rules:
            chosen = tuple(i for i, m in enumerate(marks) if seq > m)
            found = cache.get(chosen)
            if found is None:
                found = Rules()
                for i in chosen:
                    found.apply(self.entries[i])
                cache[chosen] = found
            return found
        return at

    def judge(self, project: str, repository: str) -> Callable[[Event], str | None] | None:
        """The policy's verdict on each event of one repository: None (it passes) or why it is
        rejected; None when no rule could reject any of its events (no judging at all)."""
        if not self.entries:
            return None
        compromised = self.compromised()
        at = self.rules_at(project, repository)
        if not compromised and not any(at(s).applies_to(project, repository)
                                       for s in (1, 1 << 62)) \
                and not any(e.since.get(f"{project}/{repository}") for e in self.entries):
            return None

        def verdict(event: Event) -> str | None:
            key = event.signer_key
            if key is not None and key in compromised:
                return f"signed by the compromised key {event.signer} ({key})"
            rules = at(event.seq)
            relevant = False
            if event.type == "tag":
                keys = rules.protection(project, repository, event["tag"])
                if keys is not None:
                    if key is None:
                        return f"an unsigned move of the protected tag {event['tag']!r}"
                    if key not in keys or key in rules.revoked:
                        return (f"a move of the protected tag {event['tag']!r} signed by "
                                f"{event.signer} ({key}), a key that may not move it")
                    relevant = True
            if (project, repository) in rules.required:
                if key is None:
                    return (f"an unsigned {event.type} event, and the store policy requires "
                            f"signatures in {repository!r}")
                if key not in rules.allowed or key in rules.revoked:
                    return (f"signed by {event.signer} ({key}), a key the store policy does not "
                            f"allow")
                relevant = True
            if relevant:
                from .refs.events import verify_event  # only where a verdict needs it
                try:
                    verify_event(event, repository)
                except SignatureError as e:
                    return str(e)
            return None
        return verdict

    def affects(self, entry: Entry, project: str, repository: str) -> bool:
        """Whether ``entry`` may change a verdict on an event of this repository."""
        p = entry.payload
        return (f"{project}/{repository}" in entry.since
                or (entry.type == "revoke" and p["compromised"])
                or (entry.type in ("protect", "unprotect") and p["repository"] is None
                    and p["project"] == project))

    def to_dict(self) -> dict[str, Any]:
        return {"head": self.head, "owner": self.owner,
                "entries": [e.to_dict() for e in self.entries],
                "rejected": [{"seq": e.seq, "reason": why} for e, why in self.rejected],
                "broken": self.broken, "stray": self.stray, "rules": self.rules().to_dict()}


def read_policy(backend: Any) -> Policy:
    """Read and check the policy log of a store (``backend``): each entry's hash chain and
    signature. An entry that cannot be read, or that the owner did not sign (or that comes
    before a valid ``init``), is skipped and listed in ``rejected``: a bucket writer cannot
    block the owner, who appends after it. A missing entry or a broken chain ends the policy
    there (``broken`` says why; a pinned reader refuses it); a stray key is listed in
    ``stray`` and ignored."""
    keys = []
    policy = Policy()
    for key in backend.list(POLICY_PREFIX):
        seq = seq_from_log_key(key)
        if seq is None or key != policy_key(seq):
            policy.stray.append(key)
            continue
        keys.append((seq, key))
    keys.sort()
    from .signing import verify_signature  # cryptography: only where a policy is read
    for i, (seq, key) in enumerate(keys):
        if seq != i + 1:
            policy.broken = f"entry {i + 1} is missing (the log was cut or edited)"
            break
        raw = backend.get(key, MAX_ENTRY_SIZE + 1)
        try:
            entry = parse_entry(raw, seq)
        except IntegrityError as e:
            if loads_prev(raw) != policy.head_hash:
                policy.broken = f"entry {seq} is not chained to entry {seq - 1}"
                break
            unread = Entry(seq, policy.head_hash, "unreadable", "", "", {}, {},
                           {"key": "", "name": ""}, raw)
            policy.rejected.append((unread, str(e)))
            policy.head_seq, policy.head_hash = seq, unread.hash
            continue
        if entry.prev != policy.head_hash:
            policy.broken = (f"hash chain broken at entry {seq}: 'prev' does not match the "
                             f"previous entry")
            break
        policy.head_seq, policy.head_hash = seq, entry.hash
        why = None
        if not policy.entries:
            if entry.type != "init" or entry.payload["owner"] != entry.signer_key:
                why = "the first valid entry must be an 'init' signed by the owner it names"
        elif entry.type == "init":
            why = "a second 'init'"
        elif entry.signer_key != policy.owner:
            why = f"signed by {entry.sig['name']} ({entry.signer_key}), not by the owner"
        if why is None:
            try:
                verify_signature(entry.body(), entry.sig)
            except SignatureError as e:
                why = str(e)
        if why is not None:
            policy.rejected.append((entry, why))
        else:
            policy.entries.append(entry)
    return policy


def loads_prev(raw: bytes) -> str | None:
    """The ``prev`` an unreadable entry claims, if it can be read at all (else None)."""
    try:
        body = loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    prev = body.get("prev") if isinstance(body, dict) else None
    return prev if isinstance(prev, str) else None


# -- pins and the remembered head (the reader's side) -----------------------------------------
def _store_ident(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def heads_path(url: str) -> str:
    return os.path.join(cache_dir(), "policy-heads", f"{_store_ident(url)}.json")


def remembered_head(url: str) -> tuple[int, str] | None:
    try:
        with open(heads_path(url), encoding="utf-8") as f:
            data = json.load(f)
        return int(data["seq"]), str(data["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_head(url: str, policy: Policy) -> None:
    if policy.head_hash is None:
        return
    path = heads_path(url)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"url": url, "seq": policy.head_seq, "hash": policy.head_hash}, f)
    os.replace(tmp, path)


def _no_pins(url: str) -> set[str]:
    return set()


_pins_of: Callable[[str], set[str]] = _no_pins


def use_pins(provider: Callable[[str], set[str]]) -> None:
    """Install what says which owner keys the reader pinned for a store URL
    (:func:`roro.config.pinned_keys`: the configuration layer sits above the store's, so it
    hands its reader over instead of being imported from here)."""
    global _pins_of
    _pins_of = provider


def pinned_keys(url: str) -> set[str]:
    """The owner keys this user pinned for the store at ``url`` (see :func:`use_pins`)."""
    return _pins_of(url)


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warned_before(url: str, owner: str) -> bool:
    """Whether this user was warned about this store's unpinned owner already (a marker in the
    user cache): the warning is shown once per store and owner, like SSH's first contact."""
    marker = heads_path(url)[:-len(".json")] + "." + \
        hashlib.sha256(owner.encode()).hexdigest()[:16] + ".warned"
    if os.path.exists(marker):
        return True
    try:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w", encoding="utf-8") as f:
            f.write(owner + "\n")
    except OSError:
        pass
    return False


def check_reader(url: str, policy: Policy) -> None:
    """The reader's side of the trust root: with pins, the policy's owner must be pinned and the
    log must not have gone missing or got shorter since this user last saw it (TrustError);
    without pins, a store with a policy warns once per process."""
    pins = pinned_keys(url)
    if not pins:
        if policy.owner is not None:
            with _warned_lock:
                first = url not in _warned and not _warned_before(url, policy.owner)
                _warned.add(url)
            if first:
                warnings.warn(f"store {url} has a policy owned by {policy.owner}, and you pinned "
                              f"no key for it: anyone who can write the bucket could replace "
                              f"the policy. Pin the owner: roro trust:pin {policy.owner}",
                              PolicyWarning, stacklevel=4)
        return
    if policy.broken is not None:
        raise TrustError(f"the policy log of {url} is broken ({policy.broken}); refusing the "
                         f"store", setting="pins")
    seen = remembered_head(url)
    if seen is not None:
        if policy.head_seq < seen[0]:
            raise TrustError(f"the policy log of {url} ends at entry {policy.head_seq}, but you saw "
                             f"it at entry {seen[0]}: it went missing or got shorter (a writer "
                             f"of the bucket deleted policy entries); refusing the store",
                             setting="pins")
    if policy.owner is None:
        return
    if policy.owner not in pins:
        raise TrustError(f"the policy of {url} is owned by {policy.owner}, which is not a key you "
                         f"pinned ({', '.join(sorted(pins))}); refusing the store", setting="pins")
    remember_head(url, policy)


def check_remembered_prefix(url: str, policy: Policy, backend: Any) -> None:
    """A pinned reader: the entry it saw last must still be there, unchanged."""
    seen = remembered_head(url)
    if seen is None or not pinned_keys(url):
        return
    if policy.head_seq >= seen[0]:
        if seen[0] == policy.head_seq:
            same = policy.head_hash == seen[1]
        else:
            try:
                same = digest_bytes(backend.get(policy_key(seen[0]), MAX_ENTRY_SIZE + 1)) == seen[1]
            except RoroError:
                same = False
        if not same:
            raise TrustError(f"the policy log of {url} was rewritten: entry {seen[0]} is not the "
                             f"one you saw; refusing the store", setting="pins")


# -- the owner's side: writing entries -------------------------------------------------------
def _repositories(store: Store, project: str) -> list[str]:
    from .refs import list_repositories  # only for a policy change
    return [r for r in list_repositories(store.backend, project)]


def watermarks(store: Store, before: Rules, after: Rules,
               extra: Iterable[tuple[str, str]] = ()) -> dict[str, int]:
    """``since`` of a new entry: the log end of every repository a rule applies to, before or
    after the change (plus ``extra``)."""
    wanted: set[tuple[str, str]] = set(extra)
    for rules in (before, after):
        wanted |= rules.required
        for p, r, _ in rules.protected:
            if r is not None:
                wanted.add((p, r))
            else:
                wanted.update((p, name) for name in _repositories(store, p))
    out: dict[str, int] = {}
    for project, name in sorted(wanted):
        try:
            row = store.refresh(project, name)
        except IntegrityError:
            row = None
        if row is not None:
            out[f"{project}/{name}"] = row["last_seq"]
    return out


def append_entry(store: Store, key: SigningKey, type_: str, payload: dict[str, Any],
                 extra: Iterable[tuple[str, str]] = ()) -> Entry:
    """Sign and append one policy entry as the owner (``init`` makes ``key`` the owner)."""
    store.ensure_initialized()
    store.require_feature(POLICY_FEATURE)
    for _ in range(100):
        policy = read_policy(store.backend)
        if policy.broken is not None:
            raise IntegrityError(f"the policy log of {store.url} is broken ({policy.broken}): "
                                 f"nothing can be appended after it; run 'roro fsck'")
        if type_ == "init":
            if policy.entries:
                raise TrustError(f"store {store.url} has a policy already (owner "
                                 f"{policy.owner}): see 'roro policy:show'", setting="policy")
        else:
            if not policy.entries:
                raise NotFoundError(f"store {store.url} has no policy: start one with 'roro "
                                    f"policy:init --owner KEY'")
            if key.fingerprint != policy.owner:
                raise TrustError(f"only the policy's owner ({policy.owner}) may change it; key "
                                 f"{key.name} is {key.fingerprint}", setting="policy")
        before = policy.rules()
        seq = policy.head_seq + 1
        body: dict[str, Any] = {"seq": seq, "prev": policy.head_hash, "type": type_,
                                "author": current_author(), "time": now_utc(), "v": 2,
                                "since": {}, **payload}
        if type_ != "init":
            after = before.copy()
            after.apply(Entry(seq, None, type_, "", "", {}, payload, {"key": "", "name": ""},
                              b""))
            body["since"] = watermarks(store, before, after, extra)
        sig = key.signature_for(body)
        raw = canonical_json({**body, "sig": sig})
        if store.backend.put_if_absent(policy_key(seq), raw):
            store.forget_policy()
            return parse_entry(raw, seq)
        time.sleep(0.01)
    raise RoroError("gave up appending to the policy log after 100 lost races")


def validate_rule_names(project: str, repository: str | None, tag: str | None = None) -> None:
    validate_name(project, "project")
    if repository is not None:
        validate_name(repository)
    if tag is not None:
        validate_tag(tag)


class StorePolicy:
    """The policy a store handle judges events with (the index's ``PolicyView``)."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.head = policy.head
        self.read_at = time.monotonic()
        #: Raise :class:`PolicyBehind` for an event naming a head after this one (the store
        #: then reads the policy again, once, and judges by what it finds).
        self.check_heads = True
        self._judges: dict[tuple[str, str], Callable[[Event], str | None] | None] = {}

    def judge(self, project: str, repository: str) -> Callable[[Event], str | None] | None:
        key = (project, repository)
        if key not in self._judges:
            self._judges[key] = self.policy.judge(project, repository)
        inner = self._judges[key]

        def verdict(event: Event) -> str | None:
            if self.check_heads and event.policy is not None and \
                    _head_seq(event.policy) > self.policy.head_seq:
                raise PolicyBehind(f"event {event.seq} of {repository!r} names policy head "
                                   f"{event.policy}, newer than the one read")
            return inner(event) if inner is not None else None
        return verdict

    def stale(self, head: str | None, project: str, repository: str) -> bool:
        entries = self.policy.entries
        if head is None:
            return any(self.policy.affects(e, project, repository) for e in entries)
        seq_text, _, digest = head.partition(":")
        try:
            seq = int(seq_text)
        except ValueError:
            return True
        if self.check_heads and seq > self.policy.head_seq:
            # another process judged the rows under a newer policy: read it, never downgrade
            raise PolicyBehind(f"{project}/{repository} was indexed under policy head {head}, "
                               f"newer than the one read")
        if self.head is None or seq > self.policy.head_seq:
            return True  # the policy the rows were judged under is gone, or got shorter
        known = {e.seq: e.hash for e in entries} | {e.seq: e.hash for e, _ in self.policy.rejected}
        if known.get(seq) != digest:
            return True  # rewritten
        return any(e.seq > seq and self.policy.affects(e, project, repository) for e in entries)


def load_store_policy(store: Store) -> StorePolicy | None:
    """Read the store's policy for a reader: None when the store has none (and the reader has
    no reason to expect one); checks the reader's pins (:func:`check_reader`)."""
    expect = remembered_head(store.url) is not None and bool(pinned_keys(store.url))
    if POLICY_FEATURE not in store.features() and not expect:
        return None
    policy = read_policy(store.backend)
    check_remembered_prefix(store.url, policy, store.backend)
    check_reader(store.url, policy)
    return StorePolicy(policy) if policy.entries else None


# -- the commands' API -----------------------------------------------------------------------
def resolve_key(ref: str) -> tuple[str, str]:
    """``(fingerprint, name)`` of a key named in a command: a fingerprint, or the name of a key
    in this user's keys directory."""
    from .signing import is_fingerprint, list_keys, public_key  # only for a policy change
    if is_fingerprint(ref):
        for k in list_keys():
            if k.fingerprint == ref:
                return ref, k.name
        return ref, "key"
    found = public_key(ref)
    return found.fingerprint, found.name


def owner_key(store: Store, name: str | None = None) -> SigningKey:
    """The key that signs a policy change: ``name``, else this user's key whose fingerprint is
    the policy owner's (NotFoundError when this user holds none)."""
    from .signing import list_keys, load_signing_key  # only for a policy change
    if name is not None:
        return load_signing_key(name)
    policy = read_policy(store.backend)
    if policy.owner is None:
        raise NotFoundError(f"store {store.url} has no policy: start one with 'roro policy:init "
                            f"--owner KEY'")
    for k in list_keys():
        if k.fingerprint == policy.owner:
            return load_signing_key(k.name)
    raise TrustError(f"only the owner of the policy of {store.url} ({policy.owner}) may change "
                     f"it, and none of your keys ('roro keys:list') is that key",
                     setting="policy")


def init(store: Store, owner: str) -> Entry:
    """Start the store's policy, owned by this user's key ``owner`` (``roro policy:init`` also
    pins it for this store: :func:`roro.config.add_pin`)."""
    key = owner_key(store, owner)
    return append_entry(store, key, "init", {"owner": key.fingerprint})


def allow(store: Store, ref: str, as_key: str | None = None) -> Entry:
    fp, name = resolve_key(ref)
    return append_entry(store, owner_key(store, as_key), "allow", {"key": fp, "name": name})


def revoke(store: Store, ref: str, compromised: bool = False,
           as_key: str | None = None) -> Entry:
    fp, _ = resolve_key(ref)
    return append_entry(store, owner_key(store, as_key), "revoke",
                        {"key": fp, "compromised": compromised})


def protect(store: Store, project: str, repository: str | None, tag: str, keys: list[str],
            as_key: str | None = None) -> Entry:
    validate_rule_names(project, repository, tag)
    if not keys:
        raise ConfigError("name at least one key that may move the tag: --key NAME")
    fps = sorted({resolve_key(k)[0] for k in keys})
    return append_entry(store, owner_key(store, as_key), "protect",
                        {"project": project, "repository": repository, "tag": tag, "keys": fps})


def unprotect(store: Store, project: str, repository: str | None, tag: str,
              as_key: str | None = None) -> Entry:
    validate_rule_names(project, repository, tag)
    return append_entry(store, owner_key(store, as_key), "unprotect",
                        {"project": project, "repository": repository, "tag": tag})


def require_signed(store: Store, project: str, repository: str,
                   as_key: str | None = None) -> Entry:
    validate_rule_names(project, repository)
    return append_entry(store, owner_key(store, as_key), "require-signed",
                        {"project": project, "repository": repository},
                        extra=[(project, repository)])
