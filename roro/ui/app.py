"""The ``roro ui`` server: a Starlette app over one project's store, read-only.

- Only GET and HEAD routes exist (anything else: 405); no handler writes to the store.
- The ``Host`` header must name this server (loopback names, or the address it was started on;
  listening on every address, also the machine's names and IP addresses): a page of another site
  that rebinds its DNS name to 127.0.0.1 gets a 400, not the registry.
- Every response carries ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``
  and a Content-Security-Policy: pages allow no script at all; attachments are served with the
  policy ``sandbox`` (an HTML or SVG attachment runs no script in this origin, or any),
  ``Content-Disposition: attachment`` and a content type from a short list (else
  ``application/octet-stream``), after the whole object was verified against its digest.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import IntegrityError, NotFoundError, RoroError
from ..project import Project
from . import pages
from .links import ServerLinks
from .render import ATTACHMENT_CSP, page_csp, render

LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
#: Content types an attachment is served with, by extension; anything else is octet-stream.
#: Text types are served as text/plain (never text/html or text/csv handlers).
SAFE_TYPES = {
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
    "webp": "image/webp", "svg": "image/svg+xml",
    **{ext: "text/plain; charset=utf-8" for ext in (
        "txt", "text", "log", "md", "markdown", "csv", "tsv", "json", "jsonl", "ndjson", "yaml",
        "yml", "toml", "ini", "cfg", "conf", "py", "r", "sql", "rst")},
}
CHUNK = 1 << 20


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str]:
    """The ``Host`` names the server answers to: loopback names and the address it listens on;
    listening on every address (``0.0.0.0``, ``::``), also this machine's names and any IP
    address (a DNS-rebinding page reaches the server under a name of its own, never an address)."""
    names = {*LOOPBACK_HOSTS, host.strip("[]").lower()}
    if host in ("0.0.0.0", "::", ""):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower(), "*ip*"}
    return sorted(names)


def host_allowed(header: str, allowed: list[str]) -> bool:
    """Whether a ``Host`` header (``name``, ``name:port``, ``[v6]:port``) names this server."""
    header = header.strip().lower()
    if header.startswith("["):
        name = header[1:header.find("]")] if "]" in header else ""
    else:
        name = header.rsplit(":", 1)[0] if header.count(":") == 1 else header
    if not name:
        return False
    if "*ip*" in allowed:
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            pass
    return name in allowed


class HostCheck:
    """Answers 400 to a request whose ``Host`` is not this server's (DNS rebinding)."""

    def __init__(self, app: ASGIApp, allowed: list[str]):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
            if not host_allowed(host, self.allowed):
                response = PlainTextResponse("Invalid host header", status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds the headers every response needs, and the page policy where a route set none."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.csp = page_csp(static=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY"),
                         (b"cross-origin-opener-policy", b"same-origin"),
                         (b"cross-origin-resource-policy", b"same-origin")]
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", self.csp.encode()))
                if b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = headers + [h for h in extra if h[0] not in names]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def content_disposition(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_"
                         for c in base) or "attachment"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(base, safe='')}"


