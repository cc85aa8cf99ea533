"""Model formats beside cloudpickle (issue 15): each format with its real library, the load gate,
summaries, contracts, and manifest version 2 next to readable version 1 manifests."""

from __future__ import annotations

import json
import os
import pickle
import sys
import warnings

import cloudpickle
import numpy as np
import onnx
import pandas as pd
import pytest
import safetensors.numpy
import skops.io
from conftest import save_image
from onnx import TensorProto, helper
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import roro
from roro import writer
from roro.check import fsck
from roro.errors import ConfigError, ContractError, TrustError
from roro.formats import FormatError, MissingDependencyError
from roro.formats import contract as contract_module
from roro.objects.manifest import FORMAT_V1

WEIGHTS = {"encoder.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
           "encoder.bias": np.array([1.5, -2.0, 3.25], dtype=np.float64),
           "steps": np.array([7], dtype=np.int64),
           "mask": np.array([[True, False]], dtype=np.bool_)}


@pytest.fixture
def repo(store_url):
    return roro.Project("p", store_url).get_model_repository("m")


@pytest.fixture
def real_repo(real_store_url):
    """A repository on a folder store and on SeaweedFS."""
    return roro.Project("p", real_store_url).get_model_repository("m")


@pytest.fixture
def folder_repo(tmp_path):
    return roro.Project("p", str(tmp_path / "store")).get_model_repository("m")


def onnx_model():
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 2])
    w = helper.make_tensor("W", TensorProto.FLOAT, [3, 2], [0.5] * 6)
    graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class _NoUnpickling(pickle.Unpickler):
    def __init__(self, *args, **kwargs):
        raise AssertionError("an unpickler was used")


#: While True, the audit hook below makes any unpickler that resolves a global raise: the C
#: unpickler too, however it was imported (audit hooks cannot be removed, hence the switch).
_UNPICKLING_FORBIDDEN = {"on": False}


def _audit(event: str, args: tuple) -> None:
    if event == "pickle.find_class" and _UNPICKLING_FORBIDDEN["on"]:
        raise AssertionError(f"pickle was used: it looked up {args[0]}.{args[1]}")


sys.addaudithook(_audit)


def _forbid_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for module in (pickle, cloudpickle):
        for name in ("load", "loads"):
            monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(pickle, "Unpickler", _NoUnpickling)
    monkeypatch.setitem(_UNPICKLING_FORBIDDEN, "on", True)


def _same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_safetensors_load_runs_no_pickle_at_all(repo, monkeypatch):
    pickled = repo.new_image(WEIGHTS).save("as cloudpickle")
    safe = repo.new_image(WEIGHTS, format="safetensors").save("as safetensors")
    assert (pickled.model_format, safe.model_format) == ("cloudpickle", "safetensors")
    _forbid_unpickling(monkeypatch)
    _same(repo.get_model(version=safe.version), WEIGHTS)
    with pytest.raises(AssertionError, match="pickle was used"):  # the trap does work
        repo.get_model(version=pickled.version)
    with pytest.raises(AssertionError, match="pickle was used: it looked up numpy"):
        pickle._loads(pickled.open_model().read())  # so does the audit hook, for any unpickler
    monkeypatch.undo()
    _same(repo.get_model(version=pickled.version), WEIGHTS)


def test_safetensors_bytes_are_what_the_library_reads_and_writes(folder_repo, tmp_path):
    image = folder_repo.new_image(WEIGHTS, format="safetensors").save()
    path = image.download(tmp_path / "w.safetensors").model
    _same(safetensors.numpy.load_file(path), WEIGHTS)  # the library reads roro's file
    theirs = tmp_path / "theirs.safetensors"
    safetensors.numpy.save_file(WEIGHTS, str(theirs), metadata={"source": "trainer"})
    saved = folder_repo.save_file(theirs, format="safetensors", comment="from a file")
    assert saved.model_format == "safetensors" and saved.model_size == theirs.stat().st_size
    assert saved.open_model().read() == theirs.read_bytes()  # stored as it is
    assert saved.summary["metadata"] == {"source": "trainer"}  # the header's metadata kept
    _same(saved.get_model(), WEIGHTS)


