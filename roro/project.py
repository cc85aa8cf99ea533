"""Project: a namespace of model repositories inside a store."""

from __future__ import annotations

import os
from typing import Any

from .environment import roro_home
from .errors import NotFoundError
from .image import ImageList, ModelImage
from .names import validate_name
from .notebook import project_html
from .query import Query
from .query import parse as parse_query
from .refs import list_projects, list_repositories
from .refspec import Ref, parse_refspec
from .repository import ModelRepository, check_limit
from .store import Store
from .suggest import did_you_mean

MAX_RENAMES = 64  # hops a reference follows from an old name to the current one


class Project:
    """A project in a store. Constructing one touches no network and creates no file."""

    def __init__(self, name: str = "default", store: Store | str | os.PathLike | None = None,
                 **store_options: Any):
        self.name = validate_name(name, "project")
        if store is None:
            store = roro_home()
        self.store = store if isinstance(store, Store) else Store(store, **store_options)

    def __repr__(self) -> str:
        return f"<Project {self.name!r} in {self.store.url}>"

    def _repr_html_(self) -> str:
        """The project's repositories as a table in a notebook (what ``roro models`` shows)."""
        return project_html(self)

    def get_model_repository(self, name: str) -> ModelRepository:
        """The repository called ``name`` (it need not exist yet)."""
        return ModelRepository(self, name)

    def repository_names(self) -> list[str]:
        """The names of this project's repositories in the store (one listing), sorted."""
        if not self.store.is_initialized():
            return []
        return list_repositories(self.store.backend, self.name)

    def require_exists(self) -> None:
        """Raise :class:`~roro.errors.NotFoundError` if this project has no repository while the
        store holds other projects (a mistyped ``--project``), naming those that exist."""
        if not self.store.is_initialized() or self.repository_names():
            return
        others = [p for p in list_projects(self.store.backend) if p != self.name]
        if others:
            raise NotFoundError(f"project {self.name!r} has no model repositories in store "
                                f"{self.store.url}{did_you_mean(self.name, others)} (its "
                                f"projects: {', '.join(sorted(others))})")

    def resolve_repository(self, name: str) -> ModelRepository:
        """The repository ``name`` refers to, following renames (``old`` renamed to ``new``:
        ``new``'s handle). Reads by reference (:meth:`get_model_image`, :func:`roro.load`, the
        CLI) use it; a handle from :meth:`get_model_repository` does not redirect."""
        repo = ModelRepository(self, name)
        for _ in range(MAX_RENAMES):
            row = self.store.refresh(self.name, repo.name)
            if row is None or row["status"] != "renamed":
                return repo
            repo = ModelRepository(self, row["renamed_to"])
        return repo

    def get_model_image(self, spec: str | Ref) -> ModelImage:
        """The image a reference names: ``"credit-risk"`` (latest), ``"credit-risk:3"``,
        ``"credit-risk:v3"``, ``"credit-risk:prod"``, ``"credit-risk@sha256:3f7bc85"`` (see
        :mod:`roro.refspec`). A renamed repository's old name leads to the new one."""
        ref = spec if isinstance(spec, Ref) else parse_refspec(spec)
        assert ref.name is not None
        return self.resolve_repository(ref.name).get_model_image(ref)

    def get_model(self, spec: str | Ref, *, trust: dict[str, Any] | None = None,
                  tensors: list[str] | None = None) -> Any:
        """The model object a reference names (see :meth:`get_model_image`), verified before it
        is loaded; ``trust`` and ``tensors`` as in :meth:`ModelImage.get_model`."""
        return self.get_model_image(spec).get_model(trust=trust, tensors=tensors)

    def list_model_repositories(self) -> list[ModelRepository]:
        """Every live repository of this project, sorted by name (destroyed repositories and
        the old names of renamed ones are left out: see :meth:`closed_repositories`)."""
        return [r for r, row in self._repositories() if row is None or row["status"] is None]

    def closed_repositories(self) -> list[dict[str, Any]]:
        """The destroyed repositories and the old names of renamed ones: ``{name, status
        ("destroyed" or "renamed"), renamed_to, time, author}``, sorted by name."""
        return [{"name": r.name, "status": row["status"], "renamed_to": row["renamed_to"],
                 "time": row["closed_time"], "author": row["closed_by"]}
                for r, row in self._repositories() if row is not None and row["status"]]

    def _repositories(self) -> list[tuple[ModelRepository, dict[str, Any] | None]]:
        if not self.store.is_initialized():
            return []
        out = []
        for name in list_repositories(self.store.backend, self.name):
            try:
                repo = ModelRepository(self, name)
            except ValueError:
                continue  # not a repository directory roro could have written
            out.append((repo, self.store.refresh(self.name, name)))
        return out

    def rename_model_repository(self, old: str, new: str) -> ModelRepository:
        """Rename repository ``old`` to ``new`` (see :meth:`ModelRepository.rename`)."""
        return self.get_model_repository(old).rename(new)

    def search(self, expr: str | Query, limit: int | None = None) -> ImageList:
        """Images of every repository of this project matching the query ``expr``, newest save
        first (see :meth:`ModelRepository.search` and ``docs/query.md``)."""
        query = parse_query(expr)
        limit = check_limit(limit)
        repositories = self.list_model_repositories()  # refreshed
        if not repositories:
            return ImageList()
        compiled = query.to_sql()
        rows = self.store.index.search(self.name, None, compiled.sql, compiled.params, limit,
                                       dict(compiled.functions))
        handles = {r.name: r for r in repositories}
        out = ImageList()
        for row in rows:
            repo = handles.get(row["repository"]) or ModelRepository(self, row["repository"])
            out.append(ModelImage.from_index_row(repo, row))
        return out

    def search_hints(self, expr: str | Query, repository: str | None = None) -> list[str]:
        """Why ``expr`` may have matched nothing: keys it names that exist only in another case,
        or whose values have another type than it compares them with. Reads the index (the
        10,000 newest versions); call it after a search that returned nothing."""
        from .query.hints import no_match_hints  # only after a search that found nothing
        query = parse_query(expr)
        index = self.store.index
        return no_match_hints(
            query, lambda key: index.metadata_key_types(self.name, repository, key),
            lambda: index.metadata_keys(self.name, repository))

    def create_model_repository(self, name: str) -> ModelRepository:
        """Create an empty repository; :class:`~roro.errors.ConflictError` if it exists."""
        repo = ModelRepository(self, name)
        repo.create()
        return repo

    def log(self, limit: int | None = None) -> ImageList:
        """Saved images of every repository, newest save first (interleaved by time), like
        ``git log`` over all branches. Reads the index only (after refreshing each repository):
        ``limit`` costs O(limit), not O(history), and no manifest or model is downloaded."""
        limit = check_limit(limit)
        repos = {r.name: r for r in self.list_model_repositories()}  # refreshed
        rows = self.store.index.project_versions(self.name, limit) if repos else []
        return ImageList(ModelImage.from_index_row(repos.get(r["repository"])
                                                   or self.get_model_repository(r["repository"]),
                                                   r)
                         for r in rows)
