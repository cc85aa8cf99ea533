"""Format evolution (DESIGN §14): a store records the format features it uses, and a roro that
does not know one refuses the store clearly ("upgrade roro") instead of calling new data corrupt."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner
from conftest import save_image

import roro
from roro.cli import main
from roro.errors import StoreError
from roro.storage import layout


@pytest.fixture
def known(monkeypatch):
    """Pretend this roro knows two features, as the issues that add them will make it."""
    monkeypatch.setattr(layout, "KNOWN_FEATURES", layout.KNOWN_FEATURES | {"alpha", "beta"})


def test_a_new_store_is_format_1_without_features(store_url):
    project = roro.Project("p", store_url)
    project.create_model_repository("m")
    marker = json.loads(project.store.backend.get("roro.json"))
    assert marker["format"] == 1 and project.store.features() == frozenset()
    assert list(project.store.backend.list("features/")) == []


def test_a_save_records_manifest_v2_and_an_older_roro_refuses_it(store_url, monkeypatch):
    project = roro.Project("p", store_url)
    save_image(project.get_model_repository("m"), {"w": 1})
    marker = json.loads(project.store.backend.get("roro.json"))
    assert marker["format"] == 2 and project.store.features() == {"manifest-v2"}
    assert project.get_model_repository("m").get_model_image().manifest["format"] == "roro.image/2"
    monkeypatch.setattr(layout, "KNOWN_FEATURES", frozenset())  # a roro from before formats
    with pytest.raises(StoreError, match=r"does not know \(manifest-v2\).*upgrade roro"):
        roro.Project("p", store_url).get_model_repository("m").get_model()


def test_the_first_write_needing_a_feature_records_it(store_url, known):
    project = roro.Project("p", store_url)
    save_image(project.get_model_repository("m"), {"w": 1})
    store_id = project.store.store_id()
    project.store.require_feature("alpha")
    marker = json.loads(project.store.backend.get("roro.json"))
    assert marker == {"format": 2, "id": store_id}
    assert project.store.features() == {"alpha", "manifest-v2"}  # the save needed the latter
    again = roro.Project("p", store_url)  # a new handle reads it back
    assert again.store.features() == {"alpha", "manifest-v2"}
    assert again.get_model_repository("m").get_model() == {"w": 1}
    again.store.require_features({"alpha", "beta"})
    assert roro.Project("p", store_url).store.features() == {"alpha", "beta", "manifest-v2"}
    assert sorted(again.store.backend.list("features/")) == [
        "features/alpha.json", "features/beta.json", "features/manifest-v2.json"]


def test_a_feature_can_be_the_first_write_of_a_store(store_url, known):
    store = roro.Store(store_url)
    store.require_feature("beta")
    assert roro.Store(store_url).features() == {"beta"}


def test_a_store_using_an_unknown_feature_is_refused_on_read_and_write(tmp_path, known,
                                                                       monkeypatch):
    path = str(tmp_path / "store")
    project = roro.Project("p", path)
    save_image(project.get_model_repository("m"), {"w": 1})
    project.store.require_feature("beta")
    monkeypatch.setattr(layout, "KNOWN_FEATURES", frozenset({"alpha", "manifest-v2"}))  # older
    older = roro.Project("p", path)
    with pytest.raises(StoreError, match=r"features this roro does not know \(beta\).*upgrade roro"):
        older.list_model_repositories()
    with pytest.raises(StoreError, match="upgrade roro"):
        save_image(roro.Project("p", path).get_model_repository("m"), {"w": 2})
    result = CliRunner().invoke(main, ["--store", path, "--project", "p", "models"])
    assert result.exit_code != 0
    assert "upgrade roro" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_format_this_roro_cannot_read_says_upgrade(tmp_path):
    path = tmp_path / "store"
    project = roro.Project("p", str(path))
    save_image(project.get_model_repository("m"), {"w": 1})
    (path / "roro.json").chmod(0o644)
    (path / "roro.json").write_text(json.dumps({"format": 3, "id": "x"}))
    with pytest.raises(StoreError, match="format 3.*upgrade roro"):
        roro.Project("p", str(path)).list_model_repositories()


def test_concurrent_writers_raise_the_same_feature_once(store_url, known):
    roro.Store(store_url).ensure_initialized()
    errors = []

    def raise_it() -> None:
        try:
            roro.Store(store_url).require_feature("alpha")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=raise_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = roro.Store(store_url)
    assert store.features() == {"alpha"}
    assert json.loads(store.backend.get("roro.json"))["format"] == 2


def test_sync_and_copy_give_the_destination_the_source_features(tmp_path, known):
    src, dst, dst2 = (str(tmp_path / n) for n in ("src", "dst", "dst2"))
    project = roro.Project("p", src)
    save_image(project.get_model_repository("m"), {"w": 1})
    project.store.require_feature("alpha")
    report = roro.sync(src, dst)
    assert report.ok
    assert roro.Store(dst).features() == {"alpha", "manifest-v2"}
    roro.copy_image(src, "m:1", dst2, project="p")
    assert roro.Store(dst2).features() == {"alpha", "manifest-v2"}


def test_an_unknown_feature_name_is_a_programming_error(store_url):
    with pytest.raises(ValueError, match="unknown format features"):
        roro.Store(store_url).require_feature("no-such-feature")
