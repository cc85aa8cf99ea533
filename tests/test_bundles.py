"""OpenSSF Model Signing bundles (issue 16, item 6): a save with a p256 key stores one over the
files a ``--signature`` download writes, and the reference implementation (the ``model_signing``
package from PyPI) verifies it offline with the key ``roro keys:export-public`` prints, and
refuses it once one downloaded byte changed. fsck checks bundles, gc keeps them with their
version, sync and copy bring them along. Two key pairs (alice: ed25519, bob: p256) on a folder
store and on SeaweedFS."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings

import model_signing
import pytest
import test_signatures
from support.trust_helpers import flip_byte, rewrite
from test_cli import run
from test_signatures import event_body, fresh

import roro
from roro import Store
from roro.check import gc
from roro.errors import IntegrityError, RoroWarning, StoreError
from roro.objects.canonical import canonical_json
from roro.refs.events import make_event, parse_event
from roro.signing import load_signing_key
from roro.storage import layout
from roro.storage.layout import log_key, object_key

store_url = test_signatures.store_url  # a folder store and SeaweedFS
keys = test_signatures.keys  # alice (ed25519) and bob (p256)


@pytest.fixture
def bundled(store_url, keys, monkeypatch) -> roro.ModelRepository:
    """m: v1 saved by bob (p256: a bundle) with two attachments, v2 by alice (ed25519: none)."""
    repo = roro.Project("default", store_url).get_model_repository("m")
    monkeypatch.setenv("RORO_SIGNING_KEY", "bob")
    image = repo.new_image({"w": [1, 2, 3]})
    image.attach("notes.txt", text="hello\n")
    image.attach("eval/scores.json", text='{"auc": 0.9}')
    image.save("one")
    monkeypatch.setenv("RORO_SIGNING_KEY", "alice")
    repo.new_image({"w": 2}).save("two")
    monkeypatch.delenv("RORO_SIGNING_KEY")
    return repo


def public_key_file(tmp_path, name: str) -> str:
    path = str(tmp_path / f"{name}.pub")
    with open(path, "w") as f:
        f.write(run("keys:export-public", name).stdout)
    return path


def verify(directory: str, public_key: str) -> None:
    """What a user of model_signing runs (its Python API; ValueError if it does not verify)."""
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(
        directory, os.path.join(directory, "model.sig"))


def test_a_p256_save_stores_a_bundle_model_signing_verifies(bundled, store_url, tmp_path):
    store = Store(store_url)
    bundle = event_body(store, 1)["bundle"]
    assert "bundle" not in event_body(store, 2)  # alice's ed25519 key makes no bundle
    assert "model-bundles" in store.features()
    out = str(tmp_path / "dl")
    doc = json.loads(run("models:download", "m:1", "--attachments", out, "--signature",
                         "--json", store=store_url).stdout)
    assert doc["model"]["path"] == os.path.join(out, "model.pkl")
    assert doc["signature"]["digest"] == bundle and doc["signature"]["signer"] == "bob"
    assert sorted(os.listdir(out)) == ["eval", "model.pkl", "model.sig", "notes.txt"]
    bob = public_key_file(tmp_path, "bob")
    verify(out, bob)
    # the model_signing command line agrees
    cli = subprocess.run([sys.executable, "-m", "model_signing", "verify", "key", out,
                          "--signature", os.path.join(out, "model.sig"), "--public_key", bob],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    # one changed byte in any downloaded file, and it does not verify
    for name in ("model.pkl", "eval/scores.json"):
        path = os.path.join(out, name)
        data = bytearray(open(path, "rb").read())
        data[0] ^= 1
        with open(path, "wb") as f:
            f.write(bytes(data))
        with pytest.raises(ValueError, match="Signature mismatch"):
            verify(out, bob)
        data[0] ^= 1
        with open(path, "wb") as f:
            f.write(bytes(data))
        verify(out, bob)
    # another key does not verify it either
    other = str(tmp_path / "carol.pub")
    run("keys:generate", "--name", "carol", "--type", "p256")
    with open(other, "w") as f:
        f.write(run("keys:export-public", "carol").stdout)
    with pytest.raises(ValueError, match="Key mismatch"):
        verify(out, other)
    # a second download is harmless: the same bytes are left alone
    again = json.loads(run("models:download", "m:1", "--attachments", out, "--signature",
                           "--json", store=store_url).stdout)
    assert not again["model"]["written"]


def test_signature_downloads_refuse_clearly_before_writing(bundled, store_url, tmp_path):
    out = tmp_path / "dl"
    none = run("models:download", "m:2", "--attachments", str(out), "--signature",
               store=store_url, ok=False)
    assert none.exit_code == 3 and "has no OpenSSF Model Signing bundle" in none.stderr
    assert not out.exists()
    usage = run("models:download", "m:1", "--signature", store=store_url, ok=None)
    assert usage.exit_code == 2 and "--attachments DIR" in usage.output
    usage = run("models:download", "m:1", "-o", str(tmp_path / "x.pkl"), "--attachments",
                str(out), "--signature", store=store_url, ok=None)
    assert usage.exit_code == 2 and not out.exists()
    out.mkdir()
    (out / "model.sig").write_text("mine")
    taken = run("models:download", "m:1", "--attachments", str(out), "--signature",
                store=store_url, ok=False)
    assert "model.sig exists with other bytes" in taken.stderr
    assert os.listdir(out) == ["model.sig"]


def test_fsck_checks_bundles_and_gc_keeps_them_with_their_version(bundled, store_url,
                                                                  no_gc_floor):
    store = Store(store_url)
    bundle = event_body(store, 1)["bundle"]
    fsck = json.loads(run("fsck", "--json", store=store_url).stdout)
    assert fsck["ok"] and bundle not in fsck["unreferenced"]
    report = gc(Store(store_url), grace_seconds=0)
    assert bundle not in [d.digest for d in report.deleted]
    assert store.backend.exists(object_key(bundle))
    bundled.delete_version(1)
    report = gc(Store(store_url), grace_seconds=0)
    assert bundle in [d.digest for d in report.deleted]
    assert not store.backend.exists(object_key(bundle))


def test_fsck_reports_a_bundle_that_does_not_fit_its_version(bundled, store_url, keys):
    """bob (who holds the key) re-signs v2's event naming v1's bundle: the event verifies, the
    bundle does not fit v2's files."""
    store = Store(store_url)
    body = event_body(store, 2)
    body.pop("sig")
    body.pop("v")
    body["bundle"] = event_body(store, 1)["bundle"]
    fields = {k: body[k] for k in ("version", "image", "comment", "bundle")}
    event = make_event(2, body["prev"], "version", body["author"], body["time"],
                       signer=load_signing_key("bob"), **fields)
    rewrite(store, log_key("default", "m", 2), event.raw)
    fsck = json.loads(run("fsck", "--json", store=store_url, ok=None).stdout)
    bad = [p for p in fsck["problems"] if p["kind"] == "bad-bundle"]
    assert [(p["version"], p["blocks_gc"]) for p in bad] == [(2, False)]
    assert "file digests are not those of the version's manifest" in bad[0]["message"]