def content_type(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    ext = base.rsplit(".", 1)[-1].lower() if "." in base else ""
    return SAFE_TYPES.get(ext, "application/octet-stream")


class Views:
    """The endpoints of one app: each turns a request into a page of :mod:`roro.ui.pages` (or a
    verified download), and every error into the HTML error page."""

    def __init__(self, project: Project, timings: list[float] | None):
        self.project, self.store, self.timings = project, project.store, timings
        self.links = ServerLinks()

    def project_named(self, name: str) -> Project:
        if name == self.project.name:
            return self.project
        try:
            return Project(name, self.store)
        except RoroError as e:
            raise pages.PageError(str(e), 404) from None

    def html(self, page: pages.Page, status: int = 200) -> HTMLResponse:
        return HTMLResponse(render(page.template, **page.context), status_code=status)

    def error_page(self, status: int, message: str) -> HTMLResponse:
        heading = {400: "Bad request", 404: "Not found", 500: "Cannot read the store"}.get(
            status, "Error")
        return HTMLResponse(render("error.html", links=self.links, static=False, title=heading,
                                   project=self.project.name, store_url=self.store.url,
                                   heading=heading, message=message), status_code=status)

    def endpoint(self, build: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """``build`` with its errors as error pages, timed into ``timings``."""
        def run(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = build(request)
            except pages.PageError as e:
                response = self.error_page(e.status, str(e))
            except NotFoundError as e:
                response = self.error_page(404, str(e))
            except IntegrityError as e:
                response = self.error_page(500, f"{e} (nothing unverified was shown)")
            except (RoroError, ValueError) as e:
                response = self.error_page(400, str(e))
            if self.timings is not None:
                self.timings.append(time.perf_counter() - started)
            return response
        return run

    def _in(self, request: Request) -> tuple[Project, str]:
        """The project and repository name a request's path names."""
        return self.project_named(request.path_params["project"]), request.path_params["repo"]

    def home(self, request: Request) -> Response:
        return self.html(pages.home(self.project, self.links))

    def project_view(self, request: Request) -> Response:
        p = self.project_named(request.path_params["project"])
        return self.html(pages.project_page(p, self.links, _param(request, "after")))

    def repository(self, request: Request) -> Response:
        p, repo = self._in(request)
        return self.html(pages.repository(
            p, self.links, repo, q=_param(request, "q"), sort=_param(request, "sort"),
            order=_param(request, "order"), cols=request.query_params.getlist("col"),
            after=_param(request, "after")))

    def version(self, request: Request) -> Response:
        p, repo = self._in(request)
        return self.html(pages.version(p, self.links, repo, request.path_params["version"]))

    def _repo_page(self, request: Request, build: Callable[..., pages.Page],
                   *names: str) -> Response:
        """``build(project, links, repository, *the query parameters named)`` as HTML."""
        p, repo = self._in(request)
        return self.html(build(p, self.links, repo, *(_param(request, n) for n in names)))

    def diff(self, request: Request) -> Response:
        return self._repo_page(request, pages.diff, "a", "b")

    def tags(self, request: Request) -> Response:
        return self._repo_page(request, pages.tags, "tag", "before")

    def plot(self, request: Request) -> Response:
        return self._repo_page(request, pages.plot, "key", "sample")

    def attachment(self, request: Request) -> Response:
        p, name = self._in(request)
        repo = pages.existing_repository(p, name)
        v = pages.positive_int(request.path_params["version"], "the version")
        att_name = pages.attachment_name(request.path_params["name"])
        att = repo.get_model_image(version=v).get_attachment(att_name)
        # verified: the whole object was hashed before open() returns (a chunked one: each chunk
        # before any of its bytes is read; a bad one ends the download short, never sends it)
        return download(request, att.open(), att_name, att.size, content_type(att_name))

    def model(self, request: Request) -> Response:
        p, name = self._in(request)
        repo = pages.existing_repository(p, name)
        v = pages.positive_int(request.path_params["version"], "the version")
        image = repo.get_model_image(version=v)
        return download(request, image.open_model(), f"{repo.name}-v{v}.pkl",
                        image.model_size or 0, "application/octet-stream")

    async def no_route(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = ("only GET and HEAD: this view never changes the store" if status == 405
                   else f"no page at {request.url.path}")
        response = self.error_page(status, message)
        if status == 405:
            response.headers["allow"] = "GET, HEAD"
        return response


def _param(request: Request, name: str) -> str | None:
    return request.query_params.get(name)


def download(request: Request, f: BinaryIO, name: str, size: int, media_type: str) -> Response:
    """``f``'s bytes (verified whole, or chunk by chunk for a chunked blob: a bad chunk ends
    the body short, so the client sees fewer bytes than announced) as a download that never
    renders here."""
    def body() -> Iterator[bytes]:
        with f:
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    return
                yield chunk

    headers = {"content-disposition": content_disposition(name),
               "content-security-policy": ATTACHMENT_CSP,
               "content-length": str(size), "cache-control": "private, max-age=60"}
    if request.method == "HEAD":
        f.close()
        return Response(b"", media_type=media_type, headers=headers)
    return StreamingResponse(body(), media_type=media_type, headers=headers)


def create_app(project: Project, host: str = "127.0.0.1", *,
               timings: list[float] | None = None) -> Starlette:
    """The ASGI app serving ``project`` (and the other projects of its store). ``timings``, if
    given, receives each page's server time in seconds (for ``make bench``)."""
    views = Views(project, timings)
    get = ["GET", "HEAD"]
    paths = [
        ("/", views.home),
        ("/p/{project}/", views.project_view),
        ("/p/{project}/r/{repo}/", views.repository),
        ("/p/{project}/r/{repo}/v/{version}", views.version),
        ("/p/{project}/r/{repo}/v/{version}/files/{name:path}", views.attachment),
        ("/p/{project}/r/{repo}/v/{version}/model", views.model),
        ("/p/{project}/r/{repo}/diff", views.diff),
        ("/p/{project}/r/{repo}/tags", views.tags),
        ("/p/{project}/r/{repo}/plot", views.plot),
    ]
    routes = [Route(path, views.endpoint(build), methods=get) for path, build in paths]
    middleware = [Middleware(SecurityHeaders),
                  Middleware(HostCheck, allowed=allowed_hosts(host))]
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={404: views.no_route, 405: views.no_route})
