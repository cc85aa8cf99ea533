"""Names that break on Windows (issue 13, item 14): refused for new repositories, projects, tags
and attachments; a store that already holds them (written by an older roro) stays readable, and
fsck warns about them without calling them errors or stray files, and without blocking gc."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import save_image

from roro import InvalidNameError, Project
from roro.check import fsck, gc
from roro.cli import main

#: these tests collect what they just made, with nobody else writing: any grace period
pytestmark = pytest.mark.usefixtures("no_gc_floor")

DEVICE_ATTACHMENTS = ["COM\u00b9", "LPT\u00b2", "com\u00b3.log", "lpt\u00b9.txt", "dir/COM\u00b2",
                      "CON", "nul.txt", "Aux.tar.gz", "x."]
HOSTILE_NAMES = ["con", "nul", "aux", "prn", "com1", "lpt9", "con.d", "nul.tar", "x.", "a.b."]


@pytest.fixture
def project(tmp_path):
    return Project("p", store=str(tmp_path / "store"))


@pytest.mark.parametrize("name", DEVICE_ATTACHMENTS)
def test_a_new_attachment_with_a_windows_device_name_is_refused(project, name):
    image = project.get_model_repository("m").new_image(1)
    with pytest.raises(InvalidNameError, match="Windows|dot"):
        image.attach(name, b"x")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_new_repository_with_a_windows_hostile_name_is_refused(project, name):
    with pytest.raises(InvalidNameError, match="Windows"):
        project.create_model_repository(name)
    with pytest.raises(InvalidNameError, match="Windows"):
        save_image(project.get_model_repository(name), 1)
    assert project.list_model_repositories() == []


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_new_project_or_tag_with_a_windows_hostile_name_is_refused(project, name):
    other = Project(name, store=project.store)
    with pytest.raises(InvalidNameError, match="Windows"):
        save_image(other.get_model_repository("m"), 1)
    repo = project.get_model_repository("m")
    save_image(repo, 1)
    with pytest.raises(InvalidNameError, match="Windows"):
        repo.add_tag(name, 1)
    assert repo.get_tags() == {"latest": 1}


def test_the_cli_refuses_them_in_one_line(project):
    save_image(project.get_model_repository("m"), 1)
    for argv in (["models:create", "nul"], ["models:tag", "m:1", "com1"]):
        result = CliRunner().invoke(main, ["--store", project.store.url, "--project", "p", *argv])
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1
        assert "Windows" in result.output


@pytest.fixture
def old_store(store_url, monkeypatch):
    """A store written by a roro that did not know these rules: project 'aux', repository 'con',
    tag 'nul', attachments 'COM¹' and 'lpt².txt'."""
    with monkeypatch.context() as m:
        m.setattr("roro.names.windows_name_problem", lambda part: None, raising=False)
        project = Project("aux", store=store_url)
        repo = project.get_model_repository("con")
        save_image(repo, {"w": 1}, attachments={"COM\u00b9": b"one", "lpt\u00b2.txt": b"two"})
        save_image(project.get_model_repository("x."), 2)
        repo.add_tag("nul", 1)
    return project


def test_existing_windows_hostile_names_stay_readable(old_store, tmp_path):
    project = Project("aux", store=old_store.store.url)
    assert [r.name for r in project.list_model_repositories()] == ["con", "x."]
    repo = project.get_model_repository("con")
    assert repo.get_tags() == {"nul": 1, "latest": 1}
    image = repo.get_model_image(tag="nul")
    assert image.get_model() == {"w": 1}
    assert [a.name for a in image.get_attachments()] == ["COM\u00b9", "lpt\u00b2.txt"]
    assert image.get_attachment("COM\u00b9").read() == b"one"
    written = image.download_attachments(tmp_path / "out")  # fine on Linux
    assert sorted(open(p, "rb").read() for p in written) == [b"one", b"two"]
    repo.add_tag("nul", 1)  # an existing tag can be used, even moved
    save_image(repo, {"w": 2})  # and the repository written to
    assert repo.get_model() == {"w": 2}


def test_fsck_warns_about_them_and_gc_is_not_blocked(old_store):
    report = fsck(old_store.store, read_data=True)
    assert report.ok, [str(p) for p in report.problems]
    warned = " ".join(str(w) for w in report.warnings)
    for name in ("'aux'", "'con'", "'x.'", "'nul'", "'COM\u00b9'", "'lpt\u00b2.txt'"):
        assert name in warned, (name, warned)
    assert all(w.kind == "name-warning" and not w.blocks_gc for w in report.warnings)
    assert not any(p.kind == "stray-file" for p in report.problems)
    assert "warnings" in report.to_dict()
    gc(old_store.store, grace_seconds=0)  # not refused
    assert fsck(old_store.store).ok


def test_the_cli_shows_fsck_warnings_and_exits_0(old_store):
    result = CliRunner().invoke(main, ["--store", old_store.store.url, "fsck"])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output and "'con'" in result.output
