"""``roro ui``: serve the store read-only in a browser, or ``--export DIR`` a static site."""

from __future__ import annotations

import json
import socket
import sys
import threading
import webbrowser
from typing import TYPE_CHECKING

import click

from ..errors import RoroError
from ..ui import require_ui
from . import render

if TYPE_CHECKING:
    from ..project import Project
    from . import CliState

DEFAULT_PORT = 8765


def _parse_size(text: str) -> int:
    units = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
             "g": 1 << 30, "gib": 1 << 30}
    t = text.strip().lower()
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(num):].strip()
    if not num or unit not in units:
        raise click.BadParameter(f"{text!r} is not a size such as 10MiB or 500k")
    try:
        value = float(num)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a size such as 10MiB or 500k") from None
    return int(value * units[unit])


@click.command("ui")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback makes the registry readable "
                   "from the network (a warning says so).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.option("--export", "export_dir", metavar="DIR",
              help="Write the pages as a static site into DIR (new or empty) instead of serving.")
@click.option("--max-versions", type=click.IntRange(min=1), default=1000, show_default=True,
              help="With --export: the newest N versions of each repository.")
@click.option("--max-attachment-size", "max_attachment", default="10MiB", show_default=True,
              metavar="SIZE", help="With --export: copy attachments up to this size.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document: the export summary, or the server's address.")
@click.pass_obj
def ui(state: CliState, port: int, host: str, no_browser: bool, export_dir: str | None, max_versions: int,
       max_attachment: str, as_json: bool) -> None:
    """Browse the project's store in a web browser: repositories, versions (search, sort,
    columns), a version's metadata and attachments, diffs, tag history, plots.

    Read-only: nothing is written to the store. Serves on 127.0.0.1:8765 and opens a browser
    (--no-browser to skip); Ctrl-C stops it. With --export DIR, writes the same pages as a static
    site instead (relative links, no server needed).
    """
    require_ui(server=export_dir is None)
    project = state.project
    if export_dir is not None:
        from ..ui.export import export_site  # Jinja2 and markdown-it: only for an export
        report = export_site(project, export_dir, max_versions=max_versions,
                             max_attachment_bytes=_parse_size(max_attachment))
        if as_json:
            render.emit_json(report.to_dict())
            return
        click.echo(f"Wrote {report.pages} pages ({report.repositories} repositories, "
                   f"{report.versions} versions) and {report.attachments} attachments to "
                   f"{report.directory}; open {report.directory}/index.html")
        if report.attachments_skipped:
            click.echo(f"{report.attachments_skipped} attachments over {max_attachment} are listed "
                       f"by name and digest only")
        for what, problem in report.problems.items():
            click.echo(f"Skipped {what}: {render.safe_line(problem)}", err=True)
        return
    serve(project, host, port, open_browser=not no_browser, as_json=as_json)


def serve(project: Project, host: str, port: int, *, open_browser: bool, as_json: bool) -> None:
    import uvicorn  # the web server (the 'ui' extra): only when serving

    from ..ui.app import create_app, is_loopback  # Starlette: only when serving
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise RoroError(f"cannot listen on {host}:{port}: {e.strerror}; choose another --port "
                        f"(or --port 0 for any free one)") from None
    sock.listen(128)
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{actual}/"
    if not is_loopback(host.strip("[]")):
        click.echo(f"Warning: listening on {host}, not loopback: anyone who can reach this "
                   f"machine on port {actual} can read this registry", err=True)
    if as_json:
        # One line (not emit_json's indented document): a script reads it while the server runs.
        click.echo(json.dumps({"url": url, "project": project.name, "store": project.store.url}))
    else:
        click.echo(f"Serving project {project.name} of {project.store.url} at {url} "
                   f"(read-only; Ctrl-C to stop)")
    sys.stdout.flush()
    app = create_app(project, host.strip("[]"))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if open_browser:
        def launch() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            if server.started:
                webbrowser.open(url)
        threading.Thread(target=launch, daemon=True).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


COMMANDS = [ui]
