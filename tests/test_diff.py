"""ModelImage.diff: metadata, attachments (by digest), model (by digest), comment, lineage."""

from __future__ import annotations

import json

import pytest
from conftest import save_image as save

import roro.lineage
from roro import Project, RoroError
from roro.diff import ImageDiff


class Model:
    def __init__(self, w):
        self.w = w


@pytest.fixture
def repo(store_url):
    return Project("proj", store_url).get_model_repository("credit")


def test_everything_that_can_change(repo):
    a = save(repo, Model(1), "first", {"same.txt": b"s", "changed.txt": b"old", "gone.txt": b"g"},
             kept=1, changed=0.5, int_to_float=1, bool_to_int=True, removed="x", nested={"a": [1]})
    b = save(repo, Model(2), "second", {"same.txt": b"s", "changed.txt": b"new", "new.txt": b"n"},
             kept=1, changed=0.6, int_to_float=1.0, bool_to_int=1, added=None, nested={"a": [1]})
    d = a.diff(b)
    assert isinstance(d, ImageDiff)
    assert d.metadata_added == {"added": None}
    assert d.metadata_removed == {"removed": "x"}
    assert d.metadata_changed == {"bool_to_int": (True, 1), "changed": (0.5, 0.6),
                                  "int_to_float": (1, 1.0)}
    att = {x.name: x for x in b.get_attachments()}
    old = {x.name: x for x in a.get_attachments()}
    assert d.attachments_added == [{"name": "new.txt", "digest": att["new.txt"].digest, "size": 1}]
    assert d.attachments_removed == [{"name": "gone.txt", "digest": old["gone.txt"].digest,
                                      "size": 1}]
    assert d.attachments_changed == [{
        "name": "changed.txt", "a": {"digest": old["changed.txt"].digest, "size": 3},
        "b": {"digest": att["changed.txt"].digest, "size": 3}}]
    assert not d.model_identical
    assert d.model_a["digest"] == a.manifest["model"]["digest"]
    assert d.model_b["digest"] == b.manifest["model"]["digest"]
    assert d.comment_changed and (d.comment_a, d.comment_b) == ("first", "second")
    assert not d.identical
    assert d.a == {"repository": "credit", "version": 1, "digest": a.digest,
                   "timestamp": a["timestamp"], "author": a["author"]}
    assert d.b["version"] == 2


def test_same_model_and_content_is_identical(repo):
    a = save(repo, Model(1), "c", {"f.txt": b"x"}, k=1)
    b = save(repo, Model(1), "c", {"f.txt": b"x"}, k=1)
    assert a.digest != b.digest  # different timestamps, different manifests
    d = a.diff(b)
    assert d.model_identical and d.identical and not d.metadata and not d.comment_changed
    assert d.to_dict()["identical"] is True
    assert a.diff(a).identical
    assert "(no differences)" in d.format()


def test_model_identical_but_metadata_differs(repo):
    a = save(repo, Model(1), k=1)
    b = save(repo, Model(1), k=2)
    d = a.diff(b)
    assert d.model_identical and not d.identical
    assert b.diff(a).metadata_changed == {"k": (2, 1)}  # direction: a is the receiver


def test_to_dict_is_plain_json(repo):
    a = save(repo, Model(1), "first", {"f.txt": b"x"}, acc=0.8, src="may")
    b = save(repo, Model(2), "second", {"f.txt": b"y", "g.txt": b"z"}, acc=0.9, new=[1, 2])
    data = a.diff(b).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"a", "b", "identical", "model", "metadata", "attachments", "comment",
                         "metadata_paths", "lineage", "contract"}
    assert data["metadata"] == {"added": {"new": [1, 2]}, "removed": {"src": "may"},
                                "changed": {"acc": {"a": 0.8, "b": 0.9}}}
    assert data["model"]["identical"] is False
    assert data["model"]["a"]["type"].endswith("Model")
    assert [x["name"] for x in data["attachments"]["added"]] == ["g.txt"]
    assert [x["name"] for x in data["attachments"]["changed"]] == ["f.txt"]
    assert data["comment"] == {"changed": True, "a": "first", "b": "second"}


def test_format_lists_each_change(repo):
    a = save(repo, Model(1), "first", {"f.txt": b"x"}, acc=0.8, src="may")
    b = save(repo, Model(2), "second", {"g.txt": b"z"}, acc=0.9)
    text = a.diff(b).format()
    assert text.splitlines()[0] == "diff credit:1 credit:2"
    for line in ["~ metadata acc: 0.8 → 0.9", '- metadata src: "may"', "+ attachment g.txt (1 B)",
                 "- attachment f.txt (1 B)", '~ comment: "first" → "second"']:
        assert line in text.splitlines()
    assert any(x.startswith("~ model: sha256:") for x in text.splitlines())


def test_diff_across_repositories(repo):
    other = repo.project.get_model_repository("fraud")
    a = save(repo, Model(1), k=1)
    b = save(other, Model(1), k=1)
    d = a.diff(b)
    assert d.identical and (d.a["repository"], d.b["repository"]) == ("credit", "fraud")


def test_unsaved_images_cannot_be_diffed(repo):
    a = save(repo, Model(1))
    draft = repo.new_image(Model(1))
    with pytest.raises(RoroError, match="not saved"):
        a.diff(draft)
    with pytest.raises(RoroError, match="not saved"):
        draft.diff(a)


def test_lineage_differences_are_reported_but_do_not_break_identity(repo, monkeypatch):
    a = save(repo, Model(1))
    img = repo.new_image(Model(1))
    monkeypatch.setattr(roro.lineage, "git_state",
                        lambda *args, **kwargs: {"commit": "f" * 40, "dirty": True})
    b = img.save()
    d = a.diff(b)
    assert d.identical
    assert "git" in d.lineage.added or "git" in d.lineage.changed
