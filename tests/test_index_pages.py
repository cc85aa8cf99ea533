"""The index's page queries (what the web UI reads): keyset pages by version or by a metadata key
return exactly the versions, in exactly the order, of a plain-Python reference, page after page;
``version_keys`` follows saves, deletes and rebuilds; key lists and plot series are bounded."""

from __future__ import annotations

import random
import sqlite3
import uuid

import pytest
from support.histories import build_history

import roro
from roro.query import parse
from roro.refs.index import SCHEMA_VERSION

VALUES = [0, 1, -1, 2.5, -0.25, 1.0, 10**12, 0.1, "a", "B", "b", "", "é", "z" * 50, "10",
          True, False, None, [1, 2], {"x": 1}, "nul\x00inside", 3, 3.0, "a"]


def metadata(i: int) -> dict:
    rng = random.Random(i)
    out = {"i": i, "group": f"g{i % 4}"}
    if rng.random() < 0.8:
        out["score"] = rng.choice(VALUES)
    if rng.random() < 0.5:
        out["acc"] = round(rng.random(), 3)
    return out


@pytest.fixture
def repo():
    store = roro.Store(f"memory://pages-{uuid.uuid4().hex}")
    build_history(store, "p", ["r", "other"], 240, metadata)
    project = roro.Project("p", store)
    r = project.get_model_repository("r")
    for v in (3, 50, 51, 119):
        r.delete_version(v)
    return r


