"""Named crash points of the write path, and delay points of the gc rule, for tests.

Crash points (borg's approach):

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
- ``during-index-update``: an index transaction has applied events but not committed;
- ``checkpoint:before-pointer``: a checkpoint's objects are stored, its pointer is not.

Delay points are the steps of the object-reuse rule (docs/trust.md), on both sides: a test runs
the other side inside one of them (in-process, with the same handler), or a process sleeps there
for ``RORO_DELAY_SECONDS`` (default 1) when ``RORO_DELAY_AT`` names it (several: comma-separated).
``RORO_CRASH_AT`` kills a process at a delay point too.

- ``reuse:after-check``: a writer found an object already stored and judged its age;
- ``reuse:after-marker``: it wrote its keep marker, and has not looked at the gc lock yet;
- ``reuse:waiting-for-gc``: it saw a live gc lock and starts waiting for it;
- ``reuse:after-protect``: what it relies on is protected (or young); it has not published yet;
- ``gc:after-lock``: gc holds its lock and has not listed the objects yet;
- ``gc:after-list``: gc listed the objects (with their times), has not read the keep markers;
- ``gc:after-markers``: gc read the keep markers, has not read the logs;
- ``gc:after-logs``: gc read the logs and manifests, has not deleted anything.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

CRASH_ENV = "RORO_CRASH_AT"
DELAY_ENV = "RORO_DELAY_AT"
DELAY_SECONDS_ENV = "RORO_DELAY_SECONDS"
POINTS = ("after-blobs", "after-manifest", "after-ref-event", "before-index-update",
          "during-index-update")
CHECKPOINT_POINTS = ("checkpoint:before-pointer",)
DELAY_POINTS = ("reuse:after-check", "reuse:after-marker", "reuse:waiting-for-gc",
                "reuse:after-protect", "gc:after-lock", "gc:after-list", "gc:after-markers",
                "gc:after-logs")

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


def delay_point(name: str) -> None:
    """A step of the gc rule where a test may run the other side (the installed handler), or
    sleep (``RORO_DELAY_AT``), or die (``RORO_CRASH_AT``)."""
    if _handler is not None:
        _handler(name)
    delay_at = os.environ.get(DELAY_ENV)
    if delay_at and name in delay_at.split(","):
        time.sleep(float(os.environ.get(DELAY_SECONDS_ENV) or 1))
    if os.environ.get(CRASH_ENV) == name:
        _die()


def set_crash_handler(handler: Callable[[str], None] | None) -> Callable[[str], None] | None:
    """Install ``handler(point)`` to be called at every crash and delay point; returns the
    previous one."""
    global _handler
    previous, _handler = _handler, handler
    return previous


def _die() -> None:
    kill = getattr(signal, "SIGKILL", None)
    if kill is not None:
        os.kill(os.getpid(), kill)
    os._exit(137)  # pragma: no cover - platforms without SIGKILL
