"""``roro models:search``, ``models:log --where``, ``models:diff`` and lineage in ``models:show``."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import make_store_url
from test_cli import run

import roro


@pytest.fixture(params=["memory", "folder"])
def store_url(request, tmp_path) -> str:
    return make_store_url(request.param, tmp_path)


@pytest.fixture
def project(store_url) -> roro.Project:
    """credit v1..v4 (Accuracy .80 .86 .89 .91; prod -> v3; source on v2 and v3), churn v1."""
    p = roro.Project("default", store_url)
    repo = p.get_model_repository("credit")
    for i, acc in enumerate([0.80, 0.86, 0.89, 0.91], start=1):
        image = repo.new_image({"w": i})
        image["Accuracy"] = acc
        if i in (2, 3):
            image["Input-Data-Source"] = f"s3://credit/{i}"
        image.attach("log.txt", f"epoch {i}\n".encode())
        if i == 4:
            image.attach("roc.csv", b"0,0\n")
        image.save(comment=f"run {i}")
    repo.add_tag("prod", 3)
    churn = p.get_model_repository("churn").new_image({"c": 1})
    churn["Accuracy"] = 0.95
    churn.save(comment="churn")
    return p


def versions(doc) -> list[str]:
    return [f"{v['repository']}:{v['version']}" for v in doc["versions"]]


# -- models:search ---------------------------------------------------------------------------------
def test_search_across_repositories(project, store_url):
    expr = "Accuracy > 0.88"
    doc = json.loads(run("models:search", expr, "--json", store=store_url).stdout)
    assert versions(doc) == ["churn:1", "credit:4", "credit:3"]
    assert doc["project"] == "default" and doc["query"]
    [v3] = [v for v in doc["versions"] if v["version"] == 3 and v["repository"] == "credit"]
    assert v3["tags"] == ["prod"] and v3["metadata"]["Accuracy"] == 0.89
    shown = json.loads(run("models:show", "credit:3", "--json", store=store_url).stdout)
    assert shown.pop("summary") is None and shown.pop("pickle")["verdict"] == "clean"
    assert v3 == shown  # show adds the summary and the pickle scan; the rest is the same
    text = run("models:search", expr, "--no-relative", store=store_url).stdout.splitlines()
    # the keys the query compares are columns (issue 14)
    assert text[0].split() == ["VERSION", "IMAGE", "Accuracy", "SAVED", "AUTHOR", "TAGS",
                               "COMMENT"]
    assert [line.split()[0] for line in text[1:]] == ["churn:1", "credit:4", "credit:3"]
    assert "prod" in text[3] and text[3].rstrip().endswith("run 3")
    assert versions(json.loads(run("models:search", expr, "-n", "1", "--json",
                                   store=store_url).stdout)) == ["churn:1"]


def test_search_the_issue_example(project, store_url):
    expr = "Accuracy > 0.85 and (\"Input-Data-Source\" like 's3://credit/2%' or tag = 'prod')"
    doc = json.loads(run("models:search", expr, "--json", store=store_url).stdout)
    assert versions(doc) == ["credit:3", "credit:2"]


def test_search_without_matches(project, store_url):
    out = run("models:search", "Accuracy > 2", store=store_url).stdout
    assert out.startswith("No version of project default matches ")
    assert json.loads(run("models:search", "tag = 'x'", "--json",
                          store=store_url).stdout)["versions"] == []


@pytest.mark.parametrize("expr, column", [("Accuracy >", 11), ("Accuracy > 0.8 and", 19),
                                          ("(version = 1", 13), ("' or 1=1 --", 1),
                                          ("version = 1 version", 13)])
def test_a_bad_expression_is_one_line_with_the_column(project, store_url, expr, column):
    for args in (["models:search", expr], ["models:log", "credit", "--where", expr],
                 ["models:search", expr, "--json"]):
        result = run(*args, store=store_url, ok=False)
        assert result.exit_code == 2
        assert result.stderr.startswith(f"Error: invalid query at column {column}: "), \
            result.stderr


def test_bad_expression_is_reported_before_the_store_is_opened(tmp_path):
    result = run("models:search", "a ==", store="ftp://nowhere/x", ok=False)
    assert result.exit_code == 2 and "invalid query at column" in result.stderr


# -- models:log --where ----------------------------------------------------------------------------
def test_log_where(project, store_url):
    doc = json.loads(run("models:log", "credit", "--where", "Accuracy >= 0.86", "--json",
                         store=store_url).stdout)
    assert versions(doc) == ["credit:4", "credit:3", "credit:2"]
    assert doc["versions"][1]["tags"] == ["prod"]
    doc = json.loads(run("models:log", "credit", "--where", "Accuracy >= 0.86", "-n", "2",
                         "--json", store=store_url).stdout)
    assert versions(doc) == ["credit:4", "credit:3"]
    text = run("models:log", "credit", "--where", "tag = 'prod'", store=store_url).stdout
    assert text.startswith("credit:3  ") and "credit:4" not in text and "    run 3" in text
    # Without NAME: the whole project.
    doc = json.loads(run("models:log", "--where", "Accuracy > 0.9", "--json",
                         store=store_url).stdout)
    assert versions(doc) == ["churn:1", "credit:4"]
    out = run("models:log", "credit", "--where", "Accuracy > 5", store=store_url).stdout
    assert out == "No saved versions in model repository 'credit'.\n"


def test_log_where_bad_combinations(project, store_url):
    assert run("models:log", "credit:3", "--where", "version > 1", store=store_url,
               ok=False).exit_code == 2
    assert run("models:log", "credit", "--before", "3", "--where", "version > 1",
               store=store_url, ok=False).exit_code == 2
    assert run("models:log", "nope", "--where", "version > 1", store=store_url,
               ok=False).exit_code == 3


# -- models:diff -----------------------------------------------------------------------------------
def test_diff_text_and_json(project, store_url):
    doc = json.loads(run("models:diff", "credit:2", "credit:4", "--json", store=store_url).stdout)
    api = project.get_model_repository("credit")
    assert doc == api.get_model_image(2).diff(api.get_model_image(4)).to_dict()
    assert doc["identical"] is False and doc["model"]["identical"] is False
    assert doc["metadata"]["removed"] == {"Input-Data-Source": "s3://credit/2"}
    assert doc["metadata"]["changed"] == {"Accuracy": {"a": 0.86, "b": 0.91}}
    assert [a["name"] for a in doc["attachments"]["added"]] == ["roc.csv"]
    assert [a["name"] for a in doc["attachments"]["changed"]] == ["log.txt"]
    lines = run("models:diff", "credit:2", "credit:4", store=store_url).stdout.splitlines()
    assert lines[0] == "diff credit:2 credit:4"
    assert "~ metadata Accuracy: 0.86 → 0.91" in lines
    assert '- metadata Input-Data-Source: "s3://credit/2"' in lines
    assert "+ attachment roc.csv (4 B)" in lines
    assert '~ comment: "run 2" → "run 4"' in lines


def test_diff_with_tags_across_repositories_and_with_itself(project, store_url):
    same = run("models:diff", "credit:prod", "credit:3", store=store_url).stdout
    assert same.splitlines()[-1] == "  (no differences)"
    doc = json.loads(run("models:diff", "credit", "churn", "--json", store=store_url).stdout)
    assert (doc["a"]["repository"], doc["a"]["version"]) == ("credit", 4)
    assert (doc["b"]["repository"], doc["b"]["version"]) == ("churn", 1)


@pytest.mark.parametrize("a, b, code", [("credit:9", "credit:1", 3), ("credit:1", "nope:1", 3),
                                        ("credit:1", "Bad Name", 2), ("credit:1", "credit:x y", 2)])
def test_diff_bad_input(project, store_url, a, b, code):
    assert run("models:diff", a, b, store=store_url, ok=False).exit_code == code


def test_diff_needs_two_versions(project, store_url):
    assert run("models:diff", "credit:1", store=store_url, ok=False).exit_code == 2


# -- lineage in models:show ------------------------------------------------------------------------
def git(cwd, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


def test_show_lineage_with_git_commit_and_dirtiness(store_url, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    (work / "train.py").write_text("print('train')\n")
    git(work, "add", "train.py")
    git(work, "commit", "-qm", "first")
    commit = git(work, "rev-parse", "HEAD")
    monkeypatch.chdir(work)
    repo = roro.Project("default", store_url).get_model_repository("m")
    repo.new_image({"x": 1}).save()
    (work / "train.py").write_text("print('changed')\n")
    repo.new_image({"x": 2}).save()

    clean = run("models:show", "m:1", store=store_url).stdout.splitlines()
    assert f"git       {commit} (clean)" in clean
    assert "Lineage" in clean
    [python] = [line for line in clean if line.startswith("python ")]
    assert python.split() == ["python", repo.get_model_image(1).lineage["python"]]
    assert any(line.startswith("platform  ") for line in clean)
    dirty = run("models:show", "m:2", store=store_url).stdout
    assert f"git       {commit} (dirty: uncommitted changes)" in dirty
    doc = json.loads(run("models:show", "m:2", "--json", store=store_url).stdout)
    assert doc["lineage"]["git"] == {"commit": commit, "dirty": True}
    assert doc["lineage"] == repo.get_model_image(2).lineage


def test_show_lineage_of_a_model_from_a_package(store_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a git work tree: no git line
    import importlib.metadata

    import click
    version = importlib.metadata.version("click")
    repo = roro.Project("default", store_url).get_model_repository("m")
    repo.new_image(click.Command("x")).save()
    text = run("models:show", "m", store=store_url, env={"COLUMNS": "200"}).stdout
    assert f"package   click {version}" in text
    assert "\ngit " not in text
    doc = json.loads(run("models:show", "m", "--json", store=store_url).stdout)
    assert doc["lineage"]["package"]["version"] == version
    assert "git" not in doc["lineage"]
