"""Named crash points of the write path, for crash-consistency tests (borg's approach).

A point is a call ``crash_point("after-blobs")`` at a place where a crash must leave the store
consistent. When the environment variable ``RORO_CRASH_AT`` names that point, the process kills
itself with SIGKILL right there (no ``finally``, no ``atexit``, no flush: as close to a power cut
as a process can get). Tests start a subprocess with the variable set and then check the store.

In-process tests (the stateful model) install a handler with :func:`set_crash_handler` instead; the
handler usually raises :class:`SimulatedCrash`, a ``BaseException`` that ordinary error handling
does not catch.

The check is one dictionary lookup, so the points cost nothing in normal use. Like
:mod:`roro.errors`, this module imports nothing from roro, so every layer may call it.

Points, in write-path order:

- ``after-blobs``: the model and attachment blobs are stored, the manifest is not;
- ``after-manifest``: the manifest is stored, no ref event names it yet;
- ``after-ref-event``: a ref event (version, tag, delete, create) was just created;
- ``before-index-update``: the writer is about to update the index after its event;
- ``during-index-update``: an index transaction has applied events but not committed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

CRASH_ENV = "RORO_CRASH_AT"
POINTS = ("after-blobs", "after-manifest", "after-ref-event", "before-index-update",
          "during-index-update")

_handler: Callable[[str], None] | None = None


class SimulatedCrash(BaseException):
    """Raised by an in-process crash handler; derives from BaseException so ``except Exception``
    blocks in roro do not swallow it."""

    def __init__(self, point: str):
        super().__init__(point)
        self.point = point


def crash_point(name: str) -> None:
    """Die here if ``RORO_CRASH_AT`` names this point (or let the installed handler act)."""
    if _handler is not None:
        _handler(name)
    if os.environ.get(CRASH_ENV) == name:
        _die()


def set_crash_handler(handler: Callable[[str], None] | None) -> Callable[[str], None] | None:
    """Install ``handler(point)`` to be called at every crash point; returns the previous one."""
    global _handler
    previous, _handler = _handler, handler
    return previous


def _die() -> None:
    kill = getattr(signal, "SIGKILL", None)
    if kill is not None:
        os.kill(os.getpid(), kill)
    os._exit(137)  # pragma: no cover - platforms without SIGKILL
