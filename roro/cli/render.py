"""Rendering: rich output for people, exact JSON for scripts, and the small formatters both use.

rich is imported only when something is rendered, so ``roro --help`` stays fast. Text that comes
from a store (comments, metadata, author, attachment names) is never read as rich markup and has its
control characters made visible, so a hostile store cannot move the cursor or recolour a terminal.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import sys
import unicodedata
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from ..digests import short
from ..units import format_bytes

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.text import Text


#: The width of a "line" off a terminal: wide enough that no row of a table is ever wrapped or
#: cut, so that ``awk``, ``cut`` and ``grep`` see one row per line (like ``git log`` piped).
UNLIMITED_WIDTH = 1 << 20


class Output:
    """Prints rich renderables to stdout (or stderr): colour and the terminal's width on a
    terminal (``NO_COLOR`` honoured); elsewhere plain text, one table row per line, never
    wrapped or cut, and no trailing blanks on any line, so files and pipes get clean text."""

    def __init__(self, stderr: bool = False):
        from rich.console import Console  # rich (~40 ms): only when something is rendered
        self.stderr = stderr
        self.console: Console = Console(stderr=stderr, highlight=False, emoji=False, markup=False)
        if not self.console.is_terminal:
            self.console.width = UNLIMITED_WIDTH

    def print(self, *objects: Any, **options: Any) -> None:
        """Print like rich's ``Console.print``; lines of text are never wrapped (tables are)."""
        from rich.text import Text  # rich (~40 ms): only when something is rendered
        options.setdefault("soft_wrap", all(isinstance(o, (str, Text)) for o in objects))
        c = self.console
        if c.is_terminal:
            c.print(*objects, **options)
            return
        with c.capture() as captured:
            c.print(*objects, **options)
        lines = captured.get().split("\n")
        click.echo("\n".join(line.rstrip() for line in lines), nl=False, err=self.stderr)


def console(stderr: bool = False) -> Output:
    """Where a command prints for people (see :class:`Output`)."""
    return Output(stderr)


