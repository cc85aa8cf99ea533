"""Who, when and with what: author, UTC time, user directories, and runtime versions."""

from __future__ import annotations

import datetime as _dt
import getpass
import os
import platform


def now_utc() -> str:
    """ISO 8601 UTC time with microseconds and a ``Z`` suffix."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def current_author() -> str:
    """``RORO_AUTHOR`` if set, else the login name."""
    author = os.environ.get("RORO_AUTHOR")
    if author:
        return author
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): still save
        return "unknown"


def roro_home() -> str:
    """The user store: ``$RORO_HOME``, default ``~/.roro``."""
    return os.path.abspath(os.path.expanduser(os.environ.get("RORO_HOME") or "~/.roro"))


def cache_dir() -> str:
    """``$RORO_CACHE_DIR``, else ``$XDG_CACHE_HOME/roro``, else ``~/.cache/roro``."""
    if os.environ.get("RORO_CACHE_DIR"):
        return os.path.abspath(os.path.expanduser(os.environ["RORO_CACHE_DIR"]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "roro")


def config_dir() -> str:
    """The user's roro configuration directory: ``$XDG_CONFIG_HOME/roro``, else
    ``~/.config/roro``. User settings (trust, later keys) live here, never in a store."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(os.path.abspath(base), "roro")


def python_version() -> str:
    return platform.python_version()


def cloudpickle_version() -> str:
    import cloudpickle  # cloudpickle: only by a save or a load
    return cloudpickle.__version__
