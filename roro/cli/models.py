"""``roro models`` and ``roro models:*``: list, create, log, show, download, tag, untag, history."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from ..errors import IntegrityError, NotFoundError
from ..names import LATEST, validate_name, validate_tag
from ..query import parse
from ..refspec import parse_refspec, validate_new_tag
from . import render
from .render import json_option
from .state import complete_spec

if TYPE_CHECKING:
    from ..image import ModelImage
    from ..project import Project
    from ..repository import TagChange
    from . import CliState

PROGRESS_MIN_BYTES = 16 << 20  # a progress bar for downloads of at least this size, on a terminal
#: models:show scans a pickle up to this size (a bigger one: 'roro models:scan').
SHOW_SCAN_MAX = 256 << 20
#: Rows of a summary (tensors) that models:show prints; --json has them all.
SHOW_MAX_ROWS = 50

spec_argument = click.argument("spec", metavar="NAME[:VERSION|TAG]", shell_complete=complete_spec)


def image_document(image: ModelImage, tags: list[str]) -> dict[str, Any]:
    """The JSON form of one saved image (``models:show --json``, each entry of ``models:log``):
    :meth:`~roro.image.ModelImage.to_dict` with the project and the tags, in this key order."""
    d = image.to_dict()
    return {
        "project": image.repository.project.name,
        "repository": d["repository"],
        "version": d["version"],
        "image": d["digest"],
        "tags": tags,
        "author": d["author"],
        "timestamp": d["timestamp"],
        "comment": d["comment"],
        "metadata": d["metadata"],
        "model": {**(image.manifest or {})["model"], "format": image.model_format,
                  "type": image.model_type} if d["model"] else None,
        "attachments": [{"name": a["name"], "size": a["size"], "digest": a["digest"]}
                        for a in d["attachments"]],
        "lineage": d["lineage"] or {},
        "contract": d["contract"],
        "signature": d["signature"],
        **({"damaged": d["damaged"]} if "damaged" in d else {}),
    }


def signature_text(signature: dict[str, Any] | None) -> Any:
    """Who signed a version, and whether that was checked: ``alice (SHA256:…) verified``."""
    if signature is None:
        return render.text(("unsigned", "dim"))
    state = ("verified", "bold green") if signature["verified"] else \
        ("not checked (roro verify)", "dim")
    return render.text((render.safe_line(signature["signer"]), "bold"), " (",
                       signature["key"], ") ", state)


def with_tags(project: Project, images: list[ModelImage]) -> list[tuple[ModelImage, list[str]]]:
    """Each image with the tags (``latest`` included) that point at it: one query per repository."""
    tags: dict[str, dict[int, list[str]]] = {}
    for repo_name in {i.repository.name for i in images}:
        repo = project.get_model_repository(repo_name)
        tags[repo_name] = repo.get_tags_by_version(
            [_version(i) for i in images if i.repository.name == repo_name])
    return [(i, tags.get(i.repository.name, {}).get(_version(i), [])) for i in images]


def _version(image: ModelImage) -> int:
    """The version of a saved image (images the CLI shows are saved)."""
    assert image.version is not None
    return image.version


# -- models ----------------------------------------------------------------------------------------
@click.command("models")
@render.relative_option
@json_option
@click.pass_obj
def models(state: CliState, absolute: bool, as_json: bool) -> None:
    """List the project's model repositories: versions, latest, last save, tags."""
    project = state.project
    project.require_exists()
    rows: list[dict[str, Any]] = []
    for repo in project.list_model_repositories():
        newest = repo.list_model_images(limit=1)
        tags = repo.get_tags()
        tags.pop(LATEST, None)
        rows.append({
            "name": repo.name,
            "versions": repo.count(),
            "latest": newest[0].version if newest else None,
            "last_saved": newest[0].get_metadata()["timestamp"] if newest else None,
            "tags": tags,
        })
    closed = project.closed_repositories()
    if as_json:
        render.emit_json({"project": project.name, "store": project.store.url, "models": rows,
                          "closed": closed})
        return
    out = render.console()
    where = render.text("project ", (project.name, "bold cyan"), " in ",
                        (render.safe_line(project.store.url), "bold"))
    if not rows:
        out.print(render.text("No model repositories in ", where, ". Save a model with the "
                              "Python API, or create one with 'roro models:create NAME'."))
        _print_closed(out, closed)
        return
    from rich.table import Table  # rich (~40 ms): only when something is rendered
    table = Table(title=where, title_justify="left", box=None, pad_edge=False, header_style="bold")
    tag_cells = [", ".join(f"{render.safe_line(t)}→v{v}" for t, v in r["tags"].items())
                 for r in rows]
    table.add_column("MODEL", style="bold", **render.whole([r["name"] for r in rows]))
    table.add_column("VERSIONS", justify="right")
    table.add_column("LATEST", justify="right")
    table.add_column("LAST SAVED")
    table.add_column("TAGS", overflow="fold")
    for r, tag_cell in zip(rows, tag_cells, strict=True):
        table.add_row(r["name"], str(r["versions"]), f"v{r['latest']}" if r["latest"] else "-",
                      render.when(r["last_saved"], not absolute, seconds=False), tag_cell)
    out.print(table)
    _print_closed(out, closed)


