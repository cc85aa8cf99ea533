"""Reading a folder store you may not write (issue 13, item 9): a read-only mount, a shared
folder, another user's store. SQLite's WAL mode needs write access to open the store's
``index.sqlite3``; a reader then keeps its index in the user cache instead (seeded from the
store's own index when there is one, and brought up to date from the log when that one is
stale), and every write fails with one clear line. The store is made really read-only (a
read-only bind mount: root gets EROFS too); the test fails if that cannot be set up."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest
from click.testing import CliRunner
from conftest import save_image
from support.mounts import read_only_view

from roro import Project, Store, StoreError
from roro.check import fsck, gc
from roro.cli import main

#: these tests collect what they just made, with nobody else writing: any grace period
pytestmark = pytest.mark.usefixtures("no_gc_floor")


def build(root: str) -> None:
    repo = Project("p", store=root).get_model_repository("m")
    save_image(repo, {"v": 1}, attachments={"a.txt": b"one"}, Accuracy=0.8)
    save_image(repo, {"v": 2}, Accuracy=0.9)
    repo.add_tag("prod", 1)


@pytest.fixture(params=["no index", "up-to-date index", "stale index"])
def readonly(request, tmp_path):
    src = str(tmp_path / "src")
    build(src)
    index = os.path.join(src, "index.sqlite3")
    if request.param == "no index":
        for name in os.listdir(src):
            if name.startswith("index.sqlite3"):
                os.unlink(os.path.join(src, name))
    elif request.param == "stale index":
        sqlite3.connect(index).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
        shutil.copy(index, str(tmp_path / "old-index"))
        save_image(Project("p", store=src).get_model_repository("m"), {"v": 3}, Accuracy=0.95)
        for name in os.listdir(src):
            if name.startswith("index.sqlite3"):
                os.unlink(os.path.join(src, name))
        shutil.copy(str(tmp_path / "old-index"), index)
    with read_only_view(src, str(tmp_path / "ro")) as view:
        if request.param != "no index":  # the user's index starts from the store's own
            assert Store(view).index.positions()[("p", "m")][0] == 3
        yield view, 3 if request.param == "stale index" else 2


def test_a_read_only_store_can_be_read(readonly, tmp_path):
    view, latest = readonly
    project = Project("p", store=view)
    repo = project.get_model_repository("m")
    assert [i.version for i in repo.list_model_images()] == list(range(latest, 0, -1))
    assert repo.get_model() == {"v": latest}
    assert repo.get_model(tag="prod") == {"v": 1}
    assert repo.get_model_image(1).get_attachment("a.txt").read() == b"one"
    assert [i.version for i in repo.search("Accuracy > 0.85")] == list(range(latest, 1, -1))
    assert len(project.log()) == latest
    assert fsck(Store(view), read_data=True).ok
    report = Store(view).rebuild_index()
    assert report.ok and report.versions == latest

    os.chdir(tmp_path)
    for argv in (["models"], ["models:log", "m"], ["models:show", "m:prod"], ["fsck"],
                 ["models:download", "m", "-o", "out.pkl"], ["gc", "--dry-run"]):
        result = CliRunner().invoke(main, ["--store", view, "--project", "p", *argv])
        assert result.exit_code == 0, (argv, result.output)
    assert os.path.getsize("out.pkl") > 0


def test_a_write_to_a_read_only_store_fails_in_one_line(readonly):
    view, latest = readonly
    repo = Project("p", store=view).get_model_repository("m")
    for write in (lambda: save_image(repo, {"v": 9}), lambda: repo.add_tag("prod", 2),
                  lambda: repo.delete_version(2), lambda: repo.new_image(1).attach("x", b"x"),
                  lambda: Project("p", store=view).create_model_repository("n")):
        with pytest.raises(StoreError, match="read-only") as e:
            write()
        assert "\n" not in str(e.value)
    for argv in (["models:tag", "m:2", "prod"], ["models:delete", "m:2"], ["models:create", "n"]):
        result = CliRunner().invoke(main, ["--store", view, "--project", "p", *argv])
        assert result.exit_code == 1, (argv, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "read-only" in result.output
    assert [i.version for i in repo.list_model_images()] == list(range(latest, 0, -1))


def test_gc_on_a_read_only_store_says_it_cannot_delete(tmp_path):
    src = str(tmp_path / "src")
    build(src)
    repo = Project("p", store=src).get_model_repository("m")
    repo.remove_tag("prod")
    repo.delete_version(1)
    with read_only_view(src, str(tmp_path / "ro")) as view:
        assert len(gc(Store(view), grace_seconds=0, dry_run=True).deleted) == 3
        with pytest.raises(StoreError, match="read-only"):
            gc(Store(view), grace_seconds=0)
        result = CliRunner().invoke(main, ["--store", view, "gc", "--grace", "0"])
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
