"""ModelRepository: a named, ordered history of model images. Reads go to the index; every write
(save, tag, delete, copy, create) goes through :mod:`roro.writer` with a decision made here."""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from . import writer
from .errors import ConflictError, NotFoundError
from .image import ModelImage
from .names import LATEST, validate_name, validate_tag, validate_version
from .objects.manifest import read_manifest
from .query import Query
from .query import parse as parse_query
from .refs import Event
from .store import Store

if TYPE_CHECKING:
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
        raise ValueError(f"limit must be None or an integer >= 0, not {limit!r}")
    return limit


class ModelRepository:
    """A model repository of a project. A handle for a name with no history yet is fine: reading
    raises :class:`~roro.errors.NotFoundError`, and the first ``save()`` creates it."""

    def __init__(self, project: Project, name: str):
        self.project = project
        self.name = validate_name(name)

    def __repr__(self) -> str:
        return f"<ModelRepository {self.project.name}/{self.name}>"

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
                                f"{self.project.name!r}; save an image to create it",
                                repository=self.name)
        return row

    def exists(self) -> bool:
        return self._refresh() is not None

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

    def resolve(self, version: int | str | None = None, tag: str | None = None) -> int:
        """The version number that ``version`` or ``tag`` (neither: latest) names."""
        self._require()
        index = self.store.index
        if version is not None and tag is not None:
            raise ValueError("give a version or a tag, not both")
        if version is None and (tag is None or tag == LATEST):
            latest = index.latest_version(self.project.name, self.name)
            if latest is None:
                raise NotFoundError(f"model repository {self.name!r} has no versions yet",
                                    repository=self.name, tag=LATEST)
            return latest
        if version is None:
            tag = validate_tag(tag)
            target = index.tags(self.project.name, self.name).get(tag)
            if target is None:
                raise NotFoundError(f"model repository {self.name!r} has no tag {tag!r}",
                                    repository=self.name, tag=tag)
            return target
        v = validate_version(version)
        row = index.version(self.project.name, self.name, v)
        if row is None or row["deleted"]:
            what = "was deleted" if row else "does not exist"
            raise NotFoundError(f"version {v} of model repository {self.name!r} {what}",
                                repository=self.name, version=v)
        return v

    def get_model_image(self, version: int | str | None = None,
                        tag: str | None = None) -> ModelImage:
        """The image with ``version`` or ``tag`` (neither, or tag ``latest``: the highest version).
        Its manifest is fetched and verified; the model itself is only fetched by ``get_model()``."""
        v = self.resolve(version, tag)
        row = self.store.index.version(self.project.name, self.name, v)
        assert row is not None  # resolve() found it
        manifest, _ = read_manifest(self.store.objects, row["image"])
        return ModelImage(self, manifest=manifest, digest=row["image"], version=v)

    def get_model(self, version: int | str | None = None, tag: str | None = None, *,
                  trust: dict[str, Any] | None = None, tensors: list[str] | None = None) -> Any:
        """The model object of ``version`` or ``tag`` (default latest), verified before it is
        loaded; ``trust`` and ``tensors`` as in :meth:`ModelImage.get_model`."""
        return self.get_model_image(version, tag).get_model(trust=trust, tensors=tensors)

    def list_model_images(self, limit: int | None = None,
                          before: int | None = None) -> list[ModelImage]:
        """Images newest first, from the index (no model is downloaded). ``before`` pages."""
        self._require()
        rows = self.store.index.versions(self.project.name, self.name, limit=limit, before=before)
        return [ModelImage.from_index_row(self, r) for r in rows]

    def search(self, expr: str | Query, limit: int | None = None) -> list[ModelImage]:
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
        return [ModelImage.from_index_row(self, r) for r in rows]

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

    def add_tag(self, tag: str, version: int | str) -> TagChange:
        """Point ``tag`` at ``version``, creating or moving it; every move is recorded. Returns
        the move made (decided against the log's tail, so it is the move that happened)."""
        validate_tag(tag)
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
            return "tag", {"tag": tag, "version": v, "previous": current[0]}

        return self._tag_change(tag, writer.append(self.store, self.project.name, self.name,
                                                   decide), current[0], v)

    def remove_tag(self, tag: str) -> TagChange:
        """Remove ``tag`` (recorded in the tag history); returns the move (to None) made."""
        validate_tag(tag)
        current: list[int | None] = []

        def decide(row: writer.Row) -> writer.Decision:
            current[:] = [self._tag_target(row, tag)]
            if current[0] is None:
                raise NotFoundError(f"model repository {self.name!r} has no tag {tag!r}",
                                    repository=self.name, tag=tag)
            return "tag", {"tag": tag, "version": None, "previous": current[0]}

        return self._tag_change(tag, writer.append(self.store, self.project.name, self.name,
                                                   decide), current[0], None)

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
        """Every tag move, oldest first: ``{seq, tag, version, previous, author, time}``."""
        self._require()
        if tag is not None:
            validate_tag(tag)
        rows = self.store.index.tag_history(self.project.name, self.name, tag)
        return [{k: r[k] for k in ("seq", "tag", "version", "previous", "author", "time")}
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
        raise ValueError("only a saved image can be copied; save() it first")
    manifest = image.manifest
    assert manifest is not None
    source = image.repository
    origin = {"store": source.store.url, "project": source.project.name,
              "repository": source.name, "version": image.version, "image": image.digest}
    published, stats = writer.copy_image(source.store, manifest, origin, target.store,
                                         target.project.name, target.name, pool)
    copied = ModelImage(target, manifest=published.manifest, digest=published.digest,
                        version=published.version)
    return copied, published.created, stats
