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
@click.pass_obj
def init(state: CliState, project_opt: str | None, store_opt: str | None, force: bool) -> None:
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
    out = render.console()
    out.print(render.text("Wrote ", (path, "bold"), ": project ", (project, "bold cyan"),
                          " in store ", (render.safe_line(store_url), "bold")))
    if outer:
        out.print(render.text(f"It takes precedence over {render.safe_line(outer)} in this "
                              f"directory and below."))
