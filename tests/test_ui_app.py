"""The web UI's server, in-process (Starlette's test client over the real app and a real store):
every page on every backend, nothing written to the store, the safety headers, the Host check,
GET only, errors shown as pages, previews bounded and verified, the CLI (serve and --export)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
import warnings

import pytest
from click.testing import CliRunner
from support.browser import CSV, save_demo
from support.histories import build_history
from support.mounts import read_only_view

import roro
from roro.cli import main
from roro.digests import digest_bytes
from roro.objects.canonical import canonical_json
from roro.storage.layout import object_key

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from roro.ui.app import create_app

HOST = "http://127.0.0.1:8765"


def client(project: roro.Project) -> TestClient:
    return TestClient(create_app(project), base_url=HOST)


def store_keys(store: roro.Store) -> dict[str, int]:
    """Every key of the store's own tree (objects, refs, format marker) with its size."""
    backend = store.backend
    out = {}
    for prefix in ("objects/", "refs/", "roro.json"):
        for key in backend.list(prefix):
            out[key] = backend.stat(key).size
    return out


def page_urls(repo: str = "credit-risk", v: int = 12) -> list[str]:
    base = f"/p/demo/r/{repo}"
    return ["/", "/p/demo/", f"{base}/", f"{base}/?sort=accuracy", f"{base}/?sort=accuracy&order=asc",
            f"{base}/?q=accuracy+%3E+0.8&col=auc&col=params", f"{base}/v/{v}", f"{base}/v/1",
            f"{base}/diff?a=1&b={v}", f"{base}/diff", f"{base}/tags", f"{base}/tags?tag=production",
            f"{base}/plot", f"{base}/plot?key=auc&sample=even",
            f"{base}/v/{v}/files/README.md", f"{base}/v/{v}/files/roc.png"]


def test_every_page_on_every_backend_writes_nothing(store_url):
    project = roro.Project("demo", store_url)
    save_demo(project)
    before = store_keys(project.store)
    reader = roro.Project("demo", roro.Store(store_url))  # a fresh handle, as `roro ui` opens
    c = client(reader)
    for url in page_urls():
        r = c.get(url)
        assert r.status_code == 200, (url, r.text[:500])
    assert store_keys(roro.Store(store_url)) == before


def test_pages_show_what_the_store_holds(tmp_path):
    project = roro.Project("demo", str(tmp_path / "store"))
    save_demo(project)
    c = client(project)
    home = c.get("/").text
    assert "credit-risk" in home and "production → v10" in home
    page = c.get("/p/demo/r/credit-risk/").text
    assert page.count('href="/p/demo/r/credit-risk/v/') == 12  # one link per row
    version = c.get("/p/demo/r/credit-risk/v/12").text
    assert "<h1>Credit risk model</h1>" in version  # the model card, rendered
    assert '<img src="/p/demo/r/credit-risk/v/12/files/roc.png"' in version
    assert "<td>0.82</td>" in version  # the CSV preview
    assert "&#34;features&#34;" in version  # the JSON preview, pretty-printed and escaped
    assert "optimizer" in version and "adam" in version  # nested metadata
    diff = c.get("/p/demo/r/credit-risk/diff?a=11&b=12").text
    assert "accuracy" in diff and "README.md" in diff and "added" in diff
    assert '<span class="k">params</span> › <span class="k">lr</span>' in diff


