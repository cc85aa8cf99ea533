"""What each page shows, as plain data for a template: every function here is a bounded query on
the index (a page of rows, a capped list) plus, for a version, its verified manifest and at most
:data:`PREVIEW_MAX` bytes of each previewed attachment. Nothing here writes to a store.

Each function returns ``(template name, context)``; :mod:`roro.ui.app` and :mod:`roro.ui.export`
render them with their own :class:`~roro.ui.links.Links`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import IntegrityError, InvalidNameError, NotFoundError, QuerySyntaxError, RoroError
from ..metadata import AUTOMATIC_KEYS
from ..names import LATEST, validate_attachment_name, validate_name, validate_tag
from ..objects.canonical import canonical_json
from ..query import parse
from ..refs import list_projects
from ..repository import rejected_text
from ..storage import TooLargeError
from .links import Links
from .render import markdown, plot_svg

if TYPE_CHECKING:
    from ..image import ModelImage
    from ..project import Project
    from ..repository import ModelRepository

PAGE_SIZE = 50
REPOS_PER_PAGE = 50
TAG_EVENTS_PER_PAGE = 100
MAX_COLUMNS = 12
DEFAULT_COLUMNS = 6
MAX_KEYS = 500
PLOT_POINTS = 1000
#: A preview reads an attachment only when it is at most this big, and then reads all of it, so
#: what is shown is verified against the digest (a prefix of a bigger object could not be).
PREVIEW_MAX = 1 << 20
#: At most this many bytes of previews per version page, and this many previews.
PREVIEW_BUDGET = 4 << 20
MAX_PREVIEWS = 8
#: Images are shown inline (fetched by the browser, verified by the server) up to this size.
INLINE_IMAGE_MAX = 10 << 20
MAX_ATTACHMENTS_LISTED = 500
CSV_ROWS, CSV_COLS, TEXT_CHARS = 100, 40, 100_000
IMAGE_EXTENSIONS = {"png", "jpg", "jpeg", "gif", "webp", "svg"}
TEXT_EXTENSIONS = {"txt", "text", "log", "yaml", "yml", "toml", "ini", "cfg", "conf", "py", "r",
                   "sql", "rst", "jsonl", "ndjson"}
KNOWN_MANIFEST_KEYS = {"format", "model", "attachments", "metadata", "timestamp", "author",
                       "comment", "lineage"}


class PageError(RoroError):
    """A request the page cannot answer: ``status`` 400 (bad parameter) or 404."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Page:
    template: str
    context: dict[str, Any]


def _base(project: Project, links: Links, title: str, **extra: Any) -> dict[str, Any]:
    return {"links": links, "static": links.static, "title": title, "project": project.name,
            "store_url": project.store.url, **extra}


def existing_repository(project: Project, name: str) -> ModelRepository:
    """The repository ``name`` of ``project``, its index refreshed; a 404 if it does not exist."""
    try:
        repo = project.get_model_repository(name)
    except InvalidNameError as e:
        raise PageError(str(e), 404) from None
    row = project.store.refresh(project.name, repo.name)
    if row is None:
        raise PageError(f"model repository {name!r} does not exist in project {project.name!r}",
                        404)
    if row["status"] == "renamed":
        raise PageError(f"model repository {name!r} was renamed to {row['renamed_to']!r}", 404)
    if row["status"] is not None:
        raise PageError(f"model repository {name!r} was destroyed (by {row['closed_by']}, "
                        f"{row['closed_time']})", 404)
    return repo


def positive_int(value: str | None, what: str) -> int | None:
    """A URL parameter that must be a version or sequence number (None when absent)."""
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18 or int(value) < 1:
        raise PageError(f"{what} must be a positive integer, not {value[:40]!r}")
    return int(value)


def with_latest(repo: ModelRepository, versions: list[int]) -> dict[int, list[str]]:
    try:
        return repo.get_tags_by_version(versions)
    except NotFoundError:
        return {}


