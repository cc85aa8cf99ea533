"""Per-repository ref logs, their fold, and the SQLite index derived from them."""

from .events import Event
from .index import Index
from .log import RefLog, list_projects, list_repositories
from .state import RepoMutator, RepoState, RepoView, apply_event, check_event, fold

__all__ = ["Event", "Index", "RefLog", "RepoMutator", "RepoState", "RepoView", "apply_event",
           "check_event", "fold", "list_projects", "list_repositories"]
