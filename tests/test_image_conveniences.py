"""Images in the daily loop (issue 14): attribute typos (4), numpy and time values (5),
attaching text and folders (14), notebook reprs and DataFrames."""

from __future__ import annotations

import builtins
import datetime

import numpy as np
import pandas as pd
import pytest
from conftest import save_image

import roro
from roro.errors import (
    AttributeNameError,
    InvalidArgumentError,
    InvalidMetadataError,
    MissingDependencyError,
)


@pytest.fixture
def repo(tmp_path):
    return roro.Project("default", str(tmp_path / "store")).get_model_repository("iris-clf")


# -- 4: attribute typos ---------------------------------------------------------------------------
@pytest.mark.parametrize("typo,meant", [("coment", "comment"), ("verison", "version"),
                                        ("atach", "attach"), ("dowload", "download")])
def test_a_typo_of_an_attribute_is_refused(repo, typo, meant):
    img = repo.new_image({"w": 1})
    with pytest.raises(AttributeNameError, match=f"did you mean '{meant}'"):
        setattr(img, typo, "x")
    assert typo not in img.get_metadata()
    img[typo] = "x"  # the explicit way still stores it
    assert img.get_metadata()[typo] == "x"


def test_metadata_attributes_keep_working(repo):
    img = repo.new_image({"w": 1})
    img.Accuracy = 0.89
    img.learning_rate = 0.1
    img.n_estimators = 100
    with pytest.raises(AttributeNameError):
        img.comment = "x"  # a real attribute
    assert isinstance(AttributeNameError("x"), (roro.RoroError, AttributeError))
    img.save()
    assert img.Accuracy == 0.89 and img["n_estimators"] == 100


# -- 5: numpy and times ---------------------------------------------------------------------------
def test_numpy_values_are_stored_as_json(repo):
    img = repo.new_image({"w": 1})
    img["f64"] = np.float64(0.5)
    img["i64"] = np.int64(5)
    img["f32"] = np.float32(1.5)
    img["flag"] = np.bool_(True)
    img["zero_d"] = np.array(3)
    img["vector"] = np.arange(3)
    img["nested"] = {"C": np.float64(0.01), "layers": [np.int32(64), np.int32(32)]}
    img["when"] = pd.Timestamp("2026-06-01T10:00:00Z")
    img["day"] = datetime.date(2026, 6, 1)
    img["missing"] = pd.NaT
    img.save()
    meta = repo.get_model_image().get_metadata()
    assert meta["f64"] == 0.5 and meta["i64"] == 5 and type(meta["i64"]) is int
    assert meta["f32"] == 1.5 and meta["flag"] is True and meta["zero_d"] == 3
    assert meta["vector"] == [0, 1, 2]
    assert meta["nested"] == {"C": 0.01, "layers": [64, 32]}
    assert meta["when"] == "2026-06-01T10:00:00+00:00" and meta["day"] == "2026-06-01"
    assert meta["missing"] is None
    assert len(repo.search("i64 = 5 and flag = true")) == 1


def test_bad_numpy_values_are_still_refused(repo):
    img = repo.new_image({"w": 1})
    with pytest.raises(InvalidMetadataError, match="NaN"):
        img["x"] = np.float32("nan")
    with pytest.raises(InvalidMetadataError, match="64-bit"):
        img["x"] = np.uint64(2**63 + 1)
    with pytest.raises(InvalidMetadataError, match="not a JSON value"):
        img["x"] = object()


# -- 14: text and folders ----------------------------------------------------------------------------
def test_attach_text_and_folders(repo, tmp_path):
    (tmp_path / "out" / "plots" / "pr").mkdir(parents=True)
    (tmp_path / "out" / "plots" / "roc.csv").write_text("fpr,tpr\n")
    (tmp_path / "out" / "plots" / "pr" / "curve.csv").write_text("p,r\n")
    img = repo.new_image({"w": 1})
    img.attach("labels.csv", text="a,b\n")
    added = img.attach_dir("plots", tmp_path / "out" / "plots")
    assert [a.name for a in added] == ["plots/pr/curve.csv", "plots/roc.csv"]
    with pytest.raises(InvalidArgumentError, match="attach_dir"):
        img.attach("plots", str(tmp_path / "out" / "plots"))
    with pytest.raises(roro.RoroError, match="text="):
        img.attach("x.csv", "a,b\n")
    with pytest.raises(InvalidArgumentError):
        img.attach("x.csv", b"1", text="2")
    img.save()
    saved = repo.get_model_image()
    assert {a.name: a.read() for a in saved.get_attachments()} == {
        "labels.csv": b"a,b\n", "plots/pr/curve.csv": b"p,r\n", "plots/roc.csv": b"fpr,tpr\n"}


# -- notebooks and pandas ----------------------------------------------------------------------------
def test_reprs_and_dataframes(repo):
    for i in range(1, 4):
        save_image(repo, {"w": i}, comment=f"run <{i}>", accuracy=0.8 + i / 100,
                   params={"C": 10.0 ** -i, "penalty": "l2"}, version="v-key")
    repo.add_tag("prod", 2)
    images = repo.list_model_images()
    assert isinstance(images, list) and len(images) == 3 and images[0].version == 3
    assert [i.version for i in images[1:]] == [2, 1]
    frame = images.to_pandas()
    assert list(frame["version"]) == [3, 2, 1]
    assert frame.loc[1, "params.C"] == 0.01 and frame.loc[1, "tags"] == ["prod"]
    assert frame.loc[0, "metadata.version"] == "v-key"  # clashes with the fixed column
    assert str(frame["timestamp"].dtype).startswith("datetime64")
    assert len(repo.search("accuracy > 0.815").to_pandas()) == 2
    html = repo.get_model_image(2)._repr_html_()
    assert "iris-clf:v2" in html and "run &lt;2&gt;" in html and "prod" in html
    assert "<table>" in repo._repr_html_() and "prod→v2" in repo._repr_html_()
    assert "iris-clf" in repo.project._repr_html_()
    assert "3 images" in images._repr_html_()


def test_to_pandas_without_pandas_names_it(repo, monkeypatch):
    save_image(repo, {"w": 1})
    real_import = builtins.__import__

    def no_pandas(name, *args, **kw):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(MissingDependencyError, match="pip install pandas"):
        repo.list_model_images().to_pandas()
