"""Per-repository ref logs, their fold, and the SQLite index derived from them."""

from .events import Event
from .log import RefLog, list_repositories
from .state import RepoState, check_event, fold

__all__ = ["Event", "RefLog", "RepoState", "check_event", "fold", "list_repositories"]


def __getattr__(name: str):
    # The index pulls in sqlite-utils (and with it click): load it only when it is used.
    if name == "Index":
        from .index import Index
        return Index
    raise AttributeError(name)
