"""Per-repository ref logs, their fold, and the SQLite index derived from them."""

from .events import Event
from .index import Index
from .log import RefLog, list_repositories
from .state import RepoState, check_event, fold

__all__ = ["Event", "Index", "RefLog", "RepoState", "check_event", "fold", "list_repositories"]
