"""ModelRepository.search and Project.search through real saves, on every backend."""

from __future__ import annotations

import json
import os

import pytest

from roro import NotFoundError, Project
from roro.errors import QuerySyntaxError
from roro.query import Record, parse
from roro.storage.layout import object_key

ISSUE_EXAMPLE = ("Accuracy > 0.88 and (\"Input-Data-Source\" like 's3://credit%' or "
                 "tag = 'production')")


class Model:
    def __init__(self, w):
        self.w = w


@pytest.fixture
def project(store_url):
    return Project("proj", store_url)


def save(repo, w=0, comment="", **meta):
    img = repo.new_image(Model(w))
    for k, v in meta.items():
        img[k] = v
    return img.save(comment=comment)


@pytest.fixture
def credit(project):
    repo = project.get_model_repository("credit")
    save(repo, 1, "baseline", Accuracy=0.85, **{"Input-Data-Source": "s3://credit/may"})
    save(repo, 2, "june", Accuracy=0.89, **{"Input-Data-Source": "s3://credit/june"})
    save(repo, 3, "other data", Accuracy=0.91, **{"Input-Data-Source": "gs://elsewhere"})
    save(repo, 4, "june again", Accuracy="high", **{"Input-Data-Source": "s3://credit/june"})
    save(repo, 5, "retrain", Accuracy=0.95, **{"Input-Data-Source": "s3://credit-eu/june"})
    repo.add_tag("production", 3)
    return repo


def versions(images):
    return [i.version for i in images]


def test_issue_example(credit):
    # 2: June data above 0.88; 3: not credit data but production; 4: "high" is no number;
    # 5: s3://credit-eu matches 's3://credit%'
    assert versions(credit.search(ISSUE_EXAMPLE)) == [5, 3, 2]


def test_results_are_images_newest_first_with_limit(credit):
    images = credit.search("Accuracy > 0")
    assert versions(images) == [5, 3, 2, 1]
    assert images[0] == credit.get_model_image(version=5)
    assert images[0].get_model().w == 5 and images[0]["Accuracy"] == 0.95
    assert versions(credit.search("Accuracy > 0", limit=2)) == [5, 3]
    assert credit.search("Accuracy > 0", limit=0) == []
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError):
            credit.search("Accuracy > 0", limit=bad)


def test_tags_move_and_latest(credit):
    assert versions(credit.search("tag = 'production'")) == [3]
    assert versions(credit.search("tag = 'latest'")) == [5]
    credit.add_tag("production", 5)
    assert versions(credit.search("tag = 'production'")) == [5]
    assert versions(credit.search("not exists tag")) == [4, 3, 2, 1]
    credit.remove_tag("production")
    assert versions(credit.search("tag = 'production'")) == []
    save(credit, 6)
    assert versions(credit.search("tag = 'latest'")) == [6]


def test_ref_fields(credit):
    assert versions(credit.search("comment like 'june%'")) == [4, 2]
    assert versions(credit.search("version >= 4 or version = 1")) == [5, 4, 1]
    first = credit.get_model_image(version=1)
    assert versions(credit.search(f"timestamp <= '{first['timestamp']}'")) == [1]
    assert versions(credit.search(f"timestamp = '{first['timestamp']}'")) == [1]
    assert versions(credit.search(f"author = '{first['author']}'")) == [5, 4, 3, 2, 1]


def test_search_agrees_with_the_reference_evaluator_on_saved_images(credit):
    tags = credit.get_tags()
    images = credit.list_model_images()
    for text in [ISSUE_EXAMPLE, "Accuracy = 'high'", "not Accuracy > 0.9", "exists Accuracy",
                 "tag != 'production'", "\"Input-Data-Source\" ilike '%JUNE'",
                 "Accuracy in (0.85, 'high')", "comment != 'june' and version < 4"]:
        q = parse(text)
        expected = [i.version for i in images if q.matches(Record.from_image(
            i, [t for t, v in tags.items() if v == i.version]))]
        assert versions(credit.search(q)) == expected, text


def test_project_search_spans_repositories_newest_save_first(project, credit):
    fraud = project.get_model_repository("fraud")
    save(fraud, 1, Accuracy=0.99)
    save(credit, 6, Accuracy=0.5)
    hits = project.search("Accuracy > 0.9")
    assert [(i.repository.name, i.version) for i in hits] == [
        ("fraud", 1), ("credit", 5), ("credit", 3)]
    assert hits[0].get_model().w == 1
    assert len(project.search("Accuracy > 0.9", limit=1)) == 1
    assert [(i.repository.name, i.version) for i in project.search("tag = 'latest'")] == [
        ("credit", 6), ("fraud", 1)]
    assert Project("other", project.store).search("exists Accuracy") == []


def test_search_sees_saves_made_through_another_handle(project, credit):
    other = Project("proj", project.store.url).get_model_repository("credit")
    save(other, 9, Accuracy=0.97)
    assert versions(credit.search("Accuracy > 0.96")) == [6]
    assert versions(project.search("Accuracy > 0.96")) == [6]


def test_missing_repository_and_syntax_errors(project, credit):
    with pytest.raises(NotFoundError):
        project.get_model_repository("nope").search("a = 1")
    with pytest.raises(QuerySyntaxError, match="column 11"):
        credit.search("Accuracy >")


def test_syntax_error_touches_no_store(tmp_path):
    store = tmp_path / "never"
    project = Project("p", str(store))
    with pytest.raises(QuerySyntaxError):
        project.get_model_repository("m").search("a = ")
    with pytest.raises(QuerySyntaxError):
        project.search("a = ")
    assert not store.exists()
    assert project.search("a = 1") == []
    assert not store.exists()


def test_rebuilt_index_gives_the_same_answers(project, credit):
    before = {q: versions(credit.search(q)) for q in [ISSUE_EXAMPLE, "tag = 'latest'",
                                                       "Accuracy = 'high'"]}
    project.store.index.reset()
    after = {q: versions(credit.search(q)) for q in before}
    assert after == before


def test_metadata_string_with_nul_is_saved_intact_and_exists_but_never_compares(project):
    repo = project.get_model_repository("nuls")
    save(repo, 1, a="x\x00y", b="x")
    assert repo.get_model_image()["a"] == "x\x00y"
    assert versions(repo.search("a = 'x'")) == []
    assert versions(repo.search("a like 'x%'")) == []
    assert versions(repo.search("exists a and b = 'x'")) == [1]


def test_json_rows_for_the_cli(credit):
    image = credit.search("tag = 'production'")[0]
    data = image.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert {k: data[k] for k in ("repository", "version", "digest", "comment")} == {
        "repository": "credit", "version": 3, "digest": image.digest, "comment": "other data"}
    assert data["metadata"] == {"Accuracy": 0.91, "Input-Data-Source": "gs://elsewhere"}
    assert data["model"]["type"].endswith("Model") and data["model"]["size"] == image.model_size
    assert data["timestamp"] == image["timestamp"] and data["lineage"] == image.lineage


def test_search_reads_no_model_or_attachment_blob(tmp_path):
    """Search answers from the index: with every blob gone from the store it still works."""
    project = Project("p", str(tmp_path / "store"))
    repo = project.get_model_repository("m")
    img = repo.new_image(Model(1))
    img["a"] = 1
    img.attach("notes.txt", b"hello")
    img.save()
    for digest in (img.manifest["model"]["digest"], img.get_attachment("notes.txt").digest):
        path = tmp_path / "store" / object_key(digest)
        os.chmod(path, 0o644)
        path.unlink()
    assert versions(repo.search("a = 1")) == [1]
    assert versions(project.search("a = 1")) == [1]
