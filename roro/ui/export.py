"""``roro ui --export DIR``: the same pages as a static site, for people who have no roro.

Bounded: the newest ``max_versions`` versions of each repository (their table pages, version pages
and plots), diffs between consecutive exported versions and from each tagged version to the
latest, attachments up to ``max_attachment_bytes`` each (bigger ones are listed by name and
digest, not linked), no search box. Links are relative, so the folder can be opened from disk or
served from a bucket. Each page carries its Content-Security-Policy in a ``<meta>`` element (no
script, nothing fetched from elsewhere), and no file a store supplied is written under a name
that renders as a page (``report.html`` is written as ``report.html.txt``; see
:data:`roro.ui.links.INERT_EXTENSIONS`). Attachments are written once per digest, verified.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import IntegrityError, InvalidNameError, RoroError
from ..names import LATEST, validate_name
from ..project import Project
from ..refs import list_projects, list_repositories
from . import pages
from .links import ExportLinks, ExportPlan, attachment_path, encode_cursor, plot_slug
from .render import page_csp, render

DEFAULT_MAX_VERSIONS = 1000
DEFAULT_MAX_ATTACHMENT_BYTES = 10 << 20
MAX_PLOTS = 50


@dataclass
class ExportReport:
    """What an export wrote (``roro ui --export DIR --json`` prints it)."""

    directory: str
    projects: int = 0
    repositories: int = 0
    versions: int = 0
    pages: int = 0
    attachments: int = 0
    attachment_bytes: int = 0
    attachments_skipped: int = 0
    problems: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_site(project: Project, directory: str | os.PathLike, *,
                max_versions: int = DEFAULT_MAX_VERSIONS,
                max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES) -> ExportReport:
    """Write the static site of ``project``'s store into ``directory`` (new or empty)."""
    root = os.path.abspath(os.fspath(directory))
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise RoroError(f"cannot export into {root}: it exists and is not an empty directory; "
                        f"give a new or empty directory")
    os.makedirs(root, exist_ok=True)
    report = ExportReport(directory=root)
    plan = ExportPlan()
    store = project.store
    project_names = []
    if store.is_initialized():
        for name in list_projects(store.backend):
            try:
                project_names.append(validate_name(name, "project"))
            except InvalidNameError:
                continue
    if project.name not in project_names:
        project_names.append(project.name)
    projects = {n: (project if n == project.name else Project(n, store))
                for n in sorted(project_names)}
    work: dict[tuple[str, str], list[int]] = {}
    for pname, proj in projects.items():
        plan.projects.add(pname)
        names = list_repositories(store.backend, pname) if store.is_initialized() else []
        for rname in names:
            try:
                validate_name(rname)
                if store.refresh(pname, rname) is None:
                    continue
            except (InvalidNameError, IntegrityError) as e:
                report.problems[f"{pname}/{rname}"] = str(e)
                continue
            versions = newest_versions(proj, rname, max_versions)
            work[(pname, rname)] = versions
            plan.repos.add((pname, rname))
            plan.repo_pages[(pname, rname)] = max(1, -(-len(versions) // pages.PAGE_SIZE))
            plan.versions.update((pname, rname, v) for v in versions)
            for older, newer in zip(versions[1:], versions, strict=False):
                plan.diffs.add((pname, rname, older, newer))
            repo = proj.get_model_repository(rname)
            tags = repo.get_tags()
            latest = tags.get(LATEST)
            for tag, v in tags.items():
                if tag != LATEST:
                    plan.tag_pages.add((pname, rname, tag))
                if latest is not None and v != latest:
                    plan.diffs.add((pname, rname, v, latest))
            plan.tag_pages.add((pname, rname, None))
            keys = store.index.metadata_keys(pname, rname, pages.MAX_KEYS)
            for key in [k for k, numeric in keys if numeric][:MAX_PLOTS]:
                plan.plots.add((pname, rname, key))
        report.projects += 1

    def write_page(path: str, page: pages.Page) -> None:
        links = page.context["links"]
        assert isinstance(links, ExportLinks) and links.here == path
        html = render(page.template, csp=page_csp(static=True), **page.context)
        _write(root, path, html.encode("utf-8"))
        report.pages += 1

    def links(path: str) -> ExportLinks:
        return ExportLinks(plan, path)

    write_page("index.html", pages.home(project, links("index.html")))
    for pname, proj in projects.items():
        path = f"p/{pname}/index.html"
        write_page(path, pages.project_page(proj, links(path)))
    for (pname, rname), versions in sorted(work.items()):
        proj = projects[pname]
        report.repositories += 1
        base = f"p/{pname}/r/{rname}/"
        cursor = None
        for page_no in range(1, plan.repo_pages[(pname, rname)] + 1):
            path = base + ("index.html" if page_no == 1 else f"page-{page_no}.html")
            page = pages.repository(proj, links(path), rname, page_no=page_no,
                                    after=encode_cursor(cursor) if cursor else None)
            exported = set(versions)  # the last page stops at the oldest exported version
            page.context["rows"] = [r for r in page.context["rows"] if r["version"] in exported]
            write_page(path, page)
            cursor = page.context["next_cursor"]
        repo = proj.get_model_repository(rname)
        for v in versions:
            for att in repo.get_model_image(version=v).get_attachments():
                if att.digest in plan.attachments:
                    continue
                if att.size > max_attachment_bytes:
                    report.attachments_skipped += 1
                    continue
                target = attachment_path(att.digest, att.name)
                with att.open() as src:  # verified before it is copied
                    _write_stream(root, target, src)
                plan.attachments[att.digest] = target
                report.attachments += 1
                report.attachment_bytes += att.size
            path = base + f"v/{v}.html"
            write_page(path, pages.version(proj, links(path), rname, str(v)))
            report.versions += 1
        for p, r, a, b in sorted(plan.diffs):
            if (p, r) == (pname, rname):
                path = base + f"diff/{a}-{b}.html"
                write_page(path, pages.diff(proj, links(path), rname, str(a), str(b)))
        for p, r, tag_name in sorted(plan.tag_pages, key=lambda t: (t[0], t[1], t[2] or "")):
            if (p, r) == (pname, rname):
                path = base + (f"tags-{tag_name}.html" if tag_name else "tags.html")
                write_page(path, pages.tags(proj, links(path), rname, tag_name))
        for p, r, key in sorted(plan.plots):
            if (p, r) == (pname, rname):
                path = base + f"plot/{plot_slug(key)}.html"
                write_page(path, pages.plot(proj, links(path), rname, key))
    return report


def newest_versions(project: Project, repository: str, limit: int) -> list[int]:
    """The newest ``limit`` live version numbers, newest first (a page at a time)."""
    index = project.store.index
    out: list[int] = []
    cursor = None
    while len(out) < limit:
        rows, cursor = index.page(project.name, repository, after=cursor,
                                  limit=min(500, limit - len(out)))
        out += [r["version"] for r in rows]
        if cursor is None:
            break
    return out


def _target(root: str, path: str) -> str:
    full = os.path.normpath(os.path.join(root, *path.split("/")))
    if not full.startswith(root + os.sep):  # defence in depth: every part was validated
        raise RoroError(f"refusing to write {path!r} outside {root}")
    os.makedirs(os.path.dirname(full), exist_ok=True)
    return full


def _write(root: str, path: str, data: bytes) -> None:
    with open(_target(root, path), "wb") as f:
        f.write(data)


def _write_stream(root: str, path: str, src: Any) -> None:
    with open(_target(root, path), "wb") as f:
        shutil.copyfileobj(src, f, 1 << 20)
