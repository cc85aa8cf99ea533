"""The ``roro`` command line: parse, call the Python API, render. See docs/cli.md.

One module per command group: :mod:`roro.cli.init` (``roro init``) and :mod:`roro.cli.models`
(``roro models`` and ``roro models:*``); :mod:`roro.cli.render` formats, :mod:`roro.cli.errors` turns
errors into one line and an exit code. Importing this package imports neither rich nor boto3.
"""

from __future__ import annotations

import click

from .. import __version__, get_current_project
from ..project import Project
from .errors import RoroGroup

__all__ = ["main"]


class CliState:
    """The global options, and the project they name, opened on first use."""

    def __init__(self, project: str | None, store: str | None):
        self.project_name = project
        self.store_url = store
        self._project: Project | None = None

    @property
    def project(self) -> Project:
        if self._project is None:
            self._project = get_current_project(project=self.project_name, store=self.store_url)
        return self._project


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
    ctx.obj = CliState(project, store)


from . import formats, init, models, query, sync, trust  # noqa: E402 - they need CliState, defined above

main.add_command(init.init)
for _module in (models, formats, query, trust, sync):
    for _command in _module.COMMANDS:
        main.add_command(_command)