def _print_closed(out: render.Output, closed: list[dict[str, Any]]) -> None:
    destroyed = [c["name"] for c in closed if c["status"] == "destroyed"]
    renamed = [f"{c['name']}→{c['renamed_to']}" for c in closed if c["status"] == "renamed"]
    if destroyed:
        out.print(render.text(f"Destroyed (restore with 'roro models:restore NAME'): "
                              f"{render.safe_line(', '.join(destroyed))}"))
    if renamed:
        out.print(render.text(f"Renamed: {render.safe_line(', '.join(renamed))}"))


# -- models:create ---------------------------------------------------------------------------------
@click.command("models:create")
@click.argument("name")
@json_option
@click.pass_obj
def models_create(state: CliState, name: str, as_json: bool) -> None:
    """Create an empty model repository (saving an image also creates one)."""
    project = state.writable_project
    project.create_model_repository(name)
    if as_json:
        render.emit_json({"project": project.name, "store": project.store.url,
                          "repository": name, "created": True})
        return
    render.console().print(render.text("Created model repository ", (name, "bold"),
                                       " in project ", (project.name, "bold cyan"), "."))


# -- models:log ------------------------------------------------------------------------------------
#: ``--columns`` of models:log and models:search.
columns_option = click.option(
    "--columns", "columns", metavar="K1,K2", callback=lambda ctx, p, v: split_columns(v),
    help="Also show these metadata keys (or key paths such as params.C), comma-separated.")


def split_columns(value: str | None) -> list[str]:
    return [c.strip() for c in (value or "").split(",") if c.strip()]


@click.command("models:log")
@click.argument("name", metavar="[NAME[:VERSION|TAG]]", required=False,
                shell_complete=complete_spec)
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=0), metavar="N",
              help="Show only the N newest versions.")
@click.option("--before", type=click.IntRange(min=1), metavar="VERSION",
              help="Only versions older than VERSION (to page through NAME's history).")
@click.option("--where", "where", metavar="EXPR",
              help="Only versions matching the query EXPR, e.g. \"Accuracy > 0.88 and "
                   "tag = 'prod'\" (language: docs/query.md).")
@click.option("--oneline", is_flag=True,
              help="One line per version: version, image, tags, when, first line of the comment.")
@click.option("--verify", "verify_signatures", is_flag=True,
              help="Check the signature of each version shown (one read of its event each); "
                   "and of the move of each tag shown; a bad one fails the command (exit 4), "
                   "naming the event.")
