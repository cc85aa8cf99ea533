"""The write path, in one module (DESIGN.md §3): the order of these steps is the correctness argument.

1. Objects first: the model is streamed into a hashing spool and put under its digest, the
   attachments likewise, then the manifest that names them; present objects are relied on as
   the gc rule allows (:mod:`roro.objects.keep`: young ones as they are, old ones protected by
   a keep marker), never touched or sent again.
2. Decide the event against the state at the log's tail (the index, refreshed), and append it at
   ``last_seq + 1`` with create-if-absent. A taken slot means another writer won: refresh, decide
   again, retry. Publication is this one write.
3. Refresh the index, which applies the new event. A crash before this leaves only the index
   behind, which the next refresh repairs.

A save (:func:`save_model`), a copy of an image from another repository or store
(:func:`copy_image`), a tag move, a deletion and the creation of an empty repository
(:func:`append`, with the caller's decision) all go through here, and so do the named crash points
of :mod:`roro.faults`.
"""

from __future__ import annotations

import json
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from . import bundle as bundles
from .config import find_config, load_config
from .digests import digest_bytes
from .environment import cloudpickle_version, current_author, now_utc, python_version
from .errors import (
    ConfigError,
    ConflictError,
    InvalidMetadataError,
    NotFoundError,
    RoroError,
    RoroWarning,
    TrustError,
)
from .faults import crash_point
from .lineage import collect_lineage
from .metadata import check_total
from .names import validate_new_name
from .objects import SpooledObject
from .objects.canonical import canonical_json
from .objects.chunks import CHUNKED_FEATURE, chunk_params, put_chunked, put_index
from .objects.chunksink import ChunkLostError, ChunkSink
from .objects.keep import MTIME_SLACK, ReuseGuard, reuse_horizon
from .objects.manifest import (
    FORMAT,
    MANIFEST_FEATURE,
    MAX_MANIFEST_SIZE,
    blob_sizes_with_chunks,
    read_manifest_or_damage,
)
from .objects.transfer import ObjectTransfer
from .refs import Event, RefLog, list_repositories
from .refs import checkpoint as checkpoints
from .refs.events import LIFECYCLE_FEATURE, SIGNED_FEATURE
from .signing import SigningKey, load_signing_key
from .storage import KeyNotFoundError
from .storage.layout import CHECKPOINT_FEATURE, GC_KEEP_FEATURE, log_key
from .store import Store

if TYPE_CHECKING:
    from .formats import ModelFormat
    from .policy import StorePolicy

MAX_APPEND_ATTEMPTS = 10_000
SIGNING_KEY_ENV = "RORO_SIGNING_KEY"

#: An index row of a repository (None: it has no log yet), as :func:`append` hands it to a decision.
Row = dict[str, Any] | None
#: What to append: ``(event type, payload)``, or None for nothing to do.
Decision = tuple[str, dict[str, Any]] | None


def configured_key_name() -> str | None:
    """The key that signs this process's writes: ``$RORO_SIGNING_KEY``, else ``signing_key`` in
    the nearest ``roro.yml``; None when neither names one (writes are not signed)."""
    name = os.environ.get(SIGNING_KEY_ENV)
    if name:
        return name
    path = find_config()
    if path is not None:
        value = load_config(path).get("signing_key")
        if value is not None:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{path}: 'signing_key' must be the name of a key "
                                  f"('roro keys:list')")
            return value
    return None


def configured_signer(sign: bool | str | SigningKey = True) -> SigningKey | None:
    """The key a write signs with: ``sign`` False signs nothing, a name or a key signs with it,
    True signs with the configured key (:func:`configured_key_name`) if there is one."""
    if sign is False:
        return None
    if isinstance(sign, SigningKey):
        return sign
    if isinstance(sign, str):
        return load_signing_key(sign)
    name = configured_key_name()
    return load_signing_key(name) if name else None


