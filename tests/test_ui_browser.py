"""``roro ui`` in a real browser: Debian's headless Chromium, driven by selenium through its
chromedriver, against the real server (Uvicorn on a loopback port) over a real folder store.
Each test asserts on the rendered DOM and saves a screenshot (paths printed at the end of the
run). Every page must load without a console error, a dialog or a request to another origin."""

from __future__ import annotations

import os
import re

import pytest
from selenium.webdriver.common.by import By
from support.browser import (
    chromium,
    console,
    demo_accuracy,
    foreign_requests,
    open_dialog,
    requests_made,
    save_demo,
    screenshot,
    serving,
)
from support.histories import build_history

import roro

BIG = 1_000


def big_metadata(i: int) -> dict:
    """~20 keys, like a real training run's."""
    out = {f"metric_{j:02d}": round(((i * 7919 + j * 104729) % 10007) / 10007, 4)
           for j in range(16)}
    out.update({"accuracy": round(0.6 + 0.3 * i / BIG + ((i * 31) % 17) / 1000, 4),
                "epochs": i % 50, "dataset": f"s3://data/{i % 12}", "notes": f"run {i}"})
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder store (project demo) with credit-risk (12 real saves, attachments of every kind,
    tags) and big (1,000 versions of ~20 keys), served for the module."""
    root = tmp_path_factory.mktemp("ui-site")
    store = roro.Store(str(root / "store"))
    project = roro.Project("demo", store)
    save_demo(project)
    build_history(store, "demo", ["big"], BIG, big_metadata)
    big = project.get_model_repository("big")
    big.add_tag("production", 700)
    big.add_tag("candidate", 950)
    roro.Project("other", store).get_model_repository("side").new_image(1).save()
    with serving(roro.Project("demo", roro.Store(str(root / "store")))) as url:
        yield {"url": url, "root": root, "project": project}


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return str(tmp_path_factory.mktemp("screenshots"))


def visit(browser, url: str, origin: str) -> None:
    """Open ``url`` and check what every page must: no dialog, no console error, no request but
    to ``origin`` (or data: URLs)."""
    requests_made(browser)
    console(browser)
    browser.get(url)
    assert open_dialog(browser) is None
    errors = [m for m in console(browser) if "favicon.ico" not in m]
    assert errors == [], errors
    foreign = foreign_requests(browser, origin)
    assert foreign == [], foreign


def follow(browser, element) -> None:
    """Click ``element`` and wait until the browser has left the page (a link or a submit)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait
    old = browser.find_element(By.TAG_NAME, "html")
    element.click()

    def left(_driver) -> bool:
        # selenium's staleness_of catches only StaleElementReferenceException; during the
        # navigation chromedriver sometimes answers "unhandled inspector error" instead: the old
        # page is gone either way (the next steps find what the new page shows)
        try:
            old.is_enabled()
        except WebDriverException:
            return True
        return False

    WebDriverWait(browser, 20).until(left)
    assert open_dialog(browser) is None


def rows(browser, table: str = "table.versions") -> list:
    return browser.find_elements(By.CSS_SELECTOR, f"{table} tbody tr")