@columns_option
@render.relative_option
@json_option
@click.pass_obj
def models_log(state: CliState, name: str | None, limit: int | None, before: int | None,
               where: str | None, oneline: bool, verify_signatures: bool, columns: list[str],
               absolute: bool, as_json: bool) -> None:
    """Show the history of saves, newest first, like 'git log'.

    With NAME, that repository's versions (NAME:VERSION or NAME:TAG: from that version down);
    without, every repository's, interleaved by time. --where EXPR keeps only the versions that
    match a query. Reads only the index: '-n 20' is as fast at 100,000 versions as at 20. On a
    terminal a long log goes through a pager ($RORO_PAGER, $PAGER, else less). Each version
    shows who signed it, as the log claims; --verify checks those signatures.
    """
    if where is not None:
        parse(where)  # a syntax error is reported before anything is read
    ref = parse_refspec(name) if name is not None else None  # so is a bad name
    project = state.project
    project.store.read_once()
    if ref is not None:
        assert ref.name is not None
        repo = project.resolve_repository(ref.name)  # an old name leads to the new one
        name = repo.name
        if not ref.is_latest:
            if before is not None:
                raise click.UsageError("give NAME:VERSION or --before, not both")
            before = repo.resolve_ref(ref) + 1
        if where is not None:
            if before is not None:
                raise click.UsageError("--where searches the whole history: give NAME without "
                                       "a version, and no --before")
            images = repo.search(where, limit)
        else:
            images = repo.list_model_images(limit=limit, before=before)
    else:
        if before is not None:
            raise click.UsageError("--before pages one repository's history: give NAME too")
        project.require_exists()
        images = project.search(where, limit) if where is not None else project.log(limit)
    entries = with_tags(project, images)
    if verify_signatures:  # each version's event, and the last move of each tag shown
        for image, image_tags in entries:
            if not image.damaged:
                image.verify()
            for t in image_tags:
                if t != LATEST:
                    image.repository.resolve(tag=t)
    if as_json:
        render.emit_json({"project": project.name, "repository": name,
                          "versions": [image_document(i, t) for i, t in entries]})
        return
    out = render.console()
    if not entries:
        what = f"model repository {name!r}" if name else f"project {project.name!r}"
        out.print(f"No saved versions in {what}.")
        return
    with render.paged(out):
        if oneline:
            out.print(oneline_table(entries, columns, not absolute))
        else:
            for n, (image, image_tags) in enumerate(entries):
                if n:
                    out.print()
                _print_log_entry(out, image, image_tags, columns, not absolute)


def _print_log_entry(out: render.Output, image: ModelImage, image_tags: list[str],
                     columns: list[str], relative: bool) -> None:
    header = render.text((render.ref(image.repository.name, image.version), "bold yellow"),
                         "  ", (render.short_digest(image.digest), "yellow"))
    if image_tags:
        header.append("  (")
        for k, t in enumerate(image_tags):
            header.append(", " if k else "")
            header.append(render.safe_line(t), style="bold green" if t == LATEST else "bold cyan")
        header.append(")")
    meta = image.get_metadata()
    out.print(header)
    if image.damaged:
        out.print(render.text(("damaged", "bold red"), ": ", render.safe_line(image.damaged),
                              "; run 'roro fsck'"))
    out.print(render.text("Author: ", render.safe_line(meta["author"])))
    if image.signature is not None:
        out.print(render.text("Signed: ", signature_text(image.signature)))
    date = render.human_time(meta["timestamp"])
    if relative:
        date += f" ({render.relative_time(meta['timestamp'])})"
    out.print(render.text("Date:   ", date))
    for key in columns:
        out.print(render.text(f"{render.safe_line(key)}: ",
                              render.cell(render.lookup(meta, key))))
    if image.comment:
        out.print()
        for line in render.safe(image.comment.rstrip("\n")).split("\n"):
            out.print(render.text("    ", line))


def oneline_table(entries: list[tuple[ModelImage, list[str]]], columns: list[str],
                  relative: bool) -> Any:
    """``models:log --oneline``: version, image, tags, time, the given metadata columns and the
    first line of the comment, one version per line, no header (like ``git log --oneline``)."""
    from rich.table import Table  # rich (~40 ms): only when something is rendered
    refs = [render.ref(i.repository.name, i.version) for i, _ in entries]
    tag_cells = [f"({render.tag_list(t)})" if t else "" for _, t in entries]
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold yellow", **render.whole(refs))
    table.add_column(style="yellow", **render.whole(["x" * 12]))
    table.add_column(style="bold cyan", **render.whole(tag_cells))
    table.add_column(no_wrap=True)
    for _ in columns:
        table.add_column(no_wrap=True)
    table.add_column()
    for (image, _), ref, tag_cell in zip(entries, refs, tag_cells, strict=True):
        meta = image.get_metadata()
        first = (image.comment or "").strip().split("\n", 1)[0]
        table.add_row(ref, render.short_digest(image.digest), tag_cell,
                      render.when(meta["timestamp"], relative, seconds=False),
                      *(f"{render.safe_line(k)}={render.cell(render.lookup(meta, k))}"
                        for k in columns),
                      render.safe_line(first))
    return table