def policy_check(policy: StorePolicy | None, project: str,
                 repository: str) -> Callable[[Event], None] | None:
    """What refuses an event the store policy forbids, before it is written: a
    :class:`~roro.errors.TrustError` (exit 6) saying why (DESIGN §11)."""
    judge = policy.judge(project, repository) if policy is not None else None
    if judge is None:
        return None

    def check(event: Event) -> None:
        why = judge(event)
        if why is not None:
            raise TrustError(f"the store policy forbids this {event.type} event in "
                             f"{repository!r}: {why} (see 'roro policy:show'; sign with a key "
                             f"the policy allows: $RORO_SIGNING_KEY)", setting="policy",
                             repository=repository)
    return check


def closed_error(repository: str, row: dict[str, Any]) -> ConflictError:
    """Why nothing but a restore may be written to a closed repository (``row``: its index row)."""
    if row["status"] == "renamed":
        return ConflictError(f"model repository {repository!r} was renamed to "
                             f"{row['renamed_to']!r}; use {row['renamed_to']!r}",
                             repository=repository)
    return ConflictError(f"model repository {repository!r} was destroyed (by {row['closed_by']}, "
                         f"{row['closed_time']}); restore it with 'roro models:restore "
                         f"{repository}' first, or use another name", repository=repository)


def append(store: Store, project: str, repository: str,
           decide: Callable[[Row], Decision], *, lifecycle: bool = False,
           before_write: Callable[[], None] | None = None,
           sign: bool | str | SigningKey = True) -> Event | None:
    """Append one event at the tail of ``project/repository``'s log, re-deciding after every
    lost race; returns the event, or None if ``decide`` found nothing to do.

    ``decide(row)`` sees the freshly refreshed state (the index answers questions about it) and
    returns ``(type, payload)`` or None; it raises for a request the current state refuses. A
    closed (destroyed or renamed) repository refuses every event with a ConflictError, unless
    ``lifecycle`` (destroy, restore, rename: their decisions judge that themselves, and they
    first record the store feature ``repository-lifecycle``, DESIGN §14).
    ``before_write()`` runs right before each attempt to write the event (the gc rule's
    deadline: :meth:`~roro.objects.keep.ReuseGuard.before_publish`).
    ``sign``: the event is signed by the configured key (``$RORO_SIGNING_KEY`` or
    ``signing_key`` in roro.yml) when there is one; False never signs, a key name signs with
    that key. A signed event first records the store feature ``signed-events`` (DESIGN §14).
    """
    signer = configured_signer(sign)  # before anything is written: a bad key name fails here
    store.ensure_initialized()
    if lifecycle:
        store.require_feature(LIFECYCLE_FEATURE)
    if signer is not None:
        store.require_feature(SIGNED_FEATURE)
    log = store.reflog(project, repository)
    for attempt in range(MAX_APPEND_ATTEMPTS):
        row = store.refresh(project, repository, check_tail=True)
        policy = store.policy()
        if row is not None and row["status"] is not None and not lifecycle:
            raise closed_error(repository, row)
        decision = decide(row)
        if decision is None:
            return None
        type_, payload = decision
        if row is None:
            check_new_names(store, project, repository)
        seq = row["last_seq"] + 1 if row else 1
        if before_write is not None:
            before_write()
        event = log.append(seq, row["last_hash"] if row else None, type_, current_author(),
                           now_utc(), signer=signer,
                           policy=policy.head if policy is not None else None,
                           check=policy_check(policy, project, repository), **payload)
        if event is not None:
            store.remember_event(project, repository, event)
            crash_point("after-ref-event")
            after_commit(partial(store.refresh, project, repository, appended=event),
                         committed(project, repository, event))
            if event.seq >= checkpoints.AUTO_FROM and event.seq % checkpoints.PERIODS[0] == 0:
                auto_checkpoint(store, project, repository, event)
            return event
        time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 25)))
    raise ConflictError(f"gave up writing to {repository!r} after {MAX_APPEND_ATTEMPTS} lost "
                        f"races with other writers; try again", repository=repository)


