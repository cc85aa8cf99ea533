"""``roro init``: write ``roro.yml`` in the current directory."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import click

from ..config import CONFIG_FILE, DEFAULT_PROJECT, find_config
from ..environment import roro_home
from ..names import validate_name, validate_new_name
from ..store import Store
from . import render
from .render import json_option

if TYPE_CHECKING:
    from . import CliState


def _default_project_name(directory: str) -> str:
    """The directory's name made into a valid project name (``My Models`` → ``my-models``)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", os.path.basename(directory).lower())
    name = re.sub(r"\.{2,}", ".", name).strip("-._")[:100]
    try:
        return validate_new_name(name, "project")
    except ValueError:
        return DEFAULT_PROJECT


@click.command("init")
@click.option("--project", "project_opt", metavar="NAME",
              help="Project name. Default: the global --project, else this directory's name.")
@click.option("--store", "store_opt", metavar="PATH|URL",
              help="Store: a folder (relative to this directory) or s3://bucket/prefix. Default: "
                   "the global --store, else none (the user store $RORO_HOME is used).")
@click.option("--force", is_flag=True, help="Replace an existing roro.yml.")
@json_option
@click.pass_obj
def init(state: CliState, project_opt: str | None, store_opt: str | None, force: bool,
         as_json: bool) -> None:
    """Write roro.yml here, naming the project (and store) for commands and code run below it."""
    import yaml  # only `roro init` writes YAML: its import is paid here, not by every command

    here = os.getcwd()
    path = os.path.join(here, CONFIG_FILE)
    if os.path.exists(path) and not force:
        raise click.ClickException(f"{path} already exists; edit it, or pass --force to replace it")
    project = validate_name(project_opt or state.project_name or _default_project_name(here),
                            "project")
    store = store_opt or state.store_url
    config: dict[str, str] = {"project": project}
    if store:
        config["store"] = store
        store_url = store if "://" in store else os.path.normpath(
            os.path.join(here, os.path.expanduser(store)))
    else:
        store_url = roro_home()
    # Refuse a store roro cannot use before writing the file: unknown scheme, unknown format.
    Store(store_url).is_initialized()
    outer = find_config(os.path.dirname(here)) if os.path.dirname(here) != here else None
    with open(path, "w", encoding="utf-8") as f:
        f.write("# roro configuration, written by `roro init` (see docs/cli.md)\n")
        yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)
    ignored = ignore_store_in_git(here, store_url) if "://" not in store_url else None
    if as_json:
        render.emit_json({"config": path, "project": project, "store": store_url,
                          "overrides": outer, "gitignore": ignored[0] if ignored else None,
                          "gitignore_entry": ignored[1] if ignored else None})
        return
    out = render.console()
    out.print(render.text("Wrote ", (path, "bold"), ": project ", (project, "bold cyan"),
                          " in store ", (render.safe_line(store_url), "bold")))
    if outer:
        out.print(render.text(f"It takes precedence over {render.safe_line(outer)} in this "
                              f"directory and below."))
    if ignored:
        out.print(render.text("Added ", (ignored[1], "bold"), " to ",
                              (render.safe_line(ignored[0]), "bold"),
                              " so that git does not commit the store."))


def git_work_tree(directory: str) -> str | None:
    """The top of the git work tree ``directory`` is in (a folder with ``.git``), or None."""
    d = os.path.abspath(directory)
    while True:
        if os.path.exists(os.path.join(d, ".git")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def ignore_store_in_git(here: str, store: str) -> tuple[str, str] | None:
    """If the folder store ``store`` lies inside the git work tree of ``here`` and git does not
    ignore it yet, add it to a ``.gitignore`` (``here``'s when the store is below ``here``, else
    the work tree's top one): ``(that .gitignore, the line added)``, or None."""
    top = git_work_tree(here)
    store = os.path.abspath(store)
    if top is None or os.path.commonpath([top, store]) != top or store == top:
        return None
    base = here if os.path.commonpath([here, store]) == here and store != here else top
    entry = "/" + os.path.relpath(store, base).replace(os.sep, "/") + "/"
    gitignore = os.path.join(base, ".gitignore")
    if _git_ignores(top, store):
        return None
    try:
        with open(gitignore, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    if entry in text.splitlines() or entry.rstrip("/") in text.splitlines():
        return None
    with open(gitignore, "a", encoding="utf-8") as f:
        f.write(("" if not text or text.endswith("\n") else "\n")
                + "# the roro store (roro init)\n" + entry + "\n")
    return gitignore, entry


def _git_ignores(top: str, path: str) -> bool:
    """Whether git already ignores ``path`` (False when git cannot tell: not installed, …)."""
    import subprocess  # only roro init asks git

    try:
        result = subprocess.run(["git", "-C", top, "check-ignore", "-q", path + "/"],
                                capture_output=True, timeout=3)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0