def test_index(browser, site, shots):
    visit(browser, site["url"] + "/", site["url"])
    assert browser.find_element(By.TAG_NAME, "h1").text == "Projects"
    projects = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "ul.projects li a")]
    assert projects == ["demo", "other"]
    table = {r.find_element(By.CSS_SELECTOR, "td").text: r.text for r in rows(browser, "table.repos")}
    assert set(table) == {"big", "credit-risk"}
    assert "1000" in table["big"] and "v1000" in table["big"] and "production → v700" in table["big"]
    assert "staging → v12" in table["credit-risk"]
    screenshot(browser, shots, "index")
    follow(browser, browser.find_element(By.LINK_TEXT, "credit-risk"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "credit-risk"


def test_repository_with_1000_versions(browser, site, shots):
    base = site["url"] + "/p/demo/r/big/"
    visit(browser, base, site["url"])
    page = rows(browser)
    assert len(page) == 50
    assert page[0].find_element(By.CSS_SELECTOR, "td").text == "v1000"
    assert page[-1].find_element(By.CSS_SELECTOR, "td").text == "v951"
    screenshot(browser, shots, "repository-1000")
    follow(browser, browser.find_element(By.CSS_SELECTOR, ".pager a.next"))
    page = rows(browser)
    assert [r.find_element(By.CSS_SELECTOR, "td").text for r in page[:2]] == ["v950", "v949"]
    assert "candidate" in page[0].text
    # sort by a metadata key: its column header
    visit(browser, base, site["url"])
    headers = browser.find_elements(By.CSS_SELECTOR, "table.versions thead th a")
    accuracy = next(h for h in headers if h.text == "accuracy")
    follow(browser, accuracy)
    col = [h.text.split(" ")[0] for h in browser.find_elements(By.CSS_SELECTOR,
                                                                "table.versions thead th")]
    i = col.index("accuracy")
    values = [float(r.find_elements(By.TAG_NAME, "td")[i].text) for r in rows(browser)]
    assert values == sorted(values, reverse=True)
    expected = sorted((big_metadata(v - 1)["accuracy"] for v in range(1, BIG + 1)), reverse=True)
    assert values == expected[:50]
    # the next page continues the order
    follow(browser, browser.find_element(By.CSS_SELECTOR, ".pager a.next"))
    more = [float(r.find_elements(By.TAG_NAME, "td")[i].text) for r in rows(browser)]
    assert more == expected[50:100]
    # choose columns: only metric_03
    visit(browser, base, site["url"])
    browser.find_element(By.CSS_SELECTOR, "details.cols summary").click()
    for box in browser.find_elements(By.CSS_SELECTOR, "details.cols input[type=checkbox]"):
        if box.is_selected() != (box.get_attribute("value") == "metric_03"):
            box.click()
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.controls button"))
    col = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "table.versions thead th")]
    assert col == ["Version", "Tags", "Saved", "Author", "metric_03", "Comment"]
    assert rows(browser)[0].find_elements(By.TAG_NAME, "td")[4].text == \
        str(big_metadata(BIG - 1)["metric_03"])


def test_search(browser, site, shots):
    base = site["url"] + "/p/demo/r/big/"
    visit(browser, base, site["url"])
    box = browser.find_element(By.NAME, "q")
    box.send_keys("epochs = 7 and dataset = 's3://data/3' or tag = 'production'")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.controls button"))
    found = [int(r.find_element(By.TAG_NAME, "td").text[1:]) for r in rows(browser)]
    expected = sorted((v for v in range(1, BIG + 1)
                       if (big_metadata(v - 1)["epochs"] == 7
                           and big_metadata(v - 1)["dataset"] == "s3://data/3") or v == 700),
                      reverse=True)
    assert found == expected[:50] and 700 in found
    screenshot(browser, shots, "search")
    box = browser.find_element(By.NAME, "q")
    box.clear()
    box.send_keys("accuracy >")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.controls button"))
    error = browser.find_element(By.ID, "query-error").text
    assert error.startswith("invalid query at column 11: expected a value")
    assert error.splitlines()[-1] == " " * 10 + "^"
    assert rows(browser)[0].text == "The query has an error."
    screenshot(browser, shots, "search-error")


def test_version_with_image_card_and_csv(browser, site, shots):
    visit(browser, site["url"] + "/p/demo/r/credit-risk/v/12", site["url"])
    assert browser.find_element(By.TAG_NAME, "h1").text.split() == ["credit-risk:12", "latest",
                                                                     "staging"]
    card = browser.find_element(By.CSS_SELECTOR, ".card.markdown")
    assert card.find_element(By.TAG_NAME, "h1").text == "Credit risk model"
    assert card.find_element(By.TAG_NAME, "strong").text == "logistic"
    assert card.find_element(By.CSS_SELECTOR, "table td").text == "accuracy"
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth,"
        " i.complete])")
    assert images and all(w == 40 and done for _, w, done in images), images
    csv = browser.find_element(By.CSS_SELECTOR, ".preview[data-name='metrics/thresholds.csv']")
    assert [th.text for th in csv.find_elements(By.TAG_NAME, "th")] == ["threshold", "precision",
                                                                        "recall"]
    assert len(csv.find_elements(By.CSS_SELECTOR, "tbody tr")) == 3
    log = browser.find_element(By.CSS_SELECTOR, ".preview[data-name='train.log'] pre").text
    assert log.startswith("epoch 1 loss 0.5")
    tree = browser.find_element(By.CSS_SELECTOR, ".metadata").text
    assert "optimizer:\nname: adam" in tree and "Input-Data-Source: s3://credit/2026-12" in tree
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "table.attachments td a")]
    assert names == ["README.md", "config.json", "metrics/thresholds.csv", "roc.png", "train.log"]
    screenshot(browser, shots, "version")
    # the attachment link gives the verified bytes (the page itself may fetch nothing: CSP)
    link = browser.find_element(By.LINK_TEXT, "metrics/thresholds.csv").get_attribute("href")
    import httpx
    r = httpx.get(link)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.content.startswith(b"threshold,")
    assert browser.execute_script(
        "try { await fetch(arguments[0]); return 'fetched' } catch (e) { return 'refused' }",
        link) == "refused"
    console(browser)  # the refusal above is logged: not a page error