def checkpoint(store: Store, project: str, repository: str, *,
               known: Event | list[Event] | None = None,
               auto: bool = False) -> checkpoints.Written:
    """Make the checkpoint of ``project/repository`` at its log's end (as the refreshed index
    sees it; ``known``: events this process just wrote, the last at that end), unless one
    exists: the
    objects its chain lacks, then its pointer (DESIGN §10; :mod:`roro.refs.checkpoint`).
    Records the format feature ``checkpoints`` before the first write. ``auto`` (a writer's
    checkpoint): read at most :data:`~roro.refs.checkpoint.AUTO_MAX_LOG_READS` events."""
    events = [known] if isinstance(known, Event) else known or []
    head = events[-1].seq if events else None
    if head is None:
        row = store.refresh(project, repository)
        head = row["last_seq"] if row else 0
    objects, index = store.objects, store.index

    def manifest(digest: str, version: int) -> bytes | None:
        data = store.recent_manifests.get(digest)
        if data is None:
            text = index.manifest_text(project, repository, version)
            data = text.encode("utf-8") if text is not None else None
        if data is None or digest_bytes(data) != digest:
            found = read_manifest_or_damage(objects, digest)
            data = None if isinstance(found, str) else found[1]
        return data

    reliance = _ChainReliance(store, project, repository)
    recent = {seq: raw for (p, r, seq), raw in store.recent_events.items()
              if (p, r) == (project, repository) and head - checkpoints.PERIODS[0] < seq <= head}
    return checkpoints.build(
        store.reflog(project, repository), objects, head, manifest=manifest,
        known={**recent, **{e.seq: e.raw for e in events}}, cached=store.recent_checkpoints,
        max_log_reads=checkpoints.AUTO_MAX_LOG_READS if auto else None,
        before_first_write=lambda: store.require_feature(CHECKPOINT_FEATURE),
        rely=reliance.rely, before_pointer=reliance.before_pointer, crash=crash_point)


class _ChainReliance:
    """The gc rule (docs/trust.md) for a checkpoint that reuses the objects of the newest
    chain: gc keeps the chain of every pointer younger than its grace period, so building on
    a pointer younger than the reuse horizon H needs nothing written, if the new pointer is
    written within H / 2 (else, and for an older pointer, the reused objects are protected as
    a save protects old objects: one keep marker, a look at the gc lock)."""

    def __init__(self, store: Store, project: str, repository: str):
        self.store, self.project, self.repository = store, project, repository
        self.started = time.time()  # before the pointers were listed
        self.reused: checkpoints.Pointer | None = None
        self.guard: ReuseGuard | None = None

    def rely(self, newest: checkpoints.Pointer, reused: checkpoints.Pointer) -> None:
        self.reused = reused
        young = newest.mtime is not None and \
            self.started - newest.mtime < reuse_horizon() - MTIME_SLACK
        if not young:
            self._protect()

    def _protect(self) -> None:
        assert self.reused is not None
        objects = self.store.objects
        guard = self.guard = reuse_guard(self.store)
        digests = checkpoints.chain_digests(objects, self.reused, self.project, self.repository)

        def gone(digest: str) -> Callable[[], None]:
            def fail() -> None:
                raise checkpoints.CheckpointError(f"gc collected checkpoint object {digest} "
                                                  f"while a checkpoint was built on it",
                                                  digest=digest)
            return fail

        for digest in digests:
            info = objects.info(digest)
            guard.rely_on(digest, info.size if info else -1, info, gone(digest))
        guard.protect()

    def before_pointer(self) -> None:
        if self.reused is None:
            return
        if self.guard is None and time.time() - self.started > reuse_horizon() / 2:
            self._protect()  # too slow for the horizon: protect after all
        if self.guard is not None:
            self.guard.before_publish()


def auto_checkpoint(store: Store, project: str, repository: str, event: Event) -> None:
    """A writer's checkpoint after its event crossed a period: best effort, never failing the
    committed write (a later writer, or ``roro checkpoint``, makes it instead)."""
    try:
        checkpoint(store, project, repository, known=event, auto=True)
    except Exception:  # noqa: BLE001 - derived data: even a bug here must not fail the save
        pass


def check_new_names(store: Store, project: str, repository: str) -> None:
    """Before the first event of a repository: its name, and its project's if the project has no
    repository yet, must pass the rules for new names (no Windows device name...). Names that
    exist already stay usable."""
    validate_new_name(repository)
    if not list_repositories(store.backend, project):
        validate_new_name(project, "project")


