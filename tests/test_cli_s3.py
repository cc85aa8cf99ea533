"""End to end against a real S3 server (SeaweedFS): a store written by the Python API in one process,
read and changed by ``python -m roro.cli --store s3://…`` in others (credentials and
AWS_ENDPOINT_URL in the environment, as a person or a CI job would have them)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from conftest import make_store_url
from support.s3servers import use_endpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WRITER = r"""
import sys, roro
repo = roro.Project("default", sys.argv[1]).get_model_repository("credit-risk")
for i in (1, 2):
    image = repo.new_image({"weights": [i, i + 1]})
    image["Accuracy"] = 0.8 + i / 100
    image.attach("notes/readme.txt", b"version %d" % i)
    image.save(comment="run %d" % i)
repo.add_tag("prod", 1)
print(repo.get_model_image(1).digest, repo.get_model_image(2).digest,
      repo.get_model_image(2).manifest["model"]["digest"])
"""


@pytest.fixture
def env(seaweedfs_endpoint, monkeypatch, tmp_path) -> dict[str, str]:
    use_endpoint(monkeypatch, seaweedfs_endpoint)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RORO_STORE", "RORO_PROJECT", "COLUMNS", "FORCE_COLOR")}
    env.update(PYTHONPATH=ROOT, RORO_HOME=str(tmp_path / "home"),
               RORO_CACHE_DIR=str(tmp_path / "cache"), RORO_AUTHOR="ana")
    assert env["AWS_ENDPOINT_URL"] == seaweedfs_endpoint and env["AWS_ACCESS_KEY_ID"]
    return env


@pytest.fixture
def saved(env, tmp_path) -> tuple[str, list[str]]:
    """An s3:// store on SeaweedFS with credit-risk v1, v2 (prod -> v1), saved by another process."""
    url = make_store_url("seaweedfs", tmp_path, env["AWS_ENDPOINT_URL"])
    out = subprocess.run([sys.executable, "-c", WRITER, url], env=env, check=True, timeout=120,
                         capture_output=True, text=True).stdout
    return url, out.split()


def roro_cli(store: str, *args: str, env: dict, cwd=None, ok: bool = True):
    result = subprocess.run([sys.executable, "-m", "roro.cli", "--store", store, *args], env=env,
                            cwd=cwd, capture_output=True, text=True, timeout=120)
    if ok:
        assert result.returncode == 0 and result.stderr == "", (args, result.stderr)
    return result


def test_browse_download_and_tag_an_s3_store(saved, env, tmp_path):
    url, (v1, v2, model2) = saved
    assert url.startswith("s3://")
    doc = json.loads(roro_cli(url, "models", "--json", env=env).stdout)
    assert doc["store"] == url
    assert doc["models"] == [{"name": "credit-risk", "versions": 2, "latest": 2,
                              "last_saved": doc["models"][0]["last_saved"], "tags": {"prod": 1}}]

    log = roro_cli(url, "models:log", "credit-risk", env=env).stdout
    assert log.startswith(f"credit-risk:2  {v2[7:19]}  (latest)\nAuthor: ana\n")
    assert f"\ncredit-risk:1  {v1[7:19]}  (prod)\n" in log

    show = json.loads(roro_cli(url, "models:show", "credit-risk:prod", "--json", env=env).stdout)
    assert (show["version"], show["image"], show["tags"]) == (1, v1, ["prod"])
    assert show["metadata"] == {"Accuracy": 0.81} and show["lineage"]["python"]

    roro_cli(url, "models:download", "credit-risk", "--attachments", "files", env=env,
             cwd=tmp_path)
    data = (tmp_path / "credit-risk-v2.pkl").read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == model2
    assert (tmp_path / "files" / "notes" / "readme.txt").read_bytes() == b"version 2"

    moved = roro_cli(url, "models:tag", "credit-risk:2", "prod", env=env).stdout
    assert moved == "Moved tag prod from credit-risk:1 to credit-risk:2.\n"
    # Another process (a fresh index and cache) sees the move.
    env2 = dict(env, RORO_HOME=str(tmp_path / "home2"), RORO_CACHE_DIR=str(tmp_path / "cache2"))
    show = json.loads(roro_cli(url, "models:show", "credit-risk:prod", "--json", env=env2).stdout)
    assert show["version"] == 2 and show["tags"] == ["latest", "prod"]

    missing = roro_cli(url, "models:show", "credit-risk:9", env=env, ok=False)
    assert missing.returncode == 3 and missing.stdout == ""
    assert missing.stderr == ("Error: version 9 of model repository 'credit-risk' does not exist "
                              "(the latest is 2)\n")


def test_search_fsck_and_sync_an_s3_store(saved, env, tmp_path):
    url, (v1, v2, _) = saved
    found = json.loads(roro_cli(url, "models:search", "Accuracy > 0.815", "--json",
                                env=env).stdout)
    assert [v["image"] for v in found["versions"]] == [v2]
    fsck = roro_cli(url, "fsck", "--read-data", env=env).stdout
    assert fsck.startswith("ok: 1 repositories, 3 events, 2 versions")
    folder = str(tmp_path / "copy")
    sync = json.loads(roro_cli(url, "sync", url, folder, "--json", env=env).stdout)
    assert sync["ok"] is True and sync["synced"] == ["default/credit-risk"]
    assert json.loads(roro_cli(folder, "models:show", "credit-risk:prod", "--json",
                               env=env).stdout)["image"] == v1
