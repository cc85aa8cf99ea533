"""``roro models:search`` and ``roro models:diff``: find and compare versions (docs/query.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..query import parse
from ..refspec import parse_refspec
from . import render
from .models import image_document, with_tags
from .render import json_option

if TYPE_CHECKING:
    from . import CliState


# -- models:search ---------------------------------------------------------------------------------
@click.command("models:search")
@click.argument("expr", metavar="EXPR")
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=0), metavar="N",
              help="Show only the N newest matches.")
@json_option
@click.pass_obj
def models_search(state: CliState, expr: str, limit: int | None, as_json: bool) -> None:
    """Find versions of every repository whose metadata and refs match EXPR, newest save first.

    EXPR compares metadata keys and the fields version, author, timestamp, tag and comment, e.g.
    "Accuracy > 0.88 and (\\"Input-Data-Source\\" like 's3://credit%' or tag = 'prod')" (the
    language: docs/query.md). Reads only the index; no model is downloaded.
    """
    query = parse(expr)  # a syntax error is reported before the store is opened
    project = state.project
    project.require_exists()
    entries = with_tags(project, project.search(query, limit))
    if as_json:
        render.emit_json({"project": project.name, "query": str(query),
                          "versions": [image_document(i, t) for i, t in entries]})
        return
    out = render.console()
    if not entries:
        out.print(render.text("No version of project ", (project.name, "bold cyan"),
                              " matches ", (render.safe_line(str(query)), "bold"), "."))
        return
    from rich.table import Table  # rich (~40 ms): only when something is rendered
    table = Table(box=None, pad_edge=False, header_style="bold")
    refs = [render.ref(i.repository.name, i.version) for i, _ in entries]
    tag_cells = [render.tag_list(t) for _, t in entries]
    table.add_column("VERSION", style="bold yellow", **render.whole(refs))
    table.add_column("IMAGE", **render.whole(["x" * 12]))
    table.add_column("SAVED")
    table.add_column("AUTHOR")
    table.add_column("TAGS", style="bold cyan", **render.whole(tag_cells))
    table.add_column("COMMENT")
    for image, tags in entries:
        meta = image.get_metadata()
        first_line = (image.comment or "").strip().split("\n", 1)[0]
        table.add_row(render.ref(image.repository.name, image.version),
                      render.short_digest(image.digest), render.human_time(meta["timestamp"]),
                      render.safe_line(meta["author"]), render.tag_list(tags),
                      render.safe_line(first_line))
    out.print(table)


# -- models:diff -----------------------------------------------------------------------------------
DIFF_STYLE = {"+": "green", "-": "red", "~": "yellow"}


@click.command("models:diff")
@click.argument("spec_a", metavar="NAME:A")
@click.argument("spec_b", metavar="NAME:B")
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
