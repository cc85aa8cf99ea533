"""End to end: a store written by the Python API in one process, read by ``python -m roro.cli`` in
others, as a person or a script would run it (real processes, real folder store, a real terminal)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import cloudpickle
import pytest

import roro

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WRITER = r"""
import os, sys, roro
project = roro.Project("default", sys.argv[1])
repo = project.get_model_repository("credit-risk")
for i in (1, 2):
    image = repo.new_image({"weights": [i, i + 1]})
    image["Accuracy"] = 0.8 + i / 100
    image.attach("notes/readme.txt", b"version %d" % i)
    image.save(comment="run %d\nwith June data" % i)
repo.add_tag("prod", 1)
if len(sys.argv) > 2:
    project.get_model_repository("big").new_image(os.urandom(int(sys.argv[2]))).save()
"""


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RORO_STORE", "RORO_PROJECT", "COLUMNS", "FORCE_COLOR")}
    env.update(PYTHONPATH=ROOT, RORO_HOME=str(tmp_path / "home"),
               RORO_CACHE_DIR=str(tmp_path / "cache"), RORO_AUTHOR="ana")
    return env


@pytest.fixture
def store(tmp_path, env) -> str:
    """A folder store written by the Python API in another process."""
    path = str(tmp_path / "store")
    subprocess.run([sys.executable, "-c", WRITER, path], env=env, check=True, timeout=120)
    return path


def roro_cli(*args: str, env: dict, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roro.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_log_show_and_download_in_other_processes(store, env, tmp_path):
    result = roro_cli("--store", store, "models:log", "credit-risk", env=env)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    repo = roro.Project("default", store).get_model_repository("credit-risk")
    v1, v2 = repo.get_model_image(1), repo.get_model_image(2)
    assert result.stdout.startswith(f"credit-risk:2  {v2.digest[7:19]}  (latest)\nAuthor: ana\n")
    assert f"\ncredit-risk:1  {v1.digest[7:19]}  (prod)\nAuthor: ana\n" in result.stdout
    assert "\n    run 2\n    with June data\n" in result.stdout

    result = roro_cli("--store", store, "models:show", "credit-risk:prod", "--json", env=env)
    doc = json.loads(result.stdout)
    assert (doc["version"], doc["image"], doc["tags"], doc["author"]) == (1, v1.digest, ["prod"], "ana")
    assert doc["metadata"] == {"Accuracy": 0.81} and doc["model"]["type"] == "builtins.dict"

    result = roro_cli("--store", store, "models:download", "credit-risk", "--attachments", "files",
                      env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = (tmp_path / "credit-risk-v2.pkl").read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == v2.manifest["model"]["digest"]
    assert cloudpickle.loads(data) == {"weights": [2, 3]}
    assert (tmp_path / "files" / "notes" / "readme.txt").read_bytes() == b"version 2"


def test_tagging_from_the_command_line_is_seen_by_the_api(store, env):
    assert roro_cli("--store", store, "models:tag", "credit-risk:2", "prod", env=env).returncode == 0
    repo = roro.Project("default", store).get_model_repository("credit-risk")
    assert repo.get_tags()["prod"] == 2
    assert [(m["previous"], m["version"], m["author"]) for m in repo.get_tag_history("prod")] == [
        (None, 1, "ana"), (1, 2, "ana")]
    doc = json.loads(roro_cli("--store", store, "models:history", "credit-risk:prod", "--json",
                              env=env).stdout)
    assert [(m["from"], m["to"]) for m in doc["moves"]] == [(None, 1), (1, 2)]


def test_errors_are_one_line_without_traceback(store, env, tmp_path):
    for args, code in [(["models:show", "nope"], 3), (["models:tag", "credit-risk:1", "latest"], 2),
                       (["models:show", "credit-risk:9"], 3), (["modles"], 2)]:
        result = roro_cli("--store", store, *args, env=env)
        assert result.returncode == code, (args, result.stderr)
        assert result.stdout == "" and result.stderr.startswith("Error: ")
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    # a corrupted model blob: refused, named, nothing written
    image = roro.Project("default", store).get_model_repository("credit-risk").get_model_image()
    blob = os.path.join(store, "objects", "sha256", image.manifest["model"]["digest"][7:9],
                        image.manifest["model"]["digest"][9:])
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        f.write(b"X")
    result = roro_cli("--store", store, "models:download", "credit-risk", env=env, cwd=tmp_path)
    assert result.returncode == 4 and "corrupted" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "credit-risk-v2.pkl").exists()


def test_init_then_commands_find_the_project_from_roro_yml(store, env, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    result = roro_cli("init", "--project", "default", "--store", store, env=env, cwd=work)
    assert result.returncode == 0, result.stderr
    doc = json.loads(roro_cli("models", "--json", env=env, cwd=work).stdout)
    assert doc["store"] == store
    assert [(m["name"], m["versions"], m["latest"], m["tags"]) for m in doc["models"]] == [
        ("credit-risk", 2, 2, {"prod": 1})]


def test_help_imports_neither_rich_nor_boto3(env):
    code = ("import sys\nfrom roro.cli import main\ntry:\n    main(['--help'], prog_name='roro')\n"
            "except SystemExit as e:\n    assert e.code == 0\n"
            "print(sorted(m for m in ('rich', 'boto3', 'botocore', 'sqlite_utils', 'cloudpickle')"
            " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert "models:download" in result.stdout


def run_in_terminal(args: list[str], env: dict, cwd) -> tuple[int, str]:
    """Run a command with a pseudo-terminal (100 columns) as its stdin, stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_for_a_large_download_on_a_terminal_only(tmp_path, env):
    path = str(tmp_path / "store")
    size = 17 << 20  # above PROGRESS_MIN_BYTES
    subprocess.run([sys.executable, "-c", WRITER, path, str(size)], env=env, check=True, timeout=120)
    env = {**env, "TERM": "xterm-256color"}
    code, screen = run_in_terminal([sys.executable, "-m", "roro.cli", "--store", path,
                                    "models:download", "big", "-o", "tty.pkl"], env, tmp_path)
    assert code == 0, screen
    assert "━" in screen and "17.0 MiB" in screen and "big:1 model: writing" in screen
    assert "Wrote big:1 (builtins.bytes, 17.0 MiB) to tty.pkl" in ANSI.sub("", screen)
    result = roro_cli("--store", path, "models:download", "big", "-o", "pipe.pkl", env=env,
                      cwd=tmp_path)
    assert result.returncode == 0 and "━" not in result.stdout and "Wrote big:1" in result.stdout
    assert (tmp_path / "tty.pkl").read_bytes() == (tmp_path / "pipe.pkl").read_bytes()
    code, screen = run_in_terminal([sys.executable, "-m", "roro.cli", "--store", path,
                                    "models:download", "credit-risk", "-o", "small.pkl"], env,
                                   tmp_path)
    assert code == 0 and "━" not in screen  # small: no bar