def emit_json(document: Any) -> None:
    """Write one JSON document (and a newline) to stdout: the whole of stdout for ``--json``.

    ASCII-only, so control characters and bytes a terminal would act on are always escaped."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=True, allow_nan=False))


def safe(text: object) -> str:
    """``text`` with control and format characters shown as escapes (``\\x1b``), newlines and tabs kept."""
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def safe_line(text: object) -> str:
    """:func:`safe` on one line (newlines and tabs escaped too), for table cells and headers."""
    return safe(text).replace("\n", "\\n").replace("\t", "\\t")


def text(*parts: tuple[str, str] | str | Text) -> Text:
    """A rich Text from plain strings and ``(string, style)`` pairs; never parsed as markup."""
    from rich.text import Text  # rich (~40 ms): only when something is rendered
    t = Text()
    for p in parts:
        if isinstance(p, tuple):
            t.append(p[0], style=p[1])
        else:
            t.append(p)
    return t


#: ``--json`` of every command that lists or shows something.
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON document instead of text (schema: docs/cli.md).")

human_size = format_bytes


def human_time(iso: str | None, seconds: bool = True) -> str:
    """An ISO 8601 UTC time (``2026-11-26T15:22:14.302896Z``) as ``2026-11-26 15:22:14 UTC``."""
    if not iso:
        return "-"
    try:
        t = _dt.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return safe_line(iso)  # written by another tool: show it as it is
    return t.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def relative_time(iso: str | None, now: _dt.datetime | None = None) -> str:
    """An ISO 8601 UTC time as ``just now``, ``5 minutes ago``, ``2 hours ago``, ``3 days ago``,
    ``6 weeks ago``; older than a year, or in the future (another machine's clock), as the date."""
    if not iso:
        return "-"
    try:
        t = _dt.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return safe_line(iso)
    seconds = ((now or _dt.datetime.now(_dt.timezone.utc)) - t).total_seconds()
    if seconds < -60 or seconds >= 365 * 86400:
        return human_time(iso, seconds=False)
    if seconds < 45:
        return "just now"
    for unit, size, limit in (("minute", 60, 3600), ("hour", 3600, 86400),
                              ("day", 86400, 14 * 86400), ("week", 7 * 86400, 63 * 86400),
                              ("month", 30 * 86400, 365 * 86400)):
        if seconds < limit:
            n = max(1, round(seconds / size))
            return f"{n} {unit}{'s' * (n != 1)} ago"
    return human_time(iso, seconds=False)  # pragma: no cover - the loop covers a year


def when(iso: str | None, relative: bool, seconds: bool = True) -> str:
    """A time for a table: relative (``2 hours ago``) or absolute UTC (``--no-relative``)."""
    return relative_time(iso) if relative else human_time(iso, seconds)


#: ``--no-relative`` of every command that shows times in a table.
relative_option = click.option("--no-relative", "absolute", is_flag=True,
                               help="Show times as UTC dates instead of '2 hours ago'.")


def lookup(metadata: dict[str, Any], key: str) -> Any:
    """A metadata value by key, or by key path (``params.C``) when no key has that name; None
    when there is neither."""
    if key in metadata:
        return metadata[key]
    value: Any = metadata
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def cell(value: Any) -> str:
    """A metadata value in a table cell or a ``key=value``: :func:`value_text` on one line,
    ``-`` for a missing one."""
    return "-" if value is None else safe_line(value_text(value))


@contextlib.contextmanager
def paged(out: Output) -> Iterator[None]:
    """Page what the block prints when stdout is a terminal and it is longer than the screen,
    like ``git log``: ``$RORO_PAGER``, else ``$PAGER``, else ``less -R`` (``RORO_PAGER=cat``
    turns paging off). Off a terminal (a pipe, a file) nothing changes."""
    c = out.console
    if not c.is_terminal or out.stderr:
        yield
        return
    with c.capture() as captured:
        yield
    text = captured.get()
    if text.count("\n") < c.height:
        click.echo(text, nl=False, color=True)
        return
    pager = os.environ.get("RORO_PAGER") or os.environ.get("PAGER") or "less -R"
    saved = os.environ.get("PAGER")
    os.environ["PAGER"] = pager
    try:
        click.echo_via_pager(text, color=True)
    finally:
        if saved is None:
            os.environ.pop("PAGER", None)
        else:
            os.environ["PAGER"] = saved


def short_digest(digest: str | None) -> str:
    return short(digest) if digest else "-"


def ref(repository: str, version: int | None) -> str:
    """The spec that names a version on the command line: ``credit-risk:3``."""
    return f"{repository}:{version}"


def value_text(value: Any) -> str:
    """A metadata value for a table cell: strings as they are, everything else as compact JSON."""
    if isinstance(value, str):
        return safe(value)
    return safe(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")))


def whole(values: list[str]) -> dict[str, Any]:
    """Column options that keep every one of ``values`` whole on a narrow terminal (digests,
    tags and version names a user copies): the column is never narrower than the longest one,
    and never wraps or cuts it; other columns give way."""
    return {"no_wrap": True, "min_width": max((len(v) for v in values), default=1)}


def tag_list(tags: list[str]) -> str:
    return ", ".join(safe_line(t) for t in tags)


def transfer_progress(*, eta: bool = False) -> Progress:
    """A transient rich progress bar for byte transfers: spinner, description, bar, bytes, speed
    (and, with ``eta``, the time remaining), on the console's terminal."""
    from rich.progress import (  # rich (~40 ms): only when something is rendered
        BarColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text  # rich (~40 ms): only when something is rendered

    class Bytes(ProgressColumn):
        """``12.0 MiB/300.0 MiB`` in roro's binary units (rich's own column mixes units)."""

        def render(self, task: Any) -> Text:
            total = "?" if task.total is None else format_bytes(int(task.total))
            return Text(f"{format_bytes(int(task.completed))}/{total}", style="progress.download")

    class Speed(ProgressColumn):
        """``48.2 MiB/s`` in the same binary units."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{format_bytes(int(speed))}/s",
                        style="progress.data.speed")

    columns: list[ProgressColumn] = [SpinnerColumn(), TextColumn("{task.description}"),
                                     BarColumn(), Bytes(), Speed()]
    if eta:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console().console, transient=True)


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