# -- models:show -----------------------------------------------------------------------------------
@click.command("models:show")
@spec_argument
@click.option("--no-scan", is_flag=True,
              help="Do not read a pickle's bytes to list what it would import.")
@json_option
@click.pass_obj
def models_show(state: CliState, spec: str, no_scan: bool, as_json: bool) -> None:
    """Show one version (default latest): metadata, model, attachments, tags, comment.

    Also the model's summary (tensors, inputs and outputs: recorded at save, so the model is not
    fetched), its contract, and for a pickle what it would import (read from its opcodes, never
    run: the pickle's bytes are read and verified, not loaded; --no-scan skips this; see
    'roro models:scan').
    """
    ref = parse_refspec(spec)  # a bad name is reported before the store is looked at
    project = state.project
    project.store.read_once()
    image = project.get_model_image(ref)
    tags = image.repository.get_tags_by_version([_version(image)]).get(_version(image), [])
    doc = image_document(image, tags)
    try:
        doc["summary"] = image.summary
    except (IntegrityError, NotFoundError) as e:  # the rest of the version is still shown
        doc["summary"] = {"error": str(e)}
    doc["pickle"] = pickle_document(image, scan=not no_scan)
    if as_json:
        render.emit_json(doc)
        return
    out = render.console()
    header = render.text((render.ref(doc["repository"], doc["version"]), "bold yellow"))
    if tags:
        header.append("  (" + render.tag_list(tags) + ")", style="bold cyan")
    out.print(header)
    out.print(_facts(doc))
    for section in (_pickle_section, _summary_section, _contract_section, _lineage_section,
                    _metadata_section, _attachments_section):
        rendered = section(doc)
        if rendered is not None:
            out.print()
            out.print(rendered)


def pickle_document(image: ModelImage, scan: bool = True) -> dict[str, Any] | None:
    """What ``models:show`` says of a pickle: the scan of its verified bytes (None for a model
    that is not a pickle). Not scanned: a pickle over :data:`SHOW_SCAN_MAX` bytes (left to
    models:scan), with ``scan=False``, or one whose bytes cannot be read or are corrupted (the
    rest of the version is still shown; ``skipped`` says why)."""
    if image.model_format != "cloudpickle":
        return None
    if not scan:
        return {"verdict": None, "skipped": "--no-scan"}
    if (image.model_size or 0) > SHOW_SCAN_MAX:
        return {"verdict": None, "skipped": f"larger than {render.human_size(SHOW_SCAN_MAX)}; "
                                            f"run 'roro models:scan' to scan it"}
    try:
        result = image.scan()
    except (IntegrityError, NotFoundError) as e:
        return {"verdict": None, "skipped": f"cannot read the model: {e}"}
    return result.to_dict() if result is not None else None


def _facts(doc: dict[str, Any]) -> Any:
    from rich.table import Table  # rich is imported only when something is rendered
    model = doc["model"]
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    facts.add_row("image", doc["image"])
    facts.add_row("author", render.safe_line(doc["author"]))
    facts.add_row("signed", signature_text(doc["signature"]))
    facts.add_row("saved", render.human_time(doc["timestamp"]))
    facts.add_row("model", render.text(render.safe_line(model["type"]), ", ",
                                       render.human_size(model["size"]), " (",
                                       render.short_digest(model["digest"]), ")"))
    versions = ", ".join(
        f"{label} {render.safe_line(model[key])}"
        for key, label in (("cloudpickle", ""), ("python", "Python"))
        if isinstance(model.get(key), str)).lstrip()
    facts.add_row("format", render.safe_line(model["format"]) + (f" {versions}" if versions
                                                                  else ""))
    facts.add_row("comment", render.safe(doc["comment"]) if doc["comment"] else "-")
    return facts


