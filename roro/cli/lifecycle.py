"""``roro models:destroy``, ``models:restore`` and ``models:rename``: a repository's lifecycle
(docs/cli.md; the events are described in docs/architecture.md, "Repository lifecycle")."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..names import validate_name
from . import render
from .render import json_option

if TYPE_CHECKING:
    from . import CliState


@click.command("models:destroy")
@click.argument("name")
@click.option("--confirm", "confirm", metavar="NAME", required=True,
              help="The repository's name again: destroying is a whole repository's worth.")
@json_option
@click.pass_obj
def models_destroy(state: CliState, name: str, confirm: str, as_json: bool) -> None:
    """Retire a whole repository (like heroku apps:destroy): it disappears from listings and can
    be neither read nor written, until 'roro models:restore NAME'.

    The destroy is an event in the ref log. 'roro gc' frees its objects once the destroy is
    older than gc's grace period (default 24h); after that it cannot be restored. To delete one
    version, use models:delete NAME:VERSION.
    """
    validate_name(name)
    if confirm != name:
        raise click.UsageError(f"--confirm must repeat the repository's name ({name!r}) to "
                               f"destroy it")
    event = state.project.get_model_repository(name).destroy()
    if as_json:
        render.emit_json({"project": state.project.name, "repository": name,
                          "status": "destroyed", "seq": event.seq, "time": event.time})
        return
    render.console().print(render.text(
        "Destroyed ", (name, "bold"), "; 'roro models:restore ", name, "' brings it back until "
        "'roro gc' collects its objects (once the destroy is older than gc's grace period)."))


@click.command("models:restore")
@click.argument("name")
@json_option
@click.pass_obj
def models_restore(state: CliState, name: str, as_json: bool) -> None:
    """Bring back a destroyed repository as it was: versions, tags and history.

    Refused (exit 3) once 'roro gc' has collected its objects. Also reopens a repository whose
    rename could not complete.
    """
    validate_name(name)
    event = state.project.get_model_repository(name).restore()
    if as_json:
        render.emit_json({"project": state.project.name, "repository": name, "status": "live",
                          "seq": event.seq, "time": event.time})
        return
    render.console().print(render.text("Restored ", (name, "bold"), "."))


@click.command("models:rename")
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@json_option
@click.pass_obj
def models_rename(state: CliState, old: str, new: str, as_json: bool) -> None:
    """Rename repository OLD to NEW, keeping every version, tag and the whole history.

    OLD then leads to NEW for reads ('roro models:show OLD:3' shows NEW:3) and refuses writes.
    Exit 5 if NEW exists. Running it again after an interruption completes the rename.
    """
    validate_name(old)
    validate_name(new)
    repo = state.project.get_model_repository(old)
    renamed = repo.rename(new)
    if as_json:
        render.emit_json({"project": state.project.name, "repository": old,
                          "renamed_to": renamed.name, "versions": renamed.count()})
        return
    render.console().print(render.text("Renamed ", (old, "bold"), " to ", (new, "bold"),
                                       f" ({renamed.count()} versions, tags and history kept)."))


COMMANDS = [models_destroy, models_restore, models_rename]
