"""``roro fsck``, ``roro gc``, ``roro index --rebuild`` and ``roro models:delete`` (docs/trust.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..refspec import parse_refspec
from ..store import Store
from ..units import parse_duration
from . import render
from .errors import EXIT_INTEGRITY
from .render import json_option
from .state import require_store

if TYPE_CHECKING:
    from . import CliState


def _store(state: CliState) -> Store:
    """The store the global options (or roro.yml, or $RORO_HOME) name; checks cover all of it.

    A store that does not exist yet is refused rather than reported clean: checking a mistyped
    path should not say "ok" (nor create an index there)."""
    store = state.writable_project.store
    require_store(store, state.settings.store_source())
    return store


# -- fsck ------------------------------------------------------------------------------------------
@click.command("fsck")
@click.option("--read-data", is_flag=True,
              help="Also re-hash every object in the store (reads every byte).")
@json_option
@click.pass_context
def fsck(ctx: click.Context, read_data: bool, as_json: bool) -> None:
    """Check the store: every ref log, and that every object a live version reaches exists.

    Each problem is one line naming the repository, version and digest (expected and actual).
    Objects no version reaches are reported as information (gc removes them), not as problems.
    Exits 0 when the store is clean, 4 when there is a problem.
    """
    from ..check import fsck as run_fsck  # the check package (~2 ms): only for its commands
    report = run_fsck(_store(ctx.obj), read_data=read_data)
    if as_json:
        render.emit_json(report.to_dict())
    else:
        out = render.console()
        for problem in report.problems:
            out.print(render.text(("error", "bold red"), " ", render.safe_line(problem)))
        for warning in report.warnings:
            out.print(render.text(("warning", "bold yellow"), " ", render.safe_line(warning)))
        if report.unreferenced:
            out.print(render.text(("info", "bold"), f" {len(report.unreferenced)} unreferenced "
                                  f"object{'s' * (len(report.unreferenced) != 1)} (a deleted "
                                  f"version or a crashed save; 'roro gc' removes them)"))
        verdict = ("ok", "bold green") if report.ok else ("FAILED", "bold red")
        out.print(render.text(
            verdict, f": {report.repositories} repositories, {report.events} events, "
            f"{report.versions} versions, {report.objects} objects ({report.verified} verified), "
            f"{len(report.unreferenced)} unreferenced, {len(report.problems)} "
            f"problem{'s' * (len(report.problems) != 1)}"
            + (f", {len(report.warnings)} warning{'s' * (len(report.warnings) != 1)}"
               if report.warnings else "") + f" in {report.seconds:.1f} s"))
    if not report.ok:
        ctx.exit(EXIT_INTEGRITY)


# -- gc --------------------------------------------------------------------------------------------
@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@click.option("--grace", "grace", metavar="DURATION", default="24h", show_default=True,
              help="Spare objects younger than this (90s, 30m, 24h, 7d, 2w, 1h30m or seconds), "
                   "so that saves in flight are never robbed; at least 1h (RORO_GC_MIN_GRACE "
                   "sets that floor for every process using the store).")
@json_option
@click.pass_obj
def gc(state: CliState, dry_run: bool, grace: str, as_json: bool) -> None:
    """Delete objects that no live version reaches and that are older than the grace period.

    Takes the store's gc lock (one gc at a time), lists the objects, reads the keep markers of
    saves in flight, then the logs, and deletes nothing if the store has a problem that makes it
    unknown what is still needed (exit 4). Prints what it frees (or, with --dry-run, would
    free): count and bytes.
    """
    grace_seconds = parse_duration(grace)
    from ..check import gc as run_gc  # the check package (~2 ms): only for its commands
    report = run_gc(_store(state), grace_seconds=grace_seconds, dry_run=dry_run)
    if as_json:
        render.emit_json(report.to_dict())
        return
    out = render.console()
    verb = "Would delete" if dry_run else "Deleted"
    n = len(report.deleted)
    line = render.text(verb, " ", (f"{n} object{'s' * (n != 1)}", "bold"))
    if report.temp_files:
        t = len(report.temp_files)
        line.append(f" and {t} temporary file{'s' * (t != 1)}")
    line.append(", freeing " if not dry_run else ", which frees ")
    line.append(render.human_size(report.freed_bytes), style="bold")
    line.append(f" ({report.freed_bytes} bytes); {report.objects} objects in the store, "
                f"{report.unreferenced} unreferenced, {report.kept_young} kept as younger than "
                f"{grace} ({render.human_size(report.kept_young_bytes)})")
    if report.kept_protected:
        line.append(f", {report.kept_protected} kept for saves in flight (keep markers)")
    line.append(".")
    out.print(line)
    if report.missing_blobs:
        out.print(render.text(("warning", "bold yellow"), f" {report.missing_blobs} blob(s) that "
                              f"live versions need are missing; run 'roro fsck'"))
    if dry_run and (n or report.temp_files):
        out.print("Run again without --dry-run to delete them.")


# -- index --rebuild -------------------------------------------------------------------------------
@click.command("index")
@click.option("--rebuild", is_flag=True, help="Rebuild the local index from the store alone.")
@json_option
@click.pass_context
def index(ctx: click.Context, rebuild: bool, as_json: bool) -> None:
    """Manage the local SQLite index (derived data: the store alone is the truth).

    With --rebuild, index every repository of every project again from the store, with the same
    answers; a repository whose log is broken is left out and named (exit 4, run 'roro fsck').
    """
    if not rebuild:
        raise click.UsageError("nothing to do: pass --rebuild")
    report = _store(ctx.obj).rebuild_index()
    if as_json:
        render.emit_json(report.to_dict())
    else:
        out = render.console()
        for name, error in report.failed.items():
            out.print(render.text(("error", "bold red"), " ", render.safe_line(name), ": ",
                                  render.safe_line(error)))
        for name, why in report.damaged.items():
            out.print(render.text(("damaged", "bold yellow"), " ", render.safe_line(name), ": ",
                                  render.safe_line(why), " (listed as damaged; the other "
                                  "versions are readable)"))
        out.print(render.text(
            "Rebuilt ", (render.safe_line(report.index), "bold"), f": {report.projects} "
            f"projects, {report.repositories} repositories, {report.versions} versions"
            + (f", {len(report.failed)} left out (run 'roro fsck')" if report.failed else "")
            + "."))
    if not report.ok:
        ctx.exit(EXIT_INTEGRITY)


# -- checkpoint ------------------------------------------------------------------------------------
@click.command("checkpoint")
@click.argument("name", required=False)
@json_option
@click.pass_obj
def checkpoint(state: CliState, name: str | None, as_json: bool) -> None:
    """Make a checkpoint of a repository (or of every repository of the project) at its log's
    end, unless one exists there.

    A new machine then reads the checkpoint, verified against the log, instead of every event
    and manifest. Writers make them as history grows; this is for a store written before, or
    after 'roro fsck' reports a bad one.
    """
    project = state.writable_project
    names = [name] if name else [n for n in project.repository_names()
                                 if project.get_model_repository(n).status is None]
    done = []
    for n in names:
        done.append({"project": project.name, "repository": n,
                     **project.get_model_repository(n).checkpoint()})
    if as_json:
        render.emit_json(done)
        return
    out = render.console()
    for d in done:
        what = (f"new checkpoint at event {d['seq']} ({d['objects_written']} objects, "
                f"{d['size']} bytes)" if d["created"] else
                f"checkpoint at event {d['seq']} already there" if d["seq"] else "empty log")
        out.print(render.text((render.safe_line(d["repository"]), "bold"), ": ", what))


# -- models:delete ---------------------------------------------------------------------------------
@click.command("models:delete")
@click.argument("spec", metavar="NAME:VERSION")
@json_option
@click.pass_obj
def models_delete(state: CliState, spec: str, as_json: bool) -> None:
    """Delete one version (a ref-log event: the deletion is history too).

    Refused while a tag points at the version: move or remove the tag first. Version numbers are
    never reused; the objects become collectable by 'roro gc' unless another version shares them.
    """
    ref = parse_refspec(spec)
    name, version = ref.name, ref.version
    assert name is not None
    if version is None:
        raise click.UsageError(f"give the version to delete as NAME:VERSION (a number), not "
                               f"{spec!r}")
    repo = state.project.get_model_repository(name)
    if ref.version_word is not None and ref.version_word in repo.get_tags():
        repo.resolve_ref(ref)  # raises: NAME:vN is ambiguous while a tag vN exists
    deleted = repo.delete_version(version)
    if as_json:
        render.emit_json({"project": state.project.name, "repository": name, "version": version,
                          "deleted": deleted})
        return
    shown = (render.ref(name, version), "bold yellow")
    if deleted:
        render.console().print(render.text("Deleted ", shown, "; 'roro gc' frees its objects "
                                           "after the grace period."))
    else:
        render.console().print(render.text(shown, " was already deleted."))


COMMANDS = [fsck, gc, index, checkpoint, models_delete]