def _pickle_section(doc: dict[str, Any]) -> Any:
    from rich.console import Group  # rich (~40 ms): only when something is rendered
    scan = doc.get("pickle")
    if scan is None:
        return None
    if scan["verdict"] is None:
        return render.text(("Pickle", "bold"), ": not scanned (",
                           render.safe_line(scan["skipped"]), ")")
    style = {"clean": "bold green", "contains code": "bold yellow"}.get(scan["verdict"],
                                                                        "bold red")
    lines: list[Any] = [render.text(("Pickle", "bold"), ": ", (scan["verdict"], style),
                                    " (read from its opcodes, not run; a clean scan is no proof "
                                    "of safety)")]
    flagged = set(scan["flagged"])
    for name in scan["imports"]:
        mark = ("  FLAGGED", "bold red") if name in flagged else ""
        lines.append(render.text("  imports ", render.safe_line(name), mark))
    for item in scan["flagged"]:
        if item not in scan["imports"]:
            lines.append(render.text(("  FLAGGED ", "bold red"), render.safe_line(item)))
    if scan["code_objects"]:
        lines.append(render.text(f"  {scan['code_objects']} code object"
                                 f"{'s' * (scan['code_objects'] != 1)} (functions or classes "
                                 f"pickled by value) naming: ",
                                 render.safe_line(", ".join(scan["code_names"][:40]))))
    for problem in scan["problems"]:
        lines.append(render.text(("  FLAGGED ", "bold red"), render.safe_line(problem)))
    return Group(*lines)


def _summary_section(doc: dict[str, Any]) -> Any:
    from rich.console import Group  # rich (~40 ms): only when something is rendered
    from rich.table import Table  # rich (~40 ms): only when something is rendered
    summary = doc.get("summary")
    if not summary:
        return None
    if "error" in summary:
        return render.text(("Summary", "bold"), ": unreadable (",
                           render.safe_line(summary["error"]), ")")
    if "tensors" in summary:
        tensors = summary["tensors"]
        title = render.text((f"Tensors ({len(tensors)}, {summary.get('parameters', 0):,} "
                             f"parameters)", "bold"))
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("NAME")
        table.add_column("DTYPE", no_wrap=True)
        table.add_column("SHAPE", no_wrap=True)
        for t in tensors[:SHOW_MAX_ROWS]:
            table.add_row(render.safe_line(t["name"]), render.safe_line(t["dtype"]),
                          render.safe_line(_shape(t["shape"])))
        if len(tensors) > SHOW_MAX_ROWS:
            table.add_row(f"… {len(tensors) - SHOW_MAX_ROWS} more (--json lists them all)", "",
                          "")
        return Group(title, table)
    if "inputs" in summary:
        title = render.text((f"ONNX graph (opset {_opsets(summary)}, {summary.get('nodes', 0)} "
                             f"nodes, {summary.get('initializers', 0)} initializers, "
                             f"{summary.get('parameters', 0):,} parameters)", "bold"))
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("")
        table.add_column("NAME")
        table.add_column("DTYPE", no_wrap=True)
        table.add_column("SHAPE", no_wrap=True)
        for kind in ("inputs", "outputs"):
            for v in summary.get(kind) or []:
                table.add_row(kind[:-1], render.safe_line(v.get("name")),
                              render.safe_line(v.get("dtype")), render.safe_line(
                                  _shape(v.get("shape"))))
        return Group(title, table)
    if "untrusted_types" in summary:
        types = summary["untrusted_types"]
        return render.text(("skops types to trust", "bold"), ": ",
                           render.safe_line(", ".join(types)) if types else "none")
    return None


def _shape(shape: Any) -> str:
    if not isinstance(shape, list):
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _opsets(summary: dict[str, Any]) -> str:
    return ", ".join(f"{o.get('version')}" if o.get("domain") == "ai.onnx"
                     else f"{o.get('domain')} {o.get('version')}"
                     for o in summary.get("opset") or [])


def _contract_section(doc: dict[str, Any]) -> Any:
    rows = contract_rows(doc.get("contract"))
    return _key_value_section("Contract", rows) if rows else None