def sortable(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return "\x00" not in value  # indexed as an object (see docs/query.md)
    return isinstance(value, (int, float))


def reference(images, key: str | None, descending: bool) -> list[int]:
    if key is None:
        return sorted((i.version for i in images), reverse=descending)
    keyed = [(i[key], i.version) for i in images if key in i and sortable(i[key])]

    def order(item):
        value, version = item
        return (isinstance(value, str), value, version)

    keyed.sort(key=order, reverse=descending)
    missing = sorted((i.version for i in images if not (key in i and sortable(i[key]))),
                     reverse=True)
    return [v for _, v in keyed] + missing


def all_pages(index, key, descending, limit, **where):
    out, cursor, pages = [], None, 0
    while True:
        rows, cursor = index.page("p", "r", sort_key=key, descending=descending, after=cursor,
                                  limit=limit, **where)
        assert len(rows) <= limit
        out += [r["version"] for r in rows]
        pages += 1
        assert pages < 1000
        if cursor is None:
            return out


@pytest.mark.parametrize("key", [None, "score", "acc", "i", "group", "absent"])
@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("limit", [1, 7, 50, 500])
def test_pages_match_the_reference(repo, key, descending, limit):
    images = repo.list_model_images()
    got = all_pages(repo.project.store.index, key, descending, limit)
    assert got == reference(images, key, descending)


@pytest.mark.parametrize("key", [None, "score"])
def test_pages_with_a_query(repo, key):
    compiled = parse("version > 10 and group != 'g1'").to_sql()
    where = {"where_sql": compiled.sql, "params": compiled.params,
             "functions": dict(compiled.functions)}
    images = [i for i in repo.list_model_images() if i.version > 10 and i["group"] != "g1"]
    got = all_pages(repo.project.store.index, key, True, 9, **where)
    assert got == reference(images, key, True)


def test_version_keys_follow_deletes_and_rebuilds(repo):
    store = repo.project.store
    keyed = {r["version"] for r in store.index.dump()["version_keys"]
             if (r["project"], r["repository"]) == ("p", "r")}
    live = {i.version for i in repo.list_model_images()}
    assert keyed == live
    store.refresh("p", "other")
    before = store.index.dump()
    assert before["version_keys"]
    store.rebuild_index()
    assert store.index.dump() == before


def keyed_versions(store, repository: str) -> set[int]:
    return {r["version"] for r in store.index.dump()["version_keys"]
            if (r["project"], r["repository"]) == ("p", repository)}


def test_version_keys_follow_destroy_restore_and_rename(repo):
    """A closed repository's versions are hidden (``deleted = 2``) and so are its key rows: no
    page, key list or series shows them; a restore brings them back as they were; a rename
    gives them to the new name. A rebuild then gives the same rows."""
    store, index = repo.project.store, repo.project.store.index
    live = {i.version for i in repo.list_model_images()}
    pages_before = all_pages(index, "score", True, 13)
    keys_before = index.indexed_keys("p", "r")
    repo.destroy()
    store.refresh("p", "r")
    assert keyed_versions(store, "r") == set()
    assert all_pages(index, "score", True, 13) == all_pages(index, None, True, 13) == []
    assert index.indexed_keys("p", "r") == []
    assert index.numeric_series("p", "r", "acc", newest=1000) == []
    assert index.repository_summary("p", "r") == {"versions": 0, "latest": None,
                                                  "last_saved": None}
    store.rebuild_index()
    assert keyed_versions(store, "r") == set()
    repo.restore()
    store.refresh("p", "r")
    assert keyed_versions(store, "r") == live
    assert all_pages(index, "score", True, 13) == pages_before
    assert index.indexed_keys("p", "r") == keys_before
    renamed = repo.rename("r2")
    store.refresh("p", "r")
    store.refresh("p", "r2")
    assert keyed_versions(store, "r") == set()
    assert keyed_versions(store, "r2") == {i.version for i in renamed.list_model_images()}
    dumped = index.dump()
    store.rebuild_index()
    assert index.dump() == dumped


def test_metadata_keys_and_series(repo):
    index = repo.project.store.index
    keys = index.indexed_keys("p", "r")
    assert [k for k, _ in keys] == ["acc", "group", "i", "score"]
    assert dict(keys) == {"acc": True, "group": False, "i": True, "score": True}
    assert index.indexed_keys("p", "r", limit=2) == keys[:2]
    images = {i.version: i for i in repo.list_model_images()}
    newest = sorted(images, reverse=True)[:30]
    expected = [(v, images[v]["acc"]) for v in sorted(newest) if "acc" in images[v]]
    assert index.numeric_series("p", "r", "acc", newest=30) == expected
    chosen = [1, 2, 3, 4, 200, 10_000]
    expected = [(v, images[v]["score"]) for v in chosen if v in images and "score" in images[v]
                and isinstance(images[v]["score"], (int, float))
                and not isinstance(images[v]["score"], bool)]
    assert index.numeric_series("p", "r", "score", versions=chosen) == expected


def test_tag_history_pages(repo):
    for n in range(7):
        repo.add_tag(f"t{n % 3}", 10 + n)
    index = repo.project.store.index
    everything = [e["seq"] for e in index.tag_history("p", "r")][::-1]
    out, before = [], None
    while True:
        rows, before = index.tag_history_page("p", "r", before=before, limit=3)
        out += [r["seq"] for r in rows]
        if before is None:
            break
    assert out == everything
    rows, _ = index.tag_history_page("p", "r", "t1", limit=100)
    assert [r["tag"] for r in rows] == ["t1"] * 2


def test_an_index_of_the_previous_schema_is_rebuilt_with_version_keys(tmp_path):
    """An index written before ``version_keys`` existed (the schema before: no such table) is dropped and
    rebuilt by the next process that opens it, which then sorts by a key as a fresh index does."""
    root = str(tmp_path / "store")
    store = roro.Store(root)
    build_history(store, "p", ["r"], 30, metadata)
    store.refresh("p", "r")
    fresh = store.index.dump()
    expected = all_pages(store.index, "score", True, 7)
    path = store.index_path()
    store.close()
    old = sqlite3.connect(path)
    old.execute("DROP TABLE version_keys")
    old.execute("DROP INDEX versions_deleted")
    old.execute("UPDATE meta SET value = ? WHERE key = 'schema'", [str(SCHEMA_VERSION - 1)])
    old.commit()
    old.close()
    reopened = roro.Store(root)
    assert reopened.index.dump()["versions"] == []  # rebuilt: nothing indexed yet
    reopened.refresh("p", "r")
    assert reopened.index.dump() == fresh
    assert all_pages(reopened.index, "score", True, 7) == expected
    reopened.close()


def test_a_cold_refresh_leaves_version_keys_to_the_first_read_that_needs_them(repo):
    """A repository indexed in one piece (a cold read, a rebuild) writes no ``version_keys``
    rows: the first sorted page or key list builds them (issue 18: a cold ``models:log`` of a
    long history skips one row per key per version). A save while they are pending, and a
    delete, are in the rows built afterwards."""
    index = repo.project.store.index

    def pending() -> int:
        return index.conn.execute("SELECT keys_pending FROM repositories WHERE project = 'p' "
                                  "AND name = 'r'").fetchone()[0]

    def rows() -> int:
        return index.conn.execute("SELECT count(*) FROM version_keys WHERE project = 'p' AND "
                                  "repository = 'r'").fetchone()[0]

    assert pending() == 1 and rows() == 0  # the fixture's first read was a cold refresh
    image = repo.new_model_image({"w": 1})
    image["score"], image["group"] = 99.5, "new"
    image.save()
    repo.delete_version(7)
    assert pending() == 1
    assert all_pages(index, "score", True, 11) == reference(repo.list_model_images(), "score",
                                                            True)
    assert pending() == 0 and rows() > 0
    assert ("score", True) in index.indexed_keys("p", "r")
    repo.project.store.refresh("p", "other")
    built = index.dump()
    repo.project.store.rebuild_index()
    assert index.dump() == built  # the same rows, whichever way they were built