def after_commit(update_index: Callable[[], object], what: str) -> None:
    """Bring the index up to date after an event was written. The event is committed: the
    write has happened, whatever happens to the index now, so a failure here (a full disk, a
    locked or damaged index file) is a :class:`~roro.errors.RoroWarning`, never an error (an
    error would invite a retry that duplicates the version). The next refresh repairs the index."""
    try:
        crash_point("before-index-update")
        update_index()
    except Exception as e:  # noqa: BLE001 - the event is committed; only derived data failed
        warnings.warn(f"{what}, but the local index could not be updated ({e}); the next "
                      f"command that reads it brings the index up to date", RoroWarning,
                      stacklevel=4)


def committed(project: str, repository: str, event: Event) -> str:
    """What a committed event did, for a warning: "version 3 of p/m was saved"."""
    name = f"{project}/{repository}"
    if event.type == "version":
        return f"version {event['version']} of {name} was saved"
    if event.type == "tag":
        return (f"tag {event['tag']!r} of {name} was moved to version {event['version']}"
                if event["version"] is not None else f"tag {event['tag']!r} of {name} was removed")
    if event.type == "delete":
        return f"version {event['version']} of {name} was deleted"
    return f"{event.type} event {event.seq} of {name} was written"


class Published(NamedTuple):
    """A manifest published as a version: ``created`` is False when nothing was appended (the
    latest version already was this very manifest; see :func:`publish`)."""

    manifest: dict[str, Any]
    digest: str
    version: int
    created: bool
    sig: dict[str, str] | None = None  # the signature of the event appended, if signed
    bytes_sent: int = 0  # bytes of objects sent to the store (ReuseGuard.sent)
    bytes_stored: int = 0  # bytes of objects the store did not hold before (ReuseGuard.stored)


def reuse_guard(store: Store) -> ReuseGuard:
    """A :class:`~roro.objects.keep.ReuseGuard` for one write to ``store`` (it records the
    ``gc-keep`` format feature before its first keep marker)."""
    return ReuseGuard(store.objects, lambda: store.require_feature(GC_KEEP_FEATURE), store.url)


def publish(store: Store, project: str, repository: str, manifest: dict[str, Any], *,
            unless_latest: bool = False, guard: ReuseGuard | None = None,
            sign: bool | str | SigningKey = True) -> Published:
    """Put ``manifest`` (whose blobs must already be in the store, fed to ``guard``) and append
    a ``version`` event naming it: the last steps of a save or a copy.

    With ``unless_latest``, nothing is appended when the latest version already is this very
    manifest (so re-running a copy does not stack identical versions). ``sign``: see
    :func:`append`; a p256 key also stores the version's OpenSSF Model Signing bundle, which the
    event names (:mod:`roro.bundle`).
    """
    store.ensure_initialized()
    guard = guard or reuse_guard(store)
    data = canonical_json(manifest)
    if len(data) > MAX_MANIFEST_SIZE:
        raise InvalidMetadataError(
            f"the manifest would be {len(data)} bytes, more than the {MAX_MANIFEST_SIZE} a "
            f"manifest may hold ({len(manifest['attachments'])} attachments); put many small "
            f"files into one archive and attach that")
    signer = configured_signer(sign)
    index = store.index
    existing: list[int] = []

    def latest_is(digest: str) -> bool:
        latest = index.latest_version(project, repository)
        latest_row = index.version(project, repository, latest) if latest else None
        if latest_row is not None and latest_row["image"] == digest:
            existing.append(latest_row["version"])
            return True
        return False

    # a copy that will append nothing (its latest version is this manifest already) makes no
    # bundle; the decision below is the one that counts
    again = unless_latest and store.refresh(project, repository) is not None \
        and latest_is(digest_bytes(data))
    bundle = None if again else _put_bundle(store, repository, manifest, signer, guard)
    digest = guard.put_bytes(data)
    store.remember_manifest(digest, data)
    crash_point("after-manifest")
    guard.protect()

    def decide(row: Row) -> Decision:
        if unless_latest and row is not None and latest_is(digest):
            return None
        payload = {"version": (row["max_version"] if row else 0) + 1, "image": digest,
                   "comment": manifest["comment"]}
        return "version", ({**payload, "bundle": bundle} if bundle else payload)

    event = append(store, project, repository, decide, before_write=guard.before_publish,
                   sign=signer or False)
    if event is None:
        return Published(json.loads(data), digest, existing[-1], False, None, guard.sent,
                         guard.stored)
    return Published(json.loads(data), digest, event["version"], True, event.sig, guard.sent,
                     guard.stored)


