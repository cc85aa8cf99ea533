"""The hostile-metadata corpus in the real browser: a store whose every string a user controls
(metadata keys and values, nested keys, comments, the author, the model's type name, lineage,
unknown manifest fields, attachment names and contents: markdown, HTML, SVG, CSV, JSON, text) is
an attack. On every page of the server and of the static export: no dialog opens, no script runs
(no ``window.__xss``, no script element, no ``on*`` attribute, no ``javascript:`` link), the browser
asks no other origin for anything (a canary server on another port counts requests), and no
Content-Security-Policy violation is even attempted (escaping alone held)."""

from __future__ import annotations

import http.server
import os
import threading
from urllib.parse import quote

import pytest
from selenium.webdriver.common.by import By
from support.browser import (
    chromium,
    console,
    foreign_requests,
    open_dialog,
    png,
    requests_made,
    screenshot,
    serving,
)

import roro
from roro.objects.canonical import canonical_json


class Canary:
    """An HTTP server on another loopback port: any request to it is a leak."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        canary = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                canary.hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def payloads(canary: str) -> list[str]:
    return [
        "<script>window.__xss=1;alert(1)</script>",
        '"><img src=x onerror="window.__xss=2;alert(2)">',
        "'><svg onload=window.__xss=3>",
        "javascript:window.__xss=4;alert(4)",
        "</textarea></title></style><script>window.__xss=5</script>",
        f"</style><style>body{{background:url({canary}/css)}}</style>",
        f'<link rel="stylesheet" href="{canary}/link.css">',
        f'<meta http-equiv="refresh" content="0;url={canary}/refresh">',
        f'<base href="{canary}/">',
        f'<iframe src="{canary}/frame"></iframe>',
        f'<img src="{canary}/img.png">',
        "{{7*7}}${alert(6)}{% raw %}",
        "\u202egnp.exe\u202c and \u2066isolate\u2069 and zero\u200bwidth",
        "<a href=\"javascript:alert(7)\">click</a>",
        "&lt;script&gt;alert(8)&lt;/script&gt;",
        "x\x00y\x1b[31mred",
    ]


class Evil:
    """A model whose type name is itself an attack (the manifest records it)."""


Evil.__qualname__ = "<img src=x onerror=window.__xss=9>"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    canary = Canary()
    root = tmp_path_factory.mktemp("xss")
    url = str(root / "store")
    p = payloads(canary.url)
    old_author = os.environ.get("RORO_AUTHOR")
    os.environ["RORO_AUTHOR"] = p[1]
    try:
        project = roro.Project("demo", url)
        repo = project.get_model_repository("xss")
        for i in range(3):
            image = repo.new_image(Evil() if i == 2 else {"i": i})
            for j, text in enumerate(p):
                key = text if text.isprintable() else f"key {j}"  # keys refuse control chars
                image[key] = text if j % 2 else {key: [text, {"k": text}]}
            image["<b>score</b>\u202e"] = 0.5 + i / 10
            image["javascript:alert(10)"] = f"{canary.url}/value"
            object.__setattr__(image, "_lineage", {"git": {"commit": p[0], "dirty": p[1]}})
            if i == 2:
                card = "\n\n".join([
                    "# Card " + p[0], p[1], p[5], p[12],
                    "[link](javascript:window.__xss=11) [data](data:text/html,<script>alert(1)</script>)",
                    f"![remote]({canary.url}/md.png) ![local](evil.svg) ![js](javascript:alert(12))",
                    f"<img src={canary.url}/raw.png onerror=alert(13)>",
                    f"[ref]: {canary.url}/ref", "<details open><summary>x</summary>y</details>"])
                image.attach("README.md", card.encode())
                image.attach("evil.html", f"<script>window.__xss=14</script><img src={canary.url}/h>".encode())
                image.attach("evil.svg", ('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20">'
                                          f'<script>window.__xss=15</script><image href="{canary.url}/svg"/>'
                                          '<rect width="20" height="20" fill="red"/></svg>').encode())
                image.attach("data.csv", ("a,b\n" + "\n".join(f'"{x}",=cmd|calc' for x in p)).encode())
                image.attach("config.json", canonical_json({x: x for x in p}))
                image.attach("notes.txt", "\n".join(p).encode())
                image.attach("a'b&c=d;(e) f.md", p[0].encode())
                image.attach("ok.png", png())
            image.save(comment="\n".join(p))
        repo.add_tag("production", 2)
        # a manifest field this roro does not know, and hostile, written as a newer writer would
        store = project.store
        latest = repo.get_model_image()
        manifest = latest.manifest
        manifest["signatures"] = [{"keyid": p[0], "sig": p[1]}]
        manifest["timestamp"] = "2026-02-02T00:00:00.000000Z"
        digest = store.objects.put_bytes(canonical_json(manifest))
        row = store.refresh("demo", "xss")
        store.reflog("demo", "xss").append(row["last_seq"] + 1, row["last_hash"], "version", p[3],
                                           manifest["timestamp"], version=4, image=digest,
                                           comment=p[0])
    finally:
        if old_author is None:
            os.environ.pop("RORO_AUTHOR", None)
        else:
            os.environ["RORO_AUTHOR"] = old_author
    yield {"project": roro.Project("demo", roro.Store(url)), "canary": canary, "p": p,
           "root": root}
    canary.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


CHECK_DOM = """
const bad = [];
if (window.__xss !== undefined) bad.push('window.__xss = ' + window.__xss);
if (document.scripts.length) bad.push(document.scripts.length + ' script elements');
for (const el of document.querySelectorAll('*')) {
  for (const a of el.attributes) {
    if (a.name.toLowerCase().startsWith('on')) bad.push('attribute ' + a.name + ' on ' + el.tagName);
    if (a.name === 'style') bad.push('style attribute on ' + el.tagName);
    if (/^\\s*(javascript|vbscript|data:text)/i.test(a.value) && ['href', 'src', 'action', 'formaction'].includes(a.name))
      bad.push(a.name + '=' + a.value);
  }
}
for (const tag of ['iframe', 'object', 'embed', 'base', 'link', 'form[action^="http"]', 'meta[http-equiv="refresh"]', 'textarea', 'svg script'])
  if (document.querySelector(tag)) bad.push('element ' + tag);
