"""Signed versions and tag moves (issue 16, part 1): keys, signing at save and tag moves, reads
that verify the events they serve, ``roro verify``, fsck, ``signer`` in log/show/history/search,
and forged or changed events rejected with an error naming the event. Two key pairs (alice:
ed25519, bob: ECDSA P-256) on a folder store and on SeaweedFS (a real S3 server)."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from conftest import make_store_url
from cryptography.hazmat.primitives import serialization
from support.trust_helpers import rewrite
from test_cli import run

import roro
from roro import Store
from roro.errors import ConfigError, IntegrityError, NotFoundError, SignatureError, StoreError
from roro.objects.canonical import canonical_json, loads
from roro.refs.events import parse_event
from roro.signing import verify_signature
from roro.storage import layout
from roro.storage.layout import feature_key, log_key


@pytest.fixture(params=["folder", "seaweedfs"])
def store_url(request, tmp_path, monkeypatch) -> str:
    if request.param == "seaweedfs":
        from conftest import _start_s3
        endpoint = _start_s3(request, monkeypatch, "seaweedfs")
        return make_store_url("seaweedfs", tmp_path, endpoint)
    return make_store_url("folder", tmp_path)


@pytest.fixture
def keys() -> dict[str, str]:
    """Two key pairs: alice (ed25519) and bob (p256); their fingerprints."""
    out = {}
    for name, kind in (("alice", "ed25519"), ("bob", "p256")):
        doc = json.loads(run("keys:generate", "--name", name, "--type", kind, "--json").stdout)
        assert doc["name"] == name and doc["type"] == kind
        out[name] = doc["fingerprint"]
    return out


def fresh(url: str) -> roro.ModelRepository:
    """The repository ``m`` as a new process sees it (its own index: a folder store's index
    file is deleted first, a remote store's lives in a fresh cache directory)."""
    if "://" not in url:
        for suffix in ("", "-wal", "-shm"):
            path = os.path.join(url, "index.sqlite3" + suffix)
            if os.path.exists(path):
                os.remove(path)
    return roro.Project("default", Store(url)).get_model_repository("m")


@pytest.fixture
def signed(store_url, keys, monkeypatch, tmp_path) -> roro.ModelRepository:
    """m: v1 signed by alice, v2 unsigned, v3 signed by bob; prod -> v1 moved by bob."""
    repo = roro.Project("default", store_url).get_model_repository("m")
    monkeypatch.setenv("RORO_SIGNING_KEY", "alice")
    repo.new_image({"w": 1}).save("one")
    repo.new_image({"w": 2}).save("two", sign=False)
    monkeypatch.setenv("RORO_SIGNING_KEY", "bob")
    repo.new_image({"w": 3}).save("three")
    repo.add_tag("prod", 1)
    monkeypatch.delenv("RORO_SIGNING_KEY")
    return repo


def event_body(store: Store, seq: int) -> dict:
    return loads(store.backend.get(log_key("default", "m", seq)))


# -- keys ------------------------------------------------------------------------------------------
def test_keys_live_in_the_user_config_directory_private_and_listed(keys, tmp_path):
    d = tmp_path / "config" / "roro" / "keys"
    assert stat.S_IMODE(os.stat(d / "alice.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    doc = json.loads(run("keys:list", "--json").stdout)
    assert [(k["name"], k["type"], k["fingerprint"]) for k in doc["keys"]] == [
        ("alice", "ed25519", keys["alice"]), ("bob", "p256", keys["bob"])]
    assert keys["alice"] in run("keys:list").stdout
    pem = run("keys:export-public", "bob").stdout
    assert pem.startswith("-----BEGIN PUBLIC KEY-----") and "PRIVATE" not in pem
    key = serialization.load_pem_public_key(pem.encode())
    assert key.key_size == 256
    assert json.loads(run("keys:export-public", "alice", "--json").stdout)["fingerprint"] == \
        keys["alice"]


def test_key_commands_refuse_bad_input_in_one_line(keys):
    assert "exists already" in run("keys:generate", "--name", "alice", ok=False).stderr
    assert run("keys:export-public", "carol", ok=False).exit_code == 3
    assert "invalid key name" in run("keys:generate", "--name", "../x", ok=False).stderr
    assert run("keys:generate", "--type", "rsa", ok=False).exit_code == 2


def test_a_private_key_others_may_read_is_refused(keys, tmp_path, monkeypatch):
    os.chmod(tmp_path / "config" / "roro" / "keys" / "alice.key", 0o644)
    repo = roro.Project("default", str(tmp_path / "s")).get_model_repository("m")
    monkeypatch.setenv("RORO_SIGNING_KEY", "alice")
    with pytest.raises(ConfigError, match="chmod 600"):
        repo.new_image({"w": 1}).save()
    assert not (tmp_path / "s" / "refs").exists()


def test_an_unknown_signing_key_fails_before_anything_is_written(keys, tmp_path, monkeypatch):
    url = str(tmp_path / "s")
    monkeypatch.setenv("RORO_SIGNING_KEY", "carol")
    with pytest.raises(NotFoundError, match="no key named 'carol'.*alice, bob"):
        roro.Project("default", url).get_model_repository("m").new_image({"w": 1}).save()
    assert not os.path.exists(os.path.join(url, "objects"))


def test_roro_yml_names_the_signing_key(keys, tmp_path):
    url = str(tmp_path / "s")
    (tmp_path / "roro.yml").write_text(f"store: {url}\nsigning_key: bob\n")
    image = roro.get_current_project().get_model_repository("m").new_image({"w": 1}).save()
    assert image.signature == {"signer": "bob", "key": keys["bob"], "verified": True}


def test_unsigned_stores_stay_version_1_and_featureless(tmp_path):
    url = str(tmp_path / "s")
    roro.Project("default", url).get_model_repository("m").new_image({"w": 1}).save()
    assert "v" not in event_body(Store(url), 1)
    assert "signed-events" not in Store(url).features()


# -- signing and reading -----------------------------------------------------------------------
def test_saves_and_tag_moves_are_signed_and_reads_verify_them(signed, store_url, keys):
    store = Store(store_url)
    assert "signed-events" in store.features()
    assert store.backend.exists(feature_key("signed-events"))
    one, two, tag = event_body(store, 1), event_body(store, 2), event_body(store, 4)
    assert one["v"] == 2 and one["sig"]["name"] == "alice" and one["sig"]["alg"] == "ed25519"
    assert "sig" not in two and "v" not in two
    assert tag["sig"]["key"] == keys["bob"] and tag["sig"]["alg"] == "ecdsa-p256-sha256"
    repo = fresh(store_url)
    image = repo.get_model_image("prod")
    assert image.signature == {"signer": "alice", "key": keys["alice"], "verified": True}
    assert repo.get_model_image(2).signature is None
    assert repo.get_model("prod") == {"w": 1}
    listed = {i.version: i.signature for i in repo.list_model_images()}
    assert listed[3] == {"signer": "bob", "key": keys["bob"], "verified": None}
    assert repo.list_model_images()[0].verify()["verified"] is True
    assert [(h["tag"], h["signer"], h["signer_key"]) for h in repo.get_tag_history()] == [
        ("prod", "bob", keys["bob"])]
    assert [i.version for i in repo.search("signer = 'alice'")] == [1]
    assert [i.version for i in repo.search("signer = null")] == [2]
    assert [i.version for i in repo.search("signer like 'b%' or signer = 'alice'")] == [3, 1]


def test_the_cli_shows_who_signed(signed, store_url, keys):
    show = json.loads(run("models:show", "m:prod", "--json", store=store_url).stdout)
    assert show["signature"] == {"signer": "alice", "key": keys["alice"], "verified": True}
    text = run("models:show", "m:3", store=store_url).stdout
    assert "bob" in text and keys["bob"] in text and "verified" in text
    assert "unsigned" in run("models:show", "m:2", store=store_url).stdout
    log = json.loads(run("models:log", "m", "--verify", "--json", store=store_url).stdout)
    assert [(v["version"], v["signature"] and v["signature"]["verified"])
            for v in log["versions"]] == [(3, True), (2, None), (1, True)]
    assert "Signed: alice" in run("models:log", "m", store=store_url).stdout
    history = json.loads(run("models:history", "m:prod", "--json", store=store_url).stdout)
    assert [(m["signer"], m["signer_key"]) for m in history["moves"]] == [("bob", keys["bob"])]
    assert "bob" in run("models:history", "m", store=store_url).stdout
    found = json.loads(run("models:search", "signer = 'bob'", "--json", store=store_url).stdout)
    assert [r["version"] for r in found["versions"]] == [3]


def test_verify_and_fsck_check_every_signature(signed, store_url, keys):
    doc = json.loads(run("verify", "m", "--json", store=store_url).stdout)
    assert doc["ok"] and doc["counts"] == {"verified": 3, "unsigned": 1, "invalid": 0,
                                           "untrusted": 0, "rejected": 0}
    assert run("verify", "m", store=store_url).stdout.startswith("ok: m: 4 events checked")
    strict = run("verify", "m", "--require-signed", store=store_url, ok=None)
    assert strict.exit_code == 4 and "event 2 (version) is not signed" in strict.stdout
    assert run("verify", "m:prod", "--require-signed", store=store_url).exit_code == 0
    only_alice = run("verify", "m", "--key", "alice", "--json", store=store_url, ok=None)
    assert only_alice.exit_code == 4
    assert json.loads(only_alice.stdout)["failures"] == [3, 4]
    assert run("verify", "m", "--key", "alice", "--key", keys["bob"], store=store_url).exit_code == 0
    missing = run("verify", "nope", store=store_url, ok=None)
    assert missing.exit_code == 3 and "'nope' does not exist" in missing.output
    fsck = json.loads(run("fsck", "--json", store=store_url).stdout)
    assert fsck["ok"] and fsck["signed_events"] == 3


def test_sync_copies_signatures_byte_for_byte(signed, store_url, tmp_path):
    dst = str(tmp_path / "copy")
    roro.sync(store_url, dst)
    for seq in range(1, 5):
        assert Store(dst).backend.get(log_key("default", "m", seq)) == \
            Store(store_url).backend.get(log_key("default", "m", seq))
    assert "signed-events" in Store(dst).features()
    assert json.loads(run("verify", "m", "--json", store=dst).stdout)["ok"]


# -- changed and forged events -------------------------------------------------------------------
def test_a_changed_byte_in_a_signed_event_fails_everywhere_naming_the_event(signed, store_url):
    store = Store(store_url)
    body = event_body(store, 4)  # bob's move of prod, the last event (no successor to break)
    body["author"] = "mallory"
    rewrite(store, log_key("default", "m", 4), canonical_json(body))
    with pytest.raises(SignatureError, match=r"event 4 of the ref log of 'm' has a bad signature"):
        fresh(store_url).get_model("prod")
    assert fresh(store_url).get_model(3) == {"w": 3}  # the other events still serve
    for args in (("verify", "m"), ("models:log", "m", "--verify"), ("models:show", "m:prod")):
        result = run(*args, store=store_url, ok=None)
        assert result.exit_code == 4 and "event 4" in result.stdout + result.stderr
    fsck = json.loads(run("fsck", "--json", store=store_url, ok=None).stdout)
    assert ("bad-signature", 4) in [(p["kind"], p["seq"]) for p in fsck["problems"]]


def test_a_forged_event_written_by_hand_is_rejected_naming_it(signed, store_url):
    """A bucket writer without a key copies alice's signature onto a new move of prod."""
    store = Store(store_url)
    last = store.backend.get(log_key("default", "m", 4))
    forged = {**event_body(store, 4), "seq": 5, "prev": "sha256:" + __import__(
        "hashlib").sha256(last).hexdigest(), "version": 3, "previous": 1,
        "sig": event_body(store, 1)["sig"]}
    store.backend.put_if_absent(log_key("default", "m", 5), canonical_json(forged))
    repo = fresh(store_url)
    assert repo.get_tags()["prod"] == 3  # the log says so (part 2's policy would skip it)...
    with pytest.raises(SignatureError, match="event 5 .*alice.* does not verify"):
        repo.get_model("prod")  # ...but no byte of it is served
    for args in (("verify", "m"), ("verify", "m:prod"), ("models:log", "m", "--verify"),
                 ("models:show", "m:prod"), ("fsck",)):
        result = run(*args, store=store_url, ok=None)
        assert result.exit_code == 4 and "event 5" in result.stdout + result.stderr, args


def test_a_signature_with_someone_elses_public_key_fails(signed, store_url, keys):
    store = Store(store_url)
    body = event_body(store, 4)
    alice = event_body(store, 1)["sig"]
    body["sig"] = {**body["sig"], "pub": alice["pub"]}  # bob's fingerprint, alice's key
    rewrite(store, log_key("default", "m", 4), canonical_json(body))
    with pytest.raises(SignatureError, match="event 4 .*does not have the fingerprint"):
        fresh(store_url).get_model("prod")


@pytest.mark.parametrize("sig, why", [
    ("x", "field 'sig' has the wrong type"),
    ({"alg": "ed25519"}, "'sig' must be an object with exactly"),
    ({"alg": "rsa", "key": "k", "name": "a", "pub": "", "value": ""}, "unknown algorithm"),
    ({"alg": "ed25519", "key": "SHA256:x", "name": "a", "pub": "", "value": ""},
     "malformed key fingerprint"),
    ({"alg": "ed25519", "key": "SHA256:" + "A" * 43, "name": "a", "pub": "A" * 500, "value": ""},
     "too long"),
])
def test_a_malformed_signature_is_a_broken_event(sig, why):
    body = {"seq": 1, "prev": None, "type": "create", "author": "a", "time": "t", "v": 2,
            "sig": sig}
    with pytest.raises(IntegrityError, match=why):
        parse_event(canonical_json(body), repository="m", seq=1)


def test_a_newer_event_version_asks_for_an_upgrade():
    body = {"seq": 1, "prev": None, "type": "create", "author": "a", "time": "t", "v": 3}
    with pytest.raises(IntegrityError, match="unknown event version 3.*upgrade roro"):
        parse_event(canonical_json(body), repository="m", seq=1)


def test_an_older_roro_refuses_a_store_with_signed_events(signed, store_url, monkeypatch):
    monkeypatch.setattr(layout, "KNOWN_FEATURES", layout.KNOWN_FEATURES - {"signed-events"})
    with pytest.raises(StoreError, match=r"\(signed-events\).*upgrade roro"):
        fresh(store_url).get_model(1)


def test_copy_between_stores_keeps_the_source_signature_and_re_signs(signed, store_url, keys,
                                                                     tmp_path, monkeypatch):
    dst = str(tmp_path / "other")
    monkeypatch.setenv("RORO_SIGNING_KEY", "alice")
    roro.copy_image(store_url, "m:3", dst)
    copied = roro.Project("default", dst).get_model_repository("m").get_model_image(1)
    assert copied.signature["signer"] == "alice"  # the copier signs the new event
    origin = copied.lineage["copied_from"]
    assert origin["version"] == 3 and origin["signer"] == {"name": "bob", "key": keys["bob"]}
    assert base64.b64decode(event_body(Store(dst), 1)["sig"]["value"])
    # bob's signature of the source event stays checkable from the copy alone
    source = dict(origin["event"])
    sig = source.pop("sig")
    assert source["image"] == origin["image"] and source["version"] == 3
    assert verify_signature(source, sig).fingerprint == keys["bob"]
    with pytest.raises(SignatureError):
        verify_signature({**source, "image": "sha256:" + "0" * 64}, sig)
    roro.copy_image(store_url, "m:2", dst)  # an unsigned source: no signer recorded
    assert "signer" not in roro.Project("default", dst).get_model_repository("m") \
        .get_model_image(2).lineage["copied_from"]


def test_sync_refuses_a_forged_event(signed, store_url, tmp_path):
    store = Store(store_url)
    body = event_body(store, 4)
    body["version"] = 3
    body["previous"] = 1
    body["seq"] = 5
    body["prev"] = "sha256:" + __import__("hashlib").sha256(
        store.backend.get(log_key("default", "m", 4))).hexdigest()
    store.backend.put_if_absent(log_key("default", "m", 5), canonical_json(body))
    dst = str(tmp_path / "copy")
    report = roro.sync(store_url, dst)
    assert not report.ok
    result = run("sync", store_url, dst, ok=None)
    assert result.exit_code == 4 and "event 5" in result.stdout + result.stderr


def test_without_cryptography_reads_warn_and_checks_fail_naming_the_extra(signed, store_url,
                                                                          monkeypatch):
    """A reader without the roro[sign] extra: loads go on with one warning, verify and fsck
    cannot vouch for the signatures and say so, key commands name the extra."""
    from roro import signing
    from roro.refs import events

    def missing():
        raise signing.SigningUnavailableError(
            f"signatures need the 'cryptography' package: {signing.EXTRA_HINT}")

    monkeypatch.setattr(signing, "_crypto", missing)
    monkeypatch.setattr(events, "_warned_unverified", False)
    repo = fresh(store_url)
    with pytest.warns(roro.RoroWarning, match=r"not checked.*roro\[sign\]"):
        assert repo.get_model("prod") == {"w": 1}
    assert "roro[sign]" in run("keys:generate", "--name", "carol", ok=False).stderr
    assert "roro[sign]" in run("verify", "m", store=store_url, ok=False).stderr
    fsck = json.loads(run("fsck", "--json", store=store_url, ok=None).stdout)
    assert {(p["kind"], p["seq"] or p["version"]) for p in fsck["problems"]} == {
        ("bad-signature", 1), ("bad-signature", 3), ("bad-signature", 4),
        ("bad-bundle", 3)}  # bob's p256 save of version 3 stored an OpenSSF bundle
    assert all("roro[sign]" in p["message"] and "cannot be checked" in p["message"]
               for p in fsck["problems"])


def test_trust_pickle_signed_loads_only_signed_versions(signed, keys, monkeypatch):
    """trust: pickle: signed (issue 15's gate, issue 16's signatures): an unsigned version's
    pickle is refused before a byte of it is read; a signed one loads; with trust: keys only
    the listed fingerprints pass."""
    from roro.errors import TrustError
    repo = fresh(signed.store.url)
    monkeypatch.setenv("RORO_TRUST", "pickle=signed")
    assert repo.get_model(1) == {"w": 1} and repo.get_model(3) == {"w": 3}
    with pytest.raises(TrustError, match="the version is not signed"):
        repo.get_model(2)
    monkeypatch.setenv("RORO_TRUST", json.dumps({"pickle": "signed", "keys": [keys["alice"]]}))
    assert repo.get_model(1) == {"w": 1}
    with pytest.raises(TrustError, match=r"signed by 'bob' .*not among trust: keys"):
        repo.get_model(3)

