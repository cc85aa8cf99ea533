"""The daily loop's sharp edges (issue 14): a store or project that does not exist, roro.yml
mistakes, output off a terminal, closed pipes and Ctrl-C, and the --json of mutating commands."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import save_image

import roro
from roro.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def one_line_error(result, code):
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.stdout == "" and result.stderr.startswith("Error: ")
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.fixture
def store(tmp_path):
    path = str(tmp_path / "store")
    project = roro.Project("credit", path)
    repo = project.get_model_repository("iris-clf")
    for i in range(1, 4):
        save_image(repo, {"w": i}, comment=f"run {i}\nmore about run {i}", accuracy=round(0.8 + i / 100, 2),
                   params={"C": 10.0 ** -i, "penalty": "l2"})
    repo.add_tag("prod", 2)
    return path


# -- 2: a mistyped or missing store, a mistyped project -----------------------------------------------
@pytest.mark.parametrize("command", [["models"], ["models:log"], ["models:show", "m"],
                                     ["models:search", "a > 1"], ["fsck"]])
def test_a_store_named_explicitly_must_exist(tmp_path, command):
    one_line_error(cli("--store", str(tmp_path / "nonexistent"), *command), 3)
    result = cli("--store", str(tmp_path / "nonexistent"), *command)
    assert "does not exist" in result.stderr and "--store" in result.stderr
    (tmp_path / "afile").write_text("x")
    result = cli("--store", str(tmp_path / "afile"), *command)
    one_line_error(result, 3)
    assert "is a file, not a roro store" in result.stderr
    (tmp_path / "empty").mkdir()
    result = cli(*command, env={"RORO_STORE": str(tmp_path / "empty")})
    one_line_error(result, 3)
    assert "not a roro store" in result.stderr and "RORO_STORE" in result.stderr


def test_a_store_from_roro_yml_must_exist(tmp_path, monkeypatch):
    (tmp_path / "roro.yml").write_text("project: p\nstore: registry\n")
    result = cli("models")
    one_line_error(result, 3)
    assert "roro.yml" in result.stderr
    # ... but saving creates it, and models:create is a write
    assert cli("models:create", "first").exit_code == 0
    assert cli("models").exit_code == 0


def test_the_default_store_before_the_first_save_is_simply_empty():
    result = cli("models")
    assert result.exit_code == 0 and "No model repositories" in result.stdout


def test_a_mistyped_project_names_those_that_exist(store):
    result = cli("--store", store, "--project", "credti", "models")
    one_line_error(result, 3)
    assert "did you mean 'credit'" in result.stderr and "its projects: credit" in result.stderr
    one_line_error(cli("--store", store, "--project", "nope", "models:log"), 3)
    assert cli("--store", store, "--project", "credit", "models").exit_code == 0


# -- 2, 13: roro.yml ---------------------------------------------------------------------------------
def test_a_config_key_close_to_a_known_one_is_an_error_with_its_line(tmp_path):
    (tmp_path / "roro.yml").write_text("# team settings\nstore: registry\nprojet: credit\n")
    result = cli("models")
    one_line_error(result, 1)
    assert "line 3" in result.stderr and "'projet'" in result.stderr
    assert "did you mean 'project'" in result.stderr
    with pytest.raises(roro.ConfigError, match="line 3.*projet"):
        roro.get_current_project()


def test_other_unknown_config_keys_warn(tmp_path):
    (tmp_path / "roro.yml").write_text("project: credit\nfuture_setting: abc\n")
    result = cli("models")
    assert result.exit_code == 0
    assert result.stderr.startswith("Warning: ") and result.stderr.count("\n") == 1
    assert "future_setting" in result.stderr and "newer roro" in result.stderr
    with pytest.warns(UserWarning, match="future_setting"):
        assert roro.get_current_project().name == "credit"


def test_yaml_errors_keep_line_and_column(tmp_path):
    (tmp_path / "roro.yml").write_text("project: credit\nstore: [registry\nfoo: 1\n")
    result = cli("models")
    one_line_error(result, 1)
    assert "line 3, column" in result.stderr or "line 4, column" in result.stderr


# -- 3: one row per line off a terminal ------------------------------------------------------------
def test_tables_off_a_terminal_are_one_row_per_line(store):
    long = roro.Project("credit", store).get_model_repository("a-" + "x" * 90)
    save_image(long, {"w": 0}, comment="c " * 100, accuracy=0.99)
    long.add_tag("production-candidate-" + "y" * 60, 1)
    for args in (["models"], ["models:search", "accuracy > 0.5"], ["models:history", "iris-clf"]):
        result = cli("--store", store, "--project", "credit", *args, env={"COLUMNS": "40"})
        assert result.exit_code == 0
        lines = result.stdout.splitlines()
        rows = [ln for ln in lines if ln.startswith(("iris-clf", "a-xxx"))]
        if args[0] == "models":
            assert len(rows) == 2 and any("y" * 60 in r for r in rows)
        elif args[0] == "models:search":
            assert len(rows) == 4, lines
            assert all(r.split()[0].count(":") == 1 for r in rows)
        assert not any(ln != ln.rstrip() for ln in lines)
        assert "…" not in result.stdout


# -- 12: closed pipes and Ctrl-C --------------------------------------------------------------------
def roro_command():
    return [os.path.join(os.path.dirname(sys.executable), "roro")]


def test_a_closed_pipe_exits_0_quietly(store):
    script = (f"set -o pipefail; {' '.join(roro_command())} --store {store} --project credit "
              f"models:log | head -1")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stderr == ""


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05, 0.1, 0.2])
def test_ctrl_c_at_start_up_is_quiet_130(store, delay):
    """SIGINT while roro's modules are imported exits 130 without a traceback: what the console
    script does once it has imported its launcher (Python's own start-up and the import of a
    one-function module before it are beyond any program's guard)."""
    # "ready" is written from inside the launcher's guard (as it starts importing roro.cli), so
    # that the interrupt never lands in this harness's own lines before main() is entered
    code = ("import builtins, sys; from _roro_launch import main; "
            f"sys.argv = ['roro', '--store', {store!r}, '--project', 'credit', 'models:log']; "
            "real = builtins.__import__\n"
            "def hook(name, *args, **kwargs):\n"
            "    if name == 'roro.cli':\n"
            "        builtins.__import__ = real\n"
            "        sys.stderr.write('ready\\n'); sys.stderr.flush()\n"
            "    return real(name, *args, **kwargs)\n"
            "builtins.__import__ = hook\n"
            "main()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline() == "ready\n"
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    # 0: it finished first; -SIGINT: the signal came as the interpreter was exiting, which a
    # shell reports as 130 too (Python ends itself with SIGINT after an interrupt at exit)
    assert proc.returncode in (130, 0, -signal.SIGINT), (proc.returncode, err)
    assert err.strip() == ""


# -- 6, 9: search shows what it compared, says why nothing matched; diff by key path --------------
def test_search_shows_the_compared_keys_and_columns(store):
    result = cli("--store", store, "--project", "credit", "models:search", "accuracy > 0.815",
                 "--columns", "params.C,penalty")
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["VERSION", "IMAGE", "accuracy", "params.C", "penalty"]
    assert lines[1].split()[:5] == ["iris-clf:3", lines[1].split()[1], "0.83", "0.001", "-"]
    assert len(lines) == 3


@pytest.mark.parametrize("expr,hint", [
    ("Accuracy > 0.5", "'accuracy' exists (keys are case-sensitive)"),
    ("accuracy > '0.5'", "'accuracy' holds numbers, but the query compares it with string"),
    ("acuracy > 0.5", "did you mean 'accuracy'"),
])
def test_a_search_that_matches_nothing_says_why(store, expr, hint):
    result = cli("--store", store, "--project", "credit", "models:search", expr)
    assert result.exit_code == 0 and "No version" in result.stdout and hint in result.stdout
    doc = json.loads(cli("--store", store, "--project", "credit", "models:search", expr,
                         "--json").stdout)
    assert doc["versions"] == [] and any(hint in h for h in doc["hints"])


def test_diff_shows_nested_changes_by_key_path(store):
    result = cli("--store", store, "--project", "credit", "models:diff", "iris-clf:1",
                 "iris-clf:v2")
    assert "~ metadata params.C: 0.1 → 0.01" in result.stdout
    assert "penalty" not in result.stdout  # unchanged inside params
    assert "->" not in result.stdout and "bytes" not in result.stdout
    assert re.search(r"~ model: sha256:\w+ \d+ B → sha256:\w+ \d+ B", result.stdout)
    doc = json.loads(cli("--store", store, "--project", "credit", "models:diff", "iris-clf:1",
                         "iris-clf:2", "--json").stdout)
    assert doc["metadata_paths"]["changed"]["params.C"] == {"a": 0.1, "b": 0.01}


# -- reading like git: --oneline, relative dates -----------------------------------------------------
def test_log_oneline_and_relative_dates(store):
    result = cli("--store", store, "--project", "credit", "models:log", "--oneline",
                 "--columns", "accuracy")
    lines = result.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["iris-clf:3", "iris-clf:2", "iris-clf:1"]
    assert "(prod)" in lines[1] and "just now" in lines[1] and "accuracy=0.82" in lines[1]
    assert lines[1].rstrip().endswith("run 2")
    absolute = cli("--store", store, "--project", "credit", "models:log", "--oneline",
                   "--no-relative").stdout
    assert re.search(r"iris-clf:3\s+\w{12}\s+\(latest\)\s+\d{4}-\d\d-\d\d \d\d:\d\d UTC", absolute)
    full = cli("--store", store, "--project", "credit", "models:log", "iris-clf", "-n", "1",
               "--columns", "params.C").stdout
    assert "(just now)" in full and "params.C: 0.001" in full


def test_relative_time_words():
    from datetime import datetime, timedelta, timezone

    from roro.cli.render import relative_time
    now = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)

    def ago(**kw):
        return (now - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    assert relative_time(ago(seconds=10), now) == "just now"
    assert relative_time(ago(minutes=5), now) == "5 minutes ago"
    assert relative_time(ago(hours=2), now) == "2 hours ago"
    assert relative_time(ago(days=3), now) == "3 days ago"
    assert relative_time(ago(days=30), now) == "4 weeks ago"
    assert relative_time(ago(days=400), now) == "2025-04-27 12:00 UTC"


# -- 7: progress shows real bytes, in one unit system ------------------------------------------------
class _SlowStream:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n=-1):
        time.sleep(0.05)
        n = len(self.data) - self.pos if n is None or n < 0 else min(n, 1 << 18)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk

    def close(self):
        pass


def test_sync_progress_counts_bytes_while_an_object_streams(tmp_path):
    src = roro.Store(f"memory://progress-{os.getpid()}")
    save_image(roro.Project("p", src).get_model_repository("big"), os.urandom(3 << 20))
    backend = src.backend
    real_open = backend.open
    backend.open = lambda key: _SlowStream(real_open(key).read())  # a slow network, 3 MiB
    seen = []
    report = roro.sync(src, str(tmp_path / "dst"), progress=seen.append)
    assert report.ok and report.bytes_transferred > 3 << 20
    objects = [p for p in seen if p.phase == "objects"]
    assert objects[0].bytes_total > 3 << 20 and objects[0].bytes_done == 0
    assert any(0 < p.bytes_done < p.bytes_total and p.objects_done == 0 for p in objects), \
        [(p.bytes_done, p.objects_done) for p in objects]


def test_progress_bars_use_binary_units():
    from rich.progress import Progress

    from roro.cli.render import transfer_progress

    progress = transfer_progress()
    assert isinstance(progress, Progress)
    task = progress.add_task("x", total=300 << 20, completed=3 << 20)
    shown = " ".join(str(column.render(progress.tasks[task]))
                     for column in progress.columns[3:])
    assert "3.0 MiB/300.0 MiB" in shown and "kB" not in shown


# -- 8: downloading again -----------------------------------------------------------------------------
def test_downloading_twice_skips_identical_files(store, tmp_path):
    args = ["--store", store, "--project", "credit", "models:download", "iris-clf:prod",
            "-o", str(tmp_path / "m.pkl"), "--attachments", str(tmp_path / "files")]
    image = roro.Project("credit", store).get_model_repository("iris-clf").get_model_image(2)
    first = cli(*args, "--json")
    assert first.exit_code == 0 and json.loads(first.stdout)["model"]["written"] is True
    again = cli(*args)
    assert again.exit_code == 0 and "the same bytes" in again.stdout
    doc = json.loads(cli(*args, "--json").stdout)
    assert doc["model"]["written"] is False and doc["version"] == 2
    assert doc["model"]["digest"] == image.to_dict()["model"]["digest"]
    (tmp_path / "m.pkl").chmod(0o644)
    (tmp_path / "m.pkl").write_bytes(b"other bytes")
    refused = cli(*args)
    one_line_error(refused, 1)
    assert "other bytes" in refused.stderr and "--force" in refused.stderr
    assert cli(*args, "--force").exit_code == 0
    assert (tmp_path / "m.pkl").read_bytes() != b"other bytes"


# -- 11: --json on mutating commands -----------------------------------------------------------------
def test_mutating_commands_take_json(store, tmp_path):
    base = ["--store", store, "--project", "credit"]
    doc = json.loads(cli(*base, "models:tag", "iris-clf:v3", "staging", "--json").stdout)
    assert doc == {"project": "credit", "repository": "iris-clf", "tag": "staging",
                   "version": 3, "previous": None, "seq": doc["seq"], "changed": True}
    doc = json.loads(cli(*base, "models:tag", "iris-clf:3", "staging", "--json").stdout)
    assert doc["changed"] is False and doc["seq"] is None
    doc = json.loads(cli(*base, "models:untag", "iris-clf", "staging", "--json").stdout)
    assert doc["version"] is None and doc["previous"] == 3
    doc = json.loads(cli(*base, "models:delete", "iris-clf:1", "--json").stdout)
    assert doc == {"project": "credit", "repository": "iris-clf", "version": 1, "deleted": True}
    doc = json.loads(cli(*base, "models:create", "fraud", "--json").stdout)
    assert doc["repository"] == "fraud" and doc["created"] is True
    os.chdir(tmp_path)
    doc = json.loads(cli("init", "--project", "x", "--store", "reg", "--json").stdout)
    assert doc["project"] == "x" and doc["config"].endswith("roro.yml")


def test_every_command_takes_json():
    for name, command in main.commands.items():
        assert any("--json" in p.opts for p in command.params), name


# -- 15: roro init in a git work tree ----------------------------------------------------------------
def test_init_inside_a_git_work_tree_ignores_the_store(tmp_path, monkeypatch):
    work = tmp_path / "repo"
    (work / "ml").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    monkeypatch.chdir(work / "ml")
    result = cli("init", "--store", "registry")
    assert result.exit_code == 0 and ".gitignore" in result.stdout
    assert "/registry/" in (work / "ml" / ".gitignore").read_text().splitlines()
    save_image(roro.get_current_project().get_model_repository("m"), {"w": 1})
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=work,
                            capture_output=True, text=True, check=True).stdout
    assert "registry" not in status and "roro.yml" in status
    # again: nothing added twice
    assert cli("init", "--store", "registry", "--force").exit_code == 0
    assert (work / "ml" / ".gitignore").read_text().count("/registry/") == 1
    # a store outside the work tree is left alone
    monkeypatch.chdir(tmp_path)
    assert ".gitignore" not in cli("init", "--store", "elsewhere", "--force").stdout
