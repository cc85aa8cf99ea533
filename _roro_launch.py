"""The ``roro`` console script's entry point, outside the ``roro`` package on purpose.

The script has to import ``roro.cli`` (and with it the library) before any of roro's code can
catch anything; a Ctrl-C in those first tenths of a second would print an import traceback, or
an "Exception ignored" line when it lands inside the import machinery's own clean-up. So, where
the platform allows, SIGINT is held back while the command line is imported and delivered just
after, inside this guard: an interrupt during start-up exits 130 quietly, like one during a
command (``roro.cli.errors``)."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    block = getattr(signal, "pthread_sigmask", None)  # POSIX only
    try:
        if block is not None:
            block(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            from roro.cli import main as cli_main
        finally:
            if block is not None:
                block(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending Ctrl-C is raised here
        cli_main()  # handles its own Ctrl-C; this guard covers the few steps before it can
    except KeyboardInterrupt:
        sys.exit(130)
