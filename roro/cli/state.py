"""What every command shares: the global options and the project they name (:class:`CliState`),
and the check that a store named explicitly exists (:func:`require_store`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from ..config import Settings, current_settings
from ..errors import NotFoundError
from ..project import Project
from ..store import Store

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


class CliState:
    """The global options, and the project they name, opened on first use."""

    def __init__(self, project: str | None, store: str | None):
        self.project_name = project
        self.store_url = store
        self._project: Project | None = None
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = current_settings(project=self.project_name, store=self.store_url)
        return self._settings

    @property
    def writable_project(self) -> Project:
        """The project, for a command that may write (its first write creates the store)."""
        if self._project is None:
            s = self.settings
            self._project = Project(s.project, s.store, **s.options)
        return self._project

    @property
    def project(self) -> Project:
        """The project, for a command that reads: a store named explicitly (``--store``,
        ``RORO_STORE``, roro.yml) must exist (the default user store may be empty)."""
        project = self.writable_project
        if self.settings.store_named_explicitly:
            require_store(project.store, self.settings.store_source())
        return project


def require_store(store: Store, source: str) -> None:
    """NotFoundError unless ``store`` is a roro store (has its ``roro.json``); ``source`` says
    where it was named, so the message says what to check."""
    if store.is_initialized():
        return
    marker = store.backend.local_path("roro.json")
    root = os.path.dirname(marker) if marker else None
    if root is not None and os.path.isfile(root):
        what = "is a file, not a roro store"
    elif root is not None and not os.path.exists(root):
        what = "does not exist"
    else:
        what = "is not a roro store (it has no roro.json)"
    raise NotFoundError(f"store {store.url} {what}; check {source} (a store is created by its "
                        f"first save)")


def complete_spec(ctx: click.Context, param: click.Parameter,
                  incomplete: str) -> list[CompletionItem]:
    """Shell completion of ``NAME`` and ``NAME:TAG`` from the local index only: nothing is
    refreshed and no network is used (for an S3 store, its cached index, or nothing)."""
    try:
        root = ctx.find_root().params
        settings = current_settings(project=root.get("project"), store=root.get("store"))
        store = Store(settings.store, **settings.options)
        path = store.index_path()
    except Exception:  # completion must never fail the shell: no names is the answer
        return []
    from click.shell_completion import CompletionItem  # only when completing

    from ..refs.index import peek_names  # sqlite3, only when completing
    name, colon, partial = incomplete.partition(":")
    if colon:
        words = [f"{name}:{t}" for t in ["latest", *peek_names(path, settings.project, name)]]
    else:
        words = peek_names(path, settings.project)
    return [CompletionItem(w) for w in words if w.startswith(incomplete)]