def contract_rows(contract: Any) -> list[tuple[str, str]]:
    """The lines of a contract: each library and version, the input schema."""
    from ..formats.contract import flatten  # the contract helpers: only when one is shown
    def value(key: str, v: Any) -> str:
        if isinstance(v, str):
            return v
        if key == "input shape":
            return _shape(v)
        text = json.dumps(v, separators=(",", ":"))
        return text if len(text) <= 80 else text[:77] + "..."

    rows = dict(flatten(contract))
    schema = contract.get("input") if isinstance(contract, dict) else None
    if isinstance(schema, dict) and "example" in schema:
        rows["input example"] = schema["example"]
    return [(render.safe_line(k), render.safe_line(value(k, v))) for k, v in rows.items()]


def _lineage_section(doc: dict[str, Any]) -> Any:
    lineage = lineage_rows(doc["lineage"])
    if not lineage:
        return render.text(("Lineage", "bold"), ": none recorded")
    return _key_value_section("Lineage", lineage)


def _key_value_section(title: str, rows: list[tuple[str, str]]) -> Any:
    """A bold title over a two-column grid of ``(key, value)`` rows."""
    from rich.console import Group  # rich (~40 ms): only when something is rendered
    from rich.table import Table  # rich (~40 ms): only when something is rendered
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return Group(render.text((title, "bold")), table)


def _metadata_section(doc: dict[str, Any]) -> Any:
    from rich.table import Table  # rich (~40 ms): only when something is rendered
    metadata = doc["metadata"]
    if not metadata:
        return render.text(("Metadata", "bold"), ": none")
    table = Table(title="Metadata", title_justify="left", title_style="bold", box=None,
                  pad_edge=False, header_style="bold")
    table.add_column("KEY", no_wrap=True)
    table.add_column("VALUE")
    for key, value in metadata.items():
        table.add_row(render.safe_line(key), render.value_text(value))
    return table


def _attachments_section(doc: dict[str, Any]) -> Any:
    from rich.table import Table  # rich (~40 ms): only when something is rendered
    attachments = doc["attachments"]
    if not attachments:
        return render.text(("Attachments", "bold"), ": none")
    total = sum(a["size"] for a in attachments)
    table = Table(title=f"Attachments ({len(attachments)}, {render.human_size(total)})",
                  title_justify="left", title_style="bold", box=None, pad_edge=False,
                  header_style="bold")
    table.add_column("NAME")
    table.add_column("SIZE", justify="right", no_wrap=True)
    table.add_column("DIGEST", overflow="fold")
    for a in attachments:
        table.add_row(render.safe_line(a["name"]), render.human_size(a["size"]),
                      render.short_digest(a["digest"]))
    return table


def lineage_rows(lineage: dict[str, Any]) -> list[tuple[str, str]]:
    """``models:show``'s lines for an image's lineage: git commit (and whether the work tree was
    dirty), Python, platform, the model's package, and where a copy came from."""
    rows = []
    git = lineage.get("git")
    if isinstance(git, dict) and git.get("commit"):
        state = git.get("dirty")
        dirty = (" (dirty: uncommitted changes)" if state is True else " (clean)"
                 if state is False else " (dirty: unknown)")
        rows.append(("git", f"{render.safe_line(git['commit'])}{dirty}"))
    if lineage.get("python"):
        rows.append(("python", render.safe_line(lineage["python"])))
    if lineage.get("platform"):
        rows.append(("platform", render.safe_line(lineage["platform"])))
    package = lineage.get("package")
    if isinstance(package, dict):
        name = package.get("distribution") or package.get("module") or "?"
        rows.append(("package", f"{render.safe_line(name)} {render.safe_line(package.get('version') or '(version unknown)')}"))
    origin = lineage.get("copied_from")
    if isinstance(origin, dict):
        rows.append(("copied from", render.safe_line(
            f"{origin.get('store')} {origin.get('project')}/{origin.get('repository')}:"
            f"{origin.get('version')}")))
        signer = origin.get("signer")
        if isinstance(signer, dict):  # as the source's event says (kept whole in copied_from)
            rows.append(("source signed", render.safe_line(
                f"{signer.get('name')} ({signer.get('key')})")))
    return rows


# -- models:download -------------------------------------------------------------------------------
@click.command("models:download")
@spec_argument
@click.option("-o", "--output", metavar="PATH",
              help="Where to write the model's bytes: a file, a directory (NAME-vN.pkl inside it) "
                   "or '-' for stdout. Default: NAME-vN.pkl here.")
