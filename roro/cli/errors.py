"""The one place where errors become what a person sees: one line on stderr and an exit code.

Every :class:`~roro.errors.RoroError` (what a user can cause) and every click usage error ends here,
in :meth:`RoroGroup.main`. Any other exception is a bug in roro: it propagates with its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from ..errors import (
    ConflictError,
    ContractError,
    FormatError,
    IntegrityError,
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


class RoroGroup(click.Group):
    """The ``roro`` group: runs click without its own error printing, then maps errors to one line.

    Click's standalone mode prints usage errors over several lines; here they share the format of
    every other error. Exceptions that are neither click's nor a RoroError propagate.
    """

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            fail("aborted", 130)
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