def test_safetensors_summary_and_subset(repo):
    image = repo.new_image(WEIGHTS, format="safetensors").save()
    again = repo.get_model_image()
    assert again.summary == {
        "tensors": [{"name": "encoder.bias", "dtype": "F64", "shape": [3]},
                    {"name": "encoder.weight", "dtype": "F32", "shape": [3, 4]},
                    {"name": "mask", "dtype": "BOOL", "shape": [1, 2]},
                    {"name": "steps", "dtype": "I64", "shape": [1]}],
        "parameters": 18, "metadata": {}}
    part = image.get_model(tensors=["steps", "encoder.bias"])
    assert sorted(part) == ["encoder.bias", "steps"]
    _same(part, {k: WEIGHTS[k] for k in part})
    with pytest.raises(FormatError, match="no tensor 'nope'"):
        image.get_model(tensors=["nope"])
    pickled = repo.new_image(WEIGHTS).save()
    with pytest.raises(FormatError, match="safetensors model"):
        pickled.get_model(tensors=["steps"])


def test_safetensors_refuses_what_it_cannot_hold(folder_repo):
    with pytest.raises(FormatError, match="dict of numpy arrays"):
        folder_repo.new_image([1, 2], format="safetensors").save()
    with pytest.raises(FormatError, match="dtype object"):
        folder_repo.new_image({"x": np.array([None])}, format="safetensors").save()
    big_endian = {"x": np.arange(4, dtype=">i4"), "t": np.arange(6.0).reshape(2, 3).T}
    image = folder_repo.new_image(big_endian, format="safetensors").save()
    _same(image.get_model(), {"x": np.arange(4, dtype="<i4"),
                              "t": np.ascontiguousarray(big_endian["t"])})


def test_onnx_round_trip_and_summary(repo):
    model = onnx_model()
    image = repo.new_image(model, format="onnx").save()
    loaded = repo.get_model()
    assert isinstance(loaded, onnx.ModelProto)
    assert loaded.SerializeToString() == model.SerializeToString()
    summary = repo.get_model_image().summary
    assert summary["inputs"] == [{"name": "X", "dtype": "FLOAT", "shape": ["N", 3]}]
    assert summary["outputs"] == [{"name": "Y", "dtype": "FLOAT", "shape": ["N", 2]}]
    assert summary["initializers"] == 1 and summary["parameters"] == 6
    assert summary["opset"] == [{"domain": "ai.onnx", "version": 17}]
    assert image.contract["libraries"] == {"onnx": onnx.__version__}


def test_auto_picks_the_safe_format_and_falls_back_to_cloudpickle(real_repo, tmp_path):
    folder_repo = real_repo
    path = tmp_path / "model.onnx"
    onnx.save_model(onnx_model(), str(path))
    formats = [folder_repo.new_image(m, format="auto").save().model_format
               for m in (WEIGHTS, onnx_model(), {"a": 1}, LogisticRegression(), path)]
    assert formats == ["safetensors", "onnx", "cloudpickle", "cloudpickle", "onnx"]
    assert folder_repo.get_model().SerializeToString() == path.read_bytes()  # a .onnx file
    with pytest.raises(FormatError, match="unknown model format pickle5"):
        folder_repo.new_image(WEIGHTS, format="pickle5")


def test_skops_loads_only_types_the_caller_trusts(repo, tmp_path, monkeypatch):
    x = np.random.default_rng(0).random((20, 2))
    clf = DecisionTreeClassifier(random_state=0).fit(x, np.arange(20) % 2)
    image = repo.new_image(clf, format="skops").save()
    needed = image.summary["untrusted_types"]
    assert needed == ["sklearn.tree._tree.Tree"]
    with pytest.raises(TrustError, match=r"not trusted: sklearn\.tree\._tree\.Tree") as e:
        repo.get_model()
    assert e.value.format == "skops" and e.value.version == image.version
    loaded = repo.get_model(trust={"skops_types": needed})
    assert np.array_equal(loaded.predict(x), clf.predict(x))
    # from roro.yml; a later list can only narrow it (lists intersect)
    (tmp_path / "roro.yml").write_text("trust:\n  skops_types: [sklearn.tree._tree.Tree]\n")
    assert np.array_equal(repo.get_model().predict(x), clf.predict(x))
    with pytest.raises(TrustError):
        repo.get_model(trust={"skops_types": ["something.Else"]})