def _put_bundle(store: Store, repository: str, manifest: dict[str, Any],
                signer: SigningKey | None, guard: ReuseGuard) -> str | None:
    """With a p256 ``signer``, store the version's OpenSSF Model Signing bundle (recording the
    store feature ``model-bundles`` first; :mod:`roro.bundle`); its digest, or None (no p256
    key; or an attachment takes a name the bundle needs: a warning says so)."""
    if signer is None or signer.type != "p256":
        return None
    files = bundles.bundle_files(manifest)
    if isinstance(files, str):
        warnings.warn(f"the new version of {repository!r} gets no OpenSSF Model Signing bundle: "
                      f"{files} (its event is signed as usual)", RoroWarning, stacklevel=4)
        return None
    store.require_feature(bundles.BUNDLE_FEATURE)
    return guard.put_bytes(bundles.make_bundle(files, signer, repository))


def save_model(store: Store, project: str, repository: str, model: Any,
               metadata: dict[str, Any], attachments: Sequence[tuple[str, SpooledObject]],
               comment: str, format: str = "cloudpickle",
               input_schema: dict[str, Any] | None = None,
               sign: bool | str | SigningKey = True) -> Published:
    """Save ``model`` in ``format`` (a name from :mod:`roro.formats`, or ``auto``; cut into
    chunks while it is pickled) with ``metadata`` and already spooled ``attachments`` (``(name,
    spool)``, sorted by name) as the next version; ``input_schema`` goes into the contract.
    Signed as :func:`append` says. A chunk lost to a concurrent gc before the version was
    published (:class:`ChunkLostError`: its bytes were not kept) costs one more pass: the model
    is still in memory, so it is pickled again and the chunk written anew."""
    args = (store, project, repository, model, metadata, attachments, comment, format,
            input_schema, sign)
    try:
        return _save_model_once(*args)
    except ChunkLostError:
        return _save_model_once(*args)  # a second loss is the caller's error


def _save_model_once(store: Store, project: str, repository: str, model: Any,
                     metadata: dict[str, Any], attachments: Sequence[tuple[str, SpooledObject]],
                     comment: str, format: str, input_schema: dict[str, Any] | None,
                     sign: bool | str | SigningKey) -> Published:
    """One attempt of :func:`save_model`."""
    from .formats import choose  # the format table: only by a save (`import roro` stays cheap)
    from .formats.contract import collect_libraries  # likewise: only by a save
    check_total(metadata)
    configured_signer(sign)  # a key that cannot sign fails before anything is written
    fmt = choose(model, format)
    store.ensure_initialized()
    guard = reuse_guard(store)
    # Cut while pickling: chunks are hashed and stored while the pickler runs (objects/chunksink).
    sink = ChunkSink(guard, chunk_params(), spool=fmt.summary_from_file,
                     spool_dir=store.objects.spool_dir(),
                     on_chunked=lambda: store.require_feature(CHUNKED_FEATURE))
    small: SpooledObject | None = None
    try:
        fmt.dump(model, sink)
        sink.finish()
        if not sink.chunked:  # below the threshold: one object, spooled and put as before
            small = store.objects.spool_writer(lambda w: w.write(sink.small()))
    except BaseException:
        sink.abort()  # no thread left; chunks already stored are orphans gc removes
        raise
    try:
        model_entry: dict[str, Any] = {"type": fmt.model_type(model)}
        if fmt.pickled:
            model_entry.update(python=python_version(), cloudpickle=cloudpickle_version())
        contract: dict[str, Any] = {"libraries": collect_libraries(model, fmt.libraries,
                                                                    fmt.pickled)}
        if input_schema is not None:
            contract["input"] = input_schema
        blob = Blob.of_sink(sink) if small is None else Blob.of_spool(small)
        return _publish_model(store, project, repository, fmt, blob, model_entry,
                              metadata, attachments, comment, contract,
                              collect_lineage(model, exclude=store.local_paths()), guard, sign)
    finally:  # the spools live until the version is published: the gc rule may write again
        sink.discard()
        if small is not None:
            small.discard()


