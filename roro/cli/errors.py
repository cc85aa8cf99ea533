"""The one place where errors become what a person sees: one line on stderr and an exit code.

Every :class:`~roro.errors.RoroError` (what a user can cause) and every click usage error ends here,
in :meth:`RoroGroup.main`. Any other exception is a bug in roro: it propagates with its traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

import click

from ..errors import (
    ConflictError,
    ContractError,
    FormatError,
    IntegrityError,
    InvalidArgumentError,
    InvalidDurationError,
    InvalidMetadataError,
    InvalidNameError,
    NotFoundError,
    QuerySyntaxError,
    RoroError,
    TrustError,
)

# Exit codes, most specific class first (documented in docs/cli.md).
EXIT_OK = 0
EXIT_ERROR = 1  # any other RoroError (unreadable store, bad roro.yml, ...) or a refused action
EXIT_USAGE = 2  # bad command line, invalid name, invalid value (click uses 2 for usage errors)
EXIT_NOT_FOUND = 3  # unknown repository, version, tag or object
EXIT_INTEGRITY = 4  # corrupted object or broken ref log
EXIT_CONFLICT = 5  # exists already, lost a race, diverged history
EXIT_TRUST = 6  # refused by the loader's trust settings (later: by signatures and policy)
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (TrustError, EXIT_TRUST),
    (FormatError, EXIT_USAGE),
    (ContractError, EXIT_USAGE),
    (InvalidNameError, EXIT_USAGE),
    (InvalidMetadataError, EXIT_USAGE),
    (InvalidDurationError, EXIT_USAGE),
    (InvalidArgumentError, EXIT_USAGE),
    (QuerySyntaxError, EXIT_USAGE),
    (NotFoundError, EXIT_NOT_FOUND),
    (IntegrityError, EXIT_INTEGRITY),
    (ConflictError, EXIT_CONFLICT),
    (RoroError, EXIT_ERROR),
]


def exit_code_for(error: RoroError) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(error, cls):
            return code
    return EXIT_ERROR


def one_line(message: str) -> str:
    """``message`` on one line: newlines and runs of blanks become single spaces."""
    return " ".join(str(message).split())


def fail(message: str, code: int) -> None:
    click.echo(f"Error: {one_line(message)}", err=True)
    sys.exit(code)


EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a process killed by SIGINT


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    """Warnings (a roro.yml key this roro does not know, a model saved by another Python) as one
    ``Warning:`` line on stderr, like errors, instead of Python's two-line form."""
    click.echo(f"Warning: {one_line(str(message))}", err=True)


def closed_pipe() -> None:
    """stdout's reader went away (``roro models:log | head -3``): stop quietly with exit 0, as
    ``git log`` does. stdout is pointed at /dev/null so that the interpreter's final flush does
    not complain about the pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a real file (a test runner's buffer): nothing to flush to
    sys.exit(EXIT_OK)


class RoroGroup(click.Group):
    """The ``roro`` group: runs click without its own error printing, then maps errors to one line.

    Click's standalone mode prints usage errors over several lines; here they share the format of
    every other error. Exceptions that are neither click's nor a RoroError propagate.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # before click's own handler, which would exit 1
            closed_pipe()

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        warnings.showwarning = show_warning
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except (click.exceptions.Abort, KeyboardInterrupt):
            sys.exit(EXIT_INTERRUPTED)  # quiet: the user pressed Ctrl-C and knows why it stopped
        except BrokenPipeError:  # while click printed help or a usage error
            closed_pipe()
        except click.UsageError as e:
            hint = ""
            if e.ctx is not None:
                help_opt = (e.ctx.help_option_names or ["--help"])[-1]
                hint = f" (see '{e.ctx.command_path} {help_opt}')"
            fail(e.format_message() + hint, e.exit_code)
        except click.ClickException as e:
            fail(e.format_message(), e.exit_code)
        except RoroError as e:
            fail(str(e), exit_code_for(e))
        # Without standalone mode click returns the command's value, or the code of ctx.exit(code)
        # (``--help``, ``--version``); roro's commands return None.
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else EXIT_OK)
