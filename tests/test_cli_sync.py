"""``roro sync`` and ``roro models:copy`` through CliRunner, between local stores."""

from __future__ import annotations

import json

import pytest
from conftest import make_store_url
from support.trust_helpers import corrupt_object
from test_cli import run

import roro


@pytest.fixture(params=["memory", "folder"])
def store_url(request, tmp_path) -> str:
    return make_store_url(request.param, tmp_path)


@pytest.fixture
def dst_url(request, tmp_path) -> str:
    return make_store_url("folder", tmp_path)


def save(store: str, name: str, n: int, start: int = 1, project: str = "default") -> None:
    repo = roro.Project(project, store).get_model_repository(name)
    for i in range(start, start + n):
        image = repo.new_image({"weights": [i] * 8})
        image["Accuracy"] = i / 10
        image.attach("notes.txt", f"{name} {i}\n".encode())
        image.save(comment=f"{name} run {i}")


# -- sync ------------------------------------------------------------------------------------------
def test_sync_then_nothing_to_transfer(store_url, dst_url):
    save(store_url, "a", 3)
    save(store_url, "b", 1)
    roro.Project("default", store_url).get_model_repository("a").add_tag("prod", 2)
    dry = run("sync", store_url, dst_url, "--dry-run", store=store_url).stdout
    assert "pending" in dry and "2 would sync" in dry.splitlines()[-1]
    assert not roro.Store(dst_url).is_initialized() or \
        roro.Project("default", dst_url).list_model_repositories() == []
    out = run("sync", store_url, dst_url).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "STATUS", "EVENTS", "OBJECTS", "BYTES"]
    assert lines[1].split()[:4] == ["default/a", "synced", "4", "9"]
    assert lines[2].split()[:4] == ["default/b", "synced", "1", "2"]  # its model is a:1's
    assert lines[-1].startswith("2 synced; 5 events, 11 objects")
    again = run("sync", store_url, dst_url).stdout
    assert again.startswith("DST is up to date: nothing to transfer (2 repositories checked")
    # DST now answers like SRC.
    for args in (["models:log", "a", "--json"], ["models:show", "a:prod", "--json"]):
        assert run(*args, store=dst_url).stdout == run(*args, store=store_url).stdout
    doc = json.loads(run("sync", store_url, dst_url, "--json").stdout)
    assert doc["ok"] is True and doc["up_to_date"] == ["default/a", "default/b"]
    assert doc["events_appended"] == 0 and doc["summary"].startswith("DST is up to date")


def test_sync_only_named_repositories_and_the_global_project(store_url, dst_url):
    save(store_url, "a", 1)
    save(store_url, "b", 1)
    save(store_url, "c", 1, project="other")
    doc = json.loads(run("sync", store_url, dst_url, "b", "--json").stdout)
    assert doc["synced"] == ["default/b"]
    doc = json.loads(run("--project", "other", "sync", store_url, dst_url, "--json").stdout)
    assert doc["synced"] == ["other/c"]
    assert [r.name for r in roro.Project("default", dst_url).list_model_repositories()] == ["b"]


def test_sync_conflict_exits_5_and_still_syncs_the_others(store_url, dst_url):
    save(store_url, "a", 2)
    save(store_url, "b", 2)
    save(dst_url, "a", 1, start=7)  # DST's own history of "a": diverged
    result = run("sync", store_url, dst_url, ok=None)
    assert result.exit_code == 5 and result.stderr == ""
    assert "conflict" in result.stdout and "1 conflicted" in result.stdout
    conflict_lines = [line for line in result.stdout.splitlines() if line.startswith("conflict ")]
    assert len(conflict_lines) == 1 and "default/a" in conflict_lines[0]
    assert roro.Project("default", dst_url).get_model_repository("b").count() == 2
    assert roro.Project("default", dst_url).get_model_repository("a").count() == 1  # untouched
    result = run("sync", store_url, dst_url, "--json", ok=None)
    assert result.exit_code == 5
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["conflicted"] == ["default/a"]
    [a] = [r for r in doc["repositories"] if r["repository"] == "a"]
    assert a["status"] == "conflict" and a["src_last"] and a["dst_last"]
    # A dry run reports the conflict with the same exit code.
    assert run("sync", store_url, dst_url, "--dry-run", ok=None).exit_code == 5


def test_sync_from_a_corrupted_source_exits_4_naming_the_object(store_url, dst_url):
    save(store_url, "a", 1)
    image = roro.Project("default", store_url).get_model_repository("a").get_model_image()
    digest = image.manifest["model"]["digest"]
    corrupt_object(roro.Store(store_url), digest)
    result = run("sync", store_url, dst_url, ok=None)
    assert result.exit_code == 4
    assert "failed" in result.stdout and digest in result.stdout
    assert roro.Project("default", dst_url).list_model_repositories() == []


