"""ModelRepository: a named, ordered history of model images. Reads go to the index; every write
(save, tag, delete, copy, create) goes through :mod:`roro.writer` with a decision made here."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from . import writer
from .errors import (
    AmbiguousRefError,
    ConflictError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    RoroWarning,
    TrustError,
)
from .image import ImageList, ModelImage, verified_signature
from .names import LATEST, validate_name, validate_new_name, validate_tag, validate_version
from .notebook import repository_html
from .objects.manifest import chunk_blobs, named_blobs, read_manifest, read_manifest_or_damage
from .query import Query
from .query import parse as parse_query
from .refs import Event
from .refs.events import check_signature
from .refspec import Ref, parse_ref, validate_new_tag
from .store import Store
from .suggest import did_you_mean


def rejected_text(row: dict[str, Any]) -> str:
    """What a rejected event (an index row) tried, in words."""
    from .refs.state import Rejected  # only when a log has rejected events
    return Rejected(row["seq"], row["type"], row["reason"], row.get("author") or "?",
                    row.get("time") or "", row.get("version"), row.get("tag"),
                    row.get("signer"), row.get("signer_key")).describe()

if TYPE_CHECKING:
    from .objects.keep import ReuseGuard
    from .project import Project

DEFAULT_WORKERS = 8


class TagChange(NamedTuple):
    """What :meth:`ModelRepository.add_tag` or :meth:`~ModelRepository.remove_tag` did: ``tag``
    now points at ``version`` (None: removed), having pointed at ``previous``. ``seq`` is the
    ``tag`` event appended, or None when nothing was (the tag already pointed there)."""

    tag: str
    version: int | None
    previous: int | None
    seq: int | None

    @property
    def changed(self) -> bool:
        return self.seq is not None


def check_limit(limit: object) -> int | None:
    """``limit`` if it is None or an integer >= 0, else ValueError."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgumentError(f"limit must be None or an integer >= 0, not {limit!r}")
    return limit