def test_a_corrupted_bundle_is_reported_and_never_downloaded(bundled, store_url, tmp_path):
    store = Store(store_url)
    bundle = event_body(store, 1)["bundle"]
    flip_byte(store, object_key(bundle))
    out = tmp_path / "dl"
    result = run("models:download", "m:1", "--attachments", str(out), "--signature",
                 store=store_url, ok=False)
    assert result.exit_code == 4 and not out.exists()
    fsck = json.loads(run("fsck", "--json", store=store_url, ok=None).stdout)
    assert ("bad-bundle", 1) in [(p["kind"], p["version"]) for p in fsck["problems"]]


def test_sync_copies_bundles_byte_for_byte(bundled, store_url, tmp_path):
    dst = str(tmp_path / "mirror")
    roro.sync(store_url, dst)
    bundle = event_body(Store(store_url), 1)["bundle"]
    key = object_key(bundle)
    assert Store(dst).backend.get(key) == Store(store_url).backend.get(key)
    assert "model-bundles" in Store(dst).features()
    out = str(tmp_path / "dl")
    run("models:download", "m:1", "--attachments", out, "--signature", store=dst)
    verify(out, public_key_file(tmp_path, "bob"))
    assert json.loads(run("fsck", "--json", store=dst).stdout)["ok"]