# -- projects and repositories ----------------------------------------------------------------------
def repositories(project: Project, after: str | None = None) -> dict[str, Any]:
    """One page of a project's repositories by name: versions, latest, last save, tags.
    Destroyed repositories and the old names of renamed ones are left out (as by
    :meth:`~roro.project.Project.list_model_repositories`), and only one page is refreshed."""
    store = project.store
    names: list[str] = []
    for n in project.repository_names():
        try:
            names.append(validate_name(n))
        except InvalidNameError:
            continue
    if after:
        names = [n for n in names if n > after]
    shown = names[:REPOS_PER_PAGE]
    rows: list[dict[str, Any]] = []
    for name in shown:
        try:
            row = store.refresh(project.name, name)
        except IntegrityError as e:
            rows.append({"name": name, "error": str(e)})
            continue
        if row is None or row["status"] is not None:
            continue
        summary = store.index.repository_summary(project.name, name)
        tags = store.index.tags(project.name, name)
        rows.append({"name": name, "error": None, "tags": tags, **summary})
    more = shown[-1] if len(names) > REPOS_PER_PAGE else None
    return {"repos": rows, "next_after": more, "total": len(names)}


def home(project: Project, links: Links) -> Page:
    store = project.store
    projects = []
    if store.is_initialized():
        for p in list_projects(store.backend)[:1000]:
            try:
                projects.append(validate_name(p, "project"))
            except InvalidNameError:
                continue
    return Page("home.html", _base(project, links, "projects", projects=projects,
                                   **repositories(project)))


def project_page(project: Project, links: Links, after: str | None = None) -> Page:
    return Page("project.html", _base(project, links, project.name,
                                      **repositories(project, after)))