def test_diff(browser, site, shots):
    visit(browser, site["url"] + "/p/demo/r/credit-risk/v/12", site["url"])
    follow(browser, browser.find_element(By.LINK_TEXT, "diff with v11"))
    assert "v11" in browser.find_element(By.TAG_NAME, "h1").text
    changed = {r.find_elements(By.TAG_NAME, "td")[0].text: r.get_attribute("class")
               for r in rows(browser, "table.metadata-diff")}
    assert changed["params › lr"] == "changed" and changed["accuracy"] == "changed"
    assert "params › layers" not in changed  # equal values are not listed
    added = [r.text for r in rows(browser, "table.attachments-diff")]
    assert any(t.startswith("README.md added") for t in added)
    screenshot(browser, shots, "diff")
    a = browser.find_element(By.NAME, "a")
    a.clear()
    a.send_keys("3")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.controls button"))
    assert re.search(r"v3\b.*→.*v12", browser.find_element(By.TAG_NAME, "h1").text)


def test_plot(browser, site, shots):
    visit(browser, site["url"] + "/p/demo/r/credit-risk/plot?key=accuracy", site["url"])
    dots = browser.find_elements(By.CSS_SELECTOR, "svg.plot circle.dot")
    assert len(dots) == 12
    tagged = browser.find_elements(By.CSS_SELECTOR, "svg.plot circle.tagged")
    titles = sorted(t.get_attribute("textContent") for t in tagged)
    assert titles == [f"v10: {demo_accuracy(10)} (production)",
                      f"v12: {demo_accuracy(12)} (latest, staging)"]
    marks = [m.text for m in browser.find_elements(By.CSS_SELECTOR, "svg.plot g.mark text")]
    assert marks == ["production", "latest, staging"]
    screenshot(browser, shots, "plot")
    visit(browser, site["url"] + "/p/demo/r/big/plot?key=accuracy", site["url"])
    points = browser.find_element(By.CSS_SELECTOR, "svg.plot polyline").get_attribute("points")
    assert len(points.split()) == BIG
    # choose another key and the even sample in the form
    browser.find_element(By.CSS_SELECTOR, "select[name=key] option[value=metric_05]").click()
    browser.find_element(By.CSS_SELECTOR, "select[name=sample] option[value=even]").click()
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.controls button"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "big: metric_05 by version"
    points = browser.find_element(By.CSS_SELECTOR, "svg.plot polyline").get_attribute("points")
    assert len(points.split()) == BIG
    screenshot(browser, shots, "plot-1000")


def test_tag_history(browser, site, shots):
    visit(browser, site["url"] + "/p/demo/r/big/tags", site["url"])
    moves = [r.text for r in rows(browser, "table.tag-events")]
    assert len(moves) == 2 and "candidate" in moves[0] and "— → v950" in moves[0]
    follow(browser, browser.find_element(By.CSS_SELECTOR, "table.tag-events a.tag"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "big: history of tag candidate"


def test_static_export_opens_from_disk(browser, site, shots, tmp_path):
    from roro.ui.export import export_site
    out = tmp_path / "site"
    report = export_site(site["project"], out, max_versions=60)
    assert report.versions == 12 + 60 + 1 and report.projects == 2
    visit(browser, (out / "index.html").as_uri(), "file://")
    follow(browser, browser.find_element(By.LINK_TEXT, "credit-risk"))
    assert len(rows(browser)) == 12
    follow(browser, browser.find_element(By.LINK_TEXT, "v12"))
    assert browser.find_element(By.CSS_SELECTOR, ".card.markdown h1").text == "Credit risk model"
    images = browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert images and all(w == 40 for w in images)
    screenshot(browser, shots, "export-version")
    follow(browser, browser.find_element(By.LINK_TEXT, "diff with v11"))
    assert "v11" in browser.find_element(By.TAG_NAME, "h1").text
    visit(browser, (out / "p/demo/r/big/index.html").as_uri(), "file://")
    follow(browser, browser.find_element(By.CSS_SELECTOR, ".pager a.next"))
    assert rows(browser)[0].find_element(By.TAG_NAME, "td").text == "v950"
    assert rows(browser)[-1].find_element(By.TAG_NAME, "td").text == "v941"
    assert not browser.find_elements(By.CSS_SELECTOR, ".pager a.next")
    assert "Older versions are not in this export." in browser.find_element(By.CLASS_NAME,
                                                                            "pager").text
    assert not browser.find_elements(By.TAG_NAME, "form")
    assert os.path.exists(out / "p/demo/r/big/plot")
