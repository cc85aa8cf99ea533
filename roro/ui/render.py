"""Turning page data into HTML: the Jinja2 environment (autoescape on, store strings made
visible), markdown with raw HTML disabled, the SVG plot, the page's Content-Security-Policy.

Nothing here reads a store. Every string a store supplies reaches the page through Jinja2's
autoescaping (or markdown-it's, or :func:`markupsafe.escape` in the SVG), after
:func:`visible` has replaced the characters that would let text disguise itself (bidi overrides,
control and zero-width characters) by a visible ``⟨U+202E⟩``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import posixpath
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import jinja2
from markupsafe import Markup, escape

from ..metadata import json_kind
from ..units import format_bytes

HERE = os.path.dirname(os.path.abspath(__file__))

#: Characters shown as ``⟨U+XXXX⟩`` instead of themselves: C0/C1 controls (except tab and new
#: line), bidi embeddings, overrides and isolates, zero-width characters, line/paragraph separators.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                     "\u2060-\u2069\ufeff\ufff9-\ufffb]")


def visible(text: str) -> str:
    """``text`` with every invisible or direction-changing character written as ``⟨U+XXXX⟩``."""
    return _HIDDEN.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", text)


def _finalize(value: Any) -> Any:
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


# -- the stylesheet and the policy -----------------------------------------------------------------
@lru_cache(maxsize=1)
def stylesheet() -> str:
    with open(os.path.join(HERE, "static", "style.css"), encoding="utf-8") as f:
        return f.read()


def style_hash() -> str:
    digest = hashlib.sha256(stylesheet().encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


def page_csp(static: bool = False) -> str:
    """The Content-Security-Policy of every page: no script at all, no request anywhere but to
    this origin for images, the one inline stylesheet by its hash. A static export carries it in a
    ``<meta>`` element, which cannot say ``frame-ancestors`` (nor needs ``form-action``: it has no
    form)."""
    parts = ["default-src 'none'", f"style-src {style_hash()}", "img-src 'self' data:",
             "base-uri 'none'"]
    parts += ["form-action 'none'"] if static else ["form-action 'self'", "frame-ancestors 'none'"]
    return "; ".join(parts)


#: The policy of every attachment response: it may be an HTML or SVG document a store supplied,
#: so it gets an opaque origin and no script (``sandbox``), and may fetch nothing.
ATTACHMENT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"


# -- values ----------------------------------------------------------------------------------------
def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def short(value: Any, width: int = 60) -> str:
    """A table cell: strings as they are, floats to 6 significant digits, other values as JSON,
    cut at ``width`` characters."""
    if isinstance(value, float) and width <= 100:
        text = format(value, ".6g")
    else:
        text = value if isinstance(value, str) else compact(value)
    return text if len(text) <= width else text[:width - 1] + "…"


#: CSS classes of the JSON kinds (roro/ui/static's colours).
_CSS_CLASS = {"number": "num", "string": "str", "object": "obj"}


def kind(value: Any) -> str:
    """The JSON type of a value, as a CSS class."""
    found = json_kind(value)
    return _CSS_CLASS.get(found, found)


def human_time(ts: str | None) -> str:
    """``2026-11-26T15:35:16.123456Z`` → ``2026-11-26 15:35:16 UTC``."""
    if not ts:
        return "-"
    return ts[:19].replace("T", " ") + " UTC" if len(ts) >= 19 else ts


# -- markdown --------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _markdown() -> Any:
    from markdown_it import MarkdownIt  # only pages with a model card or a .md preview use it
    # CommonMark with raw HTML off: '<script>' in a model card is text. markdown-it's own link
    # check refuses javascript:, vbscript:, file: and data: (but raster data: images) URLs.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(
        ["table", "strikethrough"])


def markdown(text: str, resolve: Callable[[str], str | None]) -> Markup:
    """``text`` rendered as HTML with raw HTML disabled. A relative image or link names another
    attachment of the same version: ``resolve(name)`` gives its URL (None: not linked). An image
    with any other URL is shown as a link, never loaded (the page fetches nothing elsewhere)."""
    md = _markdown()
    env: dict[str, Any] = {}
    tokens = md.parse(text, env)
    for token in tokens:
        for child in token.children or ():
            if child.type == "image":
                src = str(child.attrGet("src") or "")
                url = _relative_target(src, resolve)
                if url is not None:
                    child.attrSet("src", url)
                elif not src.startswith("data:"):
                    child.type, child.tag, child.nesting = "text", "", 0
                    child.content = f"[image: {child.content or src}]"
                    child.children = None
            elif child.type == "link_open":
                href = str(child.attrGet("href") or "")
                url = _relative_target(href, resolve)
                if url is not None:
                    child.attrSet("href", url)
                elif not re.match(r"^(https?:|mailto:|#)", href, re.I):
                    child.attrSet("href", "#")
                child.attrSet("rel", "noopener noreferrer nofollow")
    html = md.renderer.render(tokens, md.options, env)
    return Markup(visible(html))


def _relative_target(url: str, resolve: Callable[[str], str | None]) -> str | None:
    if not url or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url) or url.startswith(("/", "#", "?")):
        return None
    name = posixpath.normpath(unquote(url.split("#")[0].split("?")[0]))
    if name.startswith("..") or name in ("", "."):
        return None
    return resolve(name)


# -- the plot --------------------------------------------------------------------------------------
PLOT_W, PLOT_H = 860, 340
_M_LEFT, _M_RIGHT, _M_TOP, _M_BOTTOM = 70, 20, 30, 40


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    first = math.ceil(lo / step) * step
    out: list[float] = []
    x = first
    while x <= hi + step * 1e-9 and len(out) < 20:
        out.append(round(x, 12))
        x += step
    return out


def _fmt(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6g}"


class _Scale:
    """Data to SVG coordinates: versions on x, values on y (5 % padding; a flat series gets ±1)."""

    def __init__(self, vs: list[int], ys: list[float]):
        self.x0, self.x1, self.y0, self.y1 = _M_LEFT, PLOT_W - _M_RIGHT, PLOT_H - _M_BOTTOM, _M_TOP
        self.vmin, self.vmax = min(vs), max(vs)
        ymin, ymax = min(ys), max(ys)
        if ymax == ymin:
            ymin, ymax = ymin - 1, ymax + 1
        pad = (ymax - ymin) * 0.05
        self.ymin, self.ymax = ymin - pad, ymax + pad

    def x(self, v: float) -> float:
        span = self.vmax - self.vmin
        return self.x0 + (self.x1 - self.x0) * ((v - self.vmin) / span if span else 0.5)

    def y(self, y: float) -> float:
        return self.y0 - (self.y0 - self.y1) * (y - self.ymin) / (self.ymax - self.ymin)


def _axes(sc: _Scale) -> list[str]:
    """The frame, the value grid with its labels and the version labels."""
    x0, x1, y0, y1 = sc.x0, sc.x1, sc.y0, sc.y1
    out = [f'<rect class="frame" x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}"/>']
    for t in _ticks(sc.ymin, sc.ymax):
        y = sc.y(t)
        out.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="tick" x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{escape(_fmt(t))}</text>')
    for t in _ticks(sc.vmin, sc.vmax, 8) if sc.vmax > sc.vmin else [sc.vmin]:
        if t != int(t):
            continue
        out.append(f'<text class="tick" x="{sc.x(t):.1f}" y="{y0 + 18}" text-anchor="middle">'
                   f'v{int(t)}</text>')
    out.append(f'<text class="axis" x="{(x0 + x1) // 2}" y="{PLOT_H - 4}" '
               f'text-anchor="middle">version</text>')
    return out


def _tag_marks(sc: _Scale, marks: dict[int, list[str]]) -> list[str]:
    """A vertical line and the tag names at each tagged version in range."""
    out = []
    for version, names in sorted(marks.items()):
        if sc.vmin <= version <= sc.vmax:
            x = sc.x(version)
            label = escape(visible(", ".join(names)))
            right = x > (sc.x0 + sc.x1) / 2
            out.append(f'<g class="mark"><line x1="{x:.1f}" x2="{x:.1f}" y1="{sc.y1}" '
                       f'y2="{sc.y0}"/><text x="{x - 3 if right else x + 3:.1f}" '
                       f'y="{sc.y1 + 12}" text-anchor="{"end" if right else "start"}">'
                       f'{label}</text></g>')
    return out


def plot_svg(points: list[tuple[int, float]], marks: dict[int, list[str]], key: str,
             version_url: Callable[[int], str | None]) -> Markup:
    """An SVG line plot of ``(version, value)`` points, oldest first; versions in ``marks`` (tags)
    get a marker and their tag names. Every text is escaped here; the SVG is inline in the page,
    styled by the page's stylesheet."""
    e = escape
    w, h = PLOT_W, PLOT_H
    out = [f'<svg class="plot" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg" aria-label="{e(visible(key))} by version">']
    if not points:
        out.append(f'<text x="{w // 2}" y="{h // 2}" text-anchor="middle" class="empty">'
                   f'no numeric values</text></svg>')
        return Markup("".join(out))
    vs = [p[0] for p in points]
    ys = [float(p[1]) for p in points]
    sc = _Scale(vs, ys)
    out += _axes(sc) + _tag_marks(sc, marks)
    path = " ".join(f"{sc.x(v):.1f},{sc.y(y):.1f}" for v, y in zip(vs, ys, strict=False))
    out.append(f'<polyline class="line" points="{path}"/>')
    dots = len(points) <= 300
    for v, y in zip(vs, ys, strict=False):
        tagged = v in marks
        if not (dots or tagged):
            continue
        title = f"v{v}: {_fmt(y)}" + (f" ({', '.join(marks[v])})" if tagged else "")
        dot = (f'<circle class="{"dot tagged" if tagged else "dot"}" cx="{sc.x(v):.1f}" '
               f'cy="{sc.y(y):.1f}" r="{4 if tagged else 2.5}"><title>{e(visible(title))}</title>'
               f'</circle>')
        url = version_url(v)
        out.append(f'<a href="{e(url)}">{dot}</a>' if url else dot)
    out.append("</svg>")
    return Markup("".join(out))


# -- the environment -------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
        autoescape=True, finalize=_finalize, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True)
    env.filters.update(short=short, kind=kind, size=format_bytes, time=human_time,
                       compact=compact)
    env.globals.update(css=Markup(stylesheet()))
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