@click.option("--attachments", "attachments_dir", metavar="DIR",
              help="Also write the attachments below DIR (created if missing).")
@click.option("--force", is_flag=True, help="Overwrite files that exist with other bytes.")
@json_option
@click.pass_obj
def models_download(state: CliState, spec: str, output: str | None,
                    attachments_dir: str | None, force: bool, as_json: bool) -> None:
    """Download a version's model bytes (a cloudpickle), verified, and its attachments.

    Nothing is unpickled. Every file is checked against its sha256 digest while it is written and
    only appears, complete, under its final name. Attachments are never written outside DIR. A
    file that already holds the same bytes is left alone (run it twice: nothing to do); one
    with other bytes is refused unless --force.
    """
    ref = parse_refspec(spec)  # a bad name is reported before the store is looked at
    image = state.project.get_model_image(ref)
    to_stdout = output == "-"
    if to_stdout and render.stdout_is_terminal():
        raise click.ClickException("refusing to write a model's binary bytes to a terminal; "
                                   "redirect stdout or use -o PATH")
    if to_stdout and as_json:
        raise click.UsageError("--json prints the report on stdout: give -o PATH, not -o -")
    attachments = image.get_attachments() if attachments_dir is not None else []
    total = (image.model_size or 0) + sum(a.size for a in attachments)
    label = render.ref(image.repository.name, image.version)
    with _progress(total, label) as progress:
        done = image.download(sys.stdout.buffer if to_stdout else output,
                              attachments=attachments_dir, force=force, progress=progress)
    unchanged = set(done.unchanged)
    if as_json:
        model = image.to_dict()["model"]
        render.emit_json({
            "project": image.repository.project.name, "repository": image.repository.name,
            "version": image.version, "image": image.digest,
            "model": {"path": done.model, "size": model["size"], "digest": model["digest"],
                      "written": done.model not in unchanged},
            "attachments": [{"name": a.name, "path": path, "size": a.size, "digest": a.digest,
                             "written": path not in unchanged}
                            for a, path in zip(attachments, done.attachments, strict=True)]})
        return
    status = render.console(stderr=to_stdout)
    model_what = (render.safe_line(image.model_type), ", ", render.human_size(image.model_size))
    if done.model is not None and done.model in unchanged:
        status.print(render.text((render.safe_line(done.model), "bold"), " already holds ",
                                 (label, "bold yellow"), " (", *model_what,
                                 "): the same bytes, left as it is"))
    else:
        status.print(render.text("Wrote ", (label, "bold yellow"), " (", *model_what, ") to ",
                                 (render.safe_line(done.model or "stdout"), "bold")))
    if attachments_dir is not None:
        same = [p for p in done.attachments if p in unchanged]
        n = len(done.attachments) - len(same)
        size = render.human_size(sum(a.size for a, p in zip(attachments, done.attachments,
                                                             strict=True) if p not in unchanged))
        line = render.text(f"Wrote {n} attachment{'s' * (n != 1)} ({size}) below ",
                           (render.safe_line(attachments_dir), "bold"))
        if same:
            line.append(f"; {len(same)} already held the same bytes")
        status.print(line)


