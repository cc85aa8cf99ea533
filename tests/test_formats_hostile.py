"""Hostile summary and contract objects (issue 15): whoever can write the store can forge a
manifest, so what ``model.summary`` and ``contract`` name is read bounded, checked, shown escaped,
and reported as one clear error, never a crash, while the rest of the version stays usable.
Every test runs on a folder store and on SeaweedFS."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from support.trust_helpers import corrupt_object_uncached

import roro
from roro import writer
from roro.check import fsck
from roro.cli import main
from roro.formats.contract import MAX_CHECKED
from roro.objects.canonical import canonical_json
from roro.objects.manifest import MAX_SUMMARY, check_manifest
from roro.storage.layout import object_key
from roro.storage.wrappers import CountingBackend

WEIGHTS = {"w": np.arange(1 << 19, dtype=np.float64)}  # 4 MiB: a model, not a summary


@pytest.fixture
def repo(real_store_url):
    return roro.Project("default", real_store_url).get_model_repository("m")


def show(repo, *args: str) -> str:
    result = CliRunner().invoke(main, ["--store", repo.store.url, "models:show", "m", *args],
                                catch_exceptions=False)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def forge(repo, summary: dict | None = None, contract: object = None) -> roro.ModelImage:
    """A version like the latest one, but whose manifest names ``summary`` (``{digest, size}``)
    and holds ``contract`` (what a writer of the store could publish); returns it."""
    manifest = repo.get_model_image().manifest
    if summary is not None:
        manifest["model"]["summary"] = summary
    if contract is not None:
        manifest["contract"] = contract
    writer.publish(repo.store, "default", "m", manifest)
    return repo.get_model_image()


def put(repo, data: bytes) -> dict:
    return {"digest": repo.store.objects.put_bytes(data), "size": len(data)}


def test_a_summary_naming_a_big_blob_is_refused_without_reading_it(repo):
    image = repo.new_image(WEIGHTS, format="safetensors").save()
    model = image.manifest["model"]
    forged = forge(repo, {"digest": model["digest"], "size": 100})  # the 4 MiB model, as "100"
    counting = CountingBackend(roro.Store(repo.store.url).backend)
    fresh = roro.Project("default", roro.Store(counting)).get_model_repository("m")
    with pytest.raises(roro.IntegrityError, match="more than the 100 bytes"):
        _ = fresh.get_model_image(forged.version).summary
    assert counting.bytes_read < 1 << 20, counting.bytes_read  # the manifest, not the blob
    shown = show(repo)
    assert "Summary: unreadable" in shown and "format   safetensors" in shown
    _ = roro.Project("default", repo.store.url).get_model_repository("m").get_model()  # usable
    with pytest.raises(roro.IntegrityError, match="model.summary"):  # a size past the limit
        check_manifest({**forged.manifest, "model": {**model, "summary": {
            "digest": model["digest"], "size": MAX_SUMMARY + 1}}}, "sha256:" + "0" * 64)


@pytest.mark.parametrize("data", [b"[" * 100_000 + b"]" * 100_000,  # nesting past recursion
                                  b'{"tensors": [], "parameters": NaN}', b"\xff\xfe not JSON"])
def test_a_summary_that_is_not_roro_json_is_an_integrity_error(repo, data):
    repo.new_image(WEIGHTS, format="safetensors").save()
    forged = forge(repo, put(repo, data))
    with pytest.raises(roro.IntegrityError, match="is not JSON"):
        _ = forged.summary
    doc = json.loads(show(repo, "--json"))
    assert "not JSON" in doc["summary"]["error"] and doc["model"]["format"] == "safetensors"


def test_a_missing_or_corrupted_summary_leaves_the_rest_of_the_version_usable(repo):
    image = repo.new_image(WEIGHTS, format="safetensors").save()
    ref = image.manifest["model"]["summary"]
    corrupt_object_uncached(repo.store, ref["digest"])
    fresh = roro.Project("default", repo.store.url).get_model_repository("m")
    with pytest.raises(roro.IntegrityError) as e:
        _ = fresh.get_model_image().summary
    assert e.value.digest == ref["digest"]
    assert "Summary: unreadable" in show(repo)
    assert np.array_equal(fresh.get_model()["w"], WEIGHTS["w"])  # the model is another object
    report = fsck(repo.store, read_data=True)
    assert [(p.kind, p.object) for p in report.problems] == [("corrupt-object", "model summary")]
    repo.store.backend.delete(object_key(ref["digest"]))
    with pytest.raises(roro.NotFoundError):
        _ = roro.Project("default", repo.store.url).get_model_repository("m") \
            .get_model_image().summary
    assert "Summary: unreadable" in show(repo)
    assert [(p.kind, p.object) for p in fsck(repo.store).problems] == [
        ("missing-object", "model summary")]


def test_names_in_a_summary_are_shown_escaped(repo):
    repo.new_image(WEIGHTS, format="safetensors").save()
    evil = "w\x1b[2J\x1b]0;pwned\x07\nnext\rline"
    summary = {"tensors": [{"name": evil, "dtype": "F32\x1b[31m", "shape": [1, "\x1b[1m"]}],
               "parameters": 1, "metadata": {"k": "\x1b]8;;http://x\x07"}}
    forge(repo, put(repo, canonical_json(summary)))
    shown = show(repo)
    assert "\x1b" not in shown and "\r" not in shown and "\x07" not in shown
    assert "Tensors (1, 1 parameters)" in shown
    assert json.loads(show(repo, "--json"))["summary"] == summary  # JSON keeps them exactly


@pytest.mark.parametrize("contract", [
    {"libraries": "numpy", "input": "x"},
    {"libraries": {"numpy": 5, "no-such-dist\x1b[2J": "1.0"},
     "input": {"kind": "dataframe", "columns": "age"}},
    {"libraries": {}, "input": {"kind": "ndarray", "dtype": "float64", "shape": "3"}},
    {"input": {"kind": "\x1b[2Jtensor"}},
])
def test_a_forged_contract_is_shown_and_refused_by_check_input_never_a_crash(repo, contract):
    repo.new_image({"w": 1}).save()
    image = forge(repo, contract=contract)
    shown = show(repo)
    assert "\x1b" not in shown
    assert json.loads(show(repo, "--json"))["contract"] == contract
    with pytest.raises(roro.IntegrityError, match="input schema recorded for .* is invalid"):
        image.check_input(np.zeros((1, 3)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert image.get_model() == {"w": 1}
    messages = [str(w.message) for w in caught if issubclass(w.category, roro.RoroWarning)]
    if "no-such-dist\x1b[2J" in (contract.get("libraries") or ()):
        assert len(messages) == 1 and "'no-such-dist\\x1b[2J' 1.0 and" in messages[0]
        assert "\x1b" not in messages[0]
    else:
        assert messages == []


def test_a_contract_with_thousands_of_libraries_loads_in_bounded_time(repo):
    repo.new_image({"w": 1}).save()
    libraries = {f"no-such-dist-{i:05}": "1.0" for i in range(50_000)}
    image = forge(repo, contract={"libraries": libraries})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert image.get_model() == {"w": 1}
    messages = [str(w.message) for w in caught]
    assert len(messages) == MAX_CHECKED + 1, messages[:3]
    assert "records 50000 libraries; only the first 64 by name were checked" in messages[0]
    assert "no-such-dist-00063 1.0" in messages[-1]
