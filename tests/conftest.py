"""Shared fixtures. Every contract suite runs against every backend through ``store_url``.

S3 backends: ``moto`` (moto's server in a thread) and ``seaweedfs`` (a real S3 server in a
subprocess), both started once per session by :mod:`support.s3servers` and only when a test needs them.
Each test gets a fresh bucket; its environment points ``AWS_ENDPOINT_URL`` at the server.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable

import pytest
from support.s3faults import no_backoff  # noqa: F401 - a fixture
from support.s3servers import (  # noqa: F401 - fixtures are registered by importing them here
    S3_KINDS,
    create_bucket,
    moto_endpoint,
    seaweedfs_endpoint,
    use_endpoint,
)

_counter = itertools.count()

BACKENDS = ["memory", "folder", "moto", "seaweedfs"]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No test reads or writes the user's ~/.roro, cache or keys, or picks up a roro.yml above
    tmp."""
    monkeypatch.setenv("RORO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # trust settings, keys
    for var in ("RORO_STORE", "RORO_PROJECT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                "RORO_TRUST", "RORO_SIGNING_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def make_store_url(kind: str, tmp_path, endpoint: str | None = None) -> str:
    """A fresh, empty store URL of the given backend kind. S3 kinds need the ``endpoint`` of a
    running server (a fixture's value); they get a new bucket and a prefix in it."""
    n = next(_counter)
    if kind == "memory":
        return f"memory://test-{os.getpid()}-{n}"
    if kind == "folder":
        return str(tmp_path / f"store-{n}")
    if kind in S3_KINDS:
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL")  # set by use_endpoint()
        if endpoint is None:
            raise ValueError(f"a {kind} store needs the endpoint of a running server")
        return f"s3://{create_bucket(endpoint)}/store-{n}"
    raise ValueError(kind)


def _start_s3(request, monkeypatch, kind: str) -> str:
    """Start (once per session) the server of ``kind`` and point this test's environment at it.
    Runs after ``_isolated_home`` (autouse fixtures come first), so its AWS_ENDPOINT_URL stays."""
    endpoint = request.getfixturevalue(f"{kind}_endpoint")
    return use_endpoint(monkeypatch, endpoint)


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path, monkeypatch) -> str:
    """A fresh, empty store of every backend kind."""
    kind = request.param
    endpoint = _start_s3(request, monkeypatch, kind) if kind in S3_KINDS else None
    return make_store_url(kind, tmp_path, endpoint)


@pytest.fixture(params=["folder", "seaweedfs"])
def real_store_url(request, tmp_path, monkeypatch) -> str:
    """A fresh, empty store on a folder and on the real S3 server (SeaweedFS): for tests whose
    subject is not the backend (model formats), run where users keep stores."""
    kind = request.param
    endpoint = _start_s3(request, monkeypatch, kind) if kind in S3_KINDS else None
    return make_store_url(kind, tmp_path, endpoint)


@pytest.fixture(params=S3_KINDS)
def s3_endpoint(request, monkeypatch) -> str:
    """The endpoint URL of each S3 test server, with this test's environment pointed at it."""
    return _start_s3(request, monkeypatch, request.param)


@pytest.fixture(params=BACKENDS)
def store_factory(request, tmp_path, monkeypatch) -> Callable[[], str]:
    """For every backend kind, a function that returns a fresh, empty store URL on each call:
    hypothesis tests and state machines need a new store per example. Its ``kind`` attribute
    names the backend. S3 stores share one bucket, each under its own prefix."""
    kind = request.param
    if kind in S3_KINDS:
        bucket = create_bucket(_start_s3(request, monkeypatch, kind))
        counter = itertools.count()

        def factory() -> str:
            return f"s3://{bucket}/store-{next(counter)}"
    else:
        def factory() -> str:
            return make_store_url(kind, tmp_path)
    factory.kind = kind  # type: ignore[attr-defined]
    return factory


def examples(factory, local: int, remote: int) -> int:
    """How many hypothesis examples to run for a ``store_factory`` kind: every S3 request is a
    loopback round trip (and a new bucket per example), so S3 kinds run fewer of the same test."""
    return remote if factory.kind in S3_KINDS else local


@pytest.fixture
def no_gc_floor(monkeypatch) -> None:
    """Let gc run with any grace period, 0 included (``RORO_GC_MIN_GRACE=0``, inherited by
    subprocesses): for tests that collect what they just made, with nobody else writing."""
    monkeypatch.setenv("RORO_GC_MIN_GRACE", "0")


@pytest.fixture
def spool_dir(tmp_path, monkeypatch) -> str:
    """Point Python's temporary files (where saves to remote stores spool models) at an empty
    directory, so a test can prove nothing is left behind."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return str(d)


def save_image(repo, model, comment="", attachments=None, **meta):
    """Save ``model`` into ``repo`` with metadata and ``{name: bytes}`` attachments."""
    img = repo.new_image(model)
    for k, v in meta.items():
        img[k] = v
    for name, data in (attachments or {}).items():
        img.attach(name, data)
    return img.save(comment=comment)


_SCREENSHOTS_SEEN: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test's new screenshots travel in its report (to the controller under pytest-xdist)."""
    outcome = yield
    from support.browser import SCREENSHOTS
    if SCREENSHOTS:
        outcome.get_result().user_properties.append(("screenshots", list(SCREENSHOTS)))
        SCREENSHOTS.clear()


def pytest_runtest_logreport(report):
    for name, value in report.user_properties:
        if name == "screenshots":
            _SCREENSHOTS_SEEN.extend(value)


def pytest_terminal_summary(terminalreporter):
    """Where the browser tests saved their screenshots (test artifacts)."""
    if _SCREENSHOTS_SEEN:
        folders = sorted({os.path.dirname(p) for p in _SCREENSHOTS_SEEN})
        terminalreporter.write_line(f"browser screenshots ({len(_SCREENSHOTS_SEEN)}): "
                                    + ", ".join(folders))
