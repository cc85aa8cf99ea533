"""The ``roro`` command line: parse, call the Python API, render. See docs/cli.md.

One module per command group: :mod:`roro.cli.init` (``roro init``) and :mod:`roro.cli.models`
(``roro models`` and ``roro models:*``); :mod:`roro.cli.render` formats, :mod:`roro.cli.errors` turns
errors into one line and an exit code. Importing this package imports neither rich nor boto3.
"""

from __future__ import annotations

import click

from .. import __version__
from .errors import RoroGroup
from .state import CliState

__all__ = ["CliState", "main"]


@click.group("roro", cls=RoroGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", metavar="PATH|URL", envvar="RORO_STORE", show_envvar=True,
              help="The store: a folder or s3://bucket/prefix. Default: 'store' in the nearest "
                   "roro.yml, else $RORO_HOME (~/.roro).")
@click.option("--project", metavar="NAME", envvar="RORO_PROJECT", show_envvar=True,
              help="The project in the store. Default: 'project' in the nearest roro.yml, "
                   "else 'default'.")
@click.version_option(__version__, "--version", prog_name="roro", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, store: str | None, project: str | None) -> None:
    """roro: a git-like registry of versioned models.

    Browse, tag and download the model images saved with the Python API. Every command takes
    --json where it lists or shows something, for scripts.
    """
    if ctx.get_parameter_source("store") == click.core.ParameterSource.ENVIRONMENT:
        store = None  # current_settings reads RORO_STORE itself, and says so in messages
    ctx.obj = CliState(project, store)


from . import formats, init, keys, lifecycle, models, policy, query, sync, trust, ui  # noqa: E402 - they need CliState, defined above

main.add_command(init.init)
for _module in (models, formats, query, trust, lifecycle, sync, keys, policy, ui):
    for _command in _module.COMMANDS:
        main.add_command(_command)
