"""``roro models:log -n N`` stays O(page) however long the history: it reads the index, never the
manifests, and the index does the same work at 20,000 versions as at 2,000."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

import pytest
from click.testing import CliRunner
from support.histories import build_history

import roro
from roro.cli import main
from roro.storage.memory import MemoryBackend

PAGE = 20


class Meter:
    """Counts what a command touches: objects and ref-log events read from the store, and SQLite
    virtual-machine instructions on every index connection opened meanwhile."""

    def __init__(self, monkeypatch):
        self.objects = self.events = self.steps = 0
        real_get, real_open, real_connect = MemoryBackend.get, MemoryBackend.open, sqlite3.connect

        def count(key: str) -> None:
            if key.startswith("objects/"):
                self.objects += 1
            elif key.startswith("refs/"):
                self.events += 1

        def get(backend, key, max_size=None):
            count(key)
            return real_get(backend, key, max_size)

        def open_(backend, key):
            count(key)
            return real_open(backend, key)

        def connect(*args, **kwargs):
            conn = real_connect(*args, **kwargs)
            conn.set_progress_handler(self._step, 1)
            return conn

        monkeypatch.setattr(MemoryBackend, "get", get)
        monkeypatch.setattr(MemoryBackend, "open", open_)
        monkeypatch.setattr(sqlite3, "connect", connect)

    def _step(self) -> int:
        self.steps += 1
        return 0

    def run(self, *args: str) -> tuple[dict, dict]:
        before = {"objects": self.objects, "events": self.events, "steps": self.steps}
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        used = {"objects": self.objects - before["objects"], "events": self.events - before["events"],
                "steps": self.steps - before["steps"]}
        return json.loads(result.stdout), used


@pytest.mark.slow
def test_log_page_costs_the_same_at_2000_and_20000_versions(monkeypatch):
    url = f"memory://scale-{uuid.uuid4().hex}"
    store = roro.Store(url)
    t0 = time.perf_counter()
    build_history(store, "small", ["a", "b"], 2_000)
    build_history(store, "big", ["a", "b"], 20_000)
    assert len(roro.Project("big", url).log(1)) == 1  # builds the index (once, like any reader)
    roro.Project("small", url).log(1)
    built = time.perf_counter() - t0

    meter = Meter(monkeypatch)
    cost = {}
    for project, total in (("small", 2_000), ("big", 20_000)):
        for args in (["models:log", "-n", str(PAGE), "--json"],
                     ["models:log", "a", "-n", str(PAGE), "--json"],
                     ["models:show", "a", "--no-scan", "--json"]):
            doc, used = meter.run("--store", url, "--project", project, *args)
            cost[project, " ".join(args[:2])] = used
            if args[0] == "models:log":
                versions = doc["versions"]
                assert len(versions) == PAGE
                if args[1] == "a":
                    assert [v["version"] for v in versions] == list(
                        range(total // 2, total // 2 - PAGE, -1))
                    assert versions[0]["tags"] == ["latest"]
                else:  # both repositories, newest save first
                    assert [v["metadata"]["i"] for v in versions] == list(
                        range(total - 1, total - 1 - PAGE, -1))
            # the log reads no manifest and no event (the index is up to date); show reads one
            # manifest and the one event that names it (an edited index never serves another
            # model: docs/trust.md), whatever the length of the history (and with --no-scan
            # not the pickle it would otherwise scan)
            show = args[0] == "models:show"
            assert used["events"] == (1 if show else 0), (project, args, used)
            assert used["objects"] == (1 if show else 0), (project, args, used)
    for key in ("models:log -n", "models:log a", "models:show a"):
        small, big = cost["small", key]["steps"], cost["big", key]["steps"]
        assert big <= small * 1.2 + 100, (key, cost)  # 10x the history, about the same work
    assert built < 60, built


def test_meter_sees_work_that_grows_with_the_history(monkeypatch):
    """The meter itself can fail a command that reads the whole history."""
    url = f"memory://scale-{uuid.uuid4().hex}"
    store = roro.Store(url)
    build_history(store, "small", ["a"], 200)
    build_history(store, "big", ["a"], 2_000)
    roro.Project("small", url).log(1)
    roro.Project("big", url).log(1)
    meter = Meter(monkeypatch)
    _, small = meter.run("--store", url, "--project", "small", "models:log", "a", "--json")
    _, big = meter.run("--store", url, "--project", "big", "models:log", "a", "--json")
    assert big["steps"] > small["steps"] * 5 and big["objects"] == 0
