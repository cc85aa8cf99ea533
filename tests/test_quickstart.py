"""The two snippets of the issue, verbatim, in separate processes; and project discovery."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import roro
from roro import ConfigError, InvalidNameError

SAVE = """
import roro
project = roro.get_current_project()
model_repo = project.get_model_repository("credit-risk")
model = train_machine_learning_model()          # any picklable object
model_image = model_repo.new_image(model)
model_image['Input-Data-Source'] = 's3://credit-risk-dataset-201706'
model_image['Accuracy'] = 0.89
model_image.attach("log.txt", open("log.txt"))   # a text-mode file object
model_image.save(comment="Built new model using the data till June 2017")
print(model_image.version)
"""

LOAD = """
import roro
project = roro.get_current_project()
model_repo = project.get_model_repository("credit-risk")
model_image = model_repo.get_model_image(tag="latest")
model = model_repo.get_model()
print(model_image.version, model_image['Accuracy'], model.predict(2))
"""

TRAIN = """
class LinearModel:
    def __init__(self, w):
        self.w = w
    def predict(self, x):
        return self.w * x

def train_machine_learning_model():
    return LinearModel(21)
"""


def run(code, cwd, env):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, check=True).stdout


def test_snippets_in_separate_processes(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "log.txt").write_text("epoch 1: loss 0.3\n")
    env = {**os.environ, "RORO_HOME": str(tmp_path / "home")}
    assert run(TRAIN + SAVE, work, env).strip() == "1"
    assert run(TRAIN + SAVE, work, env).strip() == "2"
    # another process, in another directory, without the training code importable by name:
    # cloudpickle carries the class by value
    other = tmp_path / "other"
    other.mkdir()
    assert run(LOAD, other, env).split() == ["2", "0.89", "42"]
    img = roro.Project("default", str(tmp_path / "home")).get_model_repository(
        "credit-risk").get_model_image(version=1)
    assert img.get_attachments()[0].read() == b"epoch 1: loss 0.3\n"


def test_snippets_on_a_real_s3_server(seaweedfs_endpoint, tmp_path, monkeypatch):
    """The same snippets, unchanged, on SeaweedFS: the store from RORO_STORE, the endpoint from
    AWS_ENDPOINT_URL; the loading process is "another machine" (its own cache and index)."""
    from support.s3servers import create_bucket, use_endpoint
    use_endpoint(monkeypatch, seaweedfs_endpoint)
    store = f"s3://{create_bucket(seaweedfs_endpoint)}/team-models"
    work = tmp_path / "work"
    work.mkdir()
    (work / "log.txt").write_text("epoch 1: loss 0.3\n")
    env = {**os.environ, "RORO_STORE": store, "RORO_HOME": str(tmp_path / "never-used")}
    assert run(TRAIN + SAVE, work, env).strip() == "1"
    assert run(TRAIN + SAVE, work, env).strip() == "2"
    other = tmp_path / "other"
    other.mkdir()
    env["RORO_CACHE_DIR"] = str(tmp_path / "other-machine-cache")
    assert run(LOAD, other, env).split() == ["2", "0.89", "42"]
    assert not (tmp_path / "never-used").exists()
    img = roro.Project("default", store).get_model_repository("credit-risk").get_model_image(
        version=1)
    assert img.get_attachments()[0].read() == b"epoch 1: loss 0.3\n"


def test_default_project_in_roro_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RORO_HOME", str(tmp_path / "h"))
    p = roro.get_current_project()
    assert p.name == "default" and p.store.url == str(tmp_path / "h")


def test_roro_yml_in_parent_with_relative_store(tmp_path, monkeypatch):
    (tmp_path / "roro.yml").write_text("project: credit\nstore: data/store\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    p = roro.get_current_project()
    assert p.name == "credit" and p.store.url == str(tmp_path / "data" / "store")


def test_env_overrides_roro_yml(tmp_path, monkeypatch):
    (tmp_path / "roro.yml").write_text("project: credit\nstore: s1\n")
    monkeypatch.setenv("RORO_PROJECT", "other")
    p = roro.get_current_project()
    assert p.name == "other" and p.store.url == str(tmp_path / "s1")
    monkeypatch.setenv("RORO_STORE", str(tmp_path / "s2"))
    assert roro.get_current_project().store.url == str(tmp_path / "s2")


@pytest.mark.parametrize("content, error", [
    ("project: [1, 2]\n", ConfigError), ("- a\n- b\n", ConfigError), ("project: Bad Name\n", InvalidNameError),
    ("project: x\n  bad: indent\n : :\n", ConfigError)])
def test_bad_roro_yml(tmp_path, content, error):
    (tmp_path / "roro.yml").write_text(content)
    with pytest.raises(error):
        roro.get_current_project()


def test_import_is_light():
    code = textwrap.dedent("""
        import sys, roro
        p = roro.Project("p", "/nonexistent/never")
        p.get_model_repository("m")
        heavy = [m for m in ("boto3", "botocore", "click", "rich", "sqlite_utils") if m in sys.modules]
        print(heavy)
    """)
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