def test_sync_bad_input(store_url, dst_url, tmp_path):
    save(store_url, "a", 1)
    missing = str(tmp_path / "no-such-store")
    for args, code in [((missing, dst_url), 3), ((store_url, dst_url, "nope"), 3),
                       ((store_url, dst_url, "Bad Name"), 2), (("ftp://x/y", dst_url), 1),
                       ((store_url,), 2)]:
        result = run("sync", *args, ok=False)
        assert result.exit_code == code, (args, result.stderr)


def test_sync_and_copy_to_a_remote_named_in_roro_yml(store_url, tmp_path, monkeypatch):
    save(store_url, "a", 2)
    work = tmp_path / "work"
    work.mkdir()
    (work / "roro.yml").write_text(f"project: default\nremotes:\n  backup: {tmp_path / 'bk'}\n")
    monkeypatch.chdir(work)
    doc = json.loads(run("sync", store_url, "backup", "--json").stdout)
    assert doc["synced"] == ["default/a"] and doc["dst"] == str(tmp_path / "bk")
    assert roro.Project("default", str(tmp_path / "bk")).get_model_repository("a").count() == 2
    run("models:copy", store_url, "a:1", "backup", "a-first")
    assert roro.Project("default", str(tmp_path / "bk")).get_model_repository("a-first").count() == 1


# -- models:copy -----------------------------------------------------------------------------------
def test_copy_appends_a_version_whatever_the_history(store_url, dst_url):
    save(store_url, "a", 3)
    save(dst_url, "a", 2, start=10)
    roro.Project("default", store_url).get_model_repository("a").add_tag("prod", 2)
    out = run("models:copy", store_url, "a:prod", dst_url).stdout
    assert out.startswith("Copied default/a:2 to default/a:3 (")
    again = run("models:copy", store_url, "a:prod", dst_url).stdout
    assert again == "default/a:3 already is a copy of default/a:2: nothing appended.\n"
    src_doc = json.loads(run("models:show", "a:2", "--json", store=store_url).stdout)
    dst_doc = json.loads(run("models:show", "a:3", "--json", store=dst_url).stdout)
    assert dst_doc["model"] == src_doc["model"] and dst_doc["metadata"] == src_doc["metadata"]
    origin = dst_doc["lineage"]["copied_from"]
    assert (origin["repository"], origin["version"], origin["image"]) == ("a", 2, src_doc["image"])
    show = run("models:show", "a:3", store=dst_url, env={"COLUMNS": "300"}).stdout
    assert f"copied from  {roro.Store(store_url).url} default/a:2\n" in show


def test_copy_json_new_name_and_project(store_url, dst_url):
    save(store_url, "a", 1)
    doc = json.loads(run("models:copy", store_url, "a", dst_url, "promoted", "--to-project",
                         "prod", "--json").stdout)
    assert doc["created"] is True and doc["ok"] is True
    assert (doc["dst_project"], doc["dst_repository"], doc["dst_version"]) == ("prod", "promoted", 1)
    assert doc["objects_transferred"] == 2
    assert roro.Project("prod", dst_url).get_model_repository("promoted").count() == 1


def test_copy_bad_input(store_url, dst_url, tmp_path):
    save(store_url, "a", 1)
    for args, code in [((store_url, "a:5", dst_url), 3), ((store_url, "zz", dst_url), 3),
                       ((store_url, "a:", dst_url), 2), ((store_url, "a", dst_url, "Bad Name"), 2),
                       ((str(tmp_path / "none"), "a", dst_url), 3)]:
        result = run("models:copy", *args, ok=False)
        assert result.exit_code == code, (args, result.stderr)


def test_progress_is_reported_on_a_terminal_only(store_url, dst_url, monkeypatch):
    from roro.cli import render
    from roro.cli import sync as cli_sync
    save(store_url, "a", 2)
    seen = []
    real = cli_sync._progress

    def spy(show):
        seen.append(show)
        return real(show)

    monkeypatch.setattr(cli_sync, "_progress", spy)
    calls = []
    real_sync = cli_sync.run_sync

    def counting_sync(*args, progress=None, **kwargs):
        def counted(p):
            calls.append(p.phase)
            progress(p)
        return real_sync(*args, progress=counted if progress else None, **kwargs)

    monkeypatch.setattr(cli_sync, "run_sync", counting_sync)
    run("sync", store_url, dst_url, "--dry-run")
    assert seen == [False] and calls == []
    monkeypatch.setattr(render, "stdout_is_terminal", lambda: True)
    out = run("sync", store_url, dst_url).stdout
    assert seen == [False, True] and "objects" in calls and "events" in calls
    assert out.splitlines()[-1].startswith("1 synced; 2 events")
    run("sync", store_url, dst_url, "--json")  # never with --json, even on a terminal
    assert seen == [False, True, False]