# -- a repository's versions ----------------------------------------------------------------------
def parse_cursor(raw: str | None, sort: str | None) -> tuple[Any, ...] | None:
    if not raw:
        return None
    try:
        c = json.loads(raw)
    except ValueError:
        c = None

    def num(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    def version(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2 ** 63

    ok = isinstance(c, list) and (
        (sort is None and len(c) == 1 and version(c[0]))
        or (sort is not None and len(c) == 3 and c[0] == "k" and (num(c[1]) or isinstance(c[1], str))
            and version(c[2]))
        or (sort is not None and len(c) == 2 and c[0] == "m" and version(c[1])))
    if not ok:
        raise PageError("this page link is out of date or damaged (bad 'after'); start again from "
                        "the first page")
    return tuple(c)


def repository(project: Project, links: Links, name: str, *, q: str | None = None,
               sort: str | None = None, order: str | None = None, cols: list[str] | None = None,
               after: str | None = None, page_no: int = 1) -> Page:
    """One page (``PAGE_SIZE`` rows) of a repository's versions: filtered by a query, sorted by
    version or by a metadata key, with the chosen metadata columns."""
    repo = existing_repository(project, name)
    index = project.store.index
    q = q if q and q.strip() else None  # not stripped: error columns count from its start
    sort = sort or None
    if sort is not None and len(sort) > 1000:
        raise PageError("the sort key is too long")
    if order not in (None, "", "asc", "desc"):
        raise PageError("order must be 'asc' or 'desc'")
    descending = order != "asc"
    keys = index.indexed_keys(project.name, repo.name, MAX_KEYS)
    custom = bool(cols)
    if cols:
        cols = [c for c in dict.fromkeys(cols) if len(c) <= 1000][:MAX_COLUMNS]
    else:
        cols = [k for k, _ in keys[:DEFAULT_COLUMNS]]
        latest = index.page(project.name, repo.name, limit=1)[0]
        if latest and latest[0]["metadata"]:  # the latest version's keys, plain values first
            meta = json.loads(latest[0]["metadata"])
            ranked = sorted(meta, key=lambda k: isinstance(meta[k], (dict, list)))
            cols = ranked[:DEFAULT_COLUMNS]
    cursor = parse_cursor(after, sort)
    error = None
    where: dict[str, Any] = {}
    if q is not None:
        try:
            compiled = parse(q).to_sql()
            where = {"where_sql": compiled.sql, "params": compiled.params,
                     "functions": dict(compiled.functions)}
        except QuerySyntaxError as e:
            error = {"message": str(e), "column": e.column}
    rows: list[dict[str, Any]] = []
    next_cursor = None
    if error is None:
        rows, next_cursor = index.page(project.name, repo.name, sort_key=sort,
                                       descending=descending, after=cursor, limit=PAGE_SIZE,
                                       **where)
    tags = with_latest(repo, [r["version"] for r in rows])
    table = []
    for r in rows:
        meta = json.loads(r["metadata"]) if r["metadata"] else {}
        table.append({"version": r["version"], "time": r["time"], "author": r["author"],
                      "comment": (r["comment"] or "").split("\n", 1)[0], "damaged": r["damaged"],
                      "image": r["image"], "tags": tags.get(r["version"], []),
                      "cells": [(c in meta, meta.get(c)) for c in cols]})
    state = {"q": q, "sort": sort, "order": "asc" if not descending else "desc", "cols": cols,
             "custom_cols": custom}
    summary = index.repository_summary(project.name, repo.name)
    rejected = [{"seq": r["seq"], "what": rejected_text(r), "reason": r["reason"]}
                for r in repo.rejected_events()]
    return Page("repository.html", _base(
        project, links, repo.name, repo=repo.name, rows=table, cols=cols, keys=keys, state=state,
        error=error, next_cursor=next_cursor, page_no=page_no, summary=summary,
        numeric_keys=[k for k, numeric in keys if numeric],
        tags=index.tags(project.name, repo.name), first_page=cursor is None, rejected=rejected))


# -- one version -----------------------------------------------------------------------------------
def _ext(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""


def preview_kind(name: str) -> str | None:
    ext = _ext(name)
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in ("md", "markdown"):
        return "markdown"
    if ext in ("csv", "tsv"):
        return "csv"
    if ext == "json":
        return "json"
    if ext in TEXT_EXTENSIONS:
        return "text"
    return None


def read_preview(image: ModelImage, digest: str) -> bytes | None:
    """The attachment's bytes, verified, if the object is at most PREVIEW_MAX bytes; else None.
    The store's own size decides (a manifest could understate it): a bounded read refuses a
    bigger object before reading it."""
    objects = image.repository.project.store.objects
    try:
        return objects.read(digest, max_size=PREVIEW_MAX)
    except (NotFoundError, TooLargeError):
        return None


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def preview(kind: str, name: str, data: bytes, resolve: Any) -> dict[str, Any]:
    text = _decode(data)
    if kind == "markdown":
        return {"kind": "markdown", "html": markdown(text[:TEXT_CHARS * 4], resolve)}
    if kind == "csv":
        dialect = "excel-tab" if _ext(name) == "tsv" else "excel"
        rows = []
        try:
            for i, row in enumerate(csv.reader(io.StringIO(text), dialect=dialect)):
                if i > CSV_ROWS:
                    break
                rows.append(row[:CSV_COLS])
        except csv.Error:
            return {"kind": "text", "text": text[:TEXT_CHARS], "cut": len(text) > TEXT_CHARS}
        return {"kind": "csv", "header": rows[0] if rows else [], "rows": rows[1:CSV_ROWS + 1],
                "cut": len(rows) > CSV_ROWS}
    if kind == "json":
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            pass
    return {"kind": "text", "text": text[:TEXT_CHARS], "cut": len(text) > TEXT_CHARS}


def attachments_view(image: ModelImage, links: Links, p: str, r: str, v: int) -> dict[str, Any]:
    manifest = image.manifest or {}
    atts = manifest.get("attachments", [])
    by_name = {a["name"]: a for a in atts}

    def url(a: dict[str, Any]) -> str | None:
        return links.attachment(p, r, v, a["name"], a["digest"])

    def resolve(name: str) -> str | None:
        a = by_name.get(name)
        return url(a) if a else None

    listed = []
    for a in atts[:MAX_ATTACHMENTS_LISTED]:
        listed.append({**a, "url": url(a), "kind": preview_kind(a["name"])})
    card = None
    previews: list[dict[str, Any]] = []
    budget = PREVIEW_BUDGET
    readme = next((a for a in listed if a["name"].lower() in ("readme.md", "model_card.md",
                                                              "modelcard.md")), None)
    order = ([readme] if readme else []) + [a for a in listed if a is not readme]
    for a in order:
        kind = a["kind"]
        if kind is None or len(previews) >= MAX_PREVIEWS:
            continue
        if kind == "image":
            if a["size"] <= INLINE_IMAGE_MAX and a["url"]:
                previews.append({"name": a["name"], "kind": "image", "url": a["url"]})
            continue
        if a["size"] > PREVIEW_MAX:
            previews.append({"name": a["name"], "kind": "too-big", "size": a["size"],
                             "url": a["url"]})
            continue
        if a["size"] > budget:
            continue
        try:
            data = read_preview(image, a["digest"])
        except IntegrityError as e:
            previews.append({"name": a["name"], "kind": "corrupt", "message": str(e),
                             "url": None})
            continue
        if data is None:
            continue
        budget -= len(data)
        shown = {"name": a["name"], "url": a["url"],
                 **preview(kind, a["name"], data, resolve)}
        if a is readme:
            card = shown
        else:
            previews.append(shown)
    return {"attachments": listed, "attachments_cut": len(atts) > MAX_ATTACHMENTS_LISTED,
            "attachment_count": len(atts), "attachment_bytes": sum(a["size"] for a in atts),
            "card": card, "previews": previews}


def neighbours(project: Project, r: str, v: int) -> tuple[int | None, int | None]:
    index = project.store.index
    older = index.page(project.name, r, after=(v,), limit=1)[0]
    newer = index.page(project.name, r, after=(v,), descending=False, limit=1)[0]
    return (older[0]["version"] if older else None), (newer[0]["version"] if newer else None)


def version(project: Project, links: Links, name: str, version_text: str) -> Page:
    repo = existing_repository(project, name)
    v = positive_int(version_text, "the version")
    assert v is not None
    try:
        image = repo.get_model_image(version=v)
    except IntegrityError as e:
        return damaged_version(project, links, repo, v, e)
    manifest = image.manifest or {}
    tags = with_latest(repo, [v]).get(v, [])
    older, newer = neighbours(project, repo.name, v)
    extras = {k: manifest[k] for k in sorted(manifest) if k not in KNOWN_MANIFEST_KEYS}
    meta = image.get_metadata()
    return Page("version.html", _base(
        project, links, f"{repo.name}:{v}", repo=repo.name, version=v, digest=image.digest,
        tags=tags, comment=manifest.get("comment", ""), author=meta.get("author"), damaged=None,
        timestamp=meta.get("timestamp"),
        metadata={k: val for k, val in manifest.get("metadata", {}).items()
                  if k not in AUTOMATIC_KEYS},
        model=manifest.get("model", {}), model_format=image.model_format,
        signature=image.signature, lineage=image.lineage or {}, extras=extras,
        older=older, newer=newer, **attachments_view(image, links, project.name, repo.name, v)))


def damaged_version(project: Project, links: Links, repo: ModelRepository, v: int,
                    error: IntegrityError) -> Page:
    """The page of a version whose manifest is missing or unreadable (issue 13: damage stays in
    its version): what its event says (image, author, time, comment, tags) and what is wrong;
    nothing of the manifest. Any other integrity error (an edited index) is raised."""
    row = project.store.index.version(project.name, repo.name, v)
    if row is None or row.get("damaged") is None or row["deleted"]:
        raise error
    older, newer = neighbours(project, repo.name, v)
    return Page("version.html", _base(
        project, links, f"{repo.name}:{v}", repo=repo.name, version=v, digest=row["image"],
        tags=with_latest(repo, [v]).get(v, []), comment=row["comment"] or "",
        author=row["author"], timestamp=row["time"], damaged=str(error), metadata={}, model={},
        lineage={}, extras={}, older=older, newer=newer, attachments=[], attachments_cut=False,
        attachment_count=0, attachment_bytes=0, card=None, previews=[]))


# -- diff ------------------------------------------------------------------------------------------
def path_diff(a: Any, b: Any, path: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Differences by key path: objects are compared key by key (recursively), anything else as
    a whole JSON value (type included)."""
    out: list[dict[str, Any]] = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            p = (*path, k)
            if k not in a:
                out.append({"path": p, "change": "added", "b": b[k]})
            elif k not in b:
                out.append({"path": p, "change": "removed", "a": a[k]})
            else:
                out.extend(path_diff(a[k], b[k], p))
        return out
    if canonical_json(a) != canonical_json(b):
        out.append({"path": path, "change": "changed", "a": a, "b": b})
    return out


def diff(project: Project, links: Links, name: str, a_text: str | None,
         b_text: str | None) -> Page:
    repo = existing_repository(project, name)
    b = positive_int(b_text, "b") or repo.resolve()
    a = positive_int(a_text, "a")
    if a is None:
        older = project.store.index.page(project.name, repo.name, after=(b,), limit=1)[0]
        a = older[0]["version"] if older else b
    ia, ib = repo.get_model_image(version=a), repo.get_model_image(version=b)
    d = ia.diff(ib)
    ma, mb = ia.manifest or {}, ib.manifest or {}
    return Page("diff.html", _base(
        project, links, f"{repo.name}: {a} → {b}", repo=repo.name, a=a, b=b, d=d,
        metadata=path_diff(ma.get("metadata", {}), mb.get("metadata", {})),
        lineage=path_diff(ia.lineage or {}, ib.lineage or {}),
        tags=with_latest(repo, [a, b])))


# -- tags ------------------------------------------------------------------------------------------
def tags(project: Project, links: Links, name: str, tag: str | None = None,
         before_text: str | None = None) -> Page:
    repo = existing_repository(project, name)
    if tag:
        try:
            validate_tag(tag)
        except InvalidNameError as e:
            raise PageError(str(e)) from None
    before = positive_int(before_text, "before")
    events, more = project.store.index.tag_history_page(
        project.name, repo.name, tag or None, before=before, limit=TAG_EVENTS_PER_PAGE)
    return Page("tags.html", _base(
        project, links, f"{repo.name} tags", repo=repo.name, tag=tag or None,
        current=repo.get_tags(), events=events, next_before=more))


# -- plot ------------------------------------------------------------------------------------------
def even_sample(lo: int, hi: int, n: int) -> list[int]:
    """``n`` version numbers evenly spread from ``lo`` to ``hi`` (both included)."""
    if hi - lo + 1 <= n:
        return list(range(lo, hi + 1))
    return sorted({lo + round(i * (hi - lo) / (n - 1)) for i in range(n)})


def plot(project: Project, links: Links, name: str, key: str | None = None,
         sample: str | None = None) -> Page:
    repo = existing_repository(project, name)
    index = project.store.index
    sample = sample or "newest"
    if sample not in ("newest", "even"):
        raise PageError("sample must be 'newest' or 'even'")
    numeric = [k for k, is_num in index.indexed_keys(project.name, repo.name, MAX_KEYS) if is_num]
    if not key:
        key = numeric[0] if numeric else None
    points: list[tuple[int, float]] = []
    if key is not None:
        if sample == "even":
            lo, hi = index.version_bounds(project.name, repo.name)
            versions = even_sample(lo, hi, PLOT_POINTS) if lo is not None and hi is not None else []
            points = index.numeric_series(project.name, repo.name, key, versions=versions)
        else:
            points = index.numeric_series(project.name, repo.name, key, newest=PLOT_POINTS)
    marks: dict[int, list[str]] = {}
    for t, v in sorted(repo.get_tags().items(), key=lambda kv: (kv[0] != LATEST, kv[0])):
        marks.setdefault(v, []).append(t)
    svg = plot_svg(points, marks, key or "", lambda v: links.version(project.name, repo.name, v))
    values = [float(y) for _, y in points]
    stats = None
    if values:
        stats = {"n": len(values), "min": min(values), "max": max(values), "last": points[-1]}
    tagged = [(v, marks[v], y) for v, y in points if v in marks]
    return Page("plot.html", _base(
        project, links, f"{repo.name}: {key or 'plot'}", repo=repo.name, key=key,
        numeric=numeric, sample=sample, svg=svg, stats=stats, tagged=tagged,
        plot_points=PLOT_POINTS))


def attachment_name(path: str) -> str:
    """The attachment name in a URL path, validated (never a path that escapes)."""
    try:
        return validate_attachment_name(path)
    except InvalidNameError as e:
        raise PageError(str(e), 404) from None
