"""A committed write never reports failure (issue 13, item 4).

Once the create-if-absent write of an event succeeded, the save (tag move, deletion, sync) has
happened: if the index update after it fails (disk full, a locked or broken index file), the call
returns success with a :class:`roro.RoroWarning` that the index is behind, and the next command
brings the index up to date. Reporting failure would invite a retry that duplicates the version.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import uuid

import pytest
from conftest import _start_s3, make_store_url, save_image

import roro
from roro import Project, RoroWarning, Store
from roro.check import fsck
from roro.faults import set_crash_handler
from roro.refs.index import Index

FULL = "database or disk is full"


@contextlib.contextmanager
def failing_index_update(exc: BaseException, point: str = "before-index-update"):
    """Make the index update after every committed event raise ``exc``."""
    def handler(name: str) -> None:
        if name == point:
            raise exc

    previous = set_crash_handler(handler)
    try:
        yield
    finally:
        set_crash_handler(previous)


def log_length(store: Store, repository: str = "m") -> int:
    return len(store.reflog("p", repository).keys_after(0))


WRITES = {
    "save": (lambda repo: save_image(repo, {"new": True}).version, 3),
    "tag": (lambda repo: repo.add_tag("prod", 1).version, 1),
    "untag": (lambda repo: repo.remove_tag("prod").version, None),
    "delete": (lambda repo: repo.delete_version(2), True),
    "create": (lambda repo: repo.project.create_model_repository("fresh").name, "fresh"),
}


@pytest.mark.parametrize("point", ["before-index-update", "during-index-update"])
@pytest.mark.parametrize("write", sorted(WRITES))
def test_an_index_failure_after_the_event_is_a_warning_not_an_error(store_url, write, point):
    project = Project("p", store=store_url)
    repo = project.get_model_repository("m")
    save_image(repo, {"v": 1})
    save_image(repo, {"v": 2})
    repo.add_tag("prod", 1)
    repo.remove_tag("prod") if write == "tag" else None
    repo.add_tag("prod", 1) if write == "untag" else None
    store = project.store
    events = log_length(store)
    do, expected = WRITES[write]
    with failing_index_update(sqlite3.OperationalError(FULL), point), \
            pytest.warns(RoroWarning, match="index") as warned:
        assert do(repo) == expected
    message = str(warned[0].message)
    assert FULL in message and "next command" in message
    written = "fresh" if write == "create" else "m"
    assert log_length(store, written) == (1 if write == "create" else events + 1)
    # The index is behind; the next command brings it up to date, and nothing was duplicated.
    fresh = Project("p", store=Store(store_url)).get_model_repository("m")
    if write == "save":
        assert fresh.get_model(3) == {"new": True} and fresh.count() == 3
    elif write == "tag":
        assert fresh.get_tags()["prod"] == 1
    elif write == "untag":
        assert "prod" not in fresh.get_tags()
    elif write == "delete":
        assert fresh.count() == 1
    else:
        assert project.get_model_repository("fresh").exists()
    assert fsck(store).ok


def test_sync_reports_the_appended_events_even_if_dst_index_fails(tmp_path, monkeypatch):
    src, dst = make_store_url("folder", tmp_path), make_store_url("folder", tmp_path)
    save_image(Project("p", store=src).get_model_repository("m"), "one")
    assert roro.sync(src, dst).ok
    save_image(Project("p", store=src).get_model_repository("m"), "two")
    calls = []
    real = Index.refresh

    def refresh(self, log, *args, **kwargs):
        if self.path == Store(dst).index_path():
            calls.append(log.repository)
            if len(calls) > 1:  # the refresh after the events were appended
                raise sqlite3.OperationalError(FULL)
        return real(self, log, *args, **kwargs)

    monkeypatch.setattr(Index, "refresh", refresh)
    with pytest.warns(RoroWarning, match="index"):
        report = roro.sync(src, dst)
    assert report.ok and report.events_appended == 1 and len(calls) == 2
    monkeypatch.setattr(Index, "refresh", real)
    assert Project("p", store=dst).get_model_repository("m").get_model() == "two"


# -- a real full disk ------------------------------------------------------------------------------
@contextlib.contextmanager
def small_disk(path: str, size: str = "4m"):
    """A tmpfs of ``size`` mounted at ``path`` (the tests run as root here and in CI: a mount that
    fails is a failure, not a skip)."""
    os.makedirs(path, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"cannot mount a tmpfs at {path}: {result.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=True)


def fill(directory: str) -> str:
    """Fill the file system of ``directory`` to the last byte; returns the filler's path."""
    path = os.path.join(directory, f"filler-{uuid.uuid4().hex}")
    for name, block in ((path, 1 << 16), (path + ".small", 1)):  # then the last partial block
        with open(name, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * block)
    return path


@pytest.mark.parametrize("kind", ["folder", "seaweedfs"])
def test_a_save_on_a_full_disk_after_its_event_is_reported_saved(kind, tmp_path, request,
                                                                 monkeypatch):
    """The disk that holds the index fills up between the event and the index update (a folder
    store keeps both on it; an S3 store's index is in the user cache)."""
    disk = str(tmp_path / "disk")
    with small_disk(disk):
        if kind == "folder":
            url = os.path.join(disk, "store")
        else:
            monkeypatch.setenv("RORO_CACHE_DIR", os.path.join(disk, "cache"))
            url = make_store_url(kind, tmp_path, _start_s3(request, monkeypatch, kind))
        repo = Project("p", store=url).get_model_repository("m")
        save_image(repo, {"v": 1}, comment="first")
        filler = []

        def fill_disk(point: str) -> None:
            if point == "after-ref-event" and not filler:
                filler.append(fill(disk))

        previous = set_crash_handler(fill_disk)
        try:
            with pytest.warns(RoroWarning, match="disk is full") as warned:
                image = save_image(repo, {"v": 2}, comment="second")
        finally:
            set_crash_handler(previous)
        assert filler, "the disk was never filled"
        assert image.version == 2 and "next command" in str(warned[0].message)
        for path in (filler[0], filler[0] + ".small"):
            os.unlink(path)
        again = Project("p", store=Store(url)).get_model_repository("m")
        assert again.count() == 2 and again.get_model(2) == {"v": 2}
        assert fsck(Store(url)).ok
