"""ModelRepository: a named, ordered history of model images, and the write path of a save."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .environment import cloudpickle_version, current_author, now_utc, python_version
from .errors import ConflictError, NotFoundError
from .faults import crash_point
from .image import ModelImage
from .lineage import collect_lineage
from .metadata import check_total
from .names import LATEST, validate_name, validate_tag, validate_version
from .objects.canonical import canonical_json
from .objects.manifest import FORMAT, read_manifest
from .query import Query
from .query import parse as parse_query
from .refs import Event

if TYPE_CHECKING:
    from .project import Project

MAX_APPEND_ATTEMPTS = 10_000


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
    def _store(self):
        return self.project.store

    def _refresh(self) -> dict[str, Any] | None:
        return self._store.refresh(self.project.name, self.name)

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
    def new_model_image(self, model: Any) -> ModelImage:
        """A new, unsaved image of ``model``: add metadata and attachments, then ``save()``."""
        return ModelImage(self, model)

    new_image = new_model_image

    def resolve(self, version: int | str | None = None, tag: str | None = None) -> int:
        """The version number that ``version`` or ``tag`` (neither: latest) names."""
        self._require()
        index = self._store.index
        if version is not None and tag is not None:
            raise ValueError("give a version or a tag, not both")
        if version is None and (tag is None or tag == LATEST):
            latest = index.latest_version(self.project.name, self.name)
            if latest is None:
                raise NotFoundError(f"model repository {self.name!r} has no versions yet",
                                    repository=self.name, tag=LATEST)
            return latest
        if version is None:
            validate_tag(tag)
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
        row = self._store.index.version(self.project.name, self.name, v)
        manifest, _ = read_manifest(self._store.objects, row["image"])
        return ModelImage(self, manifest=manifest, digest=row["image"], version=v)

    def get_model(self, version: int | str | None = None, tag: str | None = None) -> Any:
        """The model object of ``version`` or ``tag`` (default latest), verified before unpickling."""
        return self.get_model_image(version, tag).get_model()

    def list_model_images(self, limit: int | None = None,
                          before: int | None = None) -> list[ModelImage]:
        """Images newest first, from the index (no model is downloaded). ``before`` pages."""
        self._require()
        rows = self._store.index.versions(self.project.name, self.name, limit=limit, before=before)
        return [self._image_from_row(r) for r in rows]

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
        rows = self._store.index.search(self.project.name, self.name, compiled.sql,
                                        compiled.params, limit, dict(compiled.functions))
        return [self._image_from_row(r) for r in rows]

    def _image_from_row(self, row: dict[str, Any]) -> ModelImage:
        return ModelImage(self, manifest=json.loads(row["manifest"]), digest=row["image"],
                          version=row["version"])

    def count(self) -> int:
        """Number of live versions."""
        self._require()
        return self._store.index.count_versions(self.project.name, self.name)

    def copy_image(self, image: ModelImage) -> ModelImage:
        """Append a saved ``image`` from any repository (of this or another store) as a new
        version here, recording its origin in ``manifest["lineage"]["copied_from"]``. The blobs
        it needs are copied first (verified); see :func:`roro.copy_image`. If the latest version
        here already is that very copy, it is returned and nothing is appended."""
        from .sync import copy_image_into
        return copy_image_into(image, self)

    # -- tags ------------------------------------------------------------------------------------
    def get_tags_by_version(self, versions: Iterable[int]) -> dict[int, list[str]]:
        """The tags pointing at each of ``versions`` (``latest`` first where it applies, then by
        name); versions without tags are left out. One index query, whatever the history's length:
        for labelling a page of :meth:`list_model_images`."""
        self._require()
        wanted = sorted({validate_version(v) for v in versions})
        index = self._store.index
        out = index.tags_by_version(self.project.name, self.name, wanted)
        latest = index.latest_version(self.project.name, self.name)
        if latest is not None and latest in wanted:
            out[latest] = [LATEST, *out.get(latest, [])]
        return out

    def get_tags(self) -> dict[str, int]:
        """``{tag: version}`` including ``latest`` (when the repository has a version)."""
        self._require()
        tags = self._store.index.tags(self.project.name, self.name)
        latest = self._store.index.latest_version(self.project.name, self.name)
        if latest is not None:
            tags[LATEST] = latest
        return tags

    def add_tag(self, tag: str, version: int | str) -> None:
        """Point ``tag`` at ``version``, creating or moving it; every move is recorded."""
        validate_tag(tag)
        v = validate_version(version)
        idx = self._store.index

        def decide(row):
            if row is None:
                raise NotFoundError(f"model repository {self.name!r} does not exist",
                                    repository=self.name)
            current = idx.tags(self.project.name, self.name).get(tag)
            vr = idx.version(self.project.name, self.name, v)
            if vr is None or vr["deleted"]:
                raise NotFoundError(f"version {v} of model repository {self.name!r} does not "
                                    f"exist", repository=self.name, version=v)
            if current == v:
                return None
            return "tag", {"tag": tag, "version": v, "previous": current}

        self._append(decide)

    def remove_tag(self, tag: str) -> None:
        """Remove ``tag`` (recorded in the tag history)."""
        validate_tag(tag)
        idx = self._store.index

        def decide(row):
            current = idx.tags(self.project.name, self.name).get(tag) if row else None
            if current is None:
                raise NotFoundError(f"model repository {self.name!r} has no tag {tag!r}",
                                    repository=self.name, tag=tag)
            return "tag", {"tag": tag, "version": None, "previous": current}

        self._append(decide)

    def get_tag_history(self, tag: str | None = None) -> list[dict[str, Any]]:
        """Every tag move, oldest first: ``{seq, tag, version, previous, author, time}``."""
        self._require()
        if tag is not None:
            validate_tag(tag)
        rows = self._store.index.tag_history(self.project.name, self.name, tag)
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
        idx = self._store.index

        def decide(row):
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

        return self._append(decide) is not None

    # -- the write path --------------------------------------------------------------------------
    def _create(self) -> None:
        def decide(row):
            if row is not None:
                raise ConflictError(f"model repository {self.name!r} already exists",
                                    repository=self.name)
            return "create", {}

        self._append(decide)

    def _append(self, decide: Callable[[dict | None], tuple[str, dict] | None]) -> Event | None:
        """Append one event at the tail of the log, re-deciding after every lost race.

        ``decide(row)`` sees the freshly refreshed state and returns ``(type, payload)``, or None
        for nothing to do; it raises for a request the current state refuses.
        """
        store = self._store
        store.ensure_initialized()
        log = store.reflog(self.project.name, self.name)
        for attempt in range(MAX_APPEND_ATTEMPTS):
            row = self._refresh()
            decision = decide(row)
            if decision is None:
                return None
            type_, payload = decision
            seq = row["last_seq"] + 1 if row else 1
            event = log.append(seq, row["last_hash"] if row else None, type_, current_author(),
                               now_utc(), **payload)
            if event is not None:
                crash_point("after-ref-event")
                crash_point("before-index-update")
                self._refresh()
                return event
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 25)))
        raise ConflictError(f"gave up writing to {self.name!r} after {MAX_APPEND_ATTEMPTS} lost "
                            f"races with other writers; try again", repository=self.name)

    def _save_image(self, image: ModelImage, comment: str) -> None:
        import cloudpickle
        store = self._store
        store.ensure_initialized()
        objects = store.objects
        metadata = image._metadata
        check_total(metadata)
        model = image._model
        spooled = objects.spool_writer(lambda w: cloudpickle.dump(model, w))
        try:
            objects.put_spooled(spooled)
        finally:
            spooled.discard()
        attachments = image.get_attachments()
        for att in attachments:
            objects.put_spooled(att._spooled)
        crash_point("after-blobs")
        mtype = type(model)
        manifest = {
            "format": FORMAT,
            "model": {"digest": spooled.digest, "size": spooled.size, "serializer": "cloudpickle",
                      "type": f"{mtype.__module__}.{mtype.__qualname__}",
                      "python": python_version(), "cloudpickle": cloudpickle_version()},
            "attachments": [{"name": a.name, "digest": a.digest, "size": a.size}
                            for a in attachments],
            "metadata": metadata,
            "timestamp": now_utc(),
            "author": current_author(),
            "comment": comment,
        }
        lineage = collect_lineage(model, exclude=store.local_paths())
        extra = getattr(image, "_lineage", None)
        if extra:
            lineage.update(extra)
        manifest["lineage"] = lineage
        saved, digest, version, _ = self._publish(manifest, comment)
        image._mark_saved(saved, digest, version)

    def _publish(self, manifest: dict[str, Any], comment: str, *,
                 unless_latest: bool = False) -> tuple[dict[str, Any], str, int, bool]:
        """Put ``manifest`` (whose blobs must already be in the store) and append a ``version``
        event naming it: the last step of a save, shared with ``copy_image``.

        With ``unless_latest``, nothing is appended when the latest version already is this very
        manifest (so re-running a copy does not stack identical versions).
        Returns ``(manifest, digest, version, created)``.
        """
        store = self._store
        store.ensure_initialized()
        data = canonical_json(manifest)
        digest = store.objects.put_bytes(data)
        store.remember_manifest(digest, data)
        crash_point("after-manifest")
        idx = store.index
        existing: list[int] = []

        def decide(row):
            if unless_latest and row is not None:
                latest = idx.latest_version(self.project.name, self.name)
                if latest is not None and \
                        idx.version(self.project.name, self.name, latest)["image"] == digest:
                    existing.append(latest)
                    return None
            return "version", {"version": (row["max_version"] if row else 0) + 1, "image": digest,
                               "comment": comment}

        event = self._append(decide)
        if event is None:
            return json.loads(data), digest, existing[-1], False
        return json.loads(data), digest, event["version"], True
