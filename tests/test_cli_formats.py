"""``models:save``, ``models:scan`` and what ``models:show`` says about formats, pickles and
summaries (issue 15), including a 1 GiB safetensors model on SeaweedFS shown without fetching it."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tracemalloc

import numpy as np
import pytest
import safetensors.numpy
from click.testing import CliRunner
from support.s3servers import create_bucket, use_endpoint
from support.trust_helpers import corrupt_object_uncached

import roro
from roro import store as store_module
from roro.cli import main
from roro.errors import TrustError
from roro.formats.scan import scan_pickle
from roro.storage.wrappers import CountingBackend


def run(*args: str, store: str, code: int = 0):
    result = CliRunner().invoke(main, ["--store", store, *args], catch_exceptions=False)
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


class Booby:
    """A pickle whose load calls ``os.system``: creating the marker file proves it ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def store(tmp_path) -> str:
    return str(tmp_path / "store")


def test_a_booby_trapped_pickle_is_flagged_and_refused_without_running(real_store_url,
                                                                        tmp_path, monkeypatch):
    store = real_store_url  # a folder and SeaweedFS
    marker = tmp_path / "it-ran"
    evil = tmp_path / "model.pkl"
    evil.write_bytes(pickle.dumps(Booby(str(marker))))
    saved = run("models:save", "evil", str(evil), "--format", "cloudpickle", "-m", "trap",
                store=store)
    assert saved.stdout == "evil:1\n"
    scan = run("models:scan", "evil", store=store, code=11)
    assert "flagged" in scan.stdout and "posix.system" in scan.stdout
    doc = json.loads(run("models:scan", "evil:1", "--json", store=store, code=11).stdout)
    assert doc["exit_code"] == 11 and doc["versions"][0]["verdict"] == "flagged"
    assert doc["versions"][0]["flagged"] == ["posix.system"]
    shown = run("models:show", "evil", store=store).stdout
    assert "Pickle: flagged" in shown and "imports posix.system  FLAGGED" in shown
    shown_json = json.loads(run("models:show", "evil", "--json", store=store).stdout)
    assert shown_json["pickle"]["imports"] == ["posix.system"]
    assert shown_json["model"]["format"] == "cloudpickle"
    repo = roro.Project("default", store).get_model_repository("evil")
    assert repo.get_model_image().pickle_imports == ["posix.system"]
    with pytest.raises(TrustError, match="evil:1.*cloudpickle.*'deny'"):
        repo.get_model(trust={"pickle": "deny"})
    monkeypatch.setenv("RORO_STORE", store)
    with pytest.raises(TrustError, match="set by get_model"):
        roro.load("evil:v1", trust={"pickle": "deny"})
    monkeypatch.setenv("RORO_TRUST", "deny")
    with pytest.raises(TrustError, match="set by RORO_TRUST"):
        roro.load("evil")
    assert not marker.exists()  # nothing above ran it
    refused = CliRunner().invoke(main, ["--store", store, "models:download", "evil", "-o",
                                        str(tmp_path / "copy.pkl")])
    assert refused.exit_code == 0  # downloading bytes is not loading them
    assert not marker.exists()


def test_scan_verdicts_and_exit_codes(store, tmp_path):
    repo = roro.Project("default", store).get_model_repository("m")
    repo.new_image({"w": np.zeros(3)}).save()  # v1: clean
    repo.new_image(lambda x: x + 1).save()  # v2: a function pickled by value: contains code
    repo.new_image({"w": np.zeros(3)}, format="safetensors").save()  # v3: not a pickle
    assert run("models:scan", "m:1", store=store).stdout.startswith("m:1  cloudpickle  clean")
    out = run("models:scan", "m:2", store=store, code=10).stdout
    assert "contains code: review" in out and "code object" in out
    run("models:scan", "m:3", store=store)
    doc = json.loads(run("models:scan", "m", "--all", "--json", store=store, code=10).stdout)
    assert [(v["version"], v["verdict"], v["pickle"]) for v in doc["versions"]] == [
        (3, "clean", False), (2, "contains code", True), (1, "clean", True)]
    run("models:scan", "m:9", store=store, code=3)
    corrupt_object_uncached(repo.store, repo.get_model_image(1).manifest["model"]["digest"])
    run("models:scan", "m:1", store=store, code=4)  # one version: the usual error
    doc = json.loads(run("models:scan", "m", "--all", "--json", store=store, code=11).stdout)
    assert [(v["version"], v["verdict"]) for v in doc["versions"]] == [
        (3, "clean"), (2, "contains code"), (1, "flagged")]
    assert "cannot be read" in doc["versions"][2]["problems"][0]


