"""Damage stays where it is (issue 13, item 7).

One missing or invalid manifest must not take down the project: listing repositories, the
project's log and search work, the intact versions of that repository stay readable, the damaged
version is listed as damaged (with the reason) by the index, an index rebuild keeps the
repository, and fsck names the version.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import save_image
from support.trust_helpers import rewrite

from roro import IntegrityError, NotFoundError, Project, Store
from roro.check import CORRUPT_OBJECT, MISSING_OBJECT, fsck
from roro.cli import main as cli
from roro.storage.layout import object_key

DAMAGE = {
    "missing": lambda store, key: store.backend.delete(key),
    "corrupt": lambda store, key: rewrite(store, key, store.backend.get(key)[:-1] + b"!"),
}


def damaged_project(url: str, damage: str, monkeypatch, tmp_path) -> tuple[Project, str, bytes]:
    """p/m with versions 1-3 and p/other with one; v2's manifest damaged; returns a project on
    a fresh index and cache (a new machine: it must read every manifest from the store), v2's
    image and its bytes."""
    project = Project("p", store=url)
    m = project.get_model_repository("m")
    for i in (1, 2, 3):
        save_image(m, {"model": i}, comment=f"v{i}", accuracy=0.8 + i / 100)
    m.add_tag("prod", 2)
    save_image(project.get_model_repository("other"), "intact", accuracy=0.5)
    image = m.get_model_image(2).digest
    key = object_key(image)
    original = project.store.backend.get(key)
    DAMAGE[damage](project.store, key)
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "another-machine"))
    store = Store(url)
    store.rebuild_index()  # forget what was indexed while the manifest was whole
    return Project("p", store=Store(url)), image, original


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_one_damaged_manifest_stays_in_its_version(store_url, damage, monkeypatch, tmp_path):
    project, image, original = damaged_project(store_url, damage, monkeypatch, tmp_path)
    m = project.get_model_repository("m")
    # the rest of the repository and the project stay readable
    assert m.get_model(1) == {"model": 1} and m.get_model(3) == {"model": 3}
    assert m.get_model() == {"model": 3}
    assert project.get_model_repository("other").get_model() == "intact"
    listed = {(i.repository.name, i.version): i for i in project.log()}
    assert set(listed) == {("m", 1), ("m", 2), ("m", 3), ("other", 1)}
    broken = listed[("m", 2)]
    assert broken.damaged and image in broken.damaged and broken.comment == "v2"
    assert all(not i.damaged for k, i in listed.items() if k != ("m", 2))
    assert [i.version for i in m.list_model_images()] == [3, 2, 1]
    assert m.damaged_versions() == {2: broken.damaged}
    assert [i.repository.name for i in project.search("accuracy > 0.55")] == ["m", "m"]
    # the damaged version says what is wrong, whichever way it is reached
    with pytest.raises((IntegrityError, NotFoundError), match="damaged"):
        m.get_model(2)
    with pytest.raises((IntegrityError, NotFoundError), match="damaged"):
        m.get_model(tag="prod")
    with pytest.raises(IntegrityError, match="damaged"):
        broken.get_model()
    # a rebuild keeps the repository and names the damage; fsck names the version
    report = Store(store_url).rebuild_index()
    assert report.ok and report.repositories == 2 and report.versions == 4
    assert list(report.damaged) == ["p/m:2"]
    kind = MISSING_OBJECT if damage == "missing" else CORRUPT_OBJECT
    assert [(p.kind, p.repository, p.version) for p in fsck(Store(store_url)).problems] == [
        (kind, "m", 2)]
    # restored from a backup, the version heals without a rebuild
    rewrite(project.store, object_key(image), original)
    assert m.get_model(2) == {"model": 2}
    assert not m.damaged_versions()
    assert fsck(Store(store_url)).ok


def test_the_cli_lists_and_searches_a_project_with_a_damaged_version(store_url, monkeypatch,
                                                                    tmp_path):
    damaged_project(store_url, "missing", monkeypatch, tmp_path)
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, ["--store", store_url, "--project", "p", *args])

    result = run("models")
    assert result.exit_code == 0, result.output
    assert "m" in result.output and "other" in result.output
    result = run("models:log")
    assert result.exit_code == 0, result.output
    assert "damaged" in result.output and "m:1" in result.output
    result = run("models:log", "--json")
    assert result.exit_code == 0
    result = run("models:log", "--where", "accuracy > 0.55")
    assert result.exit_code == 0, result.output
    result = run("models:show", "m:2")
    assert result.exit_code != 0 and "damaged" in result.output
    assert run("models:show", "m:3").exit_code == 0
    result = run("index", "--rebuild")
    assert result.exit_code == 0 and "damaged" in result.output
