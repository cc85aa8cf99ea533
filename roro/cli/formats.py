"""``roro models:save`` (store a model file as a version, without loading it) and
``roro models:scan`` (what a pickle would import, read from its opcodes)."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from ..errors import IntegrityError, InvalidMetadataError, NotFoundError
from ..formats import FORMATS
from ..formats.base import CLEAN, CODE, FLAGGED
from ..names import validate_name
from ..refspec import parse_refspec
from . import render
from .render import json_option
from .state import complete_spec

if TYPE_CHECKING:
    from ..image import ModelImage
    from . import CliState

#: ``models:scan`` exit codes: the worst verdict of the versions scanned (documented in
#: docs/cli.md). Distinct from the error codes 1-6, so CI can tell a verdict from a failure.
EXIT_SCAN = {CLEAN: 0, CODE: 10, FLAGGED: 11}


def parse_meta(items: tuple[str, ...]) -> dict[str, Any]:
    """``--meta key=value`` pairs: the value is JSON when it parses (``0.89``, ``true``,
    ``[1, 2]``, ``"text"``), else the text itself."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InvalidMetadataError(f"--meta takes KEY=VALUE, not {item!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        out[key] = value
    return out


@click.command("models:save")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default="file",
              show_default=True,
              help="The model's format; the file is checked to be in it (never loaded).")
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE",
              help="Metadata (repeatable); VALUE is JSON when it parses, else text.")
@click.option("--attach", "attach", multiple=True, metavar="PATH",
              help="Attach a file (repeatable), under its base name.")
@click.option("-m", "--message", "comment", default="", metavar="COMMENT",
              help="The version's comment.")
@json_option
@click.pass_obj
def models_save(state: CliState, name: str, file: str, fmt: str, meta: tuple[str, ...],
                attach: tuple[str, ...], comment: str, as_json: bool) -> None:
    """Save an existing model FILE as the next version of NAME, without unpickling or loading it.

    The bytes are stored as they are. With --format, the file must check out as that format: a
    safetensors header whose tensors add up to the file, an ONNX protobuf that parses, a skops
    archive, a pickle stream that scans (see models:scan); 'file' (the default) takes any file.
    Prints the new NAME:VERSION.
    """
    validate_name(name)
    if not os.path.isfile(file):
        raise NotFoundError(f"no such file: {file}")
    image = state.writable_project.get_model_repository(name).save_file(
        file, format=fmt, metadata=parse_meta(meta),
        attachments={os.path.basename(p.rstrip("/")): p for p in attach}, comment=comment)
    if as_json:
        render.emit_json({"project": state.writable_project.name, "repository": name,
                          "version": image.version, "image": image.digest,
                          "format": fmt, "size": image.model_size,
                          "bytes_sent": image.bytes_sent, "bytes_stored": image.bytes_stored})
        return
    render.console(stderr=True).print(render.text(
        "Saved ", (render.ref(name, image.version), "bold yellow"), " (",
        fmt, ", ", render.human_size(image.model_size), ") ",
        (render.short_digest(image.digest), "yellow"),
        f"; sent {render.human_size(image.bytes_sent or 0)}, newly stored "
        f"{render.human_size(image.bytes_stored or 0)}"))
    click.echo(f"{name}:{image.version}")  # alone on stdout, for scripts: V=$(roro models:save …)


@click.command("models:scan")
@click.argument("spec", metavar="NAME[:VERSION|TAG]", shell_complete=complete_spec)
@click.option("--all", "all_versions", is_flag=True,
              help="Scan every live version of NAME (not only the one SPEC names).")
@json_option
@click.pass_obj
def models_scan(state: CliState, spec: str, all_versions: bool, as_json: bool) -> None:
    """Say what a version's pickle would import, read from its opcodes without running it.

    Verdicts: clean (exit 0), contains code: review (functions or classes pickled by value;
    exit 10), flagged (an import or a name no model needs, such as os.system, or a pickle that
    cannot be read statically; exit 11). With --all, every version; the exit code is the worst.
    A model that is not a pickle is clean. A clean scan is not proof of safety: the load gate
    (trust: pickle: deny) is the control.
    """
    ref = parse_refspec(spec)  # a bad name is reported before the store is looked at
    assert ref.name is not None
    if all_versions:
        if not ref.is_latest or ref.text != ref.name:
            raise click.UsageError("give NAME with --all, not NAME:VERSION")
        repo = state.project.resolve_repository(ref.name)
        images = list(repo.list_model_images())  # NotFoundError for an unknown repository
    else:
        image = state.project.get_model_image(ref)
        repo, images = image.repository, [image]
    name = repo.name  # a renamed repository's new name
    results = [scan_document(i, unreadable_ok=all_versions) for i in images]
    worst = max((EXIT_SCAN[r["verdict"]] for r in results), default=0)
    if as_json:
        render.emit_json({"project": state.project.name, "repository": name,
                          "versions": results, "exit_code": worst})
    else:
        out = render.console()
        for r in results:
            style = {CLEAN: "bold green", CODE: "bold yellow"}.get(r["verdict"], "bold red")
            label = "contains code: review" if r["verdict"] == CODE else r["verdict"]
            out.print(render.text((render.ref(name, r["version"]), "bold yellow"), "  ",
                                  r["format"], "  ", (label, style)))
            for item in r["flagged"] + r["problems"]:
                out.print(render.text("  ", ("FLAGGED ", "bold red"), render.safe_line(item)))
            if r["code_objects"]:
                out.print(render.text(f"  {r['code_objects']} code object(s) naming: ",
                                      render.safe_line(", ".join(r["code_names"][:40]))))
    sys.exit(worst)


def scan_document(image: ModelImage, unreadable_ok: bool = False) -> dict[str, Any]:
    """One version's scan, as ``models:scan --json`` lists it. With ``unreadable_ok`` (``--all``),
    a version whose manifest or model cannot be read (damaged, corrupted, missing) is listed as
    flagged, saying why, instead of stopping the scan of the others."""
    doc: dict[str, Any] = {"version": image.version, "image": image.digest,
                           "format": image.model_format}
    try:
        result = image.scan()
    except (IntegrityError, NotFoundError) as e:
        if not unreadable_ok:
            raise
        doc.update(verdict=FLAGGED, imports=[], flagged=[], code_objects=0, code_names=[],
                   problems=[f"cannot be read: {e}"], pickle=None)
        return doc
    if result is None:
        doc.update(verdict=CLEAN, imports=[], flagged=[], code_objects=0, code_names=[],
                   problems=[], pickle=False)
    else:
        doc.update(result.to_dict(), pickle=True)
    return doc


COMMANDS = [models_save, models_scan]
