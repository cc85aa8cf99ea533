"""``roro models:search`` and ``roro models:diff``: find and compare versions (docs/query.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..query import parse
from ..refspec import parse_refspec
from . import render
from .models import columns_option, image_document, with_tags
from .render import json_option
from .state import complete_spec

if TYPE_CHECKING:
    from . import CliState


# -- models:search ---------------------------------------------------------------------------------
@click.command("models:search")
@click.argument("expr", metavar="EXPR")
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=0), metavar="N",
              help="Show only the N newest matches.")
@columns_option
@render.relative_option
@json_option
@click.pass_obj
def models_search(state: CliState, expr: str, limit: int | None, columns: list[str],
                  absolute: bool, as_json: bool) -> None:
    """Find versions of every repository whose metadata and refs match EXPR, newest save first.

    EXPR compares metadata keys and the fields version, author, timestamp, tag and comment, e.g.
    "Accuracy > 0.88 and (\\"Input-Data-Source\\" like 's3://credit%' or tag = 'prod')" (the
    language: docs/query.md). The table shows the metadata keys EXPR compares (and --columns).
    Reads only the index; no model is downloaded. When nothing matches, says which keys exist
    in another case or hold another type.
    """
    query = parse(expr)  # a syntax error is reported before the store is opened
    project = state.project
    project.require_exists()
    entries = with_tags(project, project.search(query, limit))
    hints = project.search_hints(query) if not entries else []
    if as_json:
        render.emit_json({"project": project.name, "query": str(query),
                          "versions": [image_document(i, t) for i, t in entries],
                          "hints": hints})
        return
    out = render.console()
    if not entries:
        out.print(render.text("No version of project ", (project.name, "bold cyan"),
                              " matches ", (render.safe_line(str(query)), "bold"), "."))
        for hint in hints:
            out.print(render.text(("hint", "bold yellow"), ": ", render.safe_line(hint)))
        return
    keys = list(dict.fromkeys([*query.keys(), *columns]))
    from rich.table import Table  # rich (~40 ms): only when something is rendered
    table = Table(box=None, pad_edge=False, header_style="bold")
    refs = [render.ref(i.repository.name, i.version) for i, _ in entries]
    tag_cells = [render.tag_list(t) for _, t in entries]
    table.add_column("VERSION", style="bold yellow", **render.whole(refs))
    table.add_column("IMAGE", **render.whole(["x" * 12]))
    for key in keys:
        table.add_column(render.safe_line(key), no_wrap=True)
    table.add_column("SAVED")
    table.add_column("AUTHOR")
    table.add_column("TAGS", style="bold cyan", **render.whole(tag_cells))
    table.add_column("COMMENT")
    for (image, _), ref, tag_cell in zip(entries, refs, tag_cells, strict=True):
        meta = image.get_metadata()
        first_line = (image.comment or "").strip().split("\n", 1)[0]
        table.add_row(ref, render.short_digest(image.digest),
                      *(render.cell(render.lookup(meta, k)) for k in keys),
                      render.when(meta["timestamp"], not absolute),
                      render.safe_line(meta["author"]), tag_cell,
                      render.safe_line(first_line))
    with render.paged(out):
        out.print(table)


# -- models:diff -----------------------------------------------------------------------------------
DIFF_STYLE = {"+": "green", "-": "red", "~": "yellow"}


@click.command("models:diff")
@click.argument("spec_a", metavar="NAME:A", shell_complete=complete_spec)
@click.argument("spec_b", metavar="NAME:B", shell_complete=complete_spec)
@json_option
@click.pass_obj
def models_diff(state: CliState, spec_a: str, spec_b: str, as_json: bool) -> None:
    """Show what changed from version A to version B: metadata, attachments, model, comment.

    A and B are versions or tags (credit-risk:12 credit-risk:prod), of one repository or two.
    Metadata and attachments are compared by value and digest; nothing is downloaded but the
    manifests.
    """
    project = state.project
    images = []
    for spec in (spec_a, spec_b):
        images.append(project.get_model_image(parse_refspec(spec)))
    d = images[0].diff(images[1])
    if as_json:
        render.emit_json(d.to_dict())
        return
    out = render.console()
    for n, line in enumerate(d.format().split("\n")):
        style = "bold" if n == 0 else DIFF_STYLE.get(line[:1], "")
        out.print(render.text((render.safe_line(line), style)))


COMMANDS = [models_search, models_diff]
