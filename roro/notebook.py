"""Notebook views: HTML tables for projects, repositories, images and lists of images, and the
conversion of a list of images to a pandas DataFrame (pandas is optional).

Every value shown comes from a store and is escaped; a repr never raises for a store problem (it
shows the error instead), because a notebook calls it on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import MissingDependencyError, RoroError
from .units import format_bytes

if TYPE_CHECKING:
    from .image import ModelImage
    from .project import Project
    from .repository import ModelRepository

MAX_ROWS = 50
FIXED_COLUMNS = ("repository", "version", "image", "tags", "timestamp", "author", "comment",
                 "model_type", "model_size")


def _escape(text: str) -> str:
    import html  # html.entities (~1.4 ms): only when a notebook shows something
    return html.escape(text)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)
    return _escape(value if len(value) <= 200 else value[:199] + "…")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    out = ["<table>"]
    if caption:
        out.append(f"<caption style='text-align:left'>{caption}</caption>")
    out.append("<thead><tr>" + "".join(f"<th style='text-align:left'>{_escape(h)}</th>"
                                      for h in header) + "</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td style='text-align:left'>{_cell(v)}</td>"
                                    for v in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _guard(render: Any, what: str) -> str:
    try:
        result: str = render()
        return result
    except RoroError as e:
        return f"<p>{_escape(what)}: <b>{_escape(str(e))}</b></p>"


def image_html(image: ModelImage) -> str:
    def render() -> str:
        name = _escape(f"{image.repository.name}:v{image.version}" if image.saved
                           else f"{image.repository.name} (unsaved)")
        facts: list[tuple[str, Any]] = []
        if image.saved:
            meta = image.get_metadata()
            facts += [("image", image.digest), ("tags", ", ".join(image.tags)),
                      ("saved", meta["timestamp"]), ("author", meta["author"]),
                      ("model", f"{image.model_type}, {format_bytes(image.model_size or 0)}"),
                      ("comment", image.comment)]
        metadata = {k: v for k, v in image.get_metadata().items()
                    if k not in ("timestamp", "author")}
        facts += [(f"metadata: {k}", v) for k, v in metadata.items()]
        facts += [(f"attachment: {a.name}", format_bytes(a.size)) for a in image.get_attachments()]
        return _table(["", ""], facts, f"<b>{name}</b>")
    return _guard(render, "model image")


def images_html(images: Sequence[ModelImage]) -> str:
    def render() -> str:
        keys: list[str] = []
        for image in images[:MAX_ROWS]:
            keys += [k for k in image.get_metadata() if k not in keys
                     and k not in ("timestamp", "author")]
        rows = []
        for image in images[:MAX_ROWS]:
            meta = image.get_metadata()
            rows.append([f"{image.repository.name}:v{image.version}", (image.digest or "")[:19],
                         meta["timestamp"], meta["author"],
                         (image.comment or "").split("\n", 1)[0],
                         *(meta.get(k) for k in keys)])
        more = (f"{len(images)} images, the first {MAX_ROWS} shown" if len(images) > MAX_ROWS
                else f"{len(images)} image{'s' * (len(images) != 1)}")
        return _table(["version", "image", "saved", "author", "comment", *keys], rows, more)
    return _guard(render, "images")


def repository_html(repo: ModelRepository) -> str:
    def render() -> str:
        if not repo.exists():
            return _table(["", ""], [], f"<b>{_escape(repo.name)}</b> (no versions yet)")
        tags = repo.get_tags()
        latest = tags.pop("latest", None)
        caption = (f"<b>{_escape(repo.name)}</b> in project "
                   f"{_escape(repo.project.name)}: {repo.count()} versions, latest "
                   f"{'v' + str(latest) if latest else '-'}; tags: "
                   f"{_escape(', '.join(f'{t}→v{v}' for t, v in tags.items()) or 'none')}")
        recent = repo.list_model_images(limit=10)
        return images_html(recent).replace("<table>", f"<p>{caption}</p><table>", 1)
    return _guard(render, "model repository")


def project_html(project: Project) -> str:
    def render() -> str:
        rows = []
        for repo in project.list_model_repositories()[:MAX_ROWS]:
            newest = repo.list_model_images(limit=1)
            tags = repo.get_tags()
            tags.pop("latest", None)
            rows.append([repo.name, repo.count(),
                         f"v{newest[0].version}" if newest else "",
                         newest[0].get_metadata()["timestamp"] if newest else "",
                         ", ".join(f"{t}→v{v}" for t, v in tags.items())])
        caption = (f"project <b>{_escape(project.name)}</b> in "
                   f"{_escape(project.store.url)}")
        return _table(["model", "versions", "latest", "last saved", "tags"], rows, caption)
    return _guard(render, "project")


def flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as key paths: ``{"params": {"C": 1}}`` → ``{"params.C": 1}``; lists and
    other values are kept as they are."""
    out: dict[str, Any] = {}
    for k, v in value.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, path + "."))
        else:
            out[path] = v
    return out


def images_to_pandas(images: Sequence[ModelImage]) -> Any:
    try:
        import pandas as pd  # optional: only to_pandas() needs it
    except ImportError:
        raise MissingDependencyError("to_pandas() needs pandas, which is not installed: "
                                     "pip install pandas") from None
    tags: dict[tuple[str, str], dict[int, list[str]]] = {}
    for image in images:
        key = (image.repository.project.name, image.repository.name)
        if key not in tags:
            versions = [i.version for i in images if i.version is not None
                        and (i.repository.project.name, i.repository.name) == key]
            tags[key] = image.repository.get_tags_by_version(versions) if versions else {}
    rows = []
    for image in images:
        meta = image.get_metadata()
        key = (image.repository.project.name, image.repository.name)
        row: dict[str, Any] = {
            "repository": image.repository.name, "version": image.version,
            "image": image.digest, "tags": tags[key].get(image.version or 0, []),
            "timestamp": meta["timestamp"], "author": meta["author"],
            "comment": image.comment, "model_type": image.model_type,
            "model_size": image.model_size}
        user = {k: v for k, v in meta.items() if k not in ("timestamp", "author")}
        for path, value in flatten(user).items():
            row[f"metadata.{path}" if path in FIXED_COLUMNS else path] = value
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(FIXED_COLUMNS)) if not rows else pd.DataFrame(rows)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame
