"""Shared fixtures. Every contract suite runs against every backend through ``backend_url``."""

from __future__ import annotations

import itertools
import os

import pytest

_counter = itertools.count()

BACKENDS = ["memory", "folder"]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No test reads or writes the user's ~/.roro or cache, or picks up a roro.yml above tmp."""
    monkeypatch.setenv("RORO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("RORO_STORE", "RORO_PROJECT", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def make_store_url(kind: str, tmp_path) -> str:
    """A fresh, empty store URL of the given backend kind."""
    n = next(_counter)
    if kind == "memory":
        return f"memory://test-{os.getpid()}-{n}"
    if kind == "folder":
        return str(tmp_path / f"store-{n}")
    raise ValueError(kind)


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path) -> str:
    """A fresh, empty store of every backend kind."""
    return make_store_url(request.param, tmp_path)


@pytest.fixture(params=BACKENDS)
def store_factory(request, tmp_path):
    """For every backend kind, a function that returns a fresh, empty store URL on each call:
    hypothesis tests and state machines need a new store per example. (When S3 kinds are added,
    start their server here exactly as ``store_url`` does, and pass its endpoint along.)"""
    kind = request.param
    return lambda: make_store_url(kind, tmp_path)