class _Quiet:
    """Progress reporting that shows nothing (small transfers, or stdout is not a terminal)."""

    def phase(self, description: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[_Quiet]:
    """A rich progress bar for downloads of ``total`` bytes on a terminal: ``phase(text)`` names
    the step (fetching and verifying an object, then writing it), ``advance(n)`` counts bytes
    written. Anything small, or not on a terminal, gets a no-op."""
    if total < PROGRESS_MIN_BYTES or not render.stdout_is_terminal():
        yield _Quiet()
        return
    label = render.safe_line(label)

    class Bar(_Quiet):
        def phase(self, description: str) -> None:
            progress.update(task, description=f"{label} {render.safe_line(description)}")

        def advance(self, n: int) -> None:
            progress.advance(task, n)

    with render.transfer_progress(eta=True) as progress:
        task = progress.add_task(label, total=total)
        yield Bar()


# -- models:tag, models:untag, models:history ------------------------------------------------------
@click.command("models:tag")
@click.argument("spec", metavar="NAME:VERSION", shell_complete=complete_spec)
@click.argument("tag")
@json_option
@click.pass_obj
def models_tag(state: CliState, spec: str, tag: str, as_json: bool) -> None:
    """Point TAG at a version, creating or moving it (every move is kept in models:history).

    NAME:VERSION may also be NAME:TAG (the version that tag points at) or NAME (the latest).
    """
    ref = parse_refspec(spec)
    validate_new_tag(tag)
    assert ref.name is not None
    name = ref.name
    repo = state.project.get_model_repository(name)
    target = repo.resolve_ref(ref)
    change = repo.add_tag(tag, target)
    if as_json:
        render.emit_json(tag_change_document(state, name, change))
        return
    out = render.console()
    shown = (render.ref(name, target), "bold yellow")
    if not change.changed:
        out.print(render.text("Tag ", (tag, "bold cyan"), " already points at ", shown, "."))
    elif change.previous is None:
        out.print(render.text("Tagged ", shown, " as ", (tag, "bold cyan"), "."))
    else:
        out.print(render.text("Moved tag ", (tag, "bold cyan"), " from ",
                              (render.ref(name, change.previous), "yellow"), " to ", shown, "."))


@click.command("models:untag")
@click.argument("name")
@click.argument("tag")
@json_option
@click.pass_obj
def models_untag(state: CliState, name: str, tag: str, as_json: bool) -> None:
    """Remove TAG from NAME (the removal is kept in models:history)."""
    validate_name(name)
    validate_tag(tag)
    change = state.project.get_model_repository(name).remove_tag(tag)
    if as_json:
        render.emit_json(tag_change_document(state, name, change))
        return
    render.console().print(render.text("Removed tag ", (tag, "bold cyan"), " from ",
                                       (name, "bold"), f" (it pointed at v{change.previous})."))


def tag_change_document(state: CliState, name: str, change: TagChange) -> dict[str, Any]:
    """``models:tag --json`` and ``models:untag --json``: the move made (``seq`` null and
    ``changed`` false when the tag already pointed there)."""
    return {"project": state.project.name, "repository": name, "tag": change.tag,
            "version": change.version, "previous": change.previous, "seq": change.seq,
            "changed": change.changed}


@click.command("models:history")
@click.argument("spec", metavar="NAME[:TAG]", shell_complete=complete_spec)
@render.relative_option
@json_option
@click.pass_obj
def models_history(state: CliState, spec: str, absolute: bool, as_json: bool) -> None:
    """Show every move of NAME's tags (or of one TAG), oldest first: from → to, author, time,
    and who signed the move (as the log claims it; 'roro verify NAME:TAG' checks it)."""
    name, sep, tag = spec.partition(":")
    validate_name(name)
    if sep:
        validate_tag(tag)
    repo = state.project.resolve_repository(name)
    name = repo.name
    moves = [{"seq": m["seq"], "tag": m["tag"], "from": m["previous"], "to": m["version"],
              "author": m["author"], "time": m["time"], "signer": m["signer"],
              "signer_key": m["signer_key"]}
             for m in repo.get_tag_history(tag if sep else None)]
    if as_json:
        render.emit_json({"project": state.project.name, "repository": name,
                          "tag": tag if sep else None, "moves": moves})
        return
    out = render.console()
    if not moves:
        what = f"tag {tag!r} of {name}" if sep else f"the tags of {name}"
        out.print(f"No moves of {what}.")
        return
    from rich.table import Table  # rich (~40 ms): only when something is rendered
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("TIME", no_wrap=True)
    table.add_column("TAG", style="bold cyan", overflow="fold")
    table.add_column("MOVE", no_wrap=True)
    table.add_column("AUTHOR")
    table.add_column("SIGNED BY", overflow="fold")

    def v(n: int | None) -> str:
        return "—" if n is None else f"v{n}"

    for m in moves:
        signed = render.text(render.safe_line(m["signer"]), f" ({m['signer_key'][:19]}…)") \
            if m["signer"] else render.text(("unsigned", "dim"))
        table.add_row(render.when(m["time"], not absolute), render.safe_line(m["tag"]),
                      f"{v(m['from'])} → {v(m['to'])}", render.safe_line(m["author"]), signed)
    out.print(table)


COMMANDS = [models, models_create, models_log, models_show, models_download, models_tag,
            models_untag, models_history]