def save_file(store: Store, project: str, repository: str, path: str, format: str,
              metadata: dict[str, Any], attachments: Sequence[tuple[str, SpooledObject]],
              comment: str, sign: bool | str | SigningKey = True) -> Published:
    """Save the existing model file ``path`` as it is, without loading it (``roro models:save``).

    The stored copy is checked to be in ``format`` (a safetensors header that adds up, an ONNX
    protobuf that parses, a skops archive, a pickle stream that scans — never unpickled; any
    file for ``file``), else :class:`~roro.formats.FormatError`.
    """
    from .formats import get_format  # the format table: only by a save
    check_total(metadata)
    configured_signer(sign)
    fmt = get_format(format)
    store.ensure_initialized()
    guard = reuse_guard(store)
    try:
        with open(path, "rb") as f:
            spooled = store.objects.spool_stream(f)
    except OSError as e:
        raise RoroError(f"cannot read {path!r}: {e.strerror}") from None
    try:
        fmt.check_file(spooled.path)
        return _publish_model(store, project, repository, fmt, Blob.of_spool(spooled), {},
                              metadata,
                              attachments, comment, None,
                              collect_lineage(None, exclude=store.local_paths()), guard, sign)
    finally:  # the spools live until the version is published: the gc rule may write again
        spooled.discard()


@dataclass
class Blob:
    """The model's bytes, ready to store: their ``digest`` and ``size``, the file a format's
    summary is read from (None: no spool was kept), and how to store them into an entry."""

    digest: str
    size: int
    path: str | None
    put: Callable[[Store, ReuseGuard, dict[str, Any]], None]

    @classmethod
    def of_spool(cls, spooled: SpooledObject) -> Blob:
        return cls(spooled.digest, spooled.size, spooled.path,
                   lambda store, guard, entry: store_blob(store, guard, spooled, entry))

    @classmethod
    def of_sink(cls, sink: ChunkSink) -> Blob:
        """A chunked blob whose chunks the sink stored: what is left is its chunk index."""
        def put(store: Store, guard: ReuseGuard, entry: dict[str, Any]) -> None:
            entry["chunks"] = put_index(guard, sink.index())
        return cls(sink.digest, sink.size, sink.spool_path, put)


def _publish_model(store: Store, project: str, repository: str, fmt: ModelFormat,
                   blob: Blob, model_entry: dict[str, Any],
                   metadata: dict[str, Any], attachments: Sequence[tuple[str, SpooledObject]],
                   comment: str, contract: dict[str, Any] | None,
                   lineage: dict[str, Any], guard: ReuseGuard,
                   sign: bool | str | SigningKey) -> Published:
    """Store the model, its summary object and the attachments through ``guard`` (the
    gc rule covers each of them), then publish a version 2 manifest (the store records the
    ``manifest-v2`` feature before anything is written)."""
    summary = fmt.summarize(blob.path) if blob.path is not None else None
    store.require_feature(MANIFEST_FEATURE)
    entry: dict[str, Any] = {"format": fmt.name, "digest": blob.digest, "size": blob.size,
                             **model_entry}
    blob.put(store, guard, entry)
    if summary is not None:
        data = canonical_json(summary)
        entry["summary"] = {"digest": guard.put_bytes(data), "size": len(data)}
    entries = []
    for name, attachment in attachments:
        entries.append({"name": name, "digest": attachment.digest, "size": attachment.size})
        store_blob(store, guard, attachment, entries[-1])
    crash_point("after-blobs")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "model": entry,
        "attachments": entries,
        "metadata": metadata,
        "timestamp": now_utc(),
        "author": current_author(),
        "comment": comment,
        "lineage": lineage,
    }
    if contract is not None:
        manifest["contract"] = contract
    return publish(store, project, repository, manifest, guard=guard, sign=sign)


