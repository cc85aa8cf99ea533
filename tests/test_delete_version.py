"""Deleting a version: a ref-log event, refused while a tag points at the version; `latest` moves to
the highest remaining version and version numbers are never reused."""

from __future__ import annotations

import threading

import pytest
from support.trust_helpers import log_state

from roro import ConflictError, NotFoundError, Project, Store
from roro.check import fsck


@pytest.fixture
def repo(store_url):
    repo = Project("p", store=store_url).get_model_repository("m")
    for i in range(1, 5):
        image = repo.new_image({"v": i})
        image["v"] = i
        image.save(comment=f"version {i}")
    return repo


def versions(repo):
    return [i.version for i in repo.list_model_images()]


def test_delete_a_middle_version(repo):
    assert repo.delete_version(2) is True
    assert versions(repo) == [4, 3, 1]
    assert repo.count() == 3
    with pytest.raises(NotFoundError, match="version 2 .* was deleted") as e:
        repo.get_model_image(2)
    assert e.value.version == 2
    assert repo.get_model(3) == {"v": 3}
    events = repo.project.store.reflog("p", "m").read_all()
    assert (events[-1].type, events[-1]["version"]) == ("delete", 2)
    assert sorted(log_state(repo.project.store, "p", "m").versions) == [1, 3, 4]


def test_deleting_latest_makes_latest_the_next_highest_live_version(repo):
    repo.delete_version(4)
    assert repo.get_tags()["latest"] == 3
    assert repo.get_model() == {"v": 3}
    repo.delete_version(3)
    repo.delete_version(1)
    assert repo.get_model() == {"v": 2}
    assert repo.get_model_image(tag="latest").version == 2


def test_version_numbers_are_never_reused(repo):
    repo.delete_version(4)
    image = repo.new_image("new").save()
    assert image.version == 5
    assert versions(repo) == [5, 3, 2, 1]


def test_deleting_every_version(repo):
    for v in (1, 2, 3, 4):
        repo.delete_version(v)
    assert repo.exists() and repo.count() == 0 and versions(repo) == []
    assert "latest" not in repo.get_tags()
    with pytest.raises(NotFoundError, match="no versions"):
        repo.get_model()
    assert repo.new_image("again").save().version == 5


def test_refused_while_tagged_naming_the_tags(repo):
    repo.add_tag("prod", 3)
    repo.add_tag("staging", 3)
    with pytest.raises(ConflictError) as e:
        repo.delete_version(3)
    assert "'prod', 'staging'" in str(e.value) and "those tags" in str(e.value)
    assert e.value.repository == "m"
    assert versions(repo) == [4, 3, 2, 1]
    repo.remove_tag("prod")
    with pytest.raises(ConflictError, match="'staging'; move or remove that tag"):
        repo.delete_version(3)
    repo.add_tag("staging", 4)
    assert repo.delete_version(3)
    assert repo.get_tags() == {"staging": 4, "latest": 4}
    # the tag history survives the deletion
    assert [(h["tag"], h["version"]) for h in repo.get_tag_history()] == [
        ("prod", 3), ("staging", 3), ("prod", None), ("staging", 4)]


def test_a_deleted_version_cannot_be_tagged(repo):
    repo.delete_version(2)
    with pytest.raises(NotFoundError):
        repo.add_tag("prod", 2)


def test_deleting_twice_and_deleting_what_never_was(repo):
    assert repo.delete_version("2") is True
    assert repo.delete_version(2) is False  # already gone: nothing to do, no new event
    assert len(repo.project.store.reflog("p", "m").read_all()) == 5
    with pytest.raises(NotFoundError, match="version 9 .* does not exist"):
        repo.delete_version(9)
    with pytest.raises(NotFoundError, match="does not exist"):
        repo.project.get_model_repository("nope").delete_version(1)
    with pytest.raises(ValueError):
        repo.delete_version(0)


def test_delete_survives_reopen_and_rebuild(repo):
    repo.delete_version(2)
    before = repo.project.store.index.dump()
    store = Store(repo.project.store.url)
    assert store.rebuild_index().versions == 3
    assert store.index.dump() == before
    assert fsck(store).ok


def test_delete_and_tag_race_exactly_one_wins(store_url):
    """A delete and a tag of the same version, at the same moment, from two stores (two index
    connections): either the version is deleted and untagged, or tagged and not deleted."""
    for trial in range(12):
        repo = Project("p", store=store_url).get_model_repository(f"r{trial}")
        repo.new_image(1).save()
        repo.new_image(2).save()
        barrier = threading.Barrier(2)
        errors: dict[str, Exception] = {}

        def delete(repo=repo, barrier=barrier, errors=errors):
            other = Project("p", store=Store(store_url)).get_model_repository(repo.name)
            barrier.wait()
            try:
                other.delete_version(1)
            except ConflictError as e:
                errors["delete"] = e

        def tag(repo=repo, barrier=barrier, errors=errors):
            other = Project("p", store=Store(store_url)).get_model_repository(repo.name)
            barrier.wait()
            try:
                other.add_tag("prod", 1)
            except NotFoundError as e:
                errors["tag"] = e

        threads = [threading.Thread(target=delete), threading.Thread(target=tag)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        state = log_state(repo.project.store, "p", repo.name)
        if 1 in state.deleted:
            assert state.tags == {} and set(errors) == {"tag"}
        else:
            assert state.tags == {"prod": 1} and set(errors) == {"delete"}
    assert fsck(Store(store_url)).ok
