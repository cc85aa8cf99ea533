"""A repository's lifecycle (issue 14, defect 16): destroy, restore, rename: ref-log events under
the store feature ``repository-lifecycle``, understood by the index, fsck, gc and sync."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import save_image

import roro
from roro import faults
from roro.check import fsck, gc
from roro.cli import main
from roro.errors import ConflictError, NotFoundError, StoreError
from roro.storage import layout

#: these tests collect what they just made, with nobody else writing: any grace period
pytestmark = pytest.mark.usefixtures("no_gc_floor")


def cli(store, *args):
    return CliRunner().invoke(main, ["--store", store, *args], catch_exceptions=False)


@pytest.fixture
def project(store_url):
    project = roro.Project("default", store_url)
    repo = project.get_model_repository("credti-risk")  # a typo, to be fixed by a rename
    for i in range(1, 4):
        save_image(repo, {"w": i}, comment=f"run {i}", accuracy=0.8 + i / 100,
                   attachments={"log.txt": f"epoch {i}".encode()})
    repo.add_tag("prod", 2)
    save_image(project.get_model_repository("churn"), {"kind": "baseline"})
    return project


def test_destroy_hides_and_restore_brings_back(project):
    repo = project.get_model_repository("credti-risk")
    before = repo.get_tags()
    repo.destroy()
    assert project.store.features() >= {"repository-lifecycle"}
    assert [r.name for r in project.list_model_repositories()] == ["churn"]
    assert project.closed_repositories()[0]["status"] == "destroyed"
    with pytest.raises(NotFoundError, match="was destroyed.*models:restore"):
        repo.get_model_image()
    with pytest.raises(NotFoundError, match="destroyed"):
        roro.Project("default", project.store.url).get_model("credti-risk:prod")
    with pytest.raises(ConflictError, match="destroyed"):
        save_image(repo, {"w": 9})
    with pytest.raises(ConflictError, match="destroyed"):
        repo.add_tag("x", 1)
    assert [i.repository.name for i in project.log()] == ["churn"]
    assert len(project.search("accuracy > 0")) == 0
    assert fsck(project.store).ok
    repo.restore()
    assert repo.get_tags() == before and repo.get_model("prod") == {"w": 2}
    assert len(project.search("accuracy > 0")) == 3
    with pytest.raises(ConflictError, match="not destroyed"):
        repo.restore()
    fresh = roro.Project("default", project.store.url)
    assert fresh.get_model_repository("credti-risk").get_model_image().version == 3


def test_gc_keeps_a_destroyed_repository_for_its_grace_then_collects_it(project):
    repo = project.get_model_repository("credti-risk")
    repo.destroy()
    kept = gc(project.store, grace_seconds=3600)
    assert kept.deleted == [] and kept.kept_destroyed > 0
    repo.restore()  # within the grace: everything is there
    repo.destroy()
    collected = gc(project.store, grace_seconds=0)
    assert len(collected.deleted) == 3 * 3  # 3 versions: manifest, model, attachment each
    assert fsck(project.store, read_data=True).ok
    with pytest.raises(NotFoundError, match="gc already collected"):
        repo.restore()
    assert roro.Project("default", project.store.url).get_model("churn") == {"kind": "baseline"}
    project.store.rebuild_index()  # a destroyed repository's collected manifests are not needed


def test_rename_keeps_history_and_tags_and_redirects_reads(project):
    old = project.get_model_repository("credti-risk")
    history = old.get_tag_history()
    new = old.rename("credit-risk")
    assert new.name == "credit-risk"
    assert [r.name for r in project.list_model_repositories()] == ["churn", "credit-risk"]
    assert new.get_tags() == {"prod": 2, "latest": 3}
    assert new.get_tag_history() == history
    assert [i.comment for i in new.list_model_images()] == ["run 3", "run 2", "run 1"]
    assert project.get_model("credti-risk:prod") == {"w": 2}  # the old name leads to the new
    with pytest.raises(NotFoundError, match="renamed to 'credit-risk'"):
        old.get_model_image()
    with pytest.raises(ConflictError, match="renamed to 'credit-risk'"):
        save_image(old, {"w": 9})
    saved = save_image(new, {"w": 4})
    assert saved.version == 4
    assert fsck(project.store).ok
    with pytest.raises(ConflictError, match="holds its history"):
        old.restore()
    # the rename is one event in both logs, and each log folds on its own
    project.store.rebuild_index()
    assert new.get_tags() == {"prod": 2, "latest": 4}


def test_a_closed_repository_cannot_be_renamed_again(project):
    old = project.get_model_repository("credti-risk")
    old.rename("credit-risk")
    with pytest.raises(ConflictError, match="renamed to 'credit-risk'"):
        old.rename("other")
    assert not project.store.reflog("default", "other").keys_after(0)  # nothing copied
    project.get_model_repository("churn").destroy()
    with pytest.raises(ConflictError, match="destroyed"):
        project.get_model_repository("churn").rename("churn-2")
    assert not project.store.reflog("default", "churn-2").keys_after(0)


def test_rename_to_an_existing_repository_is_refused(project):
    with pytest.raises(ConflictError, match="'churn' already exists"):
        project.get_model_repository("credti-risk").rename("churn")
    assert project.get_model_repository("credti-risk").get_model_image().version == 3
    assert project.get_model_repository("churn").count() == 1


def test_an_interrupted_rename_is_reported_and_completed_by_running_it_again(project):
    def crash(point):
        if point == "after-ref-event":
            raise KeyboardInterrupt("killed")

    previous = faults.set_crash_handler(crash)
    try:
        with pytest.raises(KeyboardInterrupt):
            project.get_model_repository("credti-risk").rename("credit-risk")
    finally:
        faults.set_crash_handler(previous)
    report = fsck(project.store)
    assert [p.kind for p in report.problems] == ["incomplete-rename"]
    assert gc(project.store, grace_seconds=0).deleted == []  # its objects are kept meanwhile
    project.get_model_repository("credti-risk").rename("credit-risk")
    assert fsck(project.store).ok
    assert project.get_model_repository("credit-risk").get_tags()["prod"] == 2


def test_sync_carries_the_lifecycle(project, tmp_path):
    project.get_model_repository("credti-risk").rename("credit-risk")
    project.get_model_repository("churn").destroy()
    dst = str(tmp_path / "dst")
    report = roro.sync(project.store, dst)
    assert report.ok, report.summary()
    other = roro.Project("default", dst)
    assert [r.name for r in other.list_model_repositories()] == ["credit-risk"]
    assert other.get_model("credti-risk:prod") == {"w": 2}
    assert fsck(other.store).ok
    project.get_model_repository("churn").restore()
    assert roro.sync(project.store, dst).ok
    assert other.get_model("churn") == {"kind": "baseline"}


def test_an_older_roro_refuses_a_store_with_lifecycle_events(tmp_path, monkeypatch):
    path = str(tmp_path / "store")
    project = roro.Project("p", path)
    save_image(project.get_model_repository("m"), {"w": 1})
    project.get_model_repository("m").destroy()
    monkeypatch.setattr(layout, "KNOWN_FEATURES", frozenset())
    with pytest.raises(StoreError, match="repository-lifecycle.*upgrade roro"):
        roro.Project("p", path).list_model_repositories()


def test_the_cli(project):
    url = project.store.url
    result = cli(url, "models:destroy", "churn", "--confirm", "chrun")
    assert result.exit_code == 2 and "--confirm" in result.stderr
    assert cli(url, "models:destroy", "churn").exit_code == 2
    doc = json.loads(cli(url, "models:destroy", "churn", "--confirm", "churn", "--json").stdout)
    assert doc["status"] == "destroyed" and doc["repository"] == "churn"
    text = cli(url, "models").stdout
    assert "churn" in text.splitlines()[-1] and "models:restore" in text
    assert cli(url, "models:show", "churn").exit_code == 3
    assert json.loads(cli(url, "models:restore", "churn", "--json").stdout)["status"] == "live"
    assert cli(url, "models:restore", "churn").exit_code == 5
    doc = json.loads(cli(url, "models:rename", "credti-risk", "credit-risk", "--json").stdout)
    assert doc == {"project": "default", "repository": "credti-risk",
                   "renamed_to": "credit-risk", "versions": 3}
    assert cli(url, "models:rename", "credit-risk", "churn").exit_code == 5
    shown = json.loads(cli(url, "models:show", "credti-risk:v2", "--json").stdout)
    assert shown["repository"] == "credit-risk" and shown["version"] == 2
    assert "credit-risk:3" in cli(url, "models:log", "credti-risk", "--oneline").stdout
    assert cli(url, "models:tag", "credti-risk:1", "x").exit_code in (3, 5)


def test_sync_after_gc_collected_a_destroyed_repository_and_a_deleted_version(project, tmp_path):
    repo = project.get_model_repository("credti-risk")
    repo.destroy()
    churn = project.get_model_repository("churn")
    save_image(churn, {"kind": "second"})
    churn.delete_version(1)
    gc(project.store, grace_seconds=0)  # their objects are gone from SRC
    dst = str(tmp_path / "dst")
    report = roro.sync(project.store, dst)
    assert report.ok, report.summary()
    other = roro.Project("default", dst)
    assert other.get_model("churn") == {"kind": "second"}
    assert other.closed_repositories()[0]["name"] == "credti-risk"
    assert fsck(other.store, read_data=True).ok
    with pytest.raises(NotFoundError, match="gc already collected"):
        other.get_model_repository("credti-risk").restore()