if (document.querySelectorAll('style').length !== 1) bad.push(document.querySelectorAll('style').length + ' style elements');
return bad;
"""


def check(browser, url: str, origin: str, canary: Canary) -> None:
    requests_made(browser)
    console(browser)
    browser.get(url)
    assert open_dialog(browser) is None, url
    assert browser.execute_script(CHECK_DOM) == [], url
    logs = [m for m in console(browser) if "favicon.ico" not in m  # an error page's own status:
            and not (m.startswith(url.split("?")[0]) and "the server responded with a status of 40" in m)]
    assert logs == [], (url, logs)  # no CSP violation: nothing was even attempted
    foreign = foreign_requests(browser, origin)
    assert foreign == [], (url, foreign)
    assert canary.hits == [], (url, canary.hits)


def server_pages(hostile) -> list[str]:
    p = hostile["p"]
    key = quote("<b>score</b>\u202e")
    base = "/p/demo/r/xss"
    return ["/", "/p/demo/", f"{base}/", f"{base}/?sort={key}", f"{base}/?sort={key}&order=asc",
            f"{base}/?col={quote(p[0])}&col={quote(p[5])}&col={quote(p[12])}",
            f"{base}/?q={quote(p[0])}", f"{base}/?q={quote(chr(34) + p[1] + chr(34) + ' = 1')}",
            f"{base}/?after={quote(p[1])}", f"{base}/v/3", f"{base}/v/4", f"{base}/v/1",
            f"{base}/diff?a=1&b=4", f"{base}/diff?a={quote(p[1])}", f"{base}/tags",
            f"{base}/plot?key={key}", f"{base}/plot?key={quote(p[0])}",
            f"/p/demo/r/{quote(p[0])}/", f"/p/{quote(p[1])}/"]


def test_hostile_store_in_the_browser(browser, hostile, tmp_path_factory):
    shots = str(tmp_path_factory.mktemp("xss-screenshots"))
    with serving(hostile["project"]) as origin:
        for path in server_pages(hostile):
            check(browser, origin + path, origin, hostile["canary"])
        # what the pages show is the text itself, made visible
        check(browser, origin + "/p/demo/r/xss/v/3", origin, hostile["canary"])
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "<script>window.__xss=1;alert(1)</script>" in text
        assert "⟨U+202E⟩gnp.exe⟨U+202C⟩" in text and "zero⟨U+200B⟩width" in text
        assert "x⟨U+0000⟩y⟨U+001B⟩[31mred" in text
        assert "<img src=x onerror=window.__xss=9>" in text  # the model type, as text
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])")
        assert sorted(src.rsplit("/", 1)[-1] for src, _ in images) == ["evil.svg", "evil.svg",
                                                                       "ok.png"]
        screenshot(browser, shots, "xss-version")
        # the attachments themselves, opened directly: downloads, never pages of this origin
        for name in ("evil.html", "evil.svg", "README.md", "data.csv"):
            check(browser, f"{origin}/p/demo/r/xss/v/3/files/{quote(name)}", origin,
                  hostile["canary"])
    assert hostile["canary"].hits == []


def test_hostile_store_in_the_static_export(browser, hostile, tmp_path):
    from roro.ui.export import export_site
    out = tmp_path / "site"
    export_site(hostile["project"], out)
    files = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs]
    served = [f for f in files if f.endswith(".html")]
    assert not any("/files/" in f for f in served)
    for f in sorted(served):
        check(browser, "file://" + f, "file://", hostile["canary"])
    assert hostile["canary"].hits == []
