"""Where each page lives: absolute URLs on the server, relative file paths in a static export.

Templates only ever call a :class:`Links`; a method returns None for a page that does not exist
(in an export: a diff, version or attachment left out by its bounds).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any
from urllib.parse import quote, urlencode

#: Extensions a browser shows as inert content (an image, text, or a download) when a static export
#: is opened from disk or from a bucket. Any other attachment is written as ``NAME.txt``, so no file
#: a store supplied (``report.html``, ``plot.svg``) ever renders as a page next to the export's own.
INERT_EXTENSIONS = frozenset("""
    png jpg jpeg gif webp bmp ico txt text log csv tsv json jsonl ndjson md markdown rst yaml yml
    toml ini cfg conf py r ipynb sql pkl pickle joblib bin dat npy npz pt pth ckpt onnx safetensors
    h5 hdf5 parquet feather arrow avro orc pb tflite mlmodel gz tgz bz2 xz zst zip tar 7z whl
""".split())


def export_file_name(name: str) -> str:
    """The base name under which an export writes attachment ``name``."""
    base = name.rsplit("/", 1)[-1]
    ext = base.rsplit(".", 1)[-1].lower() if "." in base else ""
    return base if ext in INERT_EXTENSIONS else base + ".txt"


def plot_slug(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class Links:
    static = False

    def home(self) -> str | None: ...
    def project(self, p: str, after: str | None = None) -> str | None: ...
    def repo(self, p: str, r: str, state: dict[str, Any] | None = None,
             after: Any = None, page: int = 1) -> str | None: ...
    def version(self, p: str, r: str, v: int) -> str | None: ...
    def attachment(self, p: str, r: str, v: int, name: str, digest: str) -> str | None: ...
    def model(self, p: str, r: str, v: int) -> str | None: ...
    def diff(self, p: str, r: str, a: int, b: int) -> str | None: ...
    def diff_form(self, p: str, r: str) -> str | None: ...
    def tags(self, p: str, r: str, tag: str | None = None, before: int | None = None) -> str | None: ...
    def plot(self, p: str, r: str, key: str | None = None, sample: str = "newest") -> str | None: ...


def _q(params: dict[str, Any]) -> str:
    pairs = []
    for k, v in params.items():
        if v is None or v == "" or v == []:
            continue
        for item in v if isinstance(v, list) else [v]:
            pairs.append((k, str(item)))
    return "?" + urlencode(pairs) if pairs else ""


def encode_cursor(cursor: Any) -> str:
    return json.dumps(list(cursor), ensure_ascii=False, separators=(",", ":"))


class ServerLinks(Links):
    """URLs of the running server."""

    def home(self) -> str:
        return "/"

    def project(self, p: str, after: str | None = None) -> str:
        return f"/p/{quote(p)}/" + _q({"after": after})

    def repo(self, p: str, r: str, state: dict[str, Any] | None = None, after: Any = None,
             page: int = 1) -> str:
        s = dict(state or {})
        params = {"q": s.get("q"), "sort": s.get("sort"),
                  "order": s.get("order") if s.get("order") != "desc" else None,
                  "col": s.get("cols") if s.get("custom_cols") else None,
                  "after": encode_cursor(after) if after is not None else None}
        return f"/p/{quote(p)}/r/{quote(r)}/" + _q(params)

    def version(self, p: str, r: str, v: int) -> str:
        return f"/p/{quote(p)}/r/{quote(r)}/v/{v}"

    def attachment(self, p: str, r: str, v: int, name: str, digest: str) -> str:
        return f"/p/{quote(p)}/r/{quote(r)}/v/{v}/files/{quote(name)}"

    def model(self, p: str, r: str, v: int) -> str:
        return f"/p/{quote(p)}/r/{quote(r)}/v/{v}/model"

    def diff(self, p: str, r: str, a: int, b: int) -> str:
        return f"/p/{quote(p)}/r/{quote(r)}/diff" + _q({"a": a, "b": b})

    def diff_form(self, p: str, r: str) -> str:
        return f"/p/{quote(p)}/r/{quote(r)}/diff"

    def tags(self, p: str, r: str, tag: str | None = None, before: int | None = None) -> str:
        return f"/p/{quote(p)}/r/{quote(r)}/tags" + _q({"tag": tag, "before": before})

    def plot(self, p: str, r: str, key: str | None = None, sample: str = "newest") -> str:
        return f"/p/{quote(p)}/r/{quote(r)}/plot" + _q(
            {"key": key, "sample": None if sample == "newest" else sample})


class ExportPlan:
    """What a static export holds, so that links point only at files that exist."""

    def __init__(self) -> None:
        self.versions: set[tuple[str, str, int]] = set()
        self.diffs: set[tuple[str, str, int, int]] = set()
        self.attachments: dict[str, str] = {}  # digest -> path written
        self.plots: set[tuple[str, str, str]] = set()
        self.tag_pages: set[tuple[str, str, str | None]] = set()
        self.projects: set[str] = set()
        self.repos: set[tuple[str, str]] = set()
        self.repo_pages: dict[tuple[str, str], int] = {}


class ExportLinks(Links):
    """Paths relative to the page being written (``here``, relative to the export's root)."""

    static = True

    def __init__(self, plan: ExportPlan, here: str):
        self.plan = plan
        self.here = here

    def _rel(self, target: str) -> str:
        rel = posixpath.relpath(target, posixpath.dirname(self.here) or ".")
        return quote(rel)

    def home(self) -> str:
        return self._rel("index.html")

    def project(self, p: str, after: str | None = None) -> str | None:
        if p not in self.plan.projects or after is not None:
            return None
        return self._rel(f"p/{p}/index.html")

    def repo(self, p: str, r: str, state: dict[str, Any] | None = None, after: Any = None,
             page: int = 1) -> str | None:
        if (p, r) not in self.plan.repos or page > self.plan.repo_pages.get((p, r), 1):
            return None
        return self._rel(f"p/{p}/r/{r}/" + ("index.html" if page == 1 else f"page-{page}.html"))

    def version(self, p: str, r: str, v: int) -> str | None:
        if (p, r, v) not in self.plan.versions:
            return None
        return self._rel(f"p/{p}/r/{r}/v/{v}.html")

    def attachment(self, p: str, r: str, v: int, name: str, digest: str) -> str | None:
        path = self.plan.attachments.get(digest)
        return self._rel(path) if path is not None else None

    def model(self, p: str, r: str, v: int) -> None:
        return None  # models are not exported (a site for people without roro, not a mirror)

    def diff(self, p: str, r: str, a: int, b: int) -> str | None:
        if (p, r, a, b) not in self.plan.diffs:
            return None
        return self._rel(f"p/{p}/r/{r}/diff/{a}-{b}.html")

    def diff_form(self, p: str, r: str) -> None:
        return None

    def tags(self, p: str, r: str, tag: str | None = None, before: int | None = None) -> str | None:
        if before is not None or (p, r, tag) not in self.plan.tag_pages:
            return None
        return self._rel(f"p/{p}/r/{r}/" + (f"tags-{tag}.html" if tag else "tags.html"))

    def plot(self, p: str, r: str, key: str | None = None, sample: str = "newest") -> str | None:
        if key is None or sample != "newest" or (p, r, key) not in self.plan.plots:
            return None
        return self._rel(f"p/{p}/r/{r}/plot/{plot_slug(key)}.html")


def attachment_path(digest: str, name: str) -> str:
    """Where an export writes an attachment: by digest (written once, whatever the number of
    versions naming it), under a base name that never renders as a page."""
    return f"files/{digest.split(':', 1)[1][:32]}/{export_file_name(name)}"