class ModelRepository:
    """A model repository of a project. A handle for a name with no history yet is fine: reading
    raises :class:`~roro.errors.NotFoundError`, and the first ``save()`` creates it."""

    def __init__(self, project: Project, name: str):
        self.project = project
        self.name = validate_name(name)

    def __repr__(self) -> str:
        return f"<ModelRepository {self.project.name}/{self.name}>"

    def _repr_html_(self) -> str:
        """Versions, latest, tags and the ten newest versions as a table in a notebook."""
        return repository_html(self)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ModelRepository) and other.name == self.name
                and other.project.name == self.project.name
                and other.project.store.url == self.project.store.url)

    def __hash__(self) -> int:
        return hash((self.project.name, self.name))

    # -- state -----------------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.project.store

    def _refresh(self) -> dict[str, Any] | None:
        return self.store.refresh(self.project.name, self.name)

    def _require(self) -> dict[str, Any]:
        row = self._refresh()
        if row is None:
            raise NotFoundError(f"model repository {self.name!r} does not exist in project "
                                f"{self.project.name!r}"
                                f"{did_you_mean(self.name, self.project.repository_names())}"
                                f" (saving an image creates it)", repository=self.name)
        if row["status"] == "renamed":
            error = NotFoundError(f"model repository {self.name!r} was renamed to "
                                  f"{row['renamed_to']!r}; use {row['renamed_to']!r}",
                                  repository=self.name)
            error.renamed_to = row["renamed_to"]  # type: ignore[attr-defined]
            raise error
        if row["status"] == "destroyed":
            raise NotFoundError(f"model repository {self.name!r} was destroyed (by "
                                f"{row['closed_by']}, {row['closed_time']}); restore it with "
                                f"'roro models:restore {self.name}'", repository=self.name)
        return row

    def checkpoint(self) -> dict[str, Any]:
        """Make the checkpoint of this repository at its log's end unless one exists (writers
        make them every 4 events from event 64 on; see docs/architecture.md, "Checkpoints"):
        what was done, as ``seq``, ``checkpoint`` (its digest), ``key`` (its pointer),
        ``created``, ``objects_written`` and ``size`` (bytes written)."""
        self._require()
        return writer.checkpoint(self.store, self.project.name, self.name).to_dict()

    def exists(self) -> bool:
        """True if the repository has a log and is live (not destroyed, not renamed away)."""
        row = self._refresh()
        return row is not None and row["status"] is None

    @property
    def status(self) -> str | None:
        """None for a live repository (or one with no log), ``"destroyed"`` or ``"renamed"``."""
        row = self._refresh()
        return row["status"] if row is not None else None

    @property
    def renamed_to(self) -> str | None:
        """The name this repository was renamed to (None if it was not)."""
        row = self._refresh()
        return row["renamed_to"] if row is not None else None

    # -- lifecycle -------------------------------------------------------------------------------
    def destroy(self) -> Event:
        """Retire the whole repository: a ``destroy`` event. It disappears from listings, reads
        raise NotFoundError and writes ConflictError, until :meth:`restore`; ``gc`` may collect
        its objects once the destroy is older than its grace period, after which it cannot be
        restored. Returns the event."""
        def decide(row: writer.Row) -> writer.Decision:
            if row is None:
                self._require()  # raises NotFoundError with did-you-mean
            assert row is not None
            if row["status"] is not None:
                raise writer.closed_error(self.name, row)
            return "destroy", {}

        event = writer.append(self.store, self.project.name, self.name, decide, lifecycle=True)
        assert event is not None
        return event

    def restore(self) -> Event:
        """Bring back a destroyed repository as it was (versions, tags, history), or one whose
        rename did not complete. Every object of its versions must still be in the store (gc
        collects them once the destroy is older than the grace period): the restore relies on
        them as a save relies on objects it finds stored (a keep marker protects the old ones
        from a gc running meanwhile; docs/trust.md, "gc and reuse"). Returns the ``restore``
        event."""
        guard = writer.reuse_guard(self.store)

        def decide(row: writer.Row) -> writer.Decision:
            if row is None:
                self._require()
            assert row is not None
            if row["status"] is None:
                raise ConflictError(f"model repository {self.name!r} is not destroyed; there "
                                    f"is nothing to restore", repository=self.name)
            if row["status"] == "renamed":
                target = self.project.get_model_repository(row["renamed_to"])
                if writer.holds_event(self.store, self.project.name, target.name,
                                      row["closed_seq"], row["last_hash"]):
                    raise ConflictError(f"model repository {self.name!r} was renamed to "
                                        f"{target.name!r}, which holds its history; use "
                                        f"{target.name!r}", repository=self.name)
            self._rely_on_objects(guard)
            return "restore", {}

        event = writer.append(self.store, self.project.name, self.name, decide, lifecycle=True,
                              before_write=guard.before_publish)
        assert event is not None
        return event

    def _rely_on_objects(self, guard: ReuseGuard) -> None:
        """Check that every object of the hidden versions is still stored, and rely on it
        through ``guard`` (protected from gc until the restore event is written)."""
        objects = self.store.objects

        def gone(what: str, version: int, digest: str) -> Callable[[], None]:
            def fail() -> None:
                raise NotFoundError(f"cannot restore {self.name!r}: gc already collected "
                                    f"{what} of its version {version}", repository=self.name,
                                    digest=digest)
            return fail

        for row in self.store.index.closed_versions(self.project.name, self.name):
            v, image = row["version"], row["image"]
            try:
                manifest, text = read_manifest(objects, image)
            except NotFoundError:
                gone(f"the objects (manifest {image})", v, image)()
            guard.rely_on(image, len(text), objects.info(image),
                          gone(f"manifest {image}", v, image))
            try:
                chunks = chunk_blobs(objects, manifest)
            except NotFoundError:
                chunks = []  # its chunk index is among the named blobs: gone() says so
            # the model (or its chunk index), its summary, attachments, the model's chunks
            for digest, size, _ in [*named_blobs(manifest), *chunks]:
                guard.rely_on(digest, size, objects.info(digest),
                              gone(f"object {digest}", v, digest))
        guard.protect()

    def rename(self, new_name: str) -> ModelRepository:
        """Rename this repository to ``new_name``, keeping every version, tag and the whole
        history (docs/architecture.md, "Repository lifecycle"). The old name then redirects
        reads by reference (``roro.load("old:3")``, the CLI) to the new one and refuses writes.
        ConflictError if ``new_name`` exists. Returns the repository under its new name."""
        new = validate_name(new_name)
        if new == self.name:
            raise InvalidArgumentError(f"{self.name!r} is already called so")
        if self._refresh() is None:
            self._require()  # raises NotFoundError (a closed one is judged by the writer)
        writer.rename_repository(self.store, self.project.name, self.name, new)
        return self.project.get_model_repository(new)

    # -- images ----------------------------------------------------------------------------------
    def new_model_image(self, model: Any, format: str = "cloudpickle",
                        input_example: Any = None) -> ModelImage:
        """A new, unsaved image of ``model``: add metadata and attachments, then ``save()``.

        ``format`` is how the model is stored: ``cloudpickle`` (any object, the default),
        ``safetensors`` (a dict of numpy arrays), ``onnx`` (an ``onnx.ModelProto``), ``skops``
        (a scikit-learn estimator), ``file`` (bytes, a path or a binary file, stored as they
        are), or ``auto`` (a safe format when the object allows it, else cloudpickle).
        ``input_example`` (a numpy array or pandas DataFrame) records the input schema in the
        model's contract (see :meth:`ModelImage.check_input`).
        """
        return ModelImage(self, model, format=format, input_example=input_example)

    new_image = new_model_image

    def save_file(self, path: str | os.PathLike[str], format: str = "file",
                  metadata: dict[str, Any] | None = None,
                  attachments: dict[str, Any] | None = None, comment: str = "") -> ModelImage:
        """Save an existing model file as the next version, as it is, without loading it (what
        ``roro models:save`` does). The file must check out as ``format`` (``file`` takes any
        file); ``attachments`` maps names to what :meth:`ModelImage.attach` takes."""
        image = ModelImage(self, None, format=format)
        if metadata:
            image.set_metadata(metadata)
        for name, source in (attachments or {}).items():
            image.attach(name, source)
        return image.save_file(path, comment)

    def resolve(self, version: int | str | Ref | None = None, tag: str | None = None) -> int:
        """The version number that ``version`` or ``tag`` (neither: latest) names.

        ``version`` may be any reference of the one grammar (:mod:`roro.refspec`): ``3``,
        ``"3"``, ``"v3"``, ``"prod"`` (a tag), ``"latest"``, ``"sha256:3f7bc85"`` (an image digest
        prefix of at least 7 hex digits). ``tag`` names a tag and nothing else."""
        return self.resolve_ref(self._ref(version, tag))

    def _ref(self, version: int | str | Ref | None, tag: str | None) -> Ref:
        if version is not None and tag is not None:
            raise InvalidArgumentError(f"give a version or a tag, not both (version={version!r}, "
                                       f"tag={tag!r})")
        if isinstance(version, Ref):
            return version
        if tag is not None:
            if tag == LATEST:
                return Ref(self.name, text=tag)
            return Ref(self.name, tag=validate_tag(tag), text=tag)
        if version is None:
            return Ref(self.name, text=LATEST)
        return parse_ref(version, name=self.name)

    def resolve_ref(self, ref: Ref) -> int:
        """The live version number a parsed reference names (see :meth:`resolve`)."""
        self._require()
        index = self.store.index
        p, n = self.project.name, self.name
        if ref.digest is not None:
            return self._resolve_digest(ref.digest)
        if ref.tag is not None:
            tags = index.tags(p, n)
            target = tags.get(ref.tag)
            if target is None:
                known = ", ".join(sorted(tags)) if tags else "none"
                raise NotFoundError(f"model repository {n!r} has no tag {ref.tag!r}"
                                    f"{did_you_mean(ref.tag, tags)} (its tags: {known})",
                                    repository=n, tag=ref.tag)
            self._confirm_tag(ref.tag, target)
            return target
        if ref.version is None:
            latest = index.latest_version(p, n)
            if latest is None:
                raise NotFoundError(f"model repository {n!r} has no versions yet",
                                    repository=n, tag=LATEST)
            return latest
        v = ref.version
        if ref.version_word is not None:
            old_tag = index.tags(p, n).get(ref.version_word)
            if old_tag is not None:
                raise AmbiguousRefError(
                    f"{n}:{ref.version_word} is ambiguous: version {v}, or the tag "
                    f"{ref.version_word!r} (a tag from before tags could look like versions; it "
                    f"points at version {old_tag}); write {n}:{v} for the version, or move the "
                    f"tag to another name", name=ref.text,
                    candidates=[f"{n}:{v}", f"tag {ref.version_word}"])
        row = index.version(p, n, v)
        if row is None and (rejected := index.rejected_version(p, n, v)) is not None:
            raise TrustError(f"version {v} of model repository {n!r} was rejected: event "
                             f"{rejected['seq']} ({rejected_text(rejected)}) breaks the store "
                             f"policy: {rejected['reason']}", setting="policy", repository=n,
                             version=v)
        if row is None or row["deleted"]:
            what = "was deleted" if row else "does not exist"
            latest = index.latest_version(p, n)
            hint = f" (the latest is {latest})" if latest is not None and row is None else ""
            raise NotFoundError(f"version {v} of model repository {n!r} {what}{hint}",
                                repository=n, version=v)
        return v

    def _resolve_digest(self, prefix: str) -> int:
        rows = self.store.index.versions_by_image_prefix(self.project.name, self.name, prefix)
        images = sorted({r["image"] for r in rows})
        if not images:
            raise NotFoundError(f"no live version of model repository {self.name!r} has an image "
                                f"digest starting with {prefix!r}", repository=self.name,
                                digest=prefix)
        if len(images) > 1:
            shown = [f"{self.name}:{r['version']} {r['image'][:19]}" for r in rows[:10]]
            raise AmbiguousRefError(f"image digest prefix {prefix!r} is ambiguous in "
                                    f"{self.name!r}: it matches {', '.join(shown)}; give more "
                                    f"hex digits", name=prefix, candidates=shown)
        return max(r["version"] for r in rows)  # one image saved twice: its newest version

    def get_model_image(self, version: int | str | Ref | None = None,
                        tag: str | None = None) -> ModelImage:
        """The image that ``version`` names (any reference: ``3``, ``"v3"``, ``"prod"``,
        ``"latest"``, ``"sha256:3f7bc85"``; see :meth:`resolve`), or ``tag``; neither: the
        highest version. Its manifest is fetched and verified; the model itself is only fetched
        by ``get_model()``."""
        v = self.resolve(version, tag)
        row = self.store.index.version(self.project.name, self.name, v)
        assert row is not None  # resolve() found it
        self.confirm_version(row)
        if row["damaged"] is None:
            manifest, _ = read_manifest(self.store.objects, row["image"])
        else:  # damaged when indexed: read it again (restored since?), else say what is wrong
            found = read_manifest_or_damage(self.store.objects, row["image"])
            if isinstance(found, str):
                raise IntegrityError(f"version {v} of model repository {self.name!r} is "
                                     f"damaged: {found}; run 'roro fsck' (the other versions "
                                     f"are readable)", digest=row["image"],
                                     repository=self.name)
            manifest = found[0]
            self.store.index.heal_version(self.project.name, self.name, v, manifest,
                                          found[1].decode("utf-8"))
        event = self.store.confirmed_event(self.project.name, self.name, row["seq"])
        return ModelImage(self, manifest=manifest, digest=row["image"], version=v,
                          signature=verified_signature(event.sig if event else None))

    def confirm_version(self, row: dict[str, Any]) -> None:
        """Make sure the log names the image the index row ``row`` says for its version (one
        read of the event the row cites, memoised per process; see
        :meth:`~roro.store.Store.confirm_event`): an edited index never serves another model."""
        v = row["version"]
        self.store.confirm_event(self.project.name, self.name, row["seq"],
                                 f"version {v} is image {row['image']}", type="version",
                                 version=v, image=row["image"])

    def version_event(self, image: ModelImage) -> Event | None:
        """The event that made saved ``image`` a version here, checked against the index and,
        if signed, its signature (one read, memoised per process); None if the index has no
        row for it."""
        if image.version is None:
            return None
        row = self.store.index.version(self.project.name, self.name, image.version)
        if row is None or row["image"] != image.digest:
            return None
        self.confirm_version(row)
        event = self.store.confirmed_event(self.project.name, self.name, row["seq"])
        if event is None:  # the memo was emptied meanwhile: read and check it again
            event = self.store.reflog(self.project.name, self.name).read_event(row["seq"])
            check_signature(event, self.name)
        return event

    def _confirm_tag(self, tag: str, target: int) -> None:
        """The log's last move of ``tag`` (as the index recorded it) must point at ``target``."""
        what = f"tag {tag!r} points at version {target}"
        move = self.store.index.tag_move(self.project.name, self.name, tag)
        if move is None or move["version"] != target:
            raise IntegrityError(f"the local index says {what} of {self.name!r}, but its tag "
                                 f"history does not: the index was edited or damaged; run "
                                 f"'roro index --rebuild'", repository=self.name)
        self.store.confirm_event(self.project.name, self.name, move["seq"], what, type="tag",
                                 tag=tag, version=target)
        later = self.store.index.rejected_tag_move(self.project.name, self.name, tag,
                                                   move["seq"])
        if later is not None:
            warnings.warn(f"tag {tag!r} of {self.name!r}: event {later['seq']} "
                          f"({rejected_text(later)}) breaks the store policy and was rejected "
                          f"({later['reason']}); serving version {target}, where the last "
                          f"accepted move (event {move['seq']}) put it", RoroWarning,
                          stacklevel=4)

    def rejected_events(self) -> list[dict[str, Any]]:
        """The events of this repository's log the store policy rejected (skipped by every
        reader), oldest first: ``{seq, type, version, tag, author, time, signer, signer_key,
        reason}``."""
        self._require()
        return self.store.index.rejected(self.project.name, self.name)

    def damaged_versions(self) -> dict[int, str]:
        """``{version: why}`` of the live versions whose manifest is missing or unreadable
        (they are listed, flagged :attr:`ModelImage.damaged`; the others stay readable)."""
        self._require()
        return self.store.index.damaged_versions(self.project.name, self.name)

    def get_model(self, version: int | str | Ref | None = None, tag: str | None = None, *,
                  trust: dict[str, Any] | None = None, tensors: list[str] | None = None) -> Any:
        """The model object of ``version`` or ``tag`` (default latest), verified before it is
        loaded; ``trust`` and ``tensors`` as in :meth:`ModelImage.get_model`."""
        return self.get_model_image(version, tag).get_model(trust=trust, tensors=tensors)

    def list_model_images(self, limit: int | None = None,
                          before: int | None = None) -> ImageList:
        """Images newest first, from the index (no model is downloaded). ``before`` pages.
        The list converts to a pandas DataFrame with ``.to_pandas()``."""
        limit = check_limit(limit)
        if before is not None:
            before = validate_version(before)
        self._require()
        rows = self.store.index.versions(self.project.name, self.name, limit=limit, before=before)
        return ImageList(ModelImage.from_index_row(self, r) for r in rows)

    def search(self, expr: str | Query, limit: int | None = None) -> ImageList:
        """Images whose version matches the query ``expr``, newest first (no model is downloaded).

        ``expr`` is a query such as ``Accuracy > 0.88 and tag = 'production'`` (the language is
        documented in ``docs/query.md``); a malformed one raises
        :class:`~roro.errors.QuerySyntaxError` naming the column. ``limit`` caps the number of
        images returned.
        """
        query = parse_query(expr)
        limit = check_limit(limit)
        self._require()
        compiled = query.to_sql()
        rows = self.store.index.search(self.project.name, self.name, compiled.sql,
                                        compiled.params, limit, dict(compiled.functions))
        return ImageList(ModelImage.from_index_row(self, r) for r in rows)

    def count(self) -> int:
        """Number of live versions."""
        self._require()
        return self.store.index.count_versions(self.project.name, self.name)

    def copy_image(self, image: ModelImage, *, workers: int = DEFAULT_WORKERS) -> ModelImage:
        """Append a saved ``image`` from any repository (of this or another store) as a new
        version here, recording its origin in ``manifest["lineage"]["copied_from"]``. The blobs
        it needs are copied first (verified); see :func:`roro.copy_image`. If the latest version
        here already is that very copy, it is returned and nothing is appended."""
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="roro-copy") as pool:
            return copy_into(image, self, pool)[0]

    # -- tags ------------------------------------------------------------------------------------
    def get_tags_by_version(self, versions: Iterable[int]) -> dict[int, list[str]]:
        """The tags pointing at each of ``versions`` (``latest`` first where it applies, then by
        name); versions without tags are left out. One index query, whatever the history's length:
        for labelling a page of :meth:`list_model_images`."""
        self._require()
        wanted = sorted({validate_version(v) for v in versions})
        index = self.store.index
        out = index.tags_by_version(self.project.name, self.name, wanted)
        latest = index.latest_version(self.project.name, self.name)
        if latest is not None and latest in wanted:
            out[latest] = [LATEST, *out.get(latest, [])]
        return out

    def get_tags(self) -> dict[str, int]:
        """``{tag: version}`` including ``latest`` (when the repository has a version)."""
        self._require()
        tags = self.store.index.tags(self.project.name, self.name)
        latest = self.store.index.latest_version(self.project.name, self.name)
        if latest is not None:
            tags[LATEST] = latest
        return tags

    def add_tag(self, tag: str, version: int | str, *, sign: bool | str = True) -> TagChange:
        """Point ``tag`` at ``version``, creating or moving it; every move is recorded. Returns
        the move made (decided against the log's tail, so it is the move that happened). The
        move is signed when a key is configured (``sign``: see :meth:`ModelImage.save`)."""
        validate_new_tag(tag)
        v = validate_version(version)
        current: list[int | None] = []

        def decide(row: writer.Row) -> writer.Decision:
            current[:] = [self._tag_target(row, tag)]
            vr = self.store.index.version(self.project.name, self.name, v)
            if vr is None or vr["deleted"]:
                raise NotFoundError(f"version {v} of model repository {self.name!r} does not "
                                    f"exist", repository=self.name, version=v)
            if current[0] == v:
                return None
            if current[0] is None:  # a new tag: the rules for new names (an existing one moves)
                validate_new_name(tag, "tag")
            return "tag", {"tag": tag, "version": v, "previous": current[0]}

        return self._tag_change(tag, writer.append(self.store, self.project.name, self.name,
                                                   decide, sign=sign), current[0], v)

    def remove_tag(self, tag: str, *, sign: bool | str = True) -> TagChange:
        """Remove ``tag`` (recorded in the tag history); returns the move (to None) made,
        signed as :meth:`add_tag` says."""
        validate_tag(tag)
        current: list[int | None] = []

        def decide(row: writer.Row) -> writer.Decision:
            current[:] = [self._tag_target(row, tag)]
            if current[0] is None:
                tags = self.store.index.tags(self.project.name, self.name)
                known = ", ".join(sorted(tags)) if tags else "none"
                raise NotFoundError(f"model repository {self.name!r} has no tag {tag!r}"
                                    f"{did_you_mean(tag, tags)} (its tags: {known})",
                                    repository=self.name, tag=tag)
            return "tag", {"tag": tag, "version": None, "previous": current[0]}

        return self._tag_change(tag, writer.append(self.store, self.project.name, self.name,
                                                   decide, sign=sign), current[0], None)

    def _tag_target(self, row: writer.Row, tag: str) -> int | None:
        """The version ``tag`` points at in the state ``row`` describes (the log's tail)."""
        if row is None:
            raise NotFoundError(f"model repository {self.name!r} does not exist",
                                repository=self.name)
        return self.store.index.tags(self.project.name, self.name).get(tag)

    @staticmethod
    def _tag_change(tag: str, event: Event | None, current: int | None,
                    unchanged: int | None) -> TagChange:
        if event is None:  # nothing to do: the tag already pointed there
            return TagChange(tag, unchanged, current, None)
        return TagChange(tag, event["version"], event["previous"], event.seq)

    def get_tag_history(self, tag: str | None = None) -> list[dict[str, Any]]:
        """Every tag move, oldest first: ``{seq, tag, version, previous, author, time, signer,
        signer_key}`` (``signer``: the name a signed move's signature gives, as the log claims
        it; ``roro verify NAME:TAG`` checks it)."""
        self._require()
        if tag is not None:
            validate_tag(tag)
        rows = self.store.index.tag_history(self.project.name, self.name, tag)
        return [{k: r[k] for k in ("seq", "tag", "version", "previous", "author", "time",
                                    "signer", "signer_key")}
                for r in rows]

    # -- deleting ----------------------------------------------------------------------------------
    def delete_version(self, version: int | str) -> bool:
        """Delete ``version``: a ``delete`` event in the ref log, so the deletion is itself history.

        The version disappears from listings and ``latest`` becomes the highest remaining version;
        its number is never reused. Its objects become collectable by ``gc`` once no live version
        names them. Refused with :class:`~roro.errors.ConflictError` while a tag points at it.

        Returns True if this call deleted it, False if it was already deleted (for example by a
        concurrent ``delete_version`` of the same version).
        """
        v = validate_version(version)
        idx = self.store.index

        def decide(row: writer.Row) -> writer.Decision:
            if row is None:
                raise NotFoundError(f"model repository {self.name!r} does not exist in project "
                                    f"{self.project.name!r}", repository=self.name)
            vr = idx.version(self.project.name, self.name, v)
            if vr is None:
                raise NotFoundError(f"version {v} of model repository {self.name!r} does not "
                                    f"exist", repository=self.name, version=v)
            if vr["deleted"]:
                return None
            tags = idx.tags_by_version(self.project.name, self.name, [v]).get(v, [])
            if tags:
                names = ", ".join(repr(t) for t in tags)
                raise ConflictError(f"version {v} of model repository {self.name!r} is tagged "
                                    f"{names}; move or remove {'that tag' if len(tags) == 1 else 'those tags'} "
                                    f"first", repository=self.name)
            return "delete", {"version": v}

        return writer.append(self.store, self.project.name, self.name, decide) is not None

    def create(self) -> None:
        """Create this repository, empty (a ``create`` event); :class:`~roro.errors.ConflictError`
        if it exists. Saving an image creates a repository too."""
        def decide(row: writer.Row) -> writer.Decision:
            if row is not None:
                raise ConflictError(f"model repository {self.name!r} already exists",
                                    repository=self.name)
            return "create", {}

        writer.append(self.store, self.project.name, self.name, decide)


def copy_into(image: ModelImage, target: ModelRepository,
              pool: ThreadPoolExecutor) -> tuple[ModelImage, bool, writer.CopyStats]:
    """Append saved ``image`` to ``target`` (see :meth:`ModelRepository.copy_image`): the copy,
    whether a version was appended, and what was transferred."""
    if not image.saved:
        raise InvalidArgumentError("only a saved image can be copied; save() it first")
    manifest = image.manifest
    assert manifest is not None
    source = image.repository
    origin: dict[str, Any] = {"store": source.store.url, "project": source.project.name,
                              "repository": source.name, "version": image.version,
                              "image": image.digest}
    event = source.version_event(image)
    if event is not None and event.sig is not None:
        # The source's signature stays checkable from the copy alone: its event, whole.
        origin["signer"] = {"name": event.sig["name"], "key": event.sig["key"]}
        origin["event"] = json.loads(event.raw)
    published, stats = writer.copy_image(source.store, manifest, origin, target.store,
                                         target.project.name, target.name, pool)
    copied = ModelImage(target, manifest=published.manifest, digest=published.digest,
                        version=published.version)
    return copied, published.created, stats
