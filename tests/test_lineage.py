"""Lineage recorded at save time: git commit and dirtiness, Python, platform, the model's package.

The git tests use a real repository in a temporary directory; "no git" is a PATH without git, and
a hanging git is a real program on PATH that sleeps.
"""

from __future__ import annotations

import os
import platform
import stat
import subprocess
import sys

import numpy
import pytest
import yaml

import roro.lineage
from roro import Project
from roro.lineage import collect_lineage, package_of


class Model:
    def __init__(self, w=0):
        self.w = w


@pytest.fixture(autouse=True)
def _hermetic_git(tmp_path, monkeypatch):
    """No user or system git configuration leaks into these tests."""
    empty = tmp_path / "gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)


def git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def work_tree(tmp_path, monkeypatch):
    tree = tmp_path / "work"
    tree.mkdir()
    git(tree, "init", "-q")
    (tree / "train.py").write_text("print('train')\n")
    (tree / ".gitignore").write_text("*.log\n")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "first")
    monkeypatch.chdir(tree)
    return tree


def save(project, model=None, name="m"):
    return project.get_model_repository(name).new_image(Model() if model is None else model).save()


def test_clean_work_tree(work_tree, tmp_path):
    project = Project("p", str(tmp_path / "store"))
    img = save(project)
    head = git(work_tree, "rev-parse", "HEAD")
    assert img.lineage["git"] == {"commit": head, "dirty": False}
    assert project.get_model_repository("m").get_model_image().lineage["git"]["commit"] == head
    assert img.manifest["lineage"] == img.lineage


def test_dirty_work_tree(work_tree, tmp_path):
    project = Project("p", str(tmp_path / "store"))
    (work_tree / "train.py").write_text("print('changed')\n")
    assert save(project).lineage["git"]["dirty"] is True
    git(work_tree, "add", "train.py")  # staged counts too
    assert save(project).lineage["git"]["dirty"] is True
    git(work_tree, "commit", "-q", "-m", "second")
    img = save(project)
    assert img.lineage["git"] == {"commit": git(work_tree, "rev-parse", "HEAD"), "dirty": False}


def test_untracked_files_make_it_dirty_ignored_files_do_not(work_tree, tmp_path):
    project = Project("p", str(tmp_path / "store"))
    (work_tree / "run.log").write_text("ignored\n")
    assert save(project).lineage["git"]["dirty"] is False
    (work_tree / "new.py").write_text("x = 1\n")
    assert save(project).lineage["git"]["dirty"] is True


def test_subdirectory_of_the_work_tree(work_tree, tmp_path, monkeypatch):
    sub = work_tree / "src" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    project = Project("p", str(tmp_path / "store"))
    (work_tree / "train.py").write_text("changed elsewhere in the tree\n")
    assert save(project).lineage["git"]["dirty"] is True  # the whole tree, not just cwd


def test_a_folder_store_inside_the_work_tree_does_not_make_it_dirty(work_tree):
    project = Project("p", str(work_tree / "models" / "store"))
    save(project)
    assert any((work_tree / "models" / "store").iterdir())
    img = save(project)
    assert img.lineage["git"]["dirty"] is False
    (work_tree / "notes.md").write_text("real change\n")
    assert save(project).lineage["git"]["dirty"] is True


def test_outside_any_work_tree_there_is_no_git_key(tmp_path, monkeypatch):
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.chdir(outside)
    img = save(Project("p", str(tmp_path / "store")))
    assert "git" not in img.lineage
    assert img.lineage["python"] == platform.python_version()
    assert img.lineage["platform"] == platform.platform()


def test_a_repository_without_commits_has_no_git_key(tmp_path, monkeypatch):
    tree = tmp_path / "empty"
    tree.mkdir()
    git(tree, "init", "-q")
    monkeypatch.chdir(tree)
    assert "git" not in save(Project("p", str(tmp_path / "store"))).lineage


def test_no_git_program_is_no_error(work_tree, tmp_path, monkeypatch):
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    img = save(Project("p", str(tmp_path / "store")))
    assert "git" not in img.lineage and img.version == 1


def test_a_hanging_git_is_given_up_on(work_tree, tmp_path, monkeypatch):
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    fake = fake_bin / "git"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(roro.lineage, "GIT_TIMEOUT", 0.3)
    img = save(Project("p", str(tmp_path / "store")))
    assert "git" not in img.lineage and img.version == 1


def test_a_git_whose_status_fails_records_the_commit_with_unknown_dirtiness(work_tree, tmp_path,
                                                                            monkeypatch):
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True,
                          check=True).stdout.strip()
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    fake = fake_bin / "git"
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = status ] && exit 128; done\n'
                    f'exec {real} "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    img = save(Project("p", str(tmp_path / "store")))
    assert img.lineage["git"] == {"commit": git(work_tree, "rev-parse", "HEAD"), "dirty": None}


def test_model_package_version():
    assert package_of(numpy.zeros(2)) == {"module": "numpy", "distribution": "numpy",
                                          "version": numpy.__version__}
    node = yaml.nodes.ScalarNode("tag:yaml.org,2002:str", "x")
    assert package_of(node) == {"module": "yaml", "distribution": "PyYAML",
                                "version": yaml.__version__}
    assert package_of({"a": 1}) is None          # builtins
    assert package_of(Model()) == {"module": "test_lineage", "distribution": None,
                                   "version": None}  # a local module: known, no version
    import decimal
    assert package_of(decimal.Decimal(1)) is None  # standard library


def test_saved_numpy_model_records_numpy(tmp_path):
    img = save(Project("p", str(tmp_path / "store")), numpy.arange(3))
    assert img.lineage["package"]["version"] == numpy.__version__


def test_lineage_property(tmp_path):
    project = Project("p", str(tmp_path / "store"))
    draft = project.get_model_repository("m").new_image(Model())
    assert draft.lineage is None
    img = draft.save()
    copy = img.lineage
    copy["python"] = "changed"
    assert img.lineage["python"] == platform.python_version()


def test_collect_lineage_explicit_cwd(work_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lineage = collect_lineage(Model(), cwd=str(work_tree))
    assert lineage["git"]["commit"] == git(work_tree, "rev-parse", "HEAD")
    assert "git" not in collect_lineage(Model(), cwd=str(tmp_path))


def test_python_version_matches_the_interpreter(tmp_path):
    img = save(Project("p", str(tmp_path / "store")))
    assert img.lineage["python"] == ".".join(map(str, sys.version_info[:3]))