def test_code_inside_a_pickled_function_is_read(tmp_path):
    import cloudpickle
    namespace: dict = {}
    exec("import os\ndef predict(x):\n    return os.system('id')\n", namespace)  # noqa: S102
    namespace["predict"].__module__ = "__main__"  # pickled by value, as for a script's function
    result = scan_pickle(io.BytesIO(cloudpickle.dumps(namespace["predict"])))
    assert result.verdict == "flagged" and result.code_objects == 1
    assert "code uses 'system'" in result.flagged and "os" in result.imports


def test_stack_global_through_the_memo_and_unresolvable_names():
    # STACK_GLOBAL whose strings come from the memo (BINGET), as pickle's memo sharing makes them
    data = (b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x02id\x85R.")
    result = scan_pickle(io.BytesIO(data))
    assert result.imports == ["posix.system"] and result.verdict == "flagged"
    # a name computed by a call cannot be resolved statically: flagged, never guessed
    data = (b"\x80\x04\x8c\x08builtins\x8c\x03str\x93\x8c\x02os\x85R\x8c\x06system\x93.")
    result = scan_pickle(io.BytesIO(data))
    assert result.verdict == "flagged" and "STACK_GLOBAL" in result.problems[0]
    for junk in (b"", b"\x80\x04", b"not a pickle", b"\x80\x04\x8c\xff"):
        assert scan_pickle(io.BytesIO(junk)).verdict == "flagged"


def test_a_scan_holds_little_memory_whatever_the_pickle(tmp_path):
    path = tmp_path / "big.pkl"
    with open(path, "wb") as f:
        pickle.dump({"w": np.ones(64 << 17)}, f, protocol=5)  # 64 MiB of float64
    tracemalloc.start()
    with open(path, "rb") as f:
        result = scan_pickle(f)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.verdict == "clean" and peak < 2 << 20, peak


def test_models_save_formats_meta_and_attachments(store, tmp_path):
    weights = tmp_path / "w.safetensors"
    safetensors.numpy.save_file({"a": np.zeros((2, 3), dtype=np.float32)}, str(weights))
    notes = tmp_path / "notes.txt"
    notes.write_text("trained on June data")
    doc = json.loads(run("models:save", "net", str(weights), "--format", "safetensors",
                         "--meta", "accuracy=0.91", "--meta", "source=june", "--attach",
                         str(notes), "-m", "from the trainer", "--json", store=store).stdout)
    assert doc["version"] == 1 and doc["format"] == "safetensors"
    image = roro.Project("default", store).get_model_repository("net").get_model_image()
    assert image.get_metadata()["accuracy"] == 0.91 and image["source"] == "june"
    assert image.get_attachment("notes.txt").read() == b"trained on June data"
    assert image.comment == "from the trainer"
    shown = run("models:show", "net", store=store).stdout
    assert "Tensors (1, 6 parameters)" in shown and "[2, 3]" in shown
    assert "format   safetensors" in shown
    bad = CliRunner().invoke(main, ["--store", store, "models:save", "net", str(notes),
                                    "--format", "onnx"])
    assert bad.exit_code == 2 and "not an ONNX model" in bad.stderr
    missing = CliRunner().invoke(main, ["--store", store, "models:save", "net",
                                        str(tmp_path / "nope")])
    assert missing.exit_code == 3
    searched = json.loads(run("models:search", "format = 'safetensors'", "--json",
                              store=store).stdout)
    assert [v["repository"] for v in searched["versions"]] == ["net"]


def test_models_diff_shows_contract_changes(store):
    import pandas as pd
    repo = roro.Project("default", store).get_model_repository("m")
    df = pd.DataFrame({"age": [1, 2]})
    repo.new_image({"m": 1}, input_example=df).save()
    repo.new_image({"m": 2}, input_example=df.assign(income=[1.0, 2.0])).save()
    out = run("models:diff", "m:1", "m:2", store=store).stdout
    assert "+ contract input column income: \"float64\"" in out
    doc = json.loads(run("models:diff", "m:1", "m:2", "--json", store=store).stdout)
    assert doc["contract"]["added"] == {"input column income": "float64"}


def test_trust_error_is_exit_6_in_the_cli():
    """No command loads a model today; the one error table maps TrustError (and the signature
    refusals that will subclass it) to 6, before the RoroError catch-all."""
    from roro.cli.errors import exit_code_for
    assert exit_code_for(TrustError("x")) == 6
    assert exit_code_for(type("Refusal", (TrustError,), {})("y")) == 6


def _sparse_safetensors(path, nbytes: int) -> None:
    header = json.dumps({"__metadata__": {"note": "sparse"},
                         "w": {"dtype": "F32", "shape": [nbytes // 4],
                               "data_offsets": [0, nbytes]}}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + nbytes)


def test_show_of_a_1_gib_safetensors_model_on_s3_reads_under_1_mib(seaweedfs_endpoint,
                                                                   monkeypatch, tmp_path):
    use_endpoint(monkeypatch, seaweedfs_endpoint)
    url = f"s3://{create_bucket(seaweedfs_endpoint)}/big"
    path = tmp_path / "big.safetensors"
    _sparse_safetensors(path, 1 << 30)
    assert run("models:save", "llm", str(path), "--format", "safetensors",
               store=url).stdout == "llm:1\n"
    os.unlink(path)
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "fresh-cache"))  # another machine
    counters: list[CountingBackend] = []
    real = store_module.open_backend

    def counted(*args, **kwargs):
        counters.append(CountingBackend(real(*args, **kwargs)))
        return counters[-1]

    monkeypatch.setattr(store_module, "open_backend", counted)
    shown = run("models:show", "llm", store=url).stdout
    assert "Tensors (1, 268,435,456 parameters)" in shown and "1.0 GiB" in shown
    doc = json.loads(run("models:show", "llm", "--json", store=url).stdout)
    assert doc["summary"]["metadata"] == {"note": "sparse"} and doc["model"]["size"] > 1 << 30
    read = sum(c.bytes_read for c in counters)
    print(f"models:show x2 of a 1 GiB safetensors model read {read} bytes from the bucket")
    assert 0 < read < 1 << 20, read
    assert not any(c.counts["download"] for c in counters)


