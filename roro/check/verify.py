"""``roro verify``: check the signatures of a repository's ref log (DESIGN §11).

A read checks only the signatures of the events it serves; this reads a whole log (or, for
``NAME:REF``, the events that serve that version: its ``version`` event and the last move of each
current tag pointing at it) and checks every signature, ~0.1 ms each. Each event is
``verified`` (its signature checks out, by a key ``keys`` accepts when given), ``unsigned``,
``invalid`` (changed or forged: the error names the event) or ``untrusted`` (a valid signature by a
key ``keys`` does not list). The report is ``ok`` when no event is invalid or untrusted and, with
``require_signed``, none of the checked ``version`` and ``tag`` events is unsigned. An event the
store policy rejects is ``rejected`` (a failure): ``roro verify`` fails wherever the policy
requires a signature that is missing or by a key it does not allow.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import NotFoundError, SignatureError
from ..refs import Event, RepoState
from ..refs.events import verify_event
from ..refspec import Ref
from ..repository import ModelRepository

VERIFIED, UNSIGNED, INVALID, UNTRUSTED = "verified", "unsigned", "invalid", "untrusted"
#: An event the store policy rejects (unsigned where it requires a signature, a protected tag
#: moved by another key, a revoked or compromised key): a failure, whatever its signature.
REJECTED = "rejected"
#: The event types a signature matters for: ``require_signed`` fails on these unsigned.
SIGNABLE = ("version", "tag")


@dataclass
class EventCheck:
    seq: int
    type: str
    status: str
    version: int | None = None
    tag: str | None = None
    signer: str | None = None
    key: str | None = None
    error: str | None = None


@dataclass
class VerifyReport:
    project: str
    repository: str
    ref: str | None
    require_signed: bool
    keys: list[str]
    events: list[EventCheck] = field(default_factory=list)
    seconds: float = 0.0

    def failures(self) -> list[EventCheck]:
        return [e for e in self.events if e.status in (INVALID, UNTRUSTED, REJECTED) or (
            self.require_signed and e.status == UNSIGNED and e.type in SIGNABLE)]

    @property
    def ok(self) -> bool:
        return not self.failures()

    def counts(self) -> dict[str, int]:
        out = {VERIFIED: 0, UNSIGNED: 0, INVALID: 0, UNTRUSTED: 0, REJECTED: 0}
        for e in self.events:
            out[e.status] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "counts": self.counts(),
                "failures": [f.seq for f in self.failures()]}


def check_event(event: Event, repository: str, keys: set[str] | None) -> EventCheck:
    """The signature status of one event; ``keys``: the fingerprints accepted (None: any)."""
    payload = event.payload
    out = EventCheck(event.seq, event.type, UNSIGNED,
                     version=payload.get("version") if event.type in ("version", "delete",
                                                                      "tag") else None,
                     tag=payload.get("tag"), signer=event.signer, key=event.signer_key)
    if event.sig is None:
        return out
    try:
        verify_event(event, repository)
    except SignatureError as e:
        out.status, out.error = INVALID, str(e)
        return out
    if keys is not None and event.sig["key"] not in keys:
        out.status = UNTRUSTED
        out.error = (f"event {event.seq} of the ref log of {repository!r} is signed by "
                     f"{event.sig['name']} ({event.sig['key']}), a key not accepted here")
        return out
    out.status = VERIFIED
    return out


def verify_repository(repo: ModelRepository, ref: Ref | None = None, *,
                      require_signed: bool = False, keys: set[str] | None = None) -> VerifyReport:
    """Check the signatures of ``repo``'s log (every event, or those serving ``ref``)."""
    started = time.monotonic()
    store, project = repo.store, repo.project.name
    events = store.reflog(project, repo.name).read_all()
    if not events:  # not found (exit 3), named as every other command names it
        raise NotFoundError(f"model repository {repo.name!r} does not exist in project "
                            f"{project!r}", repository=repo.name)
    wanted: set[int] | None = None
    policy = store.policy()
    if policy is not None:
        policy.check_heads = False  # judged by the policy read now, whatever events name
    judge = policy.judge(project, repo.name) if policy is not None else None
    if ref is not None:
        version = repo.resolve_ref(ref)
        state = RepoState(repo.name, policy=judge)
        last_move: dict[str, int] = {}
        for e in events:
            state.apply(e)
            if e.type == "tag":
                last_move[e["tag"]] = e.seq
        wanted = {state.versions[version].seq} | {
            last_move[t] for t in state.tags_of(version)}
    report = VerifyReport(project, repo.name, str(ref) if ref is not None else None,
                          require_signed, sorted(keys) if keys is not None else [])
    for e in events:
        if wanted is None or e.seq in wanted:
            checked = check_event(e, repo.name, keys)
            why = judge(e) if judge is not None else None
            if why is not None and checked.status != INVALID:
                checked.status = REJECTED
                checked.error = (f"event {e.seq} of the ref log of {repo.name!r} breaks the "
                                 f"store policy: {why}")
            report.events.append(checked)
    report.seconds = round(time.monotonic() - started, 3)
    return report
