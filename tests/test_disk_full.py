"""A full disk (issue 13, item 10): reads, fsck and gc (the tool that frees space!) work on a
full disk, even when the index is behind the log or missing (it is then kept in memory for the
command); writes fail with one line naming the path and the space free and needed. The disk is
a small tmpfs mounted by the test (root, here and in CI); the test fails if it cannot mount it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import warnings

import pytest
from click.testing import CliRunner
from conftest import save_image
from support.mounts import fill, small_tmpfs

from roro import Project, Store, StoreError
from roro.check import fsck, gc
from roro.cli import main
from roro.storage.folder import RESERVE_BYTES

#: these tests collect what they just made, with nobody else writing: any grace period
pytestmark = pytest.mark.usefixtures("no_gc_floor")

BIG = 600_000  # bytes of a model whose blob gc can free


def free(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@pytest.fixture(params=["index up to date", "index behind", "no index"])
def full(request, tmp_path):
    with small_tmpfs(str(tmp_path / "disk"), "8m") as disk:
        root = os.path.join(disk, "store")
        repo = Project("p", store=root).get_model_repository("m")
        save_image(repo, b"x" * BIG)  # version 1, deleted below: gc may free its blob
        save_image(repo, {"v": 2}, attachments={"a.txt": b"two"})
        repo.delete_version(1)
        index = os.path.join(root, "index.sqlite3")
        sqlite3.connect(index).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
        if request.param == "index behind":
            shutil.copy(index, str(tmp_path / "old-index"))
            save_image(Project("p", store=root).get_model_repository("m"), {"v": 3})
        if request.param != "index up to date":
            for name in os.listdir(root):
                if name.startswith("index.sqlite3"):
                    os.unlink(os.path.join(root, name))
        if request.param == "index behind":
            shutil.copy(str(tmp_path / "old-index"), index)
        filler = fill(disk)
        assert free(disk) < 4096
        yield root, 3 if request.param == "index behind" else 2, filler


def test_reads_fsck_and_gc_work_on_a_full_disk(full, tmp_path):
    root, latest, _ = full
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "index kept in memory", where it must be
        repo = Project("p", store=root).get_model_repository("m")
        assert [i.version for i in repo.list_model_images()] == list(range(latest, 1, -1))
        assert repo.get_model(2) == {"v": 2}
        assert repo.get_model_image(2).get_attachment("a.txt").read() == b"two"
        report = fsck(Store(root), read_data=True)
        assert report.ok, [str(p) for p in report.problems]
        collected = gc(Store(root), grace_seconds=0)
    assert sum(o.size for o in collected.deleted) >= BIG  # the deleted version's model
    # the blob's room is free again, less the room gc keeps for its next run on a full disk
    # (gc/reserve, given back to take its lock this time) and the index written again
    assert free(os.path.dirname(root)) >= BIG - RESERVE_BYTES


def test_the_cli_reads_on_a_full_disk(full, tmp_path):
    root, latest, _ = full
    for argv in (["models"], ["models:log", "m"], ["models:show", "m"], ["fsck"]):
        result = CliRunner().invoke(main, ["--store", root, "--project", "p", *argv])
        assert result.exit_code == 0, (argv, result.output)
    result = CliRunner().invoke(main, ["--store", root, "gc", "--grace", "0"])
    assert result.exit_code == 0, result.output


def test_writes_on_a_full_disk_fail_in_one_line_naming_path_and_space(full):
    root, latest, filler = full
    repo = Project("p", store=root).get_model_repository("m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for write in (lambda: save_image(repo, b"y" * 100_000),
                      lambda: repo.new_image(1).attach("x", b"z" * 100_000),
                      lambda: repo.add_tag("prod", 2)):
            with pytest.raises(StoreError, match="no space left") as e:
                write()
            message = str(e.value)
            assert "\n" not in message and root in message and "bytes free" in message
    result = CliRunner().invoke(main, ["--store", root, "--project", "p", "models:tag", "m:2",
                                       "prod"])
    assert result.exit_code == 1 and "no space left" in result.output
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == [
        result.output.strip().splitlines()[-1]]
    os.unlink(filler)  # once there is room again, everything works and nothing was lost
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_image(repo, {"v": 9})
    assert fsck(Store(root), read_data=True).ok
    assert repo.get_model() == {"v": 9}