def store_blob(store: Store, guard: ReuseGuard, spooled: SpooledObject,
               entry: dict[str, Any]) -> None:
    """Store a spooled blob through ``guard``: one object, or (at the chunking threshold and
    above) its chunks and chunk index, named in ``entry["chunks"]`` (the store records the
    ``chunked-blobs`` feature first)."""
    params = chunk_params()
    if spooled.size >= params.threshold:
        store.require_feature(CHUNKED_FEATURE)
        entry["chunks"] = put_chunked(guard, spooled.path, params)
    else:
        guard.put_spooled(spooled)


class CopyStats:
    """The blobs a copy moved (model and attachments; the new manifest is written in addition)."""

    def __init__(self, objects_skipped: int = 0, bytes_skipped: int = 0) -> None:
        self.objects_transferred = 0
        self.bytes_transferred = 0
        self.objects_skipped = objects_skipped
        self.bytes_skipped = bytes_skipped


def copy_image(src: Store, manifest: dict[str, Any], origin: dict[str, Any], dst: Store,
               project: str, repository: str,
               pool: ThreadPoolExecutor) -> tuple[Published, CopyStats]:
    """Append the image ``manifest`` of store ``src`` to ``project/repository`` in ``dst``.

    The blobs it names are copied first (only those ``dst`` lacks, verified); then a new
    manifest, equal to it plus ``lineage.copied_from = origin`` (``{store, project,
    repository, version, image}``, and ``previous``: the source's own ``copied_from``), is
    published, unless the latest version already is that very copy.
    """
    transfer = ObjectTransfer(src.objects, dst.objects, pool)
    copied = {**manifest, "lineage": copied_lineage(manifest, origin)}
    sizes = blob_sizes_with_chunks(src.objects, manifest)
    # the sources' OpenSSF bundles come along: their signatures stay verifiable in DST
    sizes.update({d: len(src.objects.read(d, bundles.MAX_BUNDLE_SIZE))
                  for d in bundles.source_bundles(copied)})
    dst.require_features(src.features())  # DESIGN §14: before what may need them
    guard = reuse_guard(dst)
    guard.start()  # before anything is looked at or copied: the gc rule's deadline counts from here
    missing, found, known = transfer.classify(sizes)
    def again(digest: str) -> Callable[[], None]:
        return lambda: None if transfer.copy(digest) else None

    for d, info in {**found, **known}.items():
        guard.rely_on(d, sizes[d], info, again(d))
    stats = CopyStats(objects_skipped=len(found) + len(known),
                      bytes_skipped=sum(sizes[d] for d in [*found, *known]))

    def done(size: int) -> None:
        stats.objects_transferred += 1
        stats.bytes_transferred += size

    transfer.copy_all(missing, done)
    for d in missing:
        guard.written(d, sizes[d], again(d))
    return publish(dst, project, repository, copied, unless_latest=True, guard=guard), stats


def copied_lineage(manifest: dict[str, Any], origin: dict[str, Any]) -> dict[str, Any]:
    """The lineage of a copy of ``manifest``: its own, with ``copied_from`` set to ``origin``
    (which keeps the source's ``copied_from`` as ``previous``)."""
    old = manifest.get("lineage")
    lineage = dict(old) if isinstance(old, dict) else ({} if old is None else {"lineage": old})
    entry = dict(origin)
    if "copied_from" in lineage:
        entry["previous"] = lineage["copied_from"]
    lineage["copied_from"] = entry
    return lineage