@pytest.mark.parametrize("forged", [{"tensors": 5, "parameters": 1},
                                    {"tensors": [{"name": 1, "dtype": "F32", "shape": [1]}],
                                     "parameters": 1},
                                    {"inputs": "x"}, {"untrusted_types": [3]}, [1, 2]])
def test_a_forged_summary_is_an_error_never_a_crash(store, forged):
    """A summary object is written by whoever can write the store: a malformed one that hashes
    right is reported (the API raises IntegrityError; models:show shows the rest)."""
    from roro import writer
    from roro.objects.canonical import canonical_json
    repo = roro.Project("default", store).get_model_repository("m")
    image = repo.new_image({"w": np.zeros(2)}, format="safetensors").save()
    data = canonical_json(forged)
    manifest = image.manifest
    manifest["model"]["summary"] = {"digest": repo.store.objects.put_bytes(data),
                                    "size": len(data)}
    writer.publish(repo.store, "default", "m", manifest)
    with pytest.raises(roro.IntegrityError, match="summary .* is invalid"):
        _ = repo.get_model_image().summary
    shown = run("models:show", "m", store=store).stdout
    assert "Summary: unreadable" in shown and "format   safetensors" in shown
    assert "summary" in json.loads(run("models:show", "m", "--json", store=store).stdout)
