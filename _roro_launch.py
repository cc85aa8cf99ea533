"""The ``roro`` console script's entry point, outside the ``roro`` package on purpose.

The script has to import ``roro.cli`` (and with it the library) before any of roro's code can
catch anything; a Ctrl-C in those first tenths of a second would print an import traceback.
Importing this module costs nothing, so the import of the command line below is already
guarded: an interrupt during start-up exits 130 quietly, like one during a command
(``roro.cli.errors``)."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from roro.cli import main as cli_main

        cli_main()  # handles its own Ctrl-C; this guard covers the few steps before it can
    except KeyboardInterrupt:
        sys.exit(130)
