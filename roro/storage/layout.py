"""The key layout of a store: one pure function per kind of key, shared by every backend.

```
roro.json                                          format marker: {"format": 1|2, "id": ...}
features/<name>.json                               format features the store uses (format 2)
index.sqlite3                                      a folder store's index (derived, local only)
objects/sha256/<2 hex>/<62 hex>                    immutable objects (blobs and manifests)
refs/<project>/<repo>/log/<seq, 10 digits>.json    ref events, create-only
gc/lock                                            the running gc's lock (create-only; docs/trust.md)
gc/takeover/<lock id>.json                         who replaces a dead gc's stale lock
gc/keep/<time>-<uuid>.json                         a save's keep marker: old objects it relies on
checkpoints/<project>/<repo>/<inv seq>-<hex>.json  checkpoint pointers (create-only; feature
                                                   "checkpoints"): <inv seq> = 9999999999 - N,
                                                   so a listing names the newest first
policy/log/<seq, 10 digits>.json                   the store policy's entries (create-only,
                                                   hash-chained, owner-signed; feature "policy")
```
"""

from __future__ import annotations

import re

from ..digests import ALGORITHM, hex_of, parse_digest
from ..names import validate_name

FORMAT_KEY = "roro.json"
INDEX_KEY = "index.sqlite3"
#: The format a store is created with, and the one a store is raised to by its first feature.
#: Format 1 stores have no features; a roro that reads only format 1 refuses format 2 clearly.
FORMAT_VERSION = 1
FEATURES_FORMAT = 2
READABLE_FORMATS = (FORMAT_VERSION, FEATURES_FORMAT)
FEATURES_PREFIX = "features/"
#: The format features this roro knows (DESIGN §14): a store that records any other one was
#: written by a newer roro and is refused with "upgrade roro". Each feature is recorded by the
#: first write that needs it (``Store.require_feature``), before that write.
KNOWN_FEATURES: frozenset[str] = frozenset({
    "repository-lifecycle",  # destroy, restore and rename events in ref logs (issue 14)
    "gc-keep",  # gc keep markers under gc/keep/ (issue 13.3)
    "manifest-v2",  # version 2 manifests: model formats, summaries, contracts (issue 15)
    "model-bundles",  # a version event's 'bundle': its OpenSSF Model Signing bundle (issue 16)
    "signed-events",  # event version 2: ref events with a signature (issue 16)
    "checkpoints",  # checkpoint pointers under checkpoints/ and their objects (issue 18)
    "policy",  # the store policy's log under policy/log/, events naming a policy head (issue 16)
    "chunked-blobs",  # big blobs as content-defined chunks listed by a chunk index (issue 17)
})
#: The feature the first policy entry records (roro/policy.py).
POLICY_FEATURE = "policy"
POLICY_PREFIX = "policy/log/"
#: The feature the first checkpoint records (before its object and pointer are written).
CHECKPOINT_FEATURE = "checkpoints"
CHECKPOINTS_PREFIX = "checkpoints/"
#: The feature the first keep marker records: a roro that does not know keep markers (whose gc
#: would ignore them and delete what a save protects) must refuse the store.
GC_KEEP_FEATURE = "gc-keep"
_FEATURE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
OBJECTS_PREFIX = f"objects/{ALGORITHM}/"
REFS_PREFIX = "refs/"
SEQ_DIGITS = 10
GC_PREFIX = "gc/"
GC_LOCK_KEY = "gc/lock"
#: Room a folder store keeps for gc (Backend.free_reserve): gc can take its lock on a full disk.
RESERVE_KEY = "gc/reserve"
KEEP_PREFIX = "gc/keep/"
TAKEOVER_PREFIX = "gc/takeover/"
_GC_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z.-]{0,99}")


def object_key(digest: str) -> str:
    h = hex_of(digest)
    return f"{OBJECTS_PREFIX}{h[:2]}/{h[2:]}"


def digest_from_object_key(key: str) -> str | None:
    """The digest an object key names, or None if ``key`` is not a well-formed object key."""
    if not key.startswith(OBJECTS_PREFIX):
        return None
    rest = key[len(OBJECTS_PREFIX):]
    if len(rest) != 65 or rest[2] != "/":
        return None
    try:
        return parse_digest(f"{ALGORITHM}:{rest[:2]}{rest[3:]}")
    except ValueError:
        return None


def project_prefix(project: str) -> str:
    return f"{REFS_PREFIX}{validate_name(project, 'project')}/"


def log_prefix(project: str, repo: str) -> str:
    return f"{project_prefix(project)}{validate_name(repo)}/log/"


def log_key(project: str, repo: str, seq: int) -> str:
    if not isinstance(seq, int) or seq < 1 or seq >= 10**SEQ_DIGITS:
        raise ValueError(f"invalid sequence number {seq!r}")
    return f"{log_prefix(project, repo)}{seq:0{SEQ_DIGITS}d}.json"


