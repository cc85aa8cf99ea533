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
from typing import TYPE_CHECKING, Any

from ..errors import IntegrityError, InvalidNameError, RoroError
from ..names import LATEST, validate_name
from ..project import Project
from ..refs import list_projects
from . import pages
from .links import ExportLinks, ExportPlan, attachment_path, encode_cursor, plot_slug
from .render import page_csp, render

if TYPE_CHECKING:
    from ..image import Attachment

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


def export_site(project: Project, directory: str | os.PathLike[str], *,
                max_versions: int = DEFAULT_MAX_VERSIONS,
                max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES) -> ExportReport:
    """Write the static site of ``project``'s store into ``directory`` (new or empty)."""
    root = os.path.abspath(os.fspath(directory))
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise RoroError(f"cannot export into {root}: it exists and is not an empty directory; "
                        f"give a new or empty directory")
    os.makedirs(root, exist_ok=True)
    site = Site(project, root, max_versions, max_attachment_bytes)
    site.plan_all()
    site.write_page("index.html", pages.home(project, site.links("index.html")))
    for pname, proj in site.projects.items():
        path = f"p/{pname}/index.html"
        site.write_page(path, pages.project_page(proj, site.links(path)))
    for (pname, rname), versions in sorted(site.work.items()):
        site.write_repository(site.projects[pname], rname, versions)
    return site.report


class Site:
    """One export: first the plan (which pages exist, so links point only at written pages),
    then the pages, repository by repository."""

    def __init__(self, project: Project, root: str, max_versions: int,
                 max_attachment_bytes: int):
        self.project, self.store, self.root = project, project.store, root
        self.max_versions, self.max_attachment_bytes = max_versions, max_attachment_bytes
        self.report = ExportReport(directory=root)
        self.plan = ExportPlan()
        self.projects: dict[str, Project] = {}
        self.work: dict[tuple[str, str], list[int]] = {}

    def links(self, path: str) -> ExportLinks:
        return ExportLinks(self.plan, path)

    def plan_all(self) -> None:
        names = []
        if self.store.is_initialized():
            for name in list_projects(self.store.backend):
                try:
                    names.append(validate_name(name, "project"))
                except InvalidNameError:
                    continue
        if self.project.name not in names:
            names.append(self.project.name)
        self.projects = {n: (self.project if n == self.project.name else Project(n, self.store))
                         for n in sorted(names)}
        for pname, proj in self.projects.items():
            self.plan.projects.add(pname)
            for rname in proj.repository_names():
                try:
                    validate_name(rname)
                    row = self.store.refresh(pname, rname)
                    if row is None or row["status"] is not None:
                        continue  # destroyed, or renamed away (its new name is exported)
                except (InvalidNameError, IntegrityError) as e:
                    self.report.problems[f"{pname}/{rname}"] = str(e)
                    continue
                self.plan_repository(proj, rname)
            self.report.projects += 1

    def plan_repository(self, proj: Project, rname: str) -> None:
        pname, plan = proj.name, self.plan
        versions = newest_versions(proj, rname, self.max_versions)
        self.work[(pname, rname)] = versions
        plan.repos.add((pname, rname))
        plan.repo_pages[(pname, rname)] = max(1, -(-len(versions) // pages.PAGE_SIZE))
        plan.versions.update((pname, rname, v) for v in versions)
        repo = proj.get_model_repository(rname)
        damaged = set(repo.damaged_versions())  # shown as damaged; no diff with them
        for older, newer in zip(versions[1:], versions, strict=False):
            if not damaged & {older, newer}:
                plan.diffs.add((pname, rname, older, newer))
        tags = repo.get_tags()
        latest = tags.get(LATEST)
        for tag, v in tags.items():
            if tag != LATEST:
                plan.tag_pages.add((pname, rname, tag))
            if latest is not None and v != latest and not damaged & {v, latest}:
                plan.diffs.add((pname, rname, v, latest))
        plan.tag_pages.add((pname, rname, None))
        keys = self.store.index.indexed_keys(pname, rname, pages.MAX_KEYS)
        for key in [k for k, numeric in keys if numeric][:MAX_PLOTS]:
            plan.plots.add((pname, rname, key))

    def write_page(self, path: str, page: pages.Page) -> None:
        links = page.context["links"]
        assert isinstance(links, ExportLinks) and links.here == path
        html = render(page.template, csp=page_csp(static=True), **page.context)
        _write(self.root, path, html.encode("utf-8"))
        self.report.pages += 1

    def write_repository(self, proj: Project, rname: str, versions: list[int]) -> None:
        pname, links = proj.name, self.links
        self.report.repositories += 1
        base = f"p/{pname}/r/{rname}/"
        cursor = None
        exported = set(versions)  # the last page stops at the oldest exported version
        for page_no in range(1, self.plan.repo_pages[(pname, rname)] + 1):
            path = base + ("index.html" if page_no == 1 else f"page-{page_no}.html")
            page = pages.repository(proj, links(path), rname, page_no=page_no,
                                    after=encode_cursor(cursor) if cursor else None)
            page.context["rows"] = [r for r in page.context["rows"] if r["version"] in exported]
            self.write_page(path, page)
            cursor = page.context["next_cursor"]
        repo = proj.get_model_repository(rname)
        for v in versions:
            where = f"{pname}/{rname}:{v}"
            try:
                attachments = repo.get_model_image(version=v).get_attachments()
            except IntegrityError as e:  # a damaged version: its page says so
                self.report.problems[where] = str(e)
                attachments = []
            self.write_attachments(attachments, where)
            path = base + f"v/{v}.html"
            self.write_page(path, pages.version(proj, links(path), rname, str(v)))
            self.report.versions += 1
        for p, r, a, b in sorted(self.plan.diffs):
            if (p, r) == (pname, rname):
                path = base + f"diff/{a}-{b}.html"
                self.write_page(path, pages.diff(proj, links(path), rname, str(a), str(b)))
        for p, r, tag in sorted(self.plan.tag_pages, key=lambda t: (t[0], t[1], t[2] or "")):
            if (p, r) == (pname, rname):
                path = base + (f"tags-{tag}.html" if tag else "tags.html")
                self.write_page(path, pages.tags(proj, links(path), rname, tag))
        for p, r, key in sorted(self.plan.plots):
            if (p, r) == (pname, rname):
                path = base + f"plot/{plot_slug(key)}.html"
                self.write_page(path, pages.plot(proj, links(path), rname, key))

    def write_attachments(self, attachments: list[Attachment], where: str) -> None:
        """Each attachment not written yet (once per digest) and not too big, verified (a
        corrupt one is reported, not written: its version's page says so)."""
        for att in attachments:
            if att.digest in self.plan.attachments:
                continue
            if att.size > self.max_attachment_bytes:
                self.report.attachments_skipped += 1
                continue
            target = attachment_path(att.digest, att.name)
            try:
                src = att.open()  # verified before it is copied
            except IntegrityError as e:
                self.report.problems[f"{where}/{att.name}"] = str(e)
                continue
            with src:
                _write_stream(self.root, target, src)
            self.plan.attachments[att.digest] = target
            self.report.attachments += 1
            self.report.attachment_bytes += att.size


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
