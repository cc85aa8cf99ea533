"""An edited index never serves another model (issue 13, item 5).

The SQLite index is a cache of the log, never its authority. fsck cross-checks every index row
(versions, images, tags, tag history, what the index derived from each manifest) against the log
and reports ``index-mismatch``; a load (``get_model_image``, ``get_model``, downloads, an image
from a listing) checks, with one read of the event the index row names (memoised per process),
that the log names that image for that version, and refuses otherwise.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import save_image

from roro import IntegrityError, Project, Store
from roro.check import INDEX_MISMATCH, fsck
from roro.storage.wrappers import CountingBackend


@pytest.fixture
def repo(store_url):
    repo = Project("p", store=store_url).get_model_repository("m")
    for i in (1, 2, 3):
        save_image(repo, {"model": i}, attachments={"a.txt": f"attachment {i}".encode()}, i=i)
    repo.add_tag("prod", 3)
    return repo


def edit(store: Store, sql: str, *params) -> None:
    """Change the index file behind roro's back (what a person or a bad tool could do)."""
    with sqlite3.connect(store.index_path()) as conn:
        assert conn.execute(sql, params).rowcount >= 1
    store.close()


def row(store: Store, version: int) -> dict:
    with sqlite3.connect(store.index_path()) as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT * FROM versions WHERE repository = 'm' AND version = ?",
                                 [version]).fetchone())


def mismatches(store: Store) -> list:
    return [p for p in fsck(store).problems if p.kind == INDEX_MISMATCH]


def fresh(url: str):
    """A new process's view of the store (no memo of confirmed events)."""
    return Project("p", store=Store(url)).get_model_repository("m")


def test_a_version_pointed_at_another_image_is_refused_and_reported(repo):
    store, url = repo.store, repo.store.url
    v1 = row(store, 1)
    edit(store, "UPDATE versions SET image = ?, manifest = ?, metadata = ? WHERE version = 2",
         v1["image"], v1["manifest"], v1["metadata"])
    reader = fresh(url)
    with pytest.raises(IntegrityError, match="index") as e:
        reader.get_model(version=2)
    assert "index --rebuild" in str(e.value) and "version 2" in str(e.value)
    listed = {i.version: i for i in fresh(url).list_model_images()}
    with pytest.raises(IntegrityError, match="index --rebuild"):
        listed[2].get_model()
    with pytest.raises(IntegrityError, match="index --rebuild"):
        listed[2].get_attachment("a.txt").read()
    assert listed[1].get_model() == {"model": 1} and listed[3].get_model() == {"model": 3}
    found = mismatches(Store(url))
    assert [(p.repository, p.version) for p in found] == [("m", 2)]
    assert "image" in found[0].message and not found[0].blocks_gc
    assert Store(url).rebuild_index().ok
    assert fresh(url).get_model(version=2) == {"model": 2}
    assert fsck(Store(url)).ok


def test_a_manifest_column_naming_another_model_is_refused(repo):
    store, url = repo.store, repo.store.url
    manifest = json.loads(row(store, 2)["manifest"])
    manifest["model"]["digest"] = json.loads(row(store, 1)["manifest"])["model"]["digest"]
    edit(store, "UPDATE versions SET manifest = ? WHERE version = 2", json.dumps(manifest))
    (image,) = [i for i in fresh(url).list_model_images() if i.version == 2]
    with pytest.raises(IntegrityError, match="index --rebuild"):
        image.get_model()
    with pytest.raises(IntegrityError, match="index --rebuild"):
        image.open_model()
    assert [(p.version, p.kind) for p in mismatches(Store(url))] == [(2, INDEX_MISMATCH)]


def test_a_moved_tag_is_refused_and_reported(repo):
    url = repo.store.url
    edit(repo.store, "UPDATE tags SET version = 1 WHERE tag = 'prod'")
    with pytest.raises(IntegrityError, match="index --rebuild") as e:
        fresh(url).get_model(tag="prod")
    assert "prod" in str(e.value)
    found = mismatches(Store(url))
    assert found and all(p.repository == "m" for p in found)
    assert any("prod" in p.message for p in found)
    Store(url).rebuild_index()
    assert fresh(url).get_model(tag="prod") == {"model": 3}


def test_derived_columns_and_history_are_cross_checked(repo):
    url = repo.store.url
    edit(repo.store, "UPDATE versions SET metadata = '{\"i\": 99}' WHERE version = 1")
    edit(repo.store, "UPDATE tag_events SET version = 2 WHERE tag = 'prod'")
    edit(repo.store, "UPDATE versions SET comment = 'forged' WHERE version = 3")
    found = mismatches(Store(url))
    messages = " | ".join(p.message for p in found)
    assert {p.version for p in found if p.version} >= {1, 3}
    assert "metadata" in messages and "comment" in messages and "tag history" in messages
    assert Store(url).rebuild_index().ok and fsck(Store(url)).ok


def test_an_index_row_for_a_version_the_log_never_had(repo):
    url = repo.store.url
    edit(repo.store, "INSERT INTO versions SELECT project, repository, 9, image, seq, author, "
                     "time, comment, deleted, metadata, model_type, model_size, size, "
                     "attachments, manifest, model_format, damaged, signer, signer_key FROM versions "
                     "WHERE version = 3")
    assert [p.version for p in mismatches(Store(url))] == [9]
    with pytest.raises(IntegrityError, match="index --rebuild"):
        fresh(url).get_model(version=9)


class KeyRecorder(CountingBackend):
    """Counts as CountingBackend does, and remembers the keys read with ``get``."""

    def __init__(self, inner):
        super().__init__(inner)
        self.read = []

    def get(self, key, max_size=None):
        self.read.append(key)
        return super().get(key, max_size)


def test_the_load_check_is_one_read_memoised_per_process(store_url):
    repo = Project("p", store=store_url).get_model_repository("m")
    save_image(repo, {"model": 1})
    save_image(repo, {"model": 2})
    recorder = KeyRecorder(Store(store_url).backend)
    reader = Project("p", store=Store(recorder)).get_model_repository("m")
    images = {i.version: i for i in reader.list_model_images()}
    recorder.read.clear()
    assert images[1].get_model() == {"model": 1}
    assert images[1].get_model() == {"model": 1}
    assert reader.get_model_image(1).get_model() == {"model": 1}
    events = [k for k in recorder.read if k.startswith("refs/")]
    assert events == ["refs/p/m/log/0000000001.json"]  # one read of event 1, then memoised
