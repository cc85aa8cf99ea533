"""Helpers for the web UI's tests: stores with attachments of every kind, the server on a free
loopback port (Uvicorn in a thread, stopped at the end), and headless Chromium driven by
selenium through Debian's chromedriver."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator

import roro

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                  "--disable-dev-shm-usage"]


def png(width: int = 40, height: int = 20, rgb: tuple[int, int, int] = (200, 60, 60)) -> bytes:
    """A real PNG image of one colour."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


MODEL_CARD = b"""# Credit risk model

A **logistic** scorer trained on June data.

| metric | value |
| --- | --- |
| accuracy | 0.89 |

![ROC curve](roc.png)
"""
CSV = b"threshold,precision,recall\n0.3,0.71,0.93\n0.5,0.82,0.85\n0.7,0.90,0.64\n"


def demo_accuracy(i: int) -> float:
    """Version ``i``'s accuracy in :func:`save_demo`: rising, with a dip every fourth run."""
    return round(0.72 + 0.17 * (1 - 0.85 ** i) - (0.015 if i % 4 == 0 else 0), 4)


def save_demo(project: roro.Project, versions: int = 12) -> roro.ModelRepository:
    """``credit-risk`` with ``versions`` real saves (metadata that changes, nested params), the last
    with a model card, an image, a CSV, a JSON file and a log; tags production and staging."""
    repo = project.get_model_repository("credit-risk")
    for i in range(1, versions + 1):
        image = repo.new_image({"weights": [i] * 3})
        image["accuracy"] = demo_accuracy(i)
        image["auc"] = round(0.80 + 0.15 * (1 - 0.85 ** i), 4)
        image["epochs"] = 10 * i
        image["Input-Data-Source"] = f"s3://credit/2026-{i:02d}"
        image["params"] = {"lr": 0.1 / i, "layers": [64, 32], "optimizer": {"name": "adam"}}
        if i == versions:
            image.attach("README.md", MODEL_CARD)
            image.attach("roc.png", png())
            image.attach("metrics/thresholds.csv", CSV)
            image.attach("config.json", b'{"features": ["income", "debt"], "C": 1.0}')
            image.attach("train.log", b"epoch 1 loss 0.5\nepoch 2 loss 0.3\n")
        image.save(comment=f"Train run {i}\n\nOn data up to month {i}.")
    repo.add_tag("production", max(1, versions - 2))
    repo.add_tag("staging", versions)
    return repo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(project: roro.Project) -> Iterator[str]:
    """``roro ui``'s app for ``project`` served by Uvicorn on a free loopback port; its URL."""
    import uvicorn

    from roro.ui.app import create_app
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(project), log_level="warning",
                                           lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the UI server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def require_chromium() -> None:
    """Fail (never skip) with one line when the browser is missing; ``make test`` installs it."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} missing: install Debian's chromium and "
                           f"chromium-driver (apt-get install chromium chromium-driver; "
                           f"'make test' does it when run as root)")


@contextlib.contextmanager
def chromium() -> Iterator:
    """Headless Chromium with a new empty profile (its own temporary directory, removed at the
    end: parallel workers never share one), logging the console and every network request
    (``driver.get_log('performance')``), leaving dialogs open so a test can see them."""
    require_chromium()
    profile = tempfile.mkdtemp(prefix="roro-chromium-")
    try:
        driver = _start_chromium(profile)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _start_chromium(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    options.set_capability("unhandledPromptBehavior", "ignore")
    downloads = os.path.join(profile, "downloads")
    options.add_experimental_option("prefs", {"download.default_directory": downloads,
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.roro_downloads = downloads  # type: ignore[attr-defined]
    return driver


# -- what a page did in the browser ------------------------------------------------------------------
def requests_made(driver) -> list[str]:
    """The URLs the browser requested since the last call (Chromium's performance log)."""
    import json
    out = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            out.append(message["params"]["request"]["url"])
    return out


def foreign_requests(driver, origin: str) -> list[str]:
    """Requests since the last call that went over the network (http, https, ws, ftp) anywhere
    but ``origin``; Chromium's own ``chrome://`` resources and ``data:`` URLs are not requests."""
    return [u for u in requests_made(driver)
            if u.split(":", 1)[0].lower() in ("http", "https", "ws", "wss", "ftp", "file")
            and not u.startswith(origin)]


def console(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")]


def open_dialog(driver) -> str | None:
    """The text of an open alert/confirm/prompt, if a script opened one."""
    from selenium.common.exceptions import NoAlertPresentException
    try:
        return driver.switch_to.alert.text
    except NoAlertPresentException:
        return None


SCREENSHOTS: list[str] = []


def screenshot(driver, directory: str, name: str) -> str:
    path = os.path.join(directory, f"{name}.png")
    driver.save_screenshot(path)
    SCREENSHOTS.append(path)
    return path