def test_file_format_stores_bytes_as_they_are(real_repo, tmp_path):
    folder_repo = real_repo
    blob = b"GGUF" + bytes(range(256)) * 10
    image = folder_repo.new_image(blob, format="file").save()
    with folder_repo.get_model() as f:
        assert f.read() == blob
    path = tmp_path / "model.gguf"
    path.write_bytes(blob)
    saved = folder_repo.save_file(path)  # the default format of a file
    assert saved.model_format == "file" and saved.model_type == "file"
    assert saved.digest != image.digest and saved.manifest["model"]["digest"] == \
        image.manifest["model"]["digest"]  # same bytes, one object
    assert "python" not in saved.manifest["model"] and "contract" not in saved.manifest
    (tmp_path / "out").mkdir()
    assert saved.download(tmp_path / "out").model.endswith("m-v2.bin")


def test_save_file_checks_the_format_without_loading(folder_repo, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 100)
    for fmt in ("safetensors", "onnx", "skops", "cloudpickle"):
        with pytest.raises(FormatError):
            folder_repo.save_file(junk, format=fmt)
    short = tmp_path / "short.safetensors"
    data = safetensors.numpy.save({"a": np.zeros(4)})
    short.write_bytes(data[:-8])  # the tensors no longer add up
    with pytest.raises(FormatError, match="cover"):
        folder_repo.save_file(short, format="safetensors")
    assert not folder_repo.exists()  # nothing was published
    assert not os.listdir(folder_repo.store.backend.tempdir())  # nor left in the spool


def test_trust_sources_tighten_never_loosen(folder_repo, tmp_path, monkeypatch):
    image = save_image(folder_repo, {"w": 1})
    config = tmp_path / "config" / "roro"
    config.mkdir(parents=True)
    (config / "config.yml").write_text("trust:\n  pickle: deny\n")
    with pytest.raises(TrustError, match=r"pickle is 'deny' \(set by .*config\.yml\)") as e:
        image.get_model(trust={"pickle": "allow"})  # a later source cannot loosen it
    assert e.value.setting == "pickle" and e.value.version == 1
    assert e.value.format == "cloudpickle" and "m:1" in str(e.value)
    (config / "config.yml").write_text("trust: {pickle: allow}\n")
    assert image.get_model() == {"w": 1}
    for value in ("deny", "pickle=deny", '{"pickle": "deny"}'):
        monkeypatch.setenv("RORO_TRUST", value)
        with pytest.raises(TrustError, match="set by RORO_TRUST"):
            image.get_model()
    monkeypatch.setenv("RORO_TRUST", "pickle=signed")
    with pytest.raises(TrustError, match="the version is not signed"):
        image.get_model()
    monkeypatch.delenv("RORO_TRUST")
    (tmp_path / "roro.yml").write_text("trust:\n  pickle: deny\n")
    with pytest.raises(TrustError, match="roro.yml"):
        image.get_model()
    (tmp_path / "roro.yml").write_text("trust:\n  pickle: maybe\n")
    with pytest.raises(ConfigError, match="one of allow, signed, deny"):
        image.get_model()
    (tmp_path / "roro.yml").write_text("trust:\n  pickles: deny\n")
    with pytest.raises(ConfigError, match="unknown trust setting 'pickles'"):
        image.get_model()


def test_a_refused_load_reads_no_byte(folder_repo, monkeypatch):
    image = save_image(folder_repo, {"w": 1})
    opened = []
    monkeypatch.setattr(type(folder_repo.store.objects), "open_verified",
                        lambda self, d: opened.append(d))
    with pytest.raises(TrustError):
        image.get_model(trust={"pickle": "deny"})
    assert opened == []


