"""fsck: check every ref log and every object live versions reach (git fsck, restic check).

It folds every log with the rules of :mod:`roro.refs.state` without stopping at the first problem,
reads every manifest a live version names, checks that every blob those manifests name exists,
and with ``read_data`` re-hashes every object in the store.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..bundle import source_bundles
from ..digests import digest_bytes
from ..errors import IntegrityError, InvalidNameError, NotFoundError, SignatureError
from ..names import attachment_collision, attachment_name_warning, name_warning, validate_name
from ..objects import ObjectStore
from ..objects.canonical import canonical_json, loads
from ..objects.chunks import read_index
from ..objects.manifest import (
    chunk_blobs,
    chunked_entries,
    named_blobs,
    read_manifest,
    referenced_digests,
)
from ..policy import read_policy
from ..refs import Event, RepoState
from ..refs.events import MAX_EVENT_SIZE, parse_event, verify_event
from ..refs.state import DESTROYED, RENAMED, Judge, event_problem
from ..refspec import looks_like_version
from ..signing import SigningUnavailableError
from ..storage import Backend, KeyNotFoundError
from ..storage.layout import (
    GC_PREFIX,
    OBJECTS_PREFIX,
    POLICY_FEATURE,
    POLICY_PREFIX,
    REFS_PREFIX,
    digest_from_object_key,
    is_gc_key,
    log_key,
    object_key,
    policy_key,
    seq_from_log_key,
)
from ..store import Store
from .bundles import ROLE as BUNDLE_ROLE
from .bundles import SOURCE_ROLE as SOURCE_BUNDLE_ROLE
from .bundles import check_bundles
from .checkpoints import scan_checkpoints
from .index_rows import LogFacts, check_rows, freeze
from .report import (
    BAD_POLICY,
    BAD_SIGNATURE,
    BROKEN_LOG,
    CORRUPT_OBJECT,
    INCOMPLETE_RENAME,
    INDEX_MISMATCH,
    INVALID_MANIFEST,
    MISSING_OBJECT,
    NAME_WARNING,
    REJECTED_EVENT,
    SPECIAL_FILE,
    STRAY_FILE,
    VERSION_LIKE_TAG,
    FsckReport,
    Problem,
    problem_order,
)

WORKERS = 16


def fsck(store: Store, read_data: bool = False) -> FsckReport:
    """Check every ref log and every object live versions reach; see :mod:`roro.check`.

    Logs are read before objects are listed, so a save running concurrently never looks like a
    missing object (its objects are written before its event).
    """
    started = time.monotonic()
    report = FsckReport(store=store.url, read_data=read_data)
    if not store.is_initialized():  # nothing was ever written (an unknown format raises)
        return report
    special = _check_special_files(store.backend, report)
    with ThreadPoolExecutor(WORKERS) as pool:
        refs, manifests = scan_refs(store, report, pool)
        stored = _list_objects(store.backend, report) - special
        report.objects = len(stored)
        report_missing_blobs(store.backend, refs, manifests, stored, report, special)
        check_bundles(store.backend, refs, manifests, report, pool)
        if read_data:
            _read_data(store, sorted(stored - set(manifests)), refs, report, pool)
        _check_gc_keys(store.backend, report)
        report.checkpoint_objects = scan_checkpoints(store.backend, ObjectStore(store.backend),
                                                     report).named()
    report.retained = {d: t for d, t in report.retained.items() if d in stored}
    report.unreferenced = sorted(stored - set(refs) - set(report.retained)
                                 - report.checkpoint_objects)
    report.problems.sort(key=problem_order)
    report.warnings.sort(key=problem_order)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def scan_refs(store: Store, report: FsckReport, pool: ThreadPoolExecutor) -> tuple[Refs, Manifests]:
    """The part of fsck that gc runs too: every log folded and compared with the local index
    (its position and its rows), every live version's manifest read from the store. Returns
    what live versions reach (``report.reachable`` too) and the manifests read."""
    refs, destroyed, facts, snapshot = _check_logs(store, report, pool)
    manifests = _check_manifests(store.backend, refs, report, pool)
    _destroyed_objects(store.backend, destroyed, refs, report, pool)
    texts = {d: m for d, m in manifests.items() if m is not None}
    for (project, name), at in sorted(facts.items()):
        check_rows(snapshot[(project, name)], at, texts, project, name, report)
    report.referenced = len(refs)
    report.reachable = set(refs)
    return refs, manifests


def report_missing_blobs(backend: Backend, refs: Refs, manifests: Manifests, stored: set[str],
                         report: FsckReport, special: set[str] | None = None) -> int:
    """Report each blob a live version names that is not among the ``stored`` objects (a
    listing; ``exists`` is asked again for those, as the listing may be older than the logs;
    not for ``special`` ones, whose key holds no regular file); returns how many."""
    missing = 0
    for d in sorted(set(refs) - stored):
        if d in manifests or (d not in (special or ()) and backend.exists(object_key(d))):
            continue  # a manifest is reported when it is read
        missing += 1
        report.problems.append(_object_problem(
            MISSING_OBJECT, d, refs[d], "is missing from the store", blocks_gc=False))
    return missing


def _check_gc_keys(backend: Backend, report: FsckReport) -> None:
    """Keys under gc/ are gc's lock, takeovers and keep markers (docs/trust.md); anything else
    there is a stray file (it does not block gc)."""
    for key in backend.list(GC_PREFIX):
        if not is_gc_key(key):
            report.problems.append(Problem(
                STRAY_FILE, "not a key roro's gc writes (gc/lock, gc/keep/<name>.json, "
                "gc/takeover/<id>.json, gc/reserve); move it out of the store", key=key,
                blocks_gc=False))


#: digest -> every (project, repository, version, role) of a live version that names the object
Refs = dict[str, list[tuple[str, str, int, str]]]
#: digest -> (manifest, its text) of every live version's manifest (None: missing or unusable)
Manifests = dict[str, "tuple[dict[str, Any], str] | None"]


def _check_logs(store: Store, report: FsckReport, pool: ThreadPoolExecutor
                ) -> tuple[Refs, dict[str, str], dict[tuple[str, str], LogFacts],
                           dict[tuple[str, str], Any]]:
    """Fold every log (reporting each problem) and compare it with what the index saw; returns
    the manifests live versions name, those only destroyed repositories name (with the time of
    the newest such destroy), what each open log says at the event the index saw last (for the
    cross-check of the index's rows) and the index's rows."""
    refs: Refs = {}
    destroyed: dict[str, str] = {}
    facts: dict[tuple[str, str], LogFacts] = {}
    # The index before the logs: it never runs ahead of a log, so read in this order a writer
    # appending meanwhile cannot make it look as if the log lost events.
    snapshot = store.index_snapshot()
    positions = {k: (r["row"]["last_seq"], r["row"]["last_hash"])
                 for k, r in snapshot.items() if r["row"] is not None}
    for (project, name), rows in sorted(snapshot.items()):
        if rows["row"] is None:  # rows of a repository the index has no position for
            report.problems.append(Problem(
                INDEX_MISMATCH, "the local index has rows of a repository it has never read "
                "the log of: the index was edited or damaged (run 'roro index --rebuild')",
                project=project, repository=name, blocks_gc=False))
    policy = _read_policy(store, report)
    logs = _group_log_keys(store.backend.list(REFS_PREFIX), report)
    report.projects = len({p for p, _ in logs})
    report.repositories = len(logs)
    for (project, name), (seq, _) in sorted(positions.items()):
        if seq > 0 and (project, name) not in logs:
            report.problems.append(Problem(
                INDEX_MISMATCH, f"the local index saw {seq} events of this repository, but its "
                f"log is gone from the store: it was deleted, or the store was restored from an "
                f"older copy (if so, run 'roro index --rebuild')", project=project,
                repository=name, seq=seq))
    for (project, name), items in sorted(logs.items()):
        position = positions.get((project, name))
        before = len(report.problems)
        state, seen, at = _check_log(store.backend, project, name, items, report, pool,
                                     position[0] if position else 0,
                                     policy.judge(project, name) if policy else None)
        whole = len(report.problems) == before  # a broken log is no yardstick for the index
        if _check_against_index(position, project, name, state, seen, report) and at and whole:
            if state.status is None:  # a closed repository's rows are hidden (deleted = 2)
                facts[(project, name)] = at
        _warn_names(project, name, state, report)
        if state.status == DESTROYED:
            report.destroyed_repositories += 1
            for ref in state.versions.values():
                # a bundle read as a manifest is no manifest: it is retained alone, as it should
                for d in (ref.image, *([ref.bundle] if ref.bundle else [])):
                    destroyed[d] = max(destroyed.get(d, ""), state.closed_time or "")
            continue
        if state.status == RENAMED:
            assert state.renamed_to is not None and state.closed_seq is not None
            if _rename_complete(store.backend, project, state):
                continue  # its versions are the new name's now
            report.problems.append(Problem(
                INCOMPLETE_RENAME, f"{name!r} was renamed to {state.renamed_to!r} (event "
                f"{state.closed_seq}), but {state.renamed_to!r} does not hold that event: the "
                f"rename was interrupted; run 'roro models:rename {name} {state.renamed_to}' "
                f"again to complete it (its objects are kept meanwhile)", project=project,
                repository=name, seq=state.closed_seq, blocks_gc=False))
        report.versions += len(state.versions)
        report.deleted_versions += len(state.deleted)
        report.tags += len(state.tags)
        for tag, target in sorted(state.tags.items()):
            if looks_like_version(tag):
                report.warnings.append(Problem(
                    VERSION_LIKE_TAG, f"tag {tag!r} looks like a version: {name}:{tag} is "
                    f"ambiguous (version {tag.lstrip('vV')} or this tag); move it to another "
                    f"name ('roro models:tag {name}:{target} NEW', then 'roro models:untag "
                    f"{name} {tag}')", project=project, repository=name, version=target,
                    blocks_gc=False))
        for v, ref in sorted(state.versions.items()):
            refs.setdefault(ref.image, []).append((project, name, v, "manifest"))
            if ref.bundle is not None:
                refs.setdefault(ref.bundle, []).append((project, name, v, BUNDLE_ROLE))
    return refs, destroyed, facts, snapshot


def _rename_complete(backend: Backend, project: str, state: RepoState) -> bool:
    """Whether the log ``state`` was renamed to holds the very rename event (same bytes)."""
    assert state.renamed_to is not None and state.closed_seq is not None
    try:
        raw = backend.get(log_key(project, state.renamed_to, state.closed_seq))
    except (KeyNotFoundError, ValueError):
        return False
    return digest_bytes(raw) == state.last_hash


def _destroyed_objects(backend: Backend, destroyed: dict[str, str], refs: Refs,
                       report: FsckReport, pool: ThreadPoolExecutor) -> None:
    """The objects only destroyed repositories still name (their manifests and the blobs
    those name), with the time of the destroy: gc collects them once it is older than its
    grace period. A manifest gc already collected is no problem: the repository is gone."""
    uncached = ObjectStore(backend)

    def read(digest: str) -> dict[str, Any] | None:
        try:
            return read_manifest(uncached, digest)[0]
        except (NotFoundError, IntegrityError):
            return None

    retained: dict[str, str] = {}
    for digest, manifest in zip(destroyed, pool.map(read, list(destroyed)), strict=True):
        when = destroyed[digest]
        names = [digest]
        if manifest is not None:
            names += referenced_digests(manifest) + source_bundles(manifest)
            try:
                names += [d for d, _, _ in chunk_blobs(uncached, manifest)]
            except (NotFoundError, IntegrityError):
                pass
        for d in names:
            if d not in refs:
                retained[d] = max(retained.get(d, ""), when)
    report.retained = retained

def _check_manifests(backend: Backend, refs: Refs, report: FsckReport,
                     pool: ThreadPoolExecutor) -> Manifests:
    """Read and verify every manifest in ``refs``, adding the blobs each names to ``refs``;
    returns ``digest -> (manifest, its text)`` (None: missing or unusable, reported)."""
    uncached = ObjectStore(backend)  # fsck reads the store itself, never a local cache
    images = sorted(d for d, who in refs.items() if any(r == "manifest" for *_, r in who))
    read = list(pool.map(lambda d: (d, *_read_manifest(uncached, d, refs[d], report)), images))
    manifests = {d: found for d, found, _ in read}
    report.verified += sum(hashed for _, _, hashed in read)
    chunked = [d for d, found in manifests.items()
               if found is not None and chunked_entries(found[0])]
    chunks = dict(zip(chunked, pool.map(
        lambda d: _read_chunks(uncached, manifests[d][0], refs[d], report),  # type: ignore[index]
        chunked), strict=True))
    for mdigest, found in manifests.items():
        if found is None:
            continue
        manifest = found[0]
        _warn_attachment_names(mdigest, manifest, refs[mdigest], report)
        sources = source_bundles(manifest)
        for project, name, v, _ in refs[mdigest]:
            for digest, _size, role in [*named_blobs(manifest), *chunks.get(mdigest, [])]:
                refs.setdefault(digest, []).append((project, name, v, role))
            for digest in sources:
                refs.setdefault(digest, []).append((project, name, v, SOURCE_BUNDLE_ROLE))
    return manifests


def _read_chunks(objects: ObjectStore, manifest: dict[str, Any],
                 who: list[tuple[str, str, int, str]],
                 report: FsckReport) -> list[tuple[str, int, str]]:
    """The chunks a manifest's chunk indexes name (read verified from the store itself); a
    corrupt or malformed index is a problem that stops gc (its chunks cannot be known); a
    missing one is reported with the other missing objects."""
    out: list[tuple[str, int, str]] = []
    for digest, _, size, role in chunked_entries(manifest):
        try:
            index = read_index(objects, digest, size)
        except NotFoundError:
            continue
        except IntegrityError as e:
            what = (f"is corrupted: its bytes hash to {e.actual}" if e.actual is not None else
                    f"is not a valid chunk index: {_reason(str(e))}")
            report.problems.append(_object_problem(
                CORRUPT_OBJECT if e.actual is not None else INVALID_MANIFEST, digest,
                [(p, n, v, f"{role} chunk index") for p, n, v, _ in who], what,
                expected=digest if e.actual is not None else None, actual=e.actual))
            continue
        out.extend((d, n, f"{role} chunk {i}") for i, (d, n) in enumerate(index.chunks))
    return out


def _check_special_files(backend: Backend, report: FsckReport) -> set[str]:
    """Report every entry of a local store that is not a regular file where roro keeps files:
    symbolic links, FIFOs, devices anywhere; a directory at an object's or event's path (a
    directory at the next event's slot would stop every writer). Returns the digests of the
    object keys among them (never stored objects: not read, not collected)."""
    special = set()
    for key, what in backend.irregular_entries():
        report.problems.append(Problem(
            SPECIAL_FILE, f"a {what}, not a regular file: roro never writes one, and never reads "
            f"or follows it; move it out of the store", key=key,
            blocks_gc=key.startswith(REFS_PREFIX)))
        digest = digest_from_object_key(key)
        if digest is not None:
            special.add(digest)
    return special


def _warn_names(project: str, name: str, state: RepoState, report: FsckReport) -> None:
    """Warn about a project, repository or tag name that a new write would refuse."""
    if not any(w.kind == NAME_WARNING and w.repository is None and w.project == project
               for w in report.warnings):
        why = name_warning(project, "project")
        if why is not None:
            report.warnings.append(Problem(NAME_WARNING, why, project=project, blocks_gc=False))
    whys = [name_warning(name)] + [name_warning(tag, "tag") for tag in sorted(state.tags)]
    report.warnings += [Problem(NAME_WARNING, why, project=project, repository=name,
                                blocks_gc=False) for why in whys if why is not None]


def _warn_attachment_names(digest: str, manifest: dict[str, Any],
                           who: list[tuple[str, str, int, str]], report: FsckReport) -> None:
    """Warn about attachment names that a new image would refuse (readable, but written under
    older rules): one warning per name and manifest."""
    names = [a["name"] for a in manifest["attachments"]]
    whys = [attachment_name_warning(n) for n in names] + [attachment_collision(names)]
    report.warnings += [_object_problem(NAME_WARNING, digest, who, f"names {why}",
                                        blocks_gc=False) for why in whys if why is not None]


def _list_objects(backend: Backend, report: FsckReport) -> set[str]:
    """The digests of the objects stored; a key that is not an object key is a stray file."""
    stored: set[str] = set()
    for key in backend.list(OBJECTS_PREFIX):
        d = digest_from_object_key(key)
        if d is None:
            report.problems.append(Problem(
                STRAY_FILE, "not an object key roro writes (objects/sha256/<2 hex>/<62 hex>); "
                "move it out of the store", key=key, blocks_gc=False))
        else:
            stored.add(d)
    return stored


def _read_data(store: Store, todo: list[str], refs: Refs, report: FsckReport,
               pool: ThreadPoolExecutor) -> None:
    """Re-hash every object of ``todo`` in the store itself."""
    for d, err in pool.map(lambda d: (d, _verify(store, d)), todo):
        report.verified += 1
        if isinstance(err, IntegrityError):
            who = refs.get(d, [])
            note = "" if who else "; no live version uses it, gc will remove it"
            report.problems.append(_object_problem(
                CORRUPT_OBJECT, d, who, f"is corrupted: its bytes hash to {err.actual}{note}",
                expected=d, actual=err.actual, blocks_gc=False))
        elif err is not None and d in refs:  # vanished since the listing: report it
            report.problems.append(_object_problem(
                MISSING_OBJECT, d, refs[d], "is missing from the store", blocks_gc=False))


def _group_log_keys(keys: Iterable[str], report: FsckReport) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """Group the keys under refs/ by repository; report every key that is not a log event."""
    logs: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for key in keys:
        parts = key[len(REFS_PREFIX):].split("/")
        seq = seq_from_log_key(key)
        valid = len(parts) == 4 and parts[2] == "log" and seq is not None and seq > 0
        if valid:
            try:
                validate_name(parts[0], "project")
                validate_name(parts[1])
            except InvalidNameError:
                valid = False
        if not valid:
            project = parts[0] if len(parts) > 1 else None
            repository = parts[1] if len(parts) > 2 else None
            report.problems.append(Problem(
                STRAY_FILE, "not a ref-log event roro writes (refs/<project>/<repository>/log/"
                "<10 digits>.json); roro ignores nothing here, so move it out of the store",
                project=project, repository=repository, key=key))
            continue
        assert seq is not None
        logs.setdefault((parts[0], parts[1]), []).append((seq, key))
    for items in logs.values():
        items.sort()
    return logs


def _read_policy(store: Store, report: FsckReport) -> Any:
    """The store policy the logs are judged by (None: none); a broken policy log, an entry the
    owner did not sign or that cannot be read is a ``bad-policy`` problem, a stray key under
    ``policy/log/`` a ``stray-file``. A reader's pins that refuse the policy raise
    :class:`~roro.errors.TrustError` (the CLI's exit 6)."""
    found = store.policy()
    if found is not None:
        found.check_heads = False  # fsck judges by the policy it read, whatever events name
        report.policy_head = found.head
        log = found.policy
    elif POLICY_FEATURE in store.features():
        log = read_policy(store.backend)
    else:
        return None
    if log.broken is not None:
        report.problems.append(Problem(
            BAD_POLICY, f"the policy log is broken: {log.broken}; the entries after it are "
            f"ignored", key=POLICY_PREFIX, blocks_gc=False))
    for key in log.stray:
        report.problems.append(Problem(
            STRAY_FILE, "not a policy entry roro writes (policy/log/<10 digits>.json); move it "
            "out of the store", key=key, blocks_gc=False))
    for entry, why in log.rejected:
        report.problems.append(Problem(
            BAD_POLICY, f"policy entry {entry.seq} is skipped: {why}", seq=entry.seq,
            key=policy_key(entry.seq), blocks_gc=False))
    return found


def _check_log(backend: Backend, project: str, name: str, items: list[tuple[int, str]],
               report: FsckReport, pool: ThreadPoolExecutor,
               watch_seq: int, judge: Judge | None = None
               ) -> tuple[RepoState, str | None, LogFacts | None]:
    """Fold one log, reporting every problem and reading on past it. Returns the state, the
    hash of event ``watch_seq`` and what the log says at that event (None if there is no such
    event)."""
    def problem(message: str, **kw: Any) -> None:
        report.problems.append(Problem(BROKEN_LOG, message, project=project, repository=name, **kw))

    unreadable: dict[int, str] = {}

    def fetch(item: tuple[int, str]) -> bytes | None:
        try:
            return backend.get(item[1], MAX_EVENT_SIZE)
        except KeyNotFoundError:
            return None
        except IntegrityError as e:  # too large, or not a regular file: never read whole
            unreadable[item[0]] = str(e)
            return None

    state = RepoState(name, policy=judge)
    seen = None
    at: LogFacts | None = None
    version_events: dict[int, Event] = {}
    for (seq, _), raw in zip(items, pool.map(fetch, items), strict=True):
        if seq > watch_seq and at is None and seen is not None:
            at = freeze(state, version_events)
        report.events += 1
        if seq == watch_seq and raw is not None:
            seen = digest_bytes(raw)
        gap = seq != state.last_seq + 1
        if gap:
            first, last = state.last_seq + 1, seq - 1
            which = f"event {first} is" if first == last else f"events {first} to {last} are"
            problem(f"{which} missing: the log was edited (an entry removed or renamed)",
                    seq=first)
        if raw is None:
            problem(f"the event cannot be read: {unreadable[seq]}" if seq in unreadable
                    else "the event vanished while it was read", seq=seq)
            state.last_seq, state.last_hash = seq, None
            continue
        try:
            event = parse_event(raw, repository=name, seq=seq)
        except IntegrityError as e:
            problem(_reason(str(e)), seq=seq, digest=digest_bytes(raw))
            lenient = _parse_leniently(raw, name, seq)
            if lenient is not None:  # e.g. re-indented by hand: read on with what it says
                state.apply(lenient, checked=False)
            state.last_seq, state.last_hash = seq, digest_bytes(raw)
            continue
        _check_signature(event, project, name, report)
        if not gap and event.prev != state.last_hash:
            before = seq - 1
            problem(f"hash chain broken: event {seq} records {event.prev} as the hash of event "
                    f"{before}, but event {before} hashes to {state.last_hash}: event {before} was "
                    f"changed, or event {seq} was not written after it",
                    seq=seq, version=_version_of(event), digest=event.hash,
                    expected=event.prev, actual=state.last_hash)
        state.last_seq, state.last_hash = seq - 1, event.prev  # judge the event on its own merits
        if event.type == "version":
            version_events[event["version"]] = event
            report.images.add(event["image"])
            if "bundle" in event.payload and event.sig is not None:
                report.bundle_keys[event["bundle"]] = event.sig["pub"]
        why = event_problem(state, event, name)
        rejected = state.rejected_count
        if why is not None and not (judge is not None and (rejected or judge(event))):
            problem(why, seq=seq, version=_version_of(event),
                    digest=event["image"] if event.type == "version" else event.hash)
            state.apply(event, checked=False)
        else:
            state.apply(event)  # the policy may reject it: skipped, and reported below
        if state.rejected_count > rejected:
            report.rejected_events += 1
            r = state.rejected[-1]
            report.problems.append(Problem(
                REJECTED_EVENT, f"event {seq} ({r.describe()}) breaks the store policy and is "
                f"skipped by every reader: {r.reason}", project=project, repository=name, seq=seq,
                version=_version_of(event), digest=event.hash, blocks_gc=False))
    if at is None and seen is not None:
        at = freeze(state, version_events)
    return state, seen, at


def _check_signature(event: Event, project: str, name: str, report: FsckReport) -> None:
    """Verify a signed event's signature (~0.1 ms); a ``bad-signature`` problem if it does not
    verify, or if signatures cannot be checked here (no ``cryptography``)."""
    if event.sig is None:
        return
    try:
        verify_event(event, name)
    except SignatureError as e:
        report.problems.append(Problem(BAD_SIGNATURE, _reason(str(e)), project=project,
                                       repository=name, seq=event.seq,
                                       version=_version_of(event), digest=event.hash,
                                       blocks_gc=False))
        return
    except SigningUnavailableError as e:
        report.problems.append(Problem(BAD_SIGNATURE, f"its signature cannot be checked: {e}",
                                       project=project, repository=name, seq=event.seq,
                                       blocks_gc=False))
        return
    report.signed_events += 1


def _parse_leniently(raw: bytes, name: str, seq: int) -> Event | None:
    """The event ``raw`` would be in canonical form, if that is its only fault."""
    try:
        return parse_event(canonical_json(loads(raw)), repository=name, seq=seq)
    except (ValueError, TypeError, IntegrityError):
        return None


def _reason(message: str) -> str:
    """The why of a parse_event message, without its "ref log of 'x' is broken at event n" frame."""
    message = message.removesuffix("; run 'roro fsck'")
    _, sep, why = message.partition(": ")
    return why if sep else message


def _version_of(event: Event) -> int | None:
    v = event.payload.get("version")
    return v if isinstance(v, int) else None


def _check_against_index(position: tuple[int, str | None] | None, project: str, name: str,
                         state: RepoState, seen: str | None, report: FsckReport) -> bool:
    """A log is append-only, so the event the index saw last must still be there, unchanged. The
    hash chain cannot show by itself that events were cut from the end, or that the whole chain
    was rewritten from some event on; the index remembers what it saw."""
    if position is None or position[0] <= 0:
        return False
    seq, last_hash = position
    if seq > state.last_seq:
        why = (f"the local index saw event {seq}, but the log ends at event {state.last_seq}: "
               f"events were removed from its end")
    elif seen != last_hash:
        why = (f"event {seq} is not the event the local index saw there: the history was "
               f"rewritten")
    else:
        return True
    report.problems.append(Problem(
        INDEX_MISMATCH, f"{why}, or the store was restored from an older copy (if so, run "
        f"'roro index --rebuild')", project=project, repository=name, seq=seq,
        expected=last_hash, actual=seen))
    return False


def _read_manifest(objects: ObjectStore, digest: str, who: list[tuple[str, str, int, str]],
                   report: FsckReport) -> tuple[tuple[dict[str, Any], str] | None, bool]:
    """Read and verify a live version's manifest from the store itself (``objects`` has no
    cache); report what is wrong. Returns the manifest and its text (None if unusable) and
    whether its bytes were hashed."""
    try:
        manifest, data = read_manifest(objects, digest)
        return (manifest, data.decode("utf-8")), True
    except NotFoundError:
        report.problems.append(_object_problem(MISSING_OBJECT, digest, who,
                                               "is missing from the store"))
        return None, False
    except IntegrityError as e:
        if e.actual is not None:
            report.problems.append(_object_problem(
                CORRUPT_OBJECT, digest, who, f"is corrupted: its bytes hash to {e.actual}",
                expected=digest, actual=e.actual))
        else:
            report.problems.append(_object_problem(
                INVALID_MANIFEST, digest, who,
                f"is not a valid image manifest: {_reason(str(e))}"))
        return None, True


def _verify(store: Store, digest: str) -> Exception | None:
    try:
        store.objects.verify(digest)
    except (IntegrityError, LookupError) as e:
        return e
    return None


def _first(who: list[tuple[str, str, int, str]]) -> tuple[str, str, int, str]:
    return min(who)


def _object_problem(kind: str, digest: str, who: list[tuple[str, str, int, str]], what: str,
                    blocks_gc: bool = True, **kw: Any) -> Problem:
    if not who:
        return Problem(kind, f"object {digest} {what}", digest=digest, blocks_gc=blocks_gc, **kw)
    project, name, version, role = _first(who)
    return Problem(kind, f"{role} {digest} of {name}:{version} {what}", project=project,
                   repository=name, version=version, digest=digest, object=role,
                   references=[f"{p}/{n}:{v} ({r})" for p, n, v, r in sorted(who)],
                   blocks_gc=blocks_gc, **kw)




