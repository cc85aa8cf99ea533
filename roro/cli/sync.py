"""``roro sync`` and ``roro models:copy``: move histories and images between stores (docs/sync.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import click

from ..sync import SyncProgress, SyncReport, copy_image
from ..sync import sync as run_sync
from . import render
from .errors import EXIT_CONFLICT, EXIT_INTEGRITY
from .render import json_option

if TYPE_CHECKING:
    from . import CliState

if TYPE_CHECKING:
    pass


def sync_exit_code(report: SyncReport) -> int:
    """0 when every repository synced (or was up to date, ahead, pending); 4 if one failed (SRC
    cannot be trusted for it), else 5 if one conflicted (histories diverged)."""
    if report.failed:
        return EXIT_INTEGRITY
    if report.conflicted:
        return EXIT_CONFLICT
    return 0


@contextlib.contextmanager
def _progress(show: bool) -> Iterator[Callable[[SyncProgress], None] | None]:
    """A rich progress bar fed by sync's progress callback, one repository at a time; None (no
    callback) when ``show`` is False."""
    if not show:
        yield None
        return
    with render.transfer_progress() as progress:
        task = progress.add_task("sync", total=None)

        def update(p: SyncProgress) -> None:
            what = (f"{p.objects_done}/{p.objects_total} objects" if p.phase == "objects"
                    else f"{p.events_done}/{p.events_total} events")
            progress.update(task, description=render.safe_line(
                f"{p.project}/{p.repository}: {what}"), completed=p.bytes_done,
                total=p.bytes_total or None)

        yield update


# -- sync ------------------------------------------------------------------------------------------
@click.command("sync")
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@click.argument("repositories", metavar="[REPO...]", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Show what would be copied; write nothing to DST.")
@json_option
@click.pass_context
def sync(ctx: click.Context, src: str, dst: str, repositories: tuple[str, ...], dry_run: bool,
         as_json: bool) -> None:
    """Fast-forward DST to SRC's history: the objects DST lacks (verified), then the ref events.

    SRC and DST are folders, s3:// URLs or remotes declared in roro.yml. REPO is NAME or
    PROJECT/NAME (default: every repository; with the global --project, only that project's). A
    repository whose histories diverged is a conflict: left untouched, the others still sync, and
    the exit code is 5 (4 if SRC holds a corrupted or missing object).
    """
    state = ctx.obj
    with _progress(not as_json and render.stdout_is_terminal()) as progress:
        report = run_sync(src, dst, list(repositories) or None, dry_run=dry_run,
                          project=state.project_name, progress=progress)
    if as_json:
        render.emit_json(report.to_dict())
    else:
        _render_sync(report)
    code = sync_exit_code(report)
    if code:
        ctx.exit(code)


STATUS_STYLE = {"synced": "green", "pending": "yellow", "up-to-date": "", "ahead": "cyan",
                "conflict": "bold red", "failed": "bold red"}


def _render_sync(report: SyncReport) -> None:
    from rich.table import Table  # rich (~40 ms): only when something is rendered
    out = render.console()
    changed = [r for r in report.repositories if r.status != "up-to-date"]
    if changed:
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("REPOSITORY", style="bold")
        table.add_column("STATUS", no_wrap=True)
        table.add_column("EVENTS", justify="right")
        table.add_column("OBJECTS", justify="right")
        table.add_column("BYTES", justify="right", no_wrap=True)
        for r in changed:
            table.add_row(render.safe_line(r.name),
                          render.text((r.status, STATUS_STYLE.get(r.status, ""))),
                          str(r.events_appended), str(r.objects_transferred),
                          render.human_size(r.bytes_transferred))
        out.print(table)
        for r in changed:
            if r.status in ("conflict", "failed") and r.message:
                out.print(render.text((r.status, "bold red"), " ", render.safe_line(r.message)))
            for why in r.rejected:
                out.print(render.text(("rejected", "bold red"), f" {render.safe_line(r.name)}: ",
                                      render.safe_line(why)))
    out.print(render.safe_line(report.summary()))


# -- models:copy -----------------------------------------------------------------------------------
@click.command("models:copy")
@click.argument("src", metavar="SRC_STORE")
@click.argument("spec", metavar="NAME[:VERSION|TAG]")
@click.argument("dst", metavar="DST_STORE")
@click.argument("new_name", metavar="[NEW_NAME]", required=False)
@click.option("--to-project", "dst_project", metavar="NAME",
              help="The project in DST_STORE. Default: the same project as in SRC_STORE.")
@json_option
@click.pass_obj
def models_copy(state: CliState, src: str, spec: str, dst: str, new_name: str | None,
                dst_project: str | None, as_json: bool) -> None:
    """Append one image of SRC_STORE as a new version in DST_STORE, whatever DST's history.

    The promotion path when histories differ (sync would report a conflict). The new version
    records where it came from (lineage copied_from); running the same copy again appends nothing.
    The stores are folders, s3:// URLs or remotes declared in roro.yml; NEW_NAME defaults to NAME.
    """
    report = copy_image(src, spec, dst, new_name, project=state.project_name,
                        dst_project=dst_project)
    if as_json:
        render.emit_json(report.to_dict())
        return
    dst_ref = (f"{report.dst_project}/{render.ref(report.dst_repository, report.dst_version)}",
               "bold yellow")
    src_ref = f"{report.project}/{render.ref(report.repository, report.version)}"
    out = render.console()
    if report.created:
        out.print(render.text("Copied ", render.safe_line(src_ref), " to ", dst_ref, " (",
                              f"{report.objects_transferred} objects, "
                              f"{render.human_size(report.bytes_transferred)} transferred; "
                              f"{report.objects_skipped} already there)."))
    else:
        out.print(render.text(dst_ref, " already is a copy of ", render.safe_line(src_ref),
                              ": nothing appended."))


COMMANDS = [sync, models_copy]
