"""`roro index --rebuild` (Store.rebuild_index) answers exactly what the incremental index answers,
and both agree with the fold of the ref logs, over random histories (hypothesis)."""

from __future__ import annotations

import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.trust_helpers import log_state

from roro import ConflictError, NotFoundError, Project, Store
from roro.check import gc
from roro.refs import Index

# gc with a grace period below the production floor (nobody else writes here)
pytestmark = pytest.mark.usefixtures("no_gc_floor")

REPOS = [("p", "a"), ("p", "b"), ("q", "a")]
TAGS = ["prod", "staging"]

ops = st.lists(st.one_of(
    st.tuples(st.just("save"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("tag"), st.integers(0, 2), st.integers(0, 1), st.integers(1, 8)),
    st.tuples(st.just("untag"), st.integers(0, 2), st.integers(0, 1)),
    st.tuples(st.just("delete"), st.integers(0, 2), st.integers(1, 8)),
    st.tuples(st.just("gc")),
), max_size=25)


def run(store: Store, operations) -> None:
    for op in operations:
        if op[0] == "gc":
            gc(store, grace_seconds=0)
            continue
        project, name = REPOS[op[1]]
        repo = Project(project, store=store).get_model_repository(name)
        try:
            if op[0] == "save":
                image = repo.new_image({"model": op[2]})  # equal models share a blob
                image["n"] = op[2]
                if op[2] % 2:
                    image.attach("x.txt", b"same attachment")
                image.save(comment=f"save {op[2]}")
            elif op[0] == "tag":
                repo.add_tag(TAGS[op[2]], op[3])
            elif op[0] == "untag":
                repo.remove_tag(TAGS[op[2]])
            elif op[0] == "delete":
                repo.delete_version(op[2])
        except (NotFoundError, ConflictError):
            pass  # refused by the current state: part of the history being tested


def check_rebuild(store: Store, tmp_path) -> None:
    for project, name in REPOS:
        store.refresh(project, name)
    incremental = store.index.dump()

    # a brand-new index file, filled from the store alone
    fresh = Index(str(tmp_path / f"fresh-{id(store)}.sqlite3"))
    fresh.bind_store(store.store_id())
    for project, name in REPOS:
        if store.is_initialized():
            fresh.refresh(store.reflog(project, name), store.objects)  # no remembered manifests
    assert fresh.dump() == incremental
    fresh.close()

    # a new process (no manifests remembered from its own saves) rebuilding the same index file
    other = Store(store.url)
    report = other.rebuild_index()
    assert report.ok, report.failed
    assert other.index.dump() == incremental
    other.close()

    for project, name in REPOS:  # and the index says what the log says
        events = store.reflog(project, name).read_all() if store.is_initialized() else []
        if not events:
            continue
        state = log_state(store, project, name)
        idx = store.index
        assert [r["version"] for r in idx.versions(project, name)] == sorted(state.versions,
                                                                             reverse=True)
        assert idx.tags(project, name) == state.tags
        assert [(h["tag"], h["version"], h["previous"]) for h in idx.tag_history(project, name)] \
            == [(m.tag, m.version, m.previous) for m in state.tag_history]


def test_rebuilt_index_equals_incremental(store_factory, tmp_path):
    @settings(max_examples=examples(store_factory, 25, 4), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
    @given(operations=ops)
    def run(operations):
        _test_rebuilt_index_equals_incremental(store_factory, tmp_path, operations)

    run()


def _test_rebuilt_index_equals_incremental(store_factory, tmp_path, operations):
    store = Store(store_factory())
    run(store, operations)
    check_rebuild(store, tmp_path)
    store.close()


def test_rebuild_over_many_repositories_and_a_broken_one(store_url, tmp_path):
    store = Store(store_url)
    run(store, [("save", r, n) for r in range(3) for n in range(3)]
        + [("tag", 0, 0, 2), ("delete", 1, 1), ("tag", 2, 1, 3), ("untag", 2, 1)])
    before = store.index.dump()
    # A repository with a broken log is left out, named; the others are rebuilt.
    Project("p", store=store).get_model_repository("broken").new_image(1).save()
    store.backend.put("refs/p/broken/log/0000000003.json", b"{}")
    report = store.rebuild_index()
    assert list(report.failed) == ["p/broken"] and "event 2 is missing" in report.failed["p/broken"]
    assert (report.projects, report.repositories, report.versions) == (2, 3, 8)
    assert not report.ok and report.to_dict()["ok"] is False
    assert store.index.dump() == before


def test_rebuild_of_an_uninitialized_store(store_url):
    report = Store(store_url).rebuild_index()
    assert report.ok and report.repositories == 0


def test_rebuild_next_to_writers_never_breaks_a_log(store_url):
    """Regression: rebuilding by emptying the index and then refreshing repository by repository
    left a window in which a writer that had just refreshed read no tags, and appended a tag
    event with the wrong 'previous' (a log fsck then reports as broken). The rebuild now swaps
    each repository's rows in one transaction, never behind the log."""
    import threading

    from roro.check import fsck
    store = Store(store_url)
    names = [f"r{i}" for i in range(6)]
    for name in names:
        repo = Project("p", store=store).get_model_repository(name)
        for i in range(3):
            repo.new_image(i).save()
        repo.add_tag("prod", 1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        try:
            repo = Project("p", store=Store(store_url)).get_model_repository("r5")
            n = 0
            while not stop.is_set():
                repo.add_tag("prod", 1 + n % 3)
                n += 1
        except BaseException as e:  # surfaced below
            errors.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    rebuilder = Store(store_url)
    try:
        for _ in range(15):
            assert rebuilder.rebuild_index().ok
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[0]
    report = fsck(Store(store_url))
    assert report.ok, [str(p) for p in report.problems]
