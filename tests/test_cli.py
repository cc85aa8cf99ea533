"""The command line through click's CliRunner, against every kind of store (``store_url``)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys

import cloudpickle
import pytest
from click.testing import CliRunner
from conftest import make_store_url
from support.trust_helpers import corrupt_object_uncached

import roro
from roro.cli import main
from roro.cli import models as cli_models
from roro.localfs import copy_verified, plan_attachments
from roro.objects.canonical import canonical_json
from roro.writer import append


@pytest.fixture(params=["memory", "folder"])
def store_url(request, tmp_path) -> str:
    """The CLI only calls the API, whose suite runs on every backend; the CLI tests run on the local
    ones (tests/test_cli_e2e.py runs the CLI against SeaweedFS)."""
    return make_store_url(request.param, tmp_path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args: str, store: str | None = None, env: dict | None = None, ok: bool | None = True):
    """Invoke ``roro [--store STORE] ARGS``; unknown exceptions propagate (they are bugs).

    ``ok=True`` asserts exit 0 and an empty stderr; ``ok=False`` asserts the one-line error contract
    (non-zero, one ``Error:`` line on stderr, nothing on stdout, no traceback)."""
    argv = (["--store", store] if store else []) + list(args)
    result = CliRunner().invoke(main, argv, env=env, catch_exceptions=False)
    if ok is True:
        assert result.exit_code == 0, (argv, result.stdout, result.stderr)
        assert result.stderr == "", result.stderr
    elif ok is False:
        assert result.exit_code != 0, (argv, result.stdout)
        assert_one_line_error(result)
    return result


def assert_one_line_error(result) -> None:
    assert result.stdout == ""
    assert result.stderr.startswith("Error: "), result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert "Traceback" not in result.stderr


class Scorer:
    """A picklable model with state (cloudpickle pickles this class by value from a test module)."""

    def __init__(self, weight: float):
        self.weight = weight

    def __eq__(self, other):
        return isinstance(other, Scorer) and other.weight == self.weight


@pytest.fixture
def project(store_url) -> roro.Project:
    """credit-risk v1..v3 (prod -> v2, metadata, attachments), churn v1, and an empty repository."""
    p = roro.Project("default", store_url)
    repo = p.get_model_repository("credit-risk")
    for i, acc in enumerate([0.81, 0.86, 0.89], start=1):
        image = repo.new_image(Scorer(i))
        image["Accuracy"] = acc
        image["params"] = {"C": i, "penalty": "l2"}
        image.attach("log.txt", f"epoch {i}\n".encode())
        image.attach("plots/roc.csv", b"fpr,tpr\n0,0\n1,1\n")
        image.save(comment=f"run {i}\nsecond line of run {i}")
        if i == 1:
            p.get_model_repository("churn").new_image({"kind": "baseline"}).save(comment="first")
    repo.add_tag("prod", 2)
    p.create_model_repository("empty")
    return p


# -- help, documentation, global options --------------------------------------------------------------
def readme_cli_section() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("## Command line")
    return text[start:]


def test_every_command_has_help_and_is_in_readme():
    section = readme_cli_section()
    assert main.help and main.commands
    for name, command in main.commands.items():
        assert command.help and command.help.strip(), name
        assert command.get_short_help_str().strip(), name
        assert re.search(rf"`roro {re.escape(name)}(`| )", section), f"'roro {name}' not in README"
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.opts} has no help"
        result = run(name, "--help")
        assert result.stdout.startswith(f"Usage: roro {name}"), result.stdout
        assert run(name, "-h").stdout == result.stdout


def test_readme_shows_log_and_show_output():
    section = readme_cli_section()
    assert "$ roro models:log" in section and "$ roro models:show" in section
    assert "Author:" in section and "Metadata" in section


def test_main_help_and_version():
    out = run("--help").stdout
    for name in main.commands:
        assert name in out
    assert "RORO_STORE" in out and "RORO_PROJECT" in out
    assert run("-h").stdout == out
    assert run("--version").stdout == f"roro {roro.__version__}\n"


def test_global_project_option_and_environment(store_url):
    p = roro.Project("team-a", store_url)
    p.get_model_repository("m").new_image(1).save()
    # the default project has nothing while the store has another: an error naming it (issue 14)
    assert "team-a" in run("models", "--json", store=store_url, ok=False).stderr
    doc = json.loads(run("--project", "team-a", "models", "--json", store=store_url).stdout)
    assert [m["name"] for m in doc["models"]] == ["m"] and doc["project"] == "team-a"
    doc = json.loads(run("models", "--json", env={"RORO_PROJECT": "team-a",
                                                   "RORO_STORE": store_url}).stdout)
    assert [m["name"] for m in doc["models"]] == ["m"]


# -- models ------------------------------------------------------------------------------------------
def test_models_lists_repositories(project, store_url):
    doc = json.loads(run("models", "--json", store=store_url).stdout)
    assert doc["project"] == "default" and doc["store"] == project.store.url
    by_name = {m["name"]: m for m in doc["models"]}
    assert list(by_name) == ["churn", "credit-risk", "empty"]
    cr = by_name["credit-risk"]
    assert (cr["versions"], cr["latest"], cr["tags"]) == (3, 3, {"prod": 2})
    assert cr["last_saved"] == project.get_model_repository("credit-risk").get_model_image()["timestamp"]
    assert by_name["empty"] == {"name": "empty", "versions": 0, "latest": None, "last_saved": None,
                                "tags": {}}
    assert re.search(r"credit-risk\s+3\s+v3\s+just now\s+prod→v2",
                     run("models", store=store_url).stdout)
    text = run("models", "--no-relative", store=store_url).stdout
    assert re.search(r"credit-risk\s+3\s+v3\s+\d{4}-\d\d-\d\d \d\d:\d\d UTC\s+prod→v2", text), text
    assert re.search(r"empty\s+0\s+-\s+-", text), text
    assert not any(line.endswith(" ") for line in text.splitlines())


def test_models_on_an_empty_store(store_url):
    # a store named with --store must exist (issue 14); one that exists but is empty is empty
    assert "not a roro store" in run("models", store=store_url, ok=False).stderr or \
        "does not exist" in run("models", store=store_url, ok=False).stderr
    roro.Store(store_url).ensure_initialized()
    assert "No model repositories" in run("models", store=store_url).stdout
    assert json.loads(run("models", "--json", store=store_url).stdout)["models"] == []


def test_models_create(store_url):
    result = run("models:create", "fraud", store=store_url)
    assert "Created model repository fraud" in result.stdout
    assert roro.Project("default", store_url).get_model_repository("fraud").exists()
    result = run("models:create", "fraud", store=store_url, ok=False)
    assert result.exit_code == 5 and "already exists" in result.stderr
    result = run("models:create", "Fraud Model", store=store_url, ok=False)
    assert result.exit_code == 2 and "invalid repository name" in result.stderr


# -- models:log --------------------------------------------------------------------------------------
def test_log_of_one_repository(project, store_url):
    text = run("models:log", "credit-risk", store=store_url).stdout
    images = project.get_model_repository("credit-risk").list_model_images()
    heads = [line for line in text.splitlines() if line.startswith("credit-risk:")]
    assert heads == [f"credit-risk:3  {images[0].digest[7:19]}  (latest)",
                     f"credit-risk:2  {images[1].digest[7:19]}  (prod)",
                     f"credit-risk:1  {images[2].digest[7:19]}"]
    assert "\n    run 3\n    second line of run 3\n" in text
    assert text.count("Author: ") == 3 and re.search(r"Date:   \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)
    limited = run("models:log", "credit-risk", "-n", "1", store=store_url).stdout
    assert limited.count("Author:") == 1 and "credit-risk:3" in limited


def test_log_json_matches_the_api(project, store_url):
    doc = json.loads(run("models:log", "credit-risk", "--json", store=store_url).stdout)
    assert doc["project"] == "default" and doc["repository"] == "credit-risk"
    repo = project.get_model_repository("credit-risk")
    assert [v["version"] for v in doc["versions"]] == [3, 2, 1]
    for entry, image in zip(doc["versions"], repo.list_model_images(), strict=True):
        assert entry["image"] == image.digest and entry["comment"] == image.comment
        assert entry["author"] == image["author"] and entry["timestamp"] == image["timestamp"]
        assert entry["metadata"] == {"Accuracy": image["Accuracy"], "params": image["params"]}
        assert entry["model"]["digest"] == image.manifest["model"]["digest"]
        assert entry["model"]["type"].endswith("Scorer")
    assert [v["tags"] for v in doc["versions"]] == [["latest"], ["prod"], []]


def test_log_of_the_project_interleaves_repositories(project, store_url):
    doc = json.loads(run("models:log", "--json", store=store_url).stdout)
    assert doc["repository"] is None
    assert [(v["repository"], v["version"]) for v in doc["versions"]] == [
        ("credit-risk", 3), ("credit-risk", 2), ("churn", 1), ("credit-risk", 1)]
    assert doc["versions"][2]["tags"] == ["latest"]
    text = run("models:log", "-n", "3", store=store_url).stdout
    assert re.findall(r"^([a-z-]+:\d+)  ", text, re.M) == ["credit-risk:3", "credit-risk:2",
                                                           "churn:1"]


def test_log_paging_with_before(project, store_url):
    doc = json.loads(run("models:log", "credit-risk", "-n", "1", "--before", "3", "--json",
                         store=store_url).stdout)
    assert [v["version"] for v in doc["versions"]] == [2]
    result = run("models:log", "--before", "3", store=store_url, ok=False)
    assert result.exit_code == 2 and "NAME" in result.stderr
    for spec in ("credit-risk:prod", "credit-risk:2"):  # like 'git log REV': from there down
        doc = json.loads(run("models:log", spec, "--json", store=store_url).stdout)
        assert [v["version"] for v in doc["versions"]] == [2, 1]
    assert run("models:log", "credit-risk:2", "--before", "2", store=store_url,
               ok=False).exit_code == 2
    assert run("models:log", "credit-risk:9", store=store_url, ok=False).exit_code == 3


def test_console_script_is_declared():
    import configparser
    import importlib
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    target = cfg["options.entry_points"]["console_scripts"].strip()
    # a launcher outside the package, so that Ctrl-C while roro is imported is quiet (issue 14)
    assert target == "roro = _roro_launch:main"
    module, attr = target.split("=")[1].strip().split(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_log_of_an_empty_repository_and_project(project, store_url):
    assert "No saved versions" in run("models:log", "empty", store=store_url).stdout
    assert json.loads(run("models:log", "empty", "--json", store=store_url).stdout)["versions"] == []
    other = roro.Project("other", project.store.url)
    assert other.log() == []
    # a project with no repositories while the store has others is named as such (issue 14)
    result = run("--project", "other", "models:log", store=store_url, ok=False)
    assert result.exit_code == 3 and "its projects: default" in result.stderr


# -- models:show -------------------------------------------------------------------------------------
def test_show_json_matches_the_api(project, store_url):
    repo = project.get_model_repository("credit-risk")
    for spec, version in [("credit-risk", 3), ("credit-risk:latest", 3), ("credit-risk:1", 1),
                          ("credit-risk:prod", 2)]:
        doc = json.loads(run("models:show", spec, "--json", store=store_url).stdout)
        image = repo.get_model_image(version)
        manifest = image.manifest
        assert doc == {
            "project": "default", "repository": "credit-risk", "version": version,
            "image": image.digest, "tags": {3: ["latest"], 2: ["prod"], 1: []}[version],
            "author": manifest["author"], "timestamp": manifest["timestamp"],
            "comment": manifest["comment"], "metadata": manifest["metadata"],
            "model": manifest["model"], "attachments": manifest["attachments"],
            "lineage": image.lineage, "signature": image.signature,
            "contract": manifest["contract"], "summary": None,
            "pickle": image.scan().to_dict()}
        assert doc["model"]["format"] == "cloudpickle" and doc["pickle"]["verdict"] == "clean"
        assert doc["lineage"]["python"] and doc["lineage"]["platform"]


def test_show_text(project, store_url):
    image = project.get_model_repository("credit-risk").get_model_image(tag="prod")
    text = run("models:show", "credit-risk:prod", store=store_url).stdout
    lines = text.splitlines()
    assert lines[0] == "credit-risk:2  (prod)"
    assert f"image    {image.digest}" in lines
    assert re.search(r"^model    \S*Scorer, \d+ B \([0-9a-f]{12}\)$", text, re.M), text
    assert re.search(r"^comment  run 2\n         second line of run 2$", text, re.M)
    assert re.search(r"^Accuracy\s+0\.86$", text, re.M)
    assert re.search(r'^params\s+\{"C": 2, "penalty": "l2"\}$', text, re.M)
    assert re.search(r"^Attachments \(2, 24 B\)$", text, re.M)
    assert re.search(r"^plots/roc\.csv\s+16 B\s+[0-9a-f]{12}$", text, re.M)
    assert re.search(r"^log\.txt\s+8 B\s+[0-9a-f]{12}$", text, re.M)


def test_show_image_without_metadata_or_attachments(project, store_url):
    text = run("models:show", "churn", store=store_url).stdout
    assert "Metadata: none" in text and "Attachments: none" in text
    assert text.splitlines()[0] == "churn:1  (latest)"


def test_store_text_is_not_markup_and_control_characters_are_shown(store_url):
    repo = roro.Project("default", store_url).get_model_repository("m")
    image = repo.new_image(1)
    image["[bold]key"] = "\x1b[31mred\x1b[0m"
    image.save(comment="[red]not markup[/red] \x1b]0;title\x07 \x9b2J")
    for args in (["models:log", "m"], ["models:show", "m"]):
        text = run(*args, store=store_url).stdout
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
        assert "[red]not markup[/red] \\x1b]0;title\\x07 \\x9b2J" in text
    assert "[bold]key" in text and "\\x1b[31mred\\x1b[0m" in text
    doc = json.loads(run("models:show", "m", "--json", store=store_url).stdout)
    assert doc["comment"] == "[red]not markup[/red] \x1b]0;title\x07 \x9b2J"


# -- models:download ---------------------------------------------------------------------------------
def test_download_writes_the_verified_model_and_attachments(project, store_url, tmp_path):
    result = run("models:download", "credit-risk:prod", "--attachments", "files", store=store_url)
    assert "Wrote credit-risk:2" in result.stdout and "2 attachments" in result.stdout
    image = project.get_model_repository("credit-risk").get_model_image(2)
    data = (tmp_path / "credit-risk-v2.pkl").read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == image.manifest["model"]["digest"]
    assert cloudpickle.loads(data) == Scorer(2)
    assert (tmp_path / "files" / "log.txt").read_bytes() == b"epoch 2\n"
    assert (tmp_path / "files" / "plots" / "roc.csv").read_bytes() == b"fpr,tpr\n0,0\n1,1\n"
    assert not [p for p in tmp_path.rglob(".roro-download-*")]
    assert oct(os.stat(tmp_path / "credit-risk-v2.pkl").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_download_output_options(project, store_url, tmp_path):
    digest = project.get_model_repository("credit-risk").get_model_image().manifest["model"]["digest"]
    run("models:download", "credit-risk", "-o", "model.bin", store=store_url)
    assert (tmp_path / "model.bin").exists()
    (tmp_path / "out").mkdir()
    run("models:download", "credit-risk", "-o", "out", store=store_url)
    assert (tmp_path / "out" / "credit-risk-v3.pkl").read_bytes() == (tmp_path / "model.bin").read_bytes()
    result = CliRunner().invoke(main, ["--store", store_url, "models:download", "credit-risk", "-o",
                                       "-"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "sha256:" + hashlib.sha256(result.stdout_bytes).hexdigest() == digest
    assert "Wrote credit-risk:3" in result.stderr


def test_download_refuses_to_overwrite_without_force(project, store_url, tmp_path):
    (tmp_path / "credit-risk-v3.pkl").write_bytes(b"mine")
    result = run("models:download", "credit-risk", store=store_url, ok=False)
    assert result.exit_code == 1 and "--force" in result.stderr
    assert (tmp_path / "credit-risk-v3.pkl").read_bytes() == b"mine"
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "log.txt").write_bytes(b"mine")
    result = run("models:download", "credit-risk", "-o", "m.pkl", "--attachments", "files",
                 store=store_url, ok=False)
    assert "files/log.txt exists" in result.stderr
    assert not (tmp_path / "m.pkl").exists()  # refused before anything was written
    run("models:download", "credit-risk", "--attachments", "files", "--force", store=store_url)
    assert (tmp_path / "files" / "log.txt").read_bytes() == b"epoch 3\n"
    assert cloudpickle.loads((tmp_path / "credit-risk-v3.pkl").read_bytes()) == Scorer(3)


def test_download_to_a_filesystem_without_hard_links(project, store_url, tmp_path, monkeypatch):
    """Some filesystems (FAT, some network mounts) refuse os.link: fall back to a checked rename."""
    import errno

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    run("models:download", "credit-risk", "--attachments", "files", store=store_url)
    assert cloudpickle.loads((tmp_path / "credit-risk-v3.pkl").read_bytes()) == Scorer(3)
    assert (tmp_path / "files" / "log.txt").read_bytes() == b"epoch 3\n"
    assert not list(tmp_path.rglob(".roro-download-*"))


def test_download_never_follows_a_link_out_of_the_directory(project, store_url, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "files").mkdir()
    os.symlink(outside, tmp_path / "files" / "plots")
    result = run("models:download", "credit-risk", "--attachments", "files", store=store_url,
                 ok=False)
    assert "leads outside" in result.stderr
    assert list(outside.iterdir()) == []
    os.symlink(outside / "log.txt", tmp_path / "files" / "log.txt")
    result = run("models:download", "credit-risk", "--attachments", "files", "--force",
                 store=store_url, ok=False)
    assert "leads outside" in result.stderr and list(outside.iterdir()) == []


def _save_crafted_image(store_url: str, repository: str, attachments: list[dict]) -> None:
    """Write an image with hand-made attachment entries through the lower layers, as a modified or
    hostile client could (the API refuses such names when attaching)."""
    p = roro.Project("default", store_url)
    repo = p.get_model_repository(repository)
    repo.new_image(0).save()
    good = repo.get_model_image().manifest
    objects = p.store.objects
    for a in attachments:
        a["digest"] = objects.put_bytes(a.pop("data"))
    manifest = {**good, "attachments": attachments}
    digest = objects.put_bytes(canonical_json(manifest))
    with contextlib.suppress(roro.IntegrityError):  # the index may refuse it: that is the point
        append(p.store, p.name, repository,
               lambda row: ("version", {"version": row["max_version"] + 1, "image": digest,
                                        "comment": "crafted"}))


def test_download_refuses_hostile_attachment_names(store_url, tmp_path):
    _save_crafted_image(store_url, "evil", [{"name": "../escape.txt", "size": 3, "data": b"bad"}])
    (tmp_path / "files").mkdir()
    result = run("models:download", "evil", "--attachments", "files", store=store_url, ok=False)
    assert result.exit_code == 4 and "not a valid image manifest" in result.stderr
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "evil-v2.pkl").exists()
    planned = plan_attachments(str(tmp_path / "files"), [], False)
    assert planned == []
    with pytest.raises(roro.InvalidNameError):
        plan_attachments(str(tmp_path / "files"), ["../escape.txt"], False)


def test_download_refuses_names_that_collide_when_case_is_folded(store_url, tmp_path):
    _save_crafted_image(store_url, "twins", [{"name": "A.txt", "size": 1, "data": b"A"},
                                             {"name": "a.txt", "size": 1, "data": b"a"}])
    result = run("models:download", "twins", "--attachments", "files", store=store_url, ok=False)
    assert "differ only in case" in result.stderr
    assert not (tmp_path / "files").exists() and not (tmp_path / "twins-v2.pkl").exists()


def test_download_of_a_corrupted_model_is_refused(project, store_url, tmp_path):
    image = project.get_model_repository("credit-risk").get_model_image()
    corrupt_object_uncached(project.store, image.manifest["model"]["digest"])
    result = run("models:download", "credit-risk", store=store_url, ok=False)
    assert result.exit_code == 4 and "corrupted" in result.stderr
    assert image.manifest["model"]["digest"] in result.stderr
    assert list(tmp_path.glob("credit-risk*")) == [] and not list(tmp_path.rglob(".roro-download-*"))
    # listing never reads the model blob; showing scans a pickle's, and still shows the rest
    run("models:log", "credit-risk", store=store_url)
    shown = run("models:show", "credit-risk", store=store_url).stdout
    assert "Pickle: not scanned (cannot read the model" in shown and "corrupted" in shown
    run("models:show", "credit-risk", "--no-scan", store=store_url)


def test_download_of_a_corrupted_attachment_is_refused(project, store_url, tmp_path):
    image = project.get_model_repository("credit-risk").get_model_image()
    corrupt_object_uncached(project.store, image.get_attachment("plots/roc.csv").digest)
    result = run("models:download", "credit-risk", "--attachments", "files", store=store_url,
                 ok=False)
    assert result.exit_code == 4 and "corrupted" in result.stderr
    assert not (tmp_path / "files" / "plots" / "roc.csv").exists()


def test_show_of_a_corrupted_manifest_is_refused(project, store_url):
    image = project.get_model_repository("credit-risk").get_model_image(1)
    corrupt_object_uncached(project.store, image.digest)
    result = run("models:show", "credit-risk:1", store=store_url, ok=False)
    assert result.exit_code == 4 and image.digest in result.stderr


def test_copy_verified_detects_bytes_that_change_after_the_store_checked_them(tmp_path):
    import io
    with pytest.raises(roro.IntegrityError, match="changed while it was copied"):
        copy_verified(io.BytesIO(b"other"), io.BytesIO(),
                      "sha256:" + hashlib.sha256(b"bytes").hexdigest(), "the model",
                      lambda n: None)


def test_download_shows_progress_only_on_a_terminal_for_large_files(project, store_url, monkeypatch):
    advanced = []
    real = cli_models._progress

    def spy(total, label):
        cm = real(total, label)
        advanced.append((total, label))
        return cm

    monkeypatch.setattr(cli_models, "_progress", spy)
    monkeypatch.setattr(cli_models, "PROGRESS_MIN_BYTES", 1)
    monkeypatch.setattr(cli_models.render, "stdout_is_terminal", lambda: True)
    result = run("models:download", "credit-risk", "--attachments", "files", store=store_url)
    assert advanced and advanced[0][1] == "credit-risk:3"
    assert "Wrote credit-risk:3" in result.stdout
    result = run("models:download", "credit-risk", "-o", "-", store=store_url, ok=None)
    assert result.exit_code == 1 and "terminal" in result.stderr  # binary to a terminal: refused


# -- tags --------------------------------------------------------------------------------------------
def test_tag_untag_and_history(project, store_url):
    assert "Tagged credit-risk:3 as staging" in run("models:tag", "credit-risk:3", "staging",
                                                     store=store_url).stdout
    assert "Moved tag prod from credit-risk:2 to credit-risk:3" in run(
        "models:tag", "credit-risk:3", "prod", store=store_url).stdout
    assert "already points at credit-risk:3" in run("models:tag", "credit-risk:staging", "prod",
                                                    store=store_url).stdout
    assert "Tagged credit-risk:3 as newest" in run("models:tag", "credit-risk", "newest",
                                                   store=store_url).stdout
    assert "Removed tag staging from credit-risk (it pointed at v3)" in run(
        "models:untag", "credit-risk", "staging", store=store_url).stdout
    repo = project.get_model_repository("credit-risk")
    assert repo.get_tags() == {"latest": 3, "prod": 3, "newest": 3}

    doc = json.loads(run("models:history", "credit-risk", "--json", store=store_url).stdout)
    assert doc["repository"] == "credit-risk" and doc["tag"] is None
    assert [(m["tag"], m["from"], m["to"]) for m in doc["moves"]] == [
        ("prod", None, 2), ("staging", None, 3), ("prod", 2, 3), ("newest", None, 3),
        ("staging", 3, None)]
    assert [m["seq"] for m in doc["moves"]] == [m["seq"] for m in repo.get_tag_history()]
    assert all(m["author"] and m["time"].endswith("Z") for m in doc["moves"])
    doc = json.loads(run("models:history", "credit-risk:prod", "--json", store=store_url).stdout)
    assert doc["tag"] == "prod" and [(m["from"], m["to"]) for m in doc["moves"]] == [(None, 2), (2, 3)]

    text = run("models:history", "credit-risk", "--no-relative", store=store_url).stdout
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\s+prod\s+— → v2\s+\S+\s+unsigned$", text,
                     re.M)
    assert re.search(r"staging\s+v3 → —", text)
    assert "No moves of tag 'x' of churn" in run("models:history", "churn:x", store=store_url).stdout


def test_tag_errors(project, store_url):
    for args, code, words in [
        (["models:tag", "credit-risk:9", "x"], 3, "version 9"),
        (["models:tag", "credit-risk:nope", "x"], 3, "no tag 'nope'"),
        (["models:tag", "credit-risk:1", "latest"], 2, "highest version"),
        (["models:tag", "credit-risk:1", "42"], 2, "all digits"),
        (["models:tag", "credit-risk:1", "Bad"], 2, "invalid tag name"),
        (["models:tag", "nope:1", "x"], 3, "'nope' does not exist"),
        (["models:untag", "credit-risk", "nope"], 3, "no tag 'nope'"),
        (["models:untag", "credit-risk", "latest"], 2, "highest version"),
        (["models:history", "credit-risk:3"], 2, "all digits"),
        (["models:history", "credit-risk:latest"], 2, "highest version"),
        (["models:tag", "credit-risk:1"], 2, "Missing argument 'TAG'"),
    ]:
        result = run(*args, store=store_url, ok=False)
        assert (result.exit_code, words in result.stderr) == (code, True), (args, result.stderr)


# -- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["models:log", "nope"], ["models:show", "nope"], ["models:show", "nope:2"],
    ["models:download", "nope"], ["models:tag", "nope:1", "t"], ["models:untag", "nope", "t"],
    ["models:history", "nope"]])
def test_unknown_repository(project, store_url, args):
    result = run(*args, store=store_url, ok=False)
    assert result.exit_code == 3 and "'nope' does not exist" in result.stderr


@pytest.mark.parametrize("spec,words", [
    ("credit-risk:7", "version 7 of model repository 'credit-risk' does not exist"),
    ("credit-risk:staging", "has no tag 'staging'"),
    ("empty", "has no versions yet"),
    ("empty:1", "version 1 of model repository 'empty' does not exist")])
def test_unknown_version_or_tag(project, store_url, spec, words):
    for command in ("models:show", "models:download"):
        result = run(command, spec, store=store_url, ok=False)
        assert result.exit_code == 3 and words in result.stderr, result.stderr


@pytest.mark.parametrize("args", [
    ["models:show", "Credit Risk"], ["models:show", "../x"], ["models:log", "UPPER"],
    ["models:download", "x:0"], ["models:history", ".hidden"], ["models:create", "a..b"],
    ["models:untag", "BAD", "t"], ["--project", "Bad", "models"]])
def test_invalid_names(store_url, args):
    result = run(*args, store=store_url, ok=False)
    assert result.exit_code == 2 and "invalid" in result.stderr


@pytest.mark.parametrize("args", [
    ["models:bogus"], ["--bogus", "models"], ["models", "--bogus"], ["models:log", "-n", "-1"],
    ["models:log", "-n", "x"], ["models:show"], ["models:show", "a", "b"]])
def test_usage_errors_are_one_line(store_url, args):
    result = run(*args, store=store_url, ok=False)
    assert result.exit_code == 2 and "--help" in result.stderr


def test_unreadable_stores(tmp_path):
    store = tmp_path / "future"
    store.mkdir()
    (store / "roro.json").write_text('{"format": 99, "id": "x"}')
    for args in (["models"], ["models:log"], ["models:show", "m"], ["init"]):
        result = run(*args, store=str(store), ok=False)
        assert result.exit_code == 1 and "format 99" in result.stderr, args
    result = run("models", store="ftp://host/x", ok=False)
    assert result.exit_code == 1 and "unsupported store URL" in result.stderr
    (store / "roro.json").write_text("not json")
    result = run("models", store=str(store), ok=False)
    assert "unreadable" in result.stderr


def test_bad_config_file_is_one_line(tmp_path):
    (tmp_path / "roro.yml").write_text("project: [unclosed\n")
    result = run("models", ok=False)
    assert result.exit_code == 1 and "roro.yml" in result.stderr


def test_unknown_exceptions_propagate(project, store_url, monkeypatch):
    def broken(self, limit=None):
        raise RuntimeError("a bug")

    monkeypatch.setattr(roro.Project, "log", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        CliRunner().invoke(main, ["--store", store_url, "models:log"], catch_exceptions=False)


# -- init --------------------------------------------------------------------------------------------
def test_init_writes_roro_yml_that_later_commands_use(tmp_path, monkeypatch):
    work = tmp_path / "My Models"
    work.mkdir()
    monkeypatch.chdir(work)
    result = run("init", "--store", "registry")
    assert "project my-models" in result.stdout
    import yaml
    assert yaml.safe_load((work / "roro.yml").read_text()) == {"project": "my-models",
                                                               "store": "registry"}
    p = roro.Project("my-models", str(work / "registry"))
    p.get_model_repository("m").new_image(1).save()
    (work / "sub").mkdir()
    monkeypatch.chdir(work / "sub")
    doc = json.loads(run("models", "--json").stdout)
    assert doc["project"] == "my-models" and doc["store"] == str(work / "registry")
    assert [m["name"] for m in doc["models"]] == ["m"]


def test_init_options_and_refusals(tmp_path, store_url):
    run("init", "--project", "fraud", "--store", store_url)
    import yaml
    assert yaml.safe_load((tmp_path / "roro.yml").read_text()) == {"project": "fraud",
                                                                   "store": store_url}
    result = run("init", ok=False)
    assert result.exit_code == 1 and "--force" in result.stderr
    run("--project", "other", "init", "--force")  # the global options are the defaults
    assert yaml.safe_load((tmp_path / "roro.yml").read_text()) == {"project": "other"}
    os.remove(tmp_path / "roro.yml")
    assert run("init", "--project", "Bad Name", ok=False).exit_code == 2
    assert run("init", "--store", "ftp://x", ok=False).exit_code == 1
    assert not (tmp_path / "roro.yml").exists()


def test_python_dash_m_roro_is_the_roro_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "roro", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "models:log" in out.stdout