def test_contract_libraries_and_input_schema(folder_repo, monkeypatch):
    x = np.random.default_rng(1).random((8, 3))
    model = LogisticRegression().fit(x, np.arange(8) % 2)
    image = folder_repo.new_image(model, input_example=x).save()
    libraries = image.contract["libraries"]
    import sklearn
    assert libraries["scikit-learn"] == sklearn.__version__
    assert libraries["numpy"] == np.__version__ and "torch" not in libraries
    assert "torch" not in sys.modules  # never imported to find out
    assert image.input_schema == {"kind": "ndarray", "dtype": "float64", "shape": [None, 3],
                                  "example": x[:3].tolist()}
    assert image.input_example == x[:3].tolist()
    image.check_input(np.zeros((100, 3)))
    with pytest.raises(ContractError, match="dtype float32 .* axis 1 has size 4"):
        image.check_input(np.zeros((2, 4), dtype=np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        folder_repo.get_model()  # same versions: no warning
    real = contract_module.installed_version
    monkeypatch.setattr(contract_module, "installed_version",
                        lambda name: "0.1.0" if name == "scikit-learn" else real(name))
    with pytest.warns(roro.RoroWarning, match=rf"scikit-learn {sklearn.__version__} and is "
                                              rf"loaded with 0\.1\.0"):
        folder_repo.get_model()


def test_dataframe_schema_and_diff_of_contracts(folder_repo):
    df = pd.DataFrame({"age": [30, 40], "income": [1.0, 2.0]})
    a = folder_repo.new_image({"m": 1}, input_example=df).save()
    assert a.input_example == {"age": [30, 40], "income": [1.0, 2.0]}
    a.check_input(df.iloc[:1])
    unkept = folder_repo.new_image({"m": 0}, input_example=np.full((2, 2), np.nan)).save()
    assert unkept.input_example is None and unkept.input_schema["dtype"] == "float64"
    changed = df.assign(age=df["age"].astype("float64"), debt=[0.1, 0.2])
    with pytest.raises(ContractError, match="column 'age' has dtype float64.*'debt' is not in"):
        a.check_input(changed)
    b = folder_repo.new_image({"m": 2}, input_example=changed).save()
    d = a.diff(b)
    assert d.contract.added == {"input column debt": "float64"}
    assert d.contract.changed == {"input column age": ("int64", "float64")}
    text = d.format()
    assert "+ contract input column debt" in text and "~ contract input column age" in text
    with pytest.raises(roro.InvalidMetadataError, match="input_example"):
        folder_repo.new_image({"m": 3}, input_example=[1, 2])


def test_search_by_format(folder_repo):
    folder_repo.new_image(WEIGHTS, format="safetensors").save()
    save_image(folder_repo, {"w": 1})
    folder_repo.new_image(onnx_model()).save()
    assert [i.version for i in folder_repo.search("format = 'safetensors'")] == [1]
    assert [i.version for i in folder_repo.search("format = 'cloudpickle'")] == [3, 2]
    assert [i.version for i in folder_repo.search("format != 'cloudpickle'")] == [1]


def test_version_1_manifests_stay_readable(folder_repo):
    store = folder_repo.store
    store.ensure_initialized()
    spooled = store.objects.spool_writer(lambda w: cloudpickle.dump({"old": True}, w))
    store.objects.put_spooled(spooled)
    manifest = {"format": FORMAT_V1,
                "model": {"digest": spooled.digest, "size": spooled.size,
                          "serializer": "cloudpickle", "type": "builtins.dict",
                          "python": "3.11.7", "cloudpickle": cloudpickle.__version__},
                "attachments": [], "metadata": {"a": 1}, "timestamp": "2025-01-01T00:00:00Z",
                "author": "old", "comment": "written by the first release"}
    writer.publish(store, "p", "m", manifest)
    image = folder_repo.get_model_image()
    assert image.manifest == manifest and image.model_format == "cloudpickle"
    assert image.summary is None and image.contract is None
    assert image.get_model() == {"old": True}
    assert image.pickle_imports == []
    assert [i.version for i in folder_repo.search("format = 'cloudpickle'")] == [1]
    assert fsck(store, read_data=True).ok


def test_summary_objects_are_checked_synced_and_kept(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    repo = roro.Project("p", src).get_model_repository("m")
    image = repo.new_image(WEIGHTS, format="safetensors").save()
    summary = image.manifest["model"]["summary"]["digest"]
    assert roro.sync(src, dst).ok
    copied = roro.Project("p", dst).get_model_repository("m").get_model_image()
    assert copied.summary == image.summary
    assert fsck(roro.Store(dst), read_data=True).ok
    roro.Store(src).objects.delete(summary)
    report = fsck(roro.Store(src))
    assert [(p.kind, p.object) for p in report.problems] == [("missing-object", "model summary")]


def test_a_missing_library_names_the_extra(folder_repo, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    image = folder_repo.new_image(WEIGHTS, format="safetensors").save()  # writing needs numpy only
    with pytest.raises(MissingDependencyError, match=r"pip install 'roro\[safetensors\]'"):
        image.get_model()


def test_manifest_v2_shape_is_checked(folder_repo):
    image = folder_repo.new_image(WEIGHTS, format="safetensors").save()
    manifest = image.manifest
    assert manifest["format"] == "roro.image/2"
    assert set(manifest["model"]) == {"format", "digest", "size", "type", "summary"}
    from roro.objects.manifest import check_manifest
    for broken in ({**manifest["model"], "format": "../x"}, {**manifest["model"], "size": -1},
                   {**manifest["model"], "summary": {"digest": "sha256:x", "size": 1}}):
        with pytest.raises(roro.IntegrityError, match="not a valid image manifest"):
            check_manifest({**manifest, "model": broken}, "sha256:" + "0" * 64)
    json.dumps(manifest)


def test_save_file_in_every_format_stores_it_as_it_is(real_repo, tmp_path):
    """``save_file`` (what models:save does) with each format's own library writing the file:
    the bytes are stored unchanged, never loaded at save, and load back with that library."""
    x = np.random.default_rng(2).random((20, 2))
    clf = DecisionTreeClassifier(random_state=0).fit(x, np.arange(20) % 2)
    files = {"safetensors": tmp_path / "w.safetensors", "onnx": tmp_path / "m.onnx",
             "skops": tmp_path / "c.skops", "cloudpickle": tmp_path / "m.pkl",
             "file": tmp_path / "m.gguf"}
    safetensors.numpy.save_file(WEIGHTS, str(files["safetensors"]), metadata={"step": "9"})
    onnx.save_model(onnx_model(), str(files["onnx"]))
    skops.io.dump(clf, str(files["skops"]))
    files["cloudpickle"].write_bytes(cloudpickle.dumps({"w": 3}))
    files["file"].write_bytes(b"GGUF\x03\x00" + bytes(1000))
    for fmt, path in files.items():
        image = real_repo.save_file(path, format=fmt, metadata={"from": fmt})
        assert image.model_format == fmt and image["from"] == fmt
        with image.open_model() as f:
            assert f.read() == path.read_bytes(), fmt
    images = {i.model_format: i for i in real_repo.list_model_images()}
    _same(images["safetensors"].get_model(), WEIGHTS)
    assert images["safetensors"].summary["metadata"] == {"step": "9"}
    assert images["onnx"].get_model().SerializeToString() == files["onnx"].read_bytes()
    assert images["onnx"].summary["initializers"] == 1
    trusted = images["skops"].summary["untrusted_types"]
    loaded = images["skops"].get_model(trust={"skops_types": trusted})
    assert np.array_equal(loaded.predict(x), clf.predict(x))
    assert images["cloudpickle"].get_model() == {"w": 3}
    assert images["cloudpickle"].pickle_imports == []
    with images["file"].get_model() as f:
        assert f.read() == files["file"].read_bytes()
    assert [i.model_format for i in real_repo.search("format = 'skops'")] == ["skops"]
