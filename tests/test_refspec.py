"""One string names a version everywhere (issue 14, defects 1, 9 and 10): the grammar, the API
that takes it, and the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import save_image

import roro
from roro.check import fsck
from roro.cli import main
from roro.errors import AmbiguousRefError, InvalidArgumentError, InvalidNameError, NotFoundError
from roro.refspec import parse_refspec
from roro.writer import append


def cli(store, *args):
    return CliRunner().invoke(main, ["--store", store, *args], catch_exceptions=False)


@pytest.fixture
def repo(tmp_path):
    project = roro.Project("default", str(tmp_path / "store"))
    repo = project.get_model_repository("iris-clf")
    for i in range(1, 4):
        save_image(repo, {"w": i}, comment=f"run {i}", accuracy=0.8 + i / 100)
    repo.add_tag("prod", 2)
    return repo


@pytest.mark.parametrize("text,expected", [
    ("m", (None, None, None)), ("m:latest", (None, None, None)), ("m:3", (3, None, None)),
    ("m:v3", (3, None, None)), ("m:V17", (17, None, None)), ("m:prod", (None, "prod", None)),
    ("m@sha256:abcdef0", (None, None, "sha256:abcdef0")),
])
def test_the_grammar(text, expected):
    ref = parse_refspec(text)
    assert ref.name == "m" and (ref.version, ref.tag, ref.digest) == expected
    assert str(ref) == text


@pytest.mark.parametrize("text", ["m:", "m@sha256:abc", "m@sha256:XYZ1234", "M:1", "m:0",
                                  "m:v0", "m@", "m:1:2", ""])
def test_bad_references_are_invalid_names(text):
    with pytest.raises(InvalidNameError):
        parse_refspec(text)


def test_v_versions_everywhere_in_the_cli(repo):
    store = repo.store.url
    shown = cli(store, "models:show", "iris-clf:v3", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["version"] == 3
    log = cli(store, "models:log", "iris-clf:v2", "--json")
    assert [v["version"] for v in json.loads(log.stdout)["versions"]] == [2, 1]
    diff = cli(store, "models:diff", "iris-clf:v1", "iris-clf:V3", "--json")
    assert json.loads(diff.stdout)["b"]["version"] == 3
    tagged = cli(store, "models:tag", "iris-clf:v1", "staging")
    assert tagged.exit_code == 0 and repo.get_tags()["staging"] == 1


@pytest.mark.parametrize("tag", ["v2", "V17", "v10"])
def test_tags_that_look_like_versions_are_refused(repo, tag):
    result = cli(repo.store.url, "models:tag", "iris-clf:3", tag)
    assert result.exit_code == 2 and "looks like a version" in result.stderr
    with pytest.raises(InvalidNameError):
        repo.add_tag(tag, 3)
    assert tag not in repo.get_tags()


def test_an_old_tag_named_like_a_version_is_ambiguous(repo):
    # A store written before the rule: the tag event is appended directly.
    append(repo.store, "default", "iris-clf",
           lambda row: ("tag", {"tag": "v2", "version": 3, "previous": None}))
    with pytest.raises(AmbiguousRefError, match="ambiguous.*version 2.*tag 'v2'"):
        repo.get_model_image("v2")
    result = cli(repo.store.url, "models:show", "iris-clf:v2")
    assert result.exit_code == 2 and "ambiguous" in result.stderr
    assert repo.get_model_image(tag="v2").version == 3  # the tag, named as such
    assert repo.get_model_image(2).version == 2
    report = fsck(repo.store)
    assert report.ok and any("v2" in w.message for w in report.warnings)
    assert "warning" in cli(repo.store.url, "fsck").stdout
    assert cli(repo.store.url, "models:untag", "iris-clf", "v2").exit_code == 0


def test_digest_prefixes(repo):
    image = repo.get_model_image(2)
    assert repo.get_model_image(image.digest[:15]).version == 2
    assert repo.get_model_image("@" + image.digest[:15]).version == 2
    assert repo.project.get_model_image(f"iris-clf@{image.digest[:20]}").version == 2
    result = cli(repo.store.url, "models:show", f"iris-clf@{image.digest[:14]}", "--json")
    assert json.loads(result.stdout)["version"] == 2
    with pytest.raises(NotFoundError, match="starting with"):
        repo.get_model_image("sha256:" + "0" * 12 if not image.digest.startswith("sha256:0")
                             else "sha256:" + "f" * 12)


def test_an_ambiguous_digest_prefix_lists_the_candidates(repo, monkeypatch):
    # Two images sharing 7 hex digits cannot be made on demand: the index answers as if.
    a, b = repo.get_model_image(1).digest, repo.get_model_image(2).digest
    index = repo.store.index
    monkeypatch.setattr(index, "versions_by_image_prefix", lambda p, n, prefix: [
        {"version": 2, "image": b}, {"version": 1, "image": a}])
    with pytest.raises(AmbiguousRefError, match="ambiguous") as e:
        repo.get_model_image("sha256:abcdef0")
    assert len(e.value.candidates) == 2 and "iris-clf:1" in str(e.value)
    with pytest.raises(InvalidNameError, match="too short"):
        repo.get_model_image("sha256:ab")


def test_api_takes_every_reference(repo):
    assert repo.get_model_image("prod").version == 2
    assert repo.get_model_image("v3").version == 3
    assert repo.get_model_image("3").version == 3
    assert repo.get_model_image("latest").version == 3
    assert repo.get_model("v1") == {"w": 1}
    assert repo.project.get_model("iris-clf:prod") == {"w": 2}
    with pytest.raises(InvalidArgumentError) as e:
        repo.get_model_image(version=3, tag="prod")
    assert isinstance(e.value, roro.RoroError) and isinstance(e.value, ValueError)
    with pytest.raises(InvalidArgumentError):
        repo.list_model_images(limit=-1)


def test_roro_load(repo, monkeypatch):
    monkeypatch.setenv("RORO_STORE", repo.store.url)
    assert roro.load("iris-clf:prod") == {"w": 2}
    assert roro.load("iris-clf") == {"w": 3}
    assert roro.load("iris-clf:v1") == {"w": 1}


def test_image_tags(repo):
    assert repo.get_model_image(3).tags == ["latest"]
    assert repo.get_model_image("prod").tags == ["prod"]
    assert repo.get_model_image(1).tags == []
    assert repo.new_image({"x": 1}).tags == []


def test_did_you_mean_for_repositories_and_tags(repo):
    store = repo.store.url
    result = cli(store, "models:show", "iris-cfl")
    assert result.exit_code == 3 and "did you mean 'iris-clf'" in result.stderr
    result = cli(store, "models:show", "iris-clf:prdo")
    assert result.exit_code == 3
    assert "did you mean 'prod'" in result.stderr and "its tags: prod" in result.stderr
    result = cli(store, "models:untag", "iris-clf", "staging")
    assert result.exit_code == 3 and "its tags: prod" in result.stderr
