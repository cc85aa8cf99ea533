"""Project: a namespace of model repositories inside a store."""

from __future__ import annotations

import os
from typing import Any

from .environment import roro_home
from .image import ModelImage
from .names import validate_name
from .query import Query
from .query import parse as parse_query
from .refs import list_repositories
from .repository import ModelRepository, check_limit
from .store import Store


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

    def get_model_repository(self, name: str) -> ModelRepository:
        """The repository called ``name`` (it need not exist yet)."""
        return ModelRepository(self, name)

    def list_model_repositories(self) -> list[ModelRepository]:
        """Every repository of this project, sorted by name."""
        if not self.store.is_initialized():
            return []
        out = []
        for name in list_repositories(self.store.backend, self.name):
            try:
                out.append(ModelRepository(self, name))
            except ValueError:
                continue  # not a repository directory roro could have written
        return out

    def search(self, expr: str | Query, limit: int | None = None) -> list[ModelImage]:
        """Images of every repository of this project matching the query ``expr``, newest save
        first (see :meth:`ModelRepository.search` and ``docs/query.md``)."""
        query = parse_query(expr)
        limit = check_limit(limit)
        repositories = self.list_model_repositories()
        for repo in repositories:
            self.store.refresh(self.name, repo.name)
        if not repositories:
            return []
        compiled = query.to_sql()
        rows = self.store.index.search(self.name, None, compiled.sql, compiled.params, limit,
                                       dict(compiled.functions))
        handles = {r.name: r for r in repositories}
        out = []
        for row in rows:
            repo = handles.get(row["repository"]) or ModelRepository(self, row["repository"])
            out.append(ModelImage.from_index_row(repo, row))
        return out

    def create_model_repository(self, name: str) -> ModelRepository:
        """Create an empty repository; :class:`~roro.errors.ConflictError` if it exists."""
        repo = ModelRepository(self, name)
        repo.create()
        return repo

    def log(self, limit: int | None = None) -> list[ModelImage]:
        """Saved images of every repository, newest save first (interleaved by time), like
        ``git log`` over all branches. Reads the index only (after refreshing each repository):
        ``limit`` costs O(limit), not O(history), and no manifest or model is downloaded."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise ValueError(f"limit must be a non-negative integer, not {limit!r}")
        repos = {r.name: r for r in self.list_model_repositories()}
        for repo in repos.values():
            self.store.refresh(self.name, repo.name)
        rows = self.store.index.project_versions(self.name, limit) if repos else []
        return [ModelImage.from_index_row(repos.get(r["repository"])
                                          or self.get_model_repository(r["repository"]), r)
                for r in rows]