def test_security_headers(tmp_path):
    project = roro.Project("demo", str(tmp_path / "store"))
    repo = save_demo(project, 2)
    image = repo.new_image({"x": 1})
    image.attach("report.html", b"<script>alert(1)</script>")
    image.attach("plot.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    image.attach("data.csv", CSV)
    image.attach("weights.bin", b"\x00\x01")
    image.save()
    c = client(project)
    page = c.get("/p/demo/r/credit-risk/v/3")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    expected = {"report.html": "application/octet-stream", "plot.svg": "image/svg+xml",
                "data.csv": "text/plain; charset=utf-8", "weights.bin": "application/octet-stream"}
    for name, ctype in expected.items():
        r = c.get(f"/p/demo/r/credit-risk/v/3/files/{name}")
        assert r.status_code == 200
        assert r.headers["content-type"] == ctype
        assert r.headers["content-disposition"].startswith("attachment;")
        assert f'filename="{name}"' in r.headers["content-disposition"]
        assert "sandbox" in r.headers["content-security-policy"]
        assert "script-src" not in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
    assert c.head("/p/demo/r/credit-risk/v/3/files/data.csv").headers["content-length"] == str(len(CSV))
    r = c.get("/p/demo/r/credit-risk/v/3/model")  # the model's verified bytes, never unpickled
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith('attachment; filename="credit-risk-v3.pkl"')
    with repo.get_model_image(version=3).open_model() as f:
        assert r.content == f.read()
    assert 'href="/p/demo/r/credit-risk/v/3/model"' in page.text


def test_host_header_and_methods(tmp_path):
    project = roro.Project("demo", str(tmp_path / "store"))
    save_demo(project, 1)
    c = client(project)
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.nip.io", "localhost.evil"):
        r = c.get("/", headers={"host": host})
        assert r.status_code == 400, host
        assert "credit-risk" not in r.text
    for host in ("localhost:8765", "127.0.0.1", "[::1]:8765"):
        assert c.get("/", headers={"host": host}).status_code == 200, host
    from roro.ui.app import allowed_hosts, host_allowed
    everywhere = allowed_hosts("0.0.0.0")
    for header, ok in (("10.1.2.3:8765", True), ("[fe80::1]:80", True), ("localhost", True),
                       ("evil.example:8765", False), ("", False), ("[::1", False),
                       ("127.0.0.1.nip.io", False)):
        assert host_allowed(header, everywhere) is ok, header
    assert not host_allowed("10.1.2.3:8765", allowed_hosts("127.0.0.1"))
    assert host_allowed("192.168.1.9:8765", allowed_hosts("192.168.1.9"))
    for url in page_urls(v=1)[:8]:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert c.request(method, url).status_code == 405, (method, url)


def test_errors_are_pages(tmp_path):
    project = roro.Project("demo", str(tmp_path / "store"))
    save_demo(project, 3)
    c = client(project)
    r = c.get("/p/demo/r/credit-risk/", params={"q": "accuracy > "})
    assert r.status_code == 200
    with pytest.raises(roro.QuerySyntaxError) as e:
        project.get_model_repository("credit-risk").search("accuracy > ")
    assert str(e.value).replace("'", "&#39;") in r.text  # the message the CLI prints
    assert re.search(r"<pre>accuracy &gt; \n {11}\^</pre>", r.text)  # a caret under column 12
    cases = {"/p/demo/r/nope/": 404, "/p/demo/r/Bad%20Name/": 404, "/p/demo/r/credit-risk/v/9": 404,
             "/p/demo/r/credit-risk/v/abc": 400, "/p/demo/r/credit-risk/v/0": 400,
             "/p/demo/r/credit-risk/?after=garbage": 400,
             "/p/demo/r/credit-risk/?sort=accuracy&after=%5B1%5D": 400,
             "/p/demo/r/credit-risk/?order=sideways": 400,
             "/p/demo/r/credit-risk/v/3/files/..%2Fsecret": 404,
             "/p/demo/r/credit-risk/v/3/files/nope.txt": 404,
             "/p/demo/r/credit-risk/tags?tag=123": 400,
             "/p/demo/r/credit-risk/plot?sample=all": 400, "/p/Nope/": 404, "/nowhere": 404}
    for url, status in cases.items():
        r = c.get(url)
        assert r.status_code == status, (url, r.status_code, r.text[:300])


def test_closed_repositories_are_not_shown(tmp_path):
    """A destroyed repository and the old name of a renamed one are left out of the lists (as
    ``roro models`` does) and their pages are a 404 saying why; a restore brings them back."""
    project = roro.Project("demo", str(tmp_path / "store"))
    repo = save_demo(project, 3)
    other = project.get_model_repository("churn")
    other.new_image({"w": 1}).save()
    c = client(project)
    base = "/p/demo/r/credit-risk"
    urls = [f"{base}/", f"{base}/v/3", f"{base}/diff?a=1&b=3", f"{base}/tags", f"{base}/plot",
            f"{base}/v/3/files/README.md"]
    repo.destroy()
    for page in ("/", "/p/demo/"):
        text = c.get(page).text
        assert "churn" in text and "credit-risk" not in text, page
    for url in urls:
        r = c.get(url)
        assert r.status_code == 404 and "was destroyed" in r.text, url
    repo.restore()
    assert all(c.get(url).status_code == 200 for url in urls)
    repo.rename("credit")
    home = c.get("/").text
    assert 'href="/p/demo/r/credit/"' in home and 'href="/p/demo/r/credit-risk/"' not in home
    for url in urls:
        r = c.get(url)
        assert r.status_code == 404 and "was renamed to &#39;credit&#39;" in r.text, url
        assert c.get(url.replace("credit-risk", "credit")).status_code == 200


def test_a_damaged_version_is_shown_as_damaged(tmp_path, monkeypatch):
    """A version whose manifest is missing (issue 13: damage stays in its version) is listed with
    a 'damaged' mark, its page shows what its event says and why it is damaged, the rest of the
    repository's pages work, an export reports it; restored, it heals (sortable again)."""
    url = str(tmp_path / "store")
    save_demo(roro.Project("demo", url), 4)
    repo = roro.Project("demo", url).get_model_repository("credit-risk")
    image = repo.get_model_image(version=2).digest
    original = repo.store.backend.get(object_key(image))
    repo.store.backend.delete(object_key(image))
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "another-machine"))
    roro.Store(url).rebuild_index()
    project = roro.Project("demo", roro.Store(url))
    c = client(project)
    base = "/p/demo/r/credit-risk"
    table = c.get(f"{base}/?sort=accuracy").text
    assert re.search(r'v2</a> <span class="damaged" title="[^"]*missing', table)
    assert table.count('class="damaged"') == 1
    page = c.get(f"{base}/v/2")
    assert page.status_code == 200
    assert 'id="damaged">Damaged: ' in page.text and image in page.text
    assert "Train run 2" in page.text and "<h2>Attachments" not in page.text
    for ok in (f"{base}/", f"{base}/v/3", f"{base}/v/1", f"{base}/plot", f"{base}/tags",
               f"{base}/diff?a=1&b=3", "/"):
        assert c.get(ok).status_code == 200, ok
    broken = c.get(f"{base}/diff?a=1&b=2")
    assert broken.status_code == 500 and "damaged" in broken.text
    out = tmp_path / "site"
    result = CliRunner().invoke(main, ["--store", url, "--project", "demo", "ui", "--export",
                                       str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["problems"]) == ["demo/credit-risk:2"]
    exported = out / "p" / "demo" / "r" / "credit-risk"
    assert "Damaged: " in (exported / "v" / "2.html").read_text()
    assert not any("2-" in f.name or "-2." in f.name for f in (exported / "diff").iterdir())
    repo.store.backend.put(object_key(image), original)  # restored from a backup
    assert 'id="damaged"' not in c.get(f"{base}/v/2").text  # the load heals its row
    table = c.get(f"{base}/?sort=accuracy").text
    assert 'class="damaged"' not in table
    assert table.count('href="/p/demo/r/credit-risk/v/') == 4
    dumped = project.store.index.dump()
    project.store.rebuild_index()
    assert project.store.index.dump()["version_keys"] == dumped["version_keys"]


def test_a_read_only_store(tmp_path):
    """``roro ui`` on a folder store this user may not write (a real read-only bind mount): its
    index goes to the user cache (issue 13), every page and attachment is served, the export
    works, and the store is unchanged."""
    src = str(tmp_path / "src")
    save_demo(roro.Project("demo", src))
    for name in os.listdir(src):  # no index of its own: the reader builds one from the log
        if name.startswith("index.sqlite3"):
            os.unlink(os.path.join(src, name))
    with read_only_view(src, str(tmp_path / "ro")) as view:
        before = store_keys(roro.Store(view))
        c = client(roro.Project("demo", roro.Store(view)))
        for url in page_urls():
            r = c.get(url)
            assert r.status_code == 200, (url, r.text[:500])
        out = tmp_path / "site"
        result = CliRunner().invoke(main, ["--store", view, "--project", "demo", "ui",
                                           "--export", str(out), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["versions"] == 12
        proc = _start(["--store", view, "--project", "demo", "ui", "--port", "0",
                       "--no-browser", "--json"], tmp_path)
        try:
            info = json.loads(proc.stdout.readline())
            assert "v12" in _get_when_up(info["url"] + "p/demo/r/credit-risk/").text
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and err == "", err
        assert store_keys(roro.Store(view)) == before
        assert not any(n.startswith("index.sqlite3") for n in os.listdir(view))


def test_previews_read_at_most_one_mib_of_verified_bytes(tmp_path, monkeypatch):
    from roro.objects.store import ObjectStore
    project = roro.Project("demo", str(tmp_path / "store"))
    repo = project.get_model_repository("m")
    image = repo.new_image(1)
    image.attach("big.txt", b"x" * ((1 << 20) + 1))
    image.attach("small.txt", b"hello preview")
    image.attach("bad.csv", b"a,b\n1,2\n")
    image.save()
    store = project.store
    # a version whose manifest understates an attachment's size: the real object is 2 MiB
    lie = store.objects.put_bytes(b"y" * (2 << 20))
    manifest = dict(image.manifest)
    manifest["attachments"] = [{"name": "lie.txt", "digest": lie, "size": 10}]
    manifest["timestamp"] = "2026-01-01T00:00:00.000000Z"
    digest = store.objects.put_bytes(canonical_json(manifest))
    row = store.refresh("demo", "m")
    store.reflog("demo", "m").append(row["last_seq"] + 1, row["last_hash"], "version", "x",
                                      manifest["timestamp"], version=2, image=digest, comment="")
    # corrupt bad.csv in the store: its preview must say so and show none of its bytes
    bad = next(a for a in image.get_attachments() if a.name == "bad.csv")
    path = os.path.join(store.url, *object_key(bad.digest).split("/"))
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(b"a,b\n6,6\n")
    reads: list[int] = []
    real_read = ObjectStore.read

    def read(self, digest, max_size=None):
        data = real_read(self, digest, max_size)
        reads.append(len(data))
        return data

    monkeypatch.setattr(ObjectStore, "read", read)
    monkeypatch.setattr(ObjectStore, "open_verified", lambda *a: pytest.fail("read it whole"))
    c = client(project)
    page = c.get("/p/demo/r/m/v/1").text
    assert "hello preview" in page
    assert "too big to preview" in page
    assert "Not shown:" in page and "6,6" not in page and bad.digest in page
    reads.clear()
    page = c.get("/p/demo/r/m/v/2").text
    assert "lie.txt" in page and "y" * 100 not in page
    assert all(n <= 1 << 20 for n in reads), reads
    monkeypatch.undo()
    r = c.get("/p/demo/r/m/v/1/files/bad.csv")
    assert r.status_code == 500
    assert "6,6" not in r.text and bad.digest in r.text and "nothing unverified" in r.text


def test_page_cost_does_not_grow_with_history(monkeypatch):
    """SQLite steps per page at 1,000 and at 10,000 versions: the same, within 20 %, not 10x (a
    min()/max() over every row of the plot's even sample doubled it: caught here)."""
    steps = [0]
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        conn.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1) or 0, 1)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)

    def metadata(i: int) -> dict:
        return {f"k{j:02d}": (i * 7919 + j) % 1000 / 1000 for j in range(20)} | {"i": i}

    cost = {}
    for n in (1_000, 10_000):
        url = f"memory://ui-cost-{uuid.uuid4().hex}"
        build_history(roro.Store(url), "demo", ["big"], n, metadata)
        project = roro.Project("demo", roro.Store(url))
        project.get_model_repository("big").add_tag("production", n // 2)
        c = client(project)
        urls = {"table": "/p/demo/r/big/", "sorted": "/p/demo/r/big/?sort=k03",
                "sorted asc": "/p/demo/r/big/?sort=k03&order=asc",
                "search": "/p/demo/r/big/?q=version+%3E+5", "version": f"/p/demo/r/big/v/{n // 2}",
                "diff": f"/p/demo/r/big/diff?a=1&b={n}", "plot": "/p/demo/r/big/plot?key=k05",
                "plot even": "/p/demo/r/big/plot?key=k05&sample=even",
                "tags": "/p/demo/r/big/tags", "project": "/p/demo/"}
        for u in urls.values():
            c.get(u)  # warm: the first request refreshes the index
        cost[n] = {}
        for name, u in urls.items():
            steps[0] = 0
            assert c.get(u).status_code == 200, u
            cost[n][name] = steps[0]
    for u, small in cost[1_000].items():
        big = cost[10_000][u]
        assert big <= 1.2 * small + 1_000, (u, small, big)


def test_missing_extra_names_it(tmp_path):
    code = ("import sys; sys.modules['starlette'] = None; from roro.cli import main; "
            "main(['--store', sys.argv[1], 'ui', '--no-browser'])")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == ("Error: roro ui needs the 'ui' extra (starlette not installed): "
                                "pip install 'roro[ui]'")


def test_export_cli(tmp_path):
    store = str(tmp_path / "store")
    project = roro.Project("demo", store)
    repo = save_demo(project, 4)
    image = repo.new_image(1)
    image.attach("report.html", b"<script>alert(1)</script>")
    image.attach("plot.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    image.attach("huge.bin", b"z" * 5000)
    image.save()
    out = tmp_path / "site"
    r = CliRunner().invoke(main, ["--store", store, "--project", "demo", "ui", "--export", str(out),
                                  "--max-attachment-size", "4k", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["versions"] == 5 and report["repositories"] == 1
    assert report["attachments_skipped"] == 1
    files = [os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs]
    pages = [f for f in files if f.endswith(".html")]
    assert not any(f.startswith("files/") for f in pages)  # no store file renders as a page
    assert any(f.endswith("report.html.txt") for f in files)
    assert any(f.endswith("plot.svg.txt") for f in files)
    assert not any("huge.bin" in f for f in files)
    for f in pages:
        html = (out / f).read_text()
        assert '<meta http-equiv="Content-Security-Policy" content="default-src &#39;none&#39;' in html
        for href in re.findall(r'(?:href|src|action)="([^"]*)"', html):
            assert not re.match(r"^(/|[a-z]+:)", href), (f, href)
        assert "<form" not in html
    for f in files:
        if f.startswith("files/"):
            digest = digest_bytes((out / f).read_bytes())
            assert digest.split(":")[1].startswith(f.split("/")[1])
    again = CliRunner().invoke(main, ["--store", store, "--project", "demo", "ui", "--export",
                                      str(out)])
    assert again.exit_code == 1 and "not an empty directory" in again.stderr


def _start(args: list[str], tmp_path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "roro", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


def _get_when_up(url: str):
    """GET ``url`` once the server listens (the CLI prints its address just before)."""
    import httpx
    for _ in range(100):
        try:
            return httpx.get(url, timeout=5)
        except httpx.ConnectError:
            time.sleep(0.1)
    return httpx.get(url, timeout=5)


def test_serve_cli(tmp_path):
    store = str(tmp_path / "store")
    save_demo(roro.Project("demo", store), 2)
    proc = _start(["--store", store, "--project", "demo", "ui", "--port", "0", "--no-browser",
                   "--json"], tmp_path)
    try:
        line = proc.stdout.readline()
        info = json.loads(line)
        assert info["project"] == "demo" and info["url"].startswith("http://127.0.0.1:")
        r = _get_when_up(info["url"] + "p/demo/r/credit-risk/")
        assert r.status_code == 200 and "v2" in r.text
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err == ""


def test_serve_cli_warns_off_loopback_and_refuses_a_busy_port(tmp_path):
    store = str(tmp_path / "store")
    missing = CliRunner().invoke(main, ["--store", store, "ui", "--port", "0", "--no-browser"])
    assert missing.exit_code == 3 and "does not exist" in missing.stderr  # a typo'd --store
    save_demo(roro.Project("default", store), 1)
    proc = _start(["--store", store, "ui", "--host", "0.0.0.0", "--port", "0", "--no-browser"],
                  tmp_path)
    try:
        err = proc.stderr.readline()
        assert err.startswith("Warning: listening on 0.0.0.0, not loopback: anyone who can reach")
        # stopped once it serves: a Ctrl-C sent in the middle of its start-up, under a load of
        # 8, once left it serving for 30 s (a race this test is not about; see the session note)
        url = proc.stdout.readline().split(" at ", 1)[1].split(" ", 1)[0]
        assert _get_when_up(url.replace("0.0.0.0", "127.0.0.1")).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = CliRunner().invoke(main, ["--store", store, "ui", "--port", str(port), "--no-browser"])
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}:")
    assert len(r.stderr.strip().splitlines()) == 1
