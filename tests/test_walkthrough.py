"""The daily loop of a data scientist, end to end in real processes (issue 14): init, save three
versions from Python, tag, log --oneline, show NAME:v2, search with columns, diff, download twice,
rename, load with roro.load("NAME:TAG"); every table off a terminal is one row per line. Also
the pager on a terminal (a pty) and shell completion from the local index."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time

import pytest

BIN = os.path.dirname(sys.executable)


def sh(*args, cwd, env=None, ok=True):
    result = subprocess.run([os.path.join(BIN, "roro"), *args], cwd=cwd, capture_output=True,
                            text=True, timeout=120, env=env)
    if ok:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert result.stderr == "", result.stderr
    return result


def python(code, cwd):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def work(tmp_path):
    work = tmp_path / "credit"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    return work


def test_the_daily_loop(work):
    out = sh("init", "--project", "credit", "--store", "registry", cwd=work).stdout
    assert "Wrote" in out and ".gitignore" in out
    python("""
        import roro
        repo = roro.get_current_project().get_model_repository("iris-clf")
        for i, (acc, c) in enumerate([(0.81, 1.0), (0.86, 0.1), (0.89, 0.01)], start=1):
            image = repo.new_image({"weights": [i] * 3})
            image.Accuracy = acc
            image["params"] = {"C": c, "penalty": "l2"}
            image.attach("notes.txt", text=f"run {i}\\n")
            image.save(comment=f"run {i}: C={c}\\nlonger notes about run {i}")
    """, work)
    sh("models:tag", "iris-clf:v2", "prod", cwd=work)

    log = sh("models:log", "--oneline", cwd=work).stdout.splitlines()
    assert [line.split()[0] for line in log] == ["iris-clf:3", "iris-clf:2", "iris-clf:1"]
    assert "(prod)" in log[1] and log[1].rstrip().endswith("run 2: C=0.1")

    shown = json.loads(sh("models:show", "iris-clf:v2", "--json", cwd=work).stdout)
    assert shown["version"] == 2 and shown["tags"] == ["prod"]
    assert shown["metadata"]["params"] == {"C": 0.1, "penalty": "l2"}

    search = sh("models:search", "Accuracy > 0.85", "--columns", "params.C", cwd=work).stdout
    rows = search.splitlines()
    assert rows[0].split()[:4] == ["VERSION", "IMAGE", "Accuracy", "params.C"]
    assert [r.split()[0] for r in rows[1:]] == ["iris-clf:3", "iris-clf:2"]
    assert [r.split()[2:4] for r in rows[1:]] == [["0.89", "0.01"], ["0.86", "0.1"]]

    diff = sh("models:diff", "iris-clf:1", "iris-clf:prod", cwd=work).stdout
    assert "~ metadata params.C: 1.0 → 0.1" in diff and "~ metadata Accuracy: 0.81 → 0.86" in diff

    first = sh("models:download", "iris-clf:prod", "--attachments", "files", cwd=work).stdout
    assert "Wrote iris-clf:2" in first
    again = sh("models:download", "iris-clf:prod", "--attachments", "files", cwd=work).stdout
    assert "the same bytes" in again and "1 already held the same bytes" in again

    sh("models:rename", "iris-clf", "iris-classifier", cwd=work)
    models = sh("models", cwd=work).stdout.splitlines()
    assert any(line.startswith("iris-classifier ") for line in models)
    assert python("""
        import roro
        print(roro.load("iris-classifier:prod"), roro.load("iris-clf:prod"))
    """, work).split("]") [0] == "{'weights': [2, 2, 2"

    # off a terminal: one row per line, whatever the width, and git never sees the store
    for args in (["models"], ["models:log", "--oneline"], ["models:search", "Accuracy > 0"],
                 ["models:history", "iris-classifier"]):
        text = sh(*args, cwd=work, env={**os.environ, "COLUMNS": "30"}).stdout
        assert "…" not in text and not any(line != line.rstrip() for line in text.splitlines())
        body = [line for line in text.splitlines() if line.startswith("iris-")]
        if args[0] in ("models:search", "models:log"):
            assert len(body) == 3, text
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=work,
                            capture_output=True, text=True, check=True).stdout
    assert "registry/" not in status


def _read_pty(fd, proc, timeout=60.0):
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out.decode("utf-8", "replace")


def test_a_long_log_goes_through_the_pager_on_a_terminal_only(work):
    sh("init", "--store", "registry", cwd=work)
    python("""
        import roro
        repo = roro.get_current_project().get_model_repository("m")
        for i in range(12):
            repo.new_image(i).save(comment=f"run {i}")
    """, work)
    env = {**os.environ, "RORO_PAGER": "sed s/^/PAGED:/", "TERM": "xterm"}
    env.pop("PAGER", None)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 10, 100, 0, 0))
    proc = subprocess.Popen([os.path.join(BIN, "roro"), "models:log"], cwd=work, env=env,
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    text = _read_pty(master, proc)
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0 and "PAGED:" in text and "run 11" in text
    piped = sh("models:log", cwd=work, env=env).stdout
    assert "PAGED:" not in piped and "run 11" in piped


def test_shell_completion_reads_the_local_index_only(work):
    sh("init", "--store", "registry", cwd=work)
    python("""
        import roro
        repo = roro.get_current_project().get_model_repository("iris-clf")
        repo.new_image(1).save()
        repo.add_tag("prod", 1)
    """, work)

    def complete(words, env=None):
        env = {**os.environ, **(env or {}), "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
               "_RORO_COMPLETE": "bash_complete"}
        result = subprocess.run([os.path.join(BIN, "roro")], cwd=work, env=env,
                                capture_output=True, text=True, timeout=60)
        return result.stdout.split()

    assert complete("roro models:show ir") == ["plain,iris-clf"]
    assert complete("roro models:show iris-clf:p") == ["plain,iris-clf:prod"]
    assert "plain,models:show" in complete("roro models:sh")
    started = time.monotonic()
    # an S3 store at an address nothing answers: no cached index, so no names, and no waiting
    assert complete("roro --store s3://bucket/x models:show ir",
                    {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}) == []
    assert time.monotonic() - started < 20
