"""Lineage: where a model image was saved from, recorded in its manifest under ``"lineage"``.

::

    {"python": "3.11.7", "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
     "package": {"module": "sklearn", "distribution": "scikit-learn", "version": "1.4.2"},
     "git": {"commit": "0718…", "dirty": false}}

- ``git`` only when the current directory is inside a git work tree with at least one commit, and
  ``git`` can be run: ``commit`` is ``HEAD``, ``dirty`` is whether ``git status --porcelain`` lists
  anything (modified, staged or untracked files; ignored files do not count; a local store or cache
  folder inside the work tree is left out). ``dirty`` is null when the status could not be read in
  time. No git, no repository, a timeout or any git error: no ``git`` key, never an error.
- ``package`` only when the model's class comes from an importable top-level module that is not part
  of the standard library; ``distribution`` and ``version`` are null when they cannot be found.

Remote URLs and branch names are not recorded: a remote URL can carry credentials.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

#: Seconds each git command may take before lineage gives up on it.
GIT_TIMEOUT = 3.0
_COMMIT_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def collect_lineage(model: Any, cwd: str | None = None,
                    exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The lineage of saving ``model`` from ``cwd`` (default: the current directory).

    ``exclude`` are local paths (a folder store, a cache) whose changes do not make the tree dirty.
    """
    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    package = package_of(model)
    if package is not None:
        out["package"] = package
    git = git_state(cwd, exclude)
    if git is not None:
        out["git"] = git
    return out


def package_of(model: Any) -> dict[str, Any] | None:
    """``{"module", "distribution", "version"}`` of the top-level package of ``model``'s class."""
    module = getattr(type(model), "__module__", None)
    if not isinstance(module, str) or not module:
        return None
    top = module.split(".")[0]
    if top in ("builtins", "__main__", "__mp_main__") or top in sys.stdlib_module_names:
        return None
    distribution, version = _distribution_version(top)
    if version is None:
        attr = getattr(sys.modules.get(top), "__version__", None)
        version = attr if isinstance(attr, str) else None
    return {"module": top, "distribution": distribution, "version": version}


def _distribution_version(top: str) -> tuple[str | None, str | None]:
    from importlib import metadata  # importlib.metadata: only when a save records lineage
    names = _packages_distributions().get(top) or []
    for name in sorted(set(names)):
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None, None


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    from importlib import metadata  # importlib.metadata: only when a save records lineage
    try:
        return dict(metadata.packages_distributions())
    except Exception:  # a broken installed distribution must not break a save
        return {}


def _git(args: list[str], cwd: str | None) -> subprocess.CompletedProcess | None:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    try:
        return subprocess.run(["git", "-c", "core.fsmonitor=false", *args], cwd=cwd, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def git_state(cwd: str | None = None, exclude: Iterable[str] = ()) -> dict[str, Any] | None:
    """``{"commit": …, "dirty": bool | None}`` of the work tree around ``cwd``, or None."""
    head = _git(["rev-parse", "--show-toplevel", "HEAD"], cwd)
    if head is None or head.returncode != 0:
        return None
    lines = head.stdout.decode("utf-8", "replace").splitlines()
    if len(lines) != 2 or not _COMMIT_RE.fullmatch(lines[1].strip()):
        return None
    toplevel, commit = lines[0], lines[1].strip()
    pathspecs = []
    for path in exclude:
        rel = _inside(path, toplevel)
        if rel is not None:
            pathspecs.append(f":(exclude,literal){rel}")
    status = _git(["status", "--porcelain", *(["--", ".", *pathspecs] if pathspecs else [])],
                  toplevel)
    dirty = None if status is None or status.returncode != 0 else bool(status.stdout.strip())
    return {"commit": commit, "dirty": dirty}


def _inside(path: str, toplevel: str) -> str | None:
    """``path`` relative to ``toplevel`` (POSIX separators) if it lies strictly inside it."""
    try:
        path, top = os.path.realpath(path), os.path.realpath(toplevel)
        if os.path.commonpath([path, top]) != top or path == top:
            return None
        return os.path.relpath(path, top).replace(os.sep, "/")
    except (ValueError, OSError):
        return None