def test_copy_keeps_the_source_bundle_and_re_signs_with_the_copiers_p256_key(
        bundled, store_url, tmp_path, monkeypatch):
    source_bundle = event_body(Store(store_url), 1)["bundle"]
    # alice (ed25519) copies: the copy has no bundle of its own, bob's comes along and verifies
    dst = str(tmp_path / "other")
    monkeypatch.setenv("RORO_SIGNING_KEY", "alice")
    roro.copy_image(store_url, "m:1", dst)
    copied = roro.Project("default", dst).get_model_repository("m").get_model_image(1)
    assert copied.lineage["copied_from"]["event"]["bundle"] == source_bundle
    assert "bundle" not in event_body(Store(dst), 1)
    out = str(tmp_path / "dl-alice")
    doc = json.loads(run("models:download", "m:1", "--attachments", out, "--signature",
                         "--json", store=dst).stdout)
    assert doc["signature"]["source"] and doc["signature"]["signer"] == "bob"
    verify(out, public_key_file(tmp_path, "bob"))
    fsck = json.loads(run("fsck", "--json", store=dst).stdout)
    assert fsck["ok"] and source_bundle not in fsck["unreferenced"]
    # dave (p256) copies into a third store: his own bundle over the same files, signed by him
    run("keys:generate", "--name", "dave", "--type", "p256")
    monkeypatch.setenv("RORO_SIGNING_KEY", "dave")
    third = str(tmp_path / "third")
    roro.copy_image(dst, "m:1", third)
    own = event_body(Store(third), 1)["bundle"]
    assert own != source_bundle and Store(third).backend.exists(object_key(source_bundle))
    out = str(tmp_path / "dl-dave")
    doc = json.loads(run("models:download", "m:1", "--attachments", out, "--signature",
                         "--json", store=third).stdout)
    assert doc["signature"]["signer"] == "dave" and not doc["signature"]["source"]
    verify(out, public_key_file(tmp_path, "dave"))
    # a sync of the copy brings the source's bundle along too
    mirror = str(tmp_path / "mirror")
    roro.sync(third, mirror)
    assert Store(mirror).backend.exists(object_key(source_bundle))
    assert json.loads(run("fsck", "--json", store=mirror).stdout)["ok"]


def test_an_older_roro_refuses_a_store_with_bundles(bundled, store_url, monkeypatch):
    monkeypatch.setattr(layout, "KNOWN_FEATURES", layout.KNOWN_FEATURES - {"model-bundles"})
    with pytest.raises(StoreError, match=r"\(model-bundles\).*upgrade roro"):
        fresh(store_url).get_model(1)


def test_only_signed_version_events_may_name_a_bundle():
    digest = "sha256:" + hashlib.sha256(b"x").hexdigest()
    base = {"seq": 2, "prev": digest, "author": "a", "time": "t"}
    for body in ({**base, "type": "version", "version": 1, "image": digest, "comment": "",
                  "bundle": digest},  # version 1: no optional fields
                 {**base, "type": "version", "version": 1, "image": digest, "comment": "",
                  "bundle": digest, "v": 2},  # unsigned
                 {**base, "type": "tag", "tag": "t", "version": 1, "previous": None,
                  "bundle": digest, "v": 2}):
        with pytest.raises(IntegrityError, match="unexpected fields"):
            parse_event(canonical_json(body), repository="m", seq=2)


def test_attachments_taking_the_bundles_names_get_no_bundle(store_url, keys, monkeypatch):
    repo = roro.Project("default", store_url).get_model_repository("m")
    monkeypatch.setenv("RORO_SIGNING_KEY", "bob")
    for name in ("model.pkl", "model.sig", ".gitignore", ".github/ci.yml"):
        image = repo.new_image({"w": name})
        image.attach(name, text="x")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image.save()
        assert any(issubclass(w.category, RoroWarning) and "no OpenSSF Model Signing bundle"
                   in str(w.message) and name in str(w.message) for w in caught), name
        assert image.signature["signer"] == "bob"
        assert image.signature_bundle() is None


def test_a_destroyed_repository_retains_its_bundles_for_a_restore(bundled, store_url):
    bundle = event_body(Store(store_url), 1)["bundle"]
    bundled.destroy()
    fsck = json.loads(run("fsck", "--json", store=store_url).stdout)
    assert bundle in fsck["retained"] and bundle not in fsck["unreferenced"]


def test_a_copy_that_appends_nothing_writes_no_bundle(bundled, store_url, tmp_path, monkeypatch):
    monkeypatch.setenv("RORO_SIGNING_KEY", "bob")
    dst = str(tmp_path / "other")
    roro.copy_image(store_url, "m:1", dst)
    before = set(Store(dst).backend.list("objects/"))
    again = roro.copy_image(store_url, "m:1", dst)
    assert not again.created and set(Store(dst).backend.list("objects/")) == before


def test_the_event_signature_covers_its_bundle_field(bundled, store_url, tmp_path,
                                                     monkeypatch):
    """A bucket writer pointing a version's event at another bundle breaks its signature: the
    download stops naming the event, before a byte is written."""
    monkeypatch.setenv("RORO_SIGNING_KEY", "bob")
    bundled.new_image({"w": 3}).save("three")  # event 3, the last: no successor to break
    store = Store(store_url)
    body = event_body(store, 3)
    body["bundle"] = event_body(store, 1)["bundle"]
    rewrite(store, log_key("default", "m", 3), canonical_json(body))
    out = tmp_path / "dl"
    fresh(store_url)
    result = run("models:download", "m:3", "--attachments", str(out), "--signature",
                 store=store_url, ok=False)
    assert result.exit_code == 4 and "event 3" in result.stderr and not out.exists()
    assert "bad signature" in result.stderr
