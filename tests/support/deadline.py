"""Run a function in a forked child with a deadline: a test of "this never hangs" fails (and the
runaway child is killed) instead of blocking the suite for minutes.

The deadline is a hang detector, not a speed target (speed targets are ratios in ``make bench``):
keep it an order of magnitude above what the operation takes when it works.
"""

from __future__ import annotations

import multiprocessing
import pickle
import traceback
from collections.abc import Callable
from typing import Any


class Hung(AssertionError):
    """The function did not return within its deadline."""


def _child(conn: Any, fn: Callable[[], Any]) -> None:
    try:
        result: tuple[str, Any] = ("ok", fn())
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
        result = ("raised", e)
        try:
            pickle.dumps(e)
        except Exception:
            result = ("raised", AssertionError("".join(traceback.format_exception(e))))
    try:
        try:
            conn.send(result)
        except Exception as e:  # noqa: BLE001 - an unpicklable result
            conn.send(("raised", AssertionError(f"the result cannot be sent back: {e!r}")))
    finally:
        conn.close()


def within(seconds: float, fn: Callable[[], Any], what: str = "the call") -> Any:
    """``fn()`` run in a forked child; its result, or its exception re-raised here. Raises
    :class:`Hung` (after killing the child) if it takes longer than ``seconds``."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(seconds):
            raise Hung(f"{what} did not finish within {seconds} s")
        status, value = parent.recv()
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
    if status == "raised":
        raise value
    return value