def rename_repository(store: Store, project: str, old: str, new: str) -> tuple[Event, bool]:
    """Rename ``old`` to ``new``, keeping its history and tags (docs/architecture.md,
    "Repository lifecycle"); returns the ``rename`` event and whether this call completed the
    rename (False: it was complete already).

    1. ``new``'s log is made a byte copy of ``old``'s (create-if-absent, event by event; a log
       that is already a prefix of ``old``'s, from an interrupted rename, is continued; any other
       log of ``new`` is a ConflictError and nothing is written to ``old``).
    2. The commit point: a ``rename`` event appended to ``old`` (decided at its tail, after
       copying what was appended meanwhile), which closes it.
    3. The same event, byte for byte, appended to ``new`` at the same sequence number: ``new``'s
       history now goes on from there. If another writer took that slot, ``old`` is reopened
       with a ``restore`` and the rename fails with a ConflictError.

    A crash between the steps leaves either a copy of ``old`` under ``new`` (step 1) or a closed
    ``old`` whose copy lacks the last event (step 2); running the rename again completes it.
    """
    store.ensure_initialized()
    store.require_feature(LIFECYCLE_FEATURE)
    src, dst = store.reflog(project, old), store.reflog(project, new)
    row = store.refresh(project, old)
    if row is None:
        raise NotFoundError(f"model repository {old!r} does not exist", repository=old)
    resuming = row["status"] == "renamed" and row["renamed_to"] == new
    if row["status"] is not None and not resuming:
        raise closed_error(old, row)
    copied = _copy_log(src, dst, 0, new, upto=row["closed_seq"] - 1 if resuming else None)

    def decide(row: Row) -> Decision:
        nonlocal copied
        if row is None:
            raise ConflictError(f"model repository {old!r} does not exist", repository=old)
        if row["status"] == "renamed" and row["renamed_to"] == new:
            return None  # committed by an earlier run: complete it below
        if row["status"] is not None:
            raise closed_error(old, row)
        copied = _copy_log(src, dst, copied, new)  # what was appended meanwhile
        return "rename", {"from": old, "to": new}

    event = append(store, project, old, decide, lifecycle=True)
    row = store.refresh(project, old)
    assert row is not None and row["closed_seq"] is not None
    if event is None:
        [event] = src.read_after(row["closed_seq"] - 1)[:1]
    _copy_log(src, dst, copied, new, upto=event.seq - 1)
    key = log_key(project, new, event.seq)
    if not store.backend.put_if_absent(key, event.raw):
        if store.backend.get(key) != event.raw:
            restore = append(store, project, old, lambda r: ("restore", {}), lifecycle=True)
            raise ConflictError(f"another writer appended to {new!r} while {old!r} was renamed "
                                f"to it; {old!r} was reopened (event {restore and restore.seq}) "
                                f"and {new!r} holds a copy of its history: remove it with "
                                f"'roro models:destroy {new}' and rename again",
                                repository=new)
        store.refresh(project, new)
        return event, False
    crash_point("after-rename")
    store.refresh(project, new)
    return event, True


def _copy_log(src: RefLog, dst: RefLog, done: int, new: str, upto: int | None = None) -> int:
    """Copy events ``done+1 ..`` (up to ``upto``) of log ``src`` into log ``dst`` byte for byte;
    returns the last sequence number ``dst`` holds. Slots ``dst`` already has must hold the same
    bytes (an interrupted rename), else ``new`` is another repository: ConflictError. The last
    event read is confirmed as stored (the chain vouches for the others): a misread copy of it
    would break ``new``'s log once the rename event is chained to the real one."""
    events = [e for e in src.read_after(done, confirm=True) if upto is None or e.seq <= upto]
    for event in events:
        key = log_key(dst.project, dst.repository, event.seq)
        if not dst.backend.put_if_absent(key, event.raw) and dst.backend.get(key) != event.raw:
            raise ConflictError(f"model repository {new!r} already exists; choose another name "
                                f"(or destroy it first)", repository=new)
        done = event.seq
    return done


def holds_event(store: Store, project: str, repository: str, seq: int, digest: str) -> bool:
    """True if ``repository``'s log holds, at ``seq``, the event whose bytes hash to ``digest``:
    the completed other half of a rename (see :func:`rename_repository`)."""
    try:
        raw = store.backend.get(log_key(project, repository, seq))
    except KeyNotFoundError:
        return False
    return digest_bytes(raw) == digest