def seq_from_log_key(key: str) -> int | None:
    """The sequence number in a log key, or None if the file name is not ``<10 digits>.json``."""
    name = key.rsplit("/", 1)[-1]
    stem, dot, ext = name.partition(".")
    if ext != "json" or len(stem) != SEQ_DIGITS or not stem.isdigit() or not stem.isascii():
        return None
    return int(stem)


def feature_key(name: str) -> str:
    if not _FEATURE_NAME.fullmatch(name):
        raise ValueError(f"invalid feature name {name!r}")
    return f"{FEATURES_PREFIX}{name}.json"


def feature_from_key(key: str) -> str | None:
    """The feature a key under ``features/`` records, or None if it is not a feature key."""
    if not key.startswith(FEATURES_PREFIX) or not key.endswith(".json"):
        return None
    name = key[len(FEATURES_PREFIX):-len(".json")]
    return name if _FEATURE_NAME.fullmatch(name) else None


def is_key_path(key: str) -> bool:
    """True for a path where roro keeps a file: ``roro.json``, an object key, a log event key,
    a feature key, a gc key (a directory there is damage that fsck reports)."""
    if key == FORMAT_KEY or digest_from_object_key(key) is not None \
            or feature_from_key(key) is not None or is_gc_key(key) \
            or parse_checkpoint_key(key) is not None or is_policy_key(key):
        return True
    parts = key.split("/")
    return (len(parts) == 5 and parts[0] == REFS_PREFIX.rstrip("/") and parts[3] == "log"
            and seq_from_log_key(key) is not None)


def policy_key(seq: int) -> str:
    """The key of entry ``seq`` of the store's policy log."""
    if not isinstance(seq, int) or seq < 1 or seq >= 10**SEQ_DIGITS:
        raise ValueError(f"invalid sequence number {seq!r}")
    return f"{POLICY_PREFIX}{seq:0{SEQ_DIGITS}d}.json"


def is_policy_key(key: str) -> bool:
    """True for a well-formed key of a policy log entry."""
    if not key.startswith(POLICY_PREFIX):
        return False
    seq = seq_from_log_key(key)
    return seq is not None and seq >= 1 and key == policy_key(seq)


def keep_key(name: str) -> str:
    """The key of keep marker ``name`` (``<UTC time>-<uuid>``, see ``roro.objects.keep``)."""
    if not _GC_NAME.fullmatch(name):
        raise ValueError(f"invalid keep marker name {name!r}")
    return f"{KEEP_PREFIX}{name}.json"


def takeover_key(lock_id: str) -> str:
    """The create-only key whose writer may replace the stale gc lock ``lock_id``."""
    if not _GC_NAME.fullmatch(lock_id):
        raise ValueError(f"invalid gc lock id {lock_id!r}")
    return f"{TAKEOVER_PREFIX}{lock_id}.json"


def is_gc_key(key: str) -> bool:
    """True for every key gc writes (its lock, takeovers, keep markers): fsck knows them."""
    if key in (GC_LOCK_KEY, RESERVE_KEY):
        return True
    for prefix in (KEEP_PREFIX, TAKEOVER_PREFIX):
        if key.startswith(prefix) and key.endswith(".json"):
            return bool(_GC_NAME.fullmatch(key[len(prefix):-len(".json")]))
    return False


_MAX_SEQ = 10**SEQ_DIGITS - 1


def checkpoint_prefix(project: str, repo: str) -> str:
    """Where the checkpoint pointers of one repository live (never under its ``log/``)."""
    return f"{CHECKPOINTS_PREFIX}{validate_name(project, 'project')}/{validate_name(repo)}/"


def checkpoint_key(project: str, repo: str, seq: int, digest: str) -> str:
    """The pointer to checkpoint ``digest`` of events 1..``seq``: the sequence number is written
    inverted (``9999999999 - seq``), so the first key a listing returns is the newest."""
    if not isinstance(seq, int) or seq < 1 or seq > _MAX_SEQ:
        raise ValueError(f"invalid sequence number {seq!r}")
    return f"{checkpoint_prefix(project, repo)}{_MAX_SEQ - seq:0{SEQ_DIGITS}d}-{hex_of(digest)}.json"


def parse_checkpoint_key(key: str) -> tuple[str, str, int, str] | None:
    """``(project, repository, seq, digest)`` of a checkpoint pointer key, else None."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != CHECKPOINTS_PREFIX.rstrip("/"):
        return None
    stem, dot, ext = parts[3].partition(".")
    inv, dash, hexpart = stem.partition("-")
    if ext != "json" or not dash or len(inv) != SEQ_DIGITS or not inv.isdigit() \
            or not inv.isascii():
        return None
    seq = _MAX_SEQ - int(inv)
    try:
        digest = parse_digest(f"{ALGORITHM}:{hexpart}")
        validate_name(parts[1], "project")
        validate_name(parts[2])
    except ValueError:
        return None
    if seq < 1:
        return None
    return parts[1], parts[2], seq, digest
