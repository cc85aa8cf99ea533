"""Per-repository ref logs, their fold, and the SQLite index derived from them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .events import Event
from .log import RefLog, list_projects, list_repositories
from .state import RepoMutator, RepoState, RepoView, apply_event, check_event, fold

if TYPE_CHECKING:
    from .index import Index

__all__ = ["Event", "Index", "RefLog", "RepoMutator", "RepoState", "RepoView", "apply_event",
           "check_event", "fold", "list_projects", "list_repositories"]


def __getattr__(name: str) -> Any:
    if name == "Index":
        from .index import Index  # sqlite3 (~1 ms): only when an index is opened
        return Index
    raise AttributeError(f"module 'roro.refs' has no attribute {name!r}")
