"""The store policy (issue 16, part 2): protected tags, required signatures, revocations, pins.
Two key pairs (alice: ed25519, the owner; bob: ECDSA P-256) on a folder store and on SeaweedFS.
Events are forged by hand into the bucket (what anyone with write access can do) and every
reader skips them, naming the event; honest writers append after them."""

from __future__ import annotations

import json
import re
import warnings

import pytest
import test_signatures
from test_cli import run
from test_signatures import fresh

import roro
from roro import Store
from roro.check import fsck
from roro.errors import SignatureError, StoreError, TrustError
from roro.objects.canonical import canonical_json, loads
from roro.policy import PolicyWarning, append_entry, read_policy
from roro.refs.events import make_event
from roro.signing import load_signing_key
from roro.storage import layout
from roro.storage.layout import log_key, policy_key

store_url = test_signatures.store_url  # the folder store and SeaweedFS
keys = test_signatures.keys  # alice (ed25519) and bob (p256)


@pytest.fixture
def team(store_url, keys, monkeypatch):
    """m: v1, v2 (unsigned); production -> v1; a policy owned by alice protecting production
    (alice and bob may move it); the reader pins alice."""
    repo = roro.Project("default", store_url).get_model_repository("m")
    repo.new_image({"w": 1}).save("one")
    repo.new_image({"w": 2}).save("two")
    repo.add_tag("production", 1)
    run("policy:init", "--owner", "alice", store=store_url)
    run("policy:protect", "production", "--key", "alice", "--key", "bob", store=store_url)
    run("trust:pin", keys["alice"], store=store_url)
    return repo


def fingerprint_of_owner(url: str) -> str:
    owner = read_policy(Store(url).backend).owner
    assert owner is not None
    return owner


def forge(url: str, type_: str, *, key: str | None = None, repo: str = "m",
          policy: str | None = None, **payload) -> int:
    """Write an event by hand at the end of ``repo``'s log (unsigned, or signed by ``key``)."""
    store = Store(url)
    events = store.reflog("default", repo).read_all()
    last = events[-1]
    signer = load_signing_key(key) if key else None
    event = make_event(last.seq + 1, last.hash, type_, "mallory", "2026-01-01T00:00:00.000000Z",
                       signer=signer, policy=policy, **payload)
    assert store.backend.put_if_absent(log_key("default", repo, event.seq), event.raw)
    return event.seq


def test_an_unsigned_move_of_a_protected_tag_is_refused_by_the_writer(team, store_url,
                                                                     monkeypatch):
    r = run("models:tag", "m:2", "production", store=store_url, ok=False)
    assert r.exit_code == 6 and "unsigned move of the protected tag 'production'" in r.stderr
    with pytest.raises(TrustError, match="protected tag"):
        fresh(store_url).add_tag("production", 2)
    assert fresh(store_url).resolve("production") == 1
    monkeypatch.setenv("RORO_SIGNING_KEY", "bob")  # a signed move by an allowed key verifies
    run("models:tag", "m:2", "production", store=store_url)
    assert fresh(store_url).resolve("production") == 2
    run("verify", "m:production", store=store_url)
    assert fsck(Store(store_url)).ok


def test_a_forged_move_is_rejected_by_every_reader_naming_the_event(team, store_url,
                                                                    monkeypatch, tmp_path):
    seq = forge(store_url, "tag", tag="production", version=2, previous=1)
    # load: the tag stays where the last accepted move put it, with a warning naming the event
    with pytest.warns(roro.RoroWarning, match=f"event {seq} .*rejected"):
        assert fresh(store_url).get_model("production") == {"w": 1}
    # show
    r = run("models:show", "m:production", "--json", store=store_url, ok=None)
    assert r.exit_code == 0 and json.loads(r.stdout)["version"] == 1
    assert f"event {seq}" in r.stderr
    # log and history list it as rejected
    log = run("models:log", "m", store=store_url).stdout
    assert f"rejected event {seq}" in log and "mallory" in log
    doc = json.loads(run("models:history", "m:production", "--json", store=store_url).stdout)
    assert [r["seq"] for r in doc["rejected"]] == [seq]
    assert "unsigned move of the protected tag" in doc["rejected"][0]["reason"]
    # the web UI's repository page lists it too
    from starlette.testclient import TestClient

    from roro.ui.app import create_app
    page = TestClient(create_app(roro.Project("default", store_url)),
                      base_url="http://127.0.0.1:8765").get("/p/default/r/m/").text
    assert "Rejected by the store policy" in page and f"event {seq}:" in page
    assert "unsigned move of the protected tag" in page
    # fsck
    report = fsck(Store(store_url))
    found = [p for p in report.problems if p.kind == "rejected-event"]
    assert [p.seq for p in found] == [seq] and not found[0].blocks_gc
    r = run("fsck", store=store_url, ok=None)
    assert r.exit_code != 0 and f"event {seq}" in r.stdout
    # sync copies it byte for byte (the chain runs through it) and names it
    dst = str(tmp_path / "copy")
    run("trust:pin", fingerprint_of_owner(store_url), store=dst)
    doc = json.loads(run("sync", store_url, dst, "--json", store=store_url).stdout)
    assert f"event {seq}" in json.dumps(doc)
    assert Store(dst).backend.get(log_key("default", "m", seq)) == \
        Store(store_url).backend.get(log_key("default", "m", seq))
    assert roro.Project("default", dst).get_model_repository("m").resolve("production") == 1
    # honest writers append after it
    monkeypatch.setenv("RORO_SIGNING_KEY", "alice")
    fresh(store_url).add_tag("production", 2)
    assert fresh(store_url).resolve("production") == 2


def test_a_move_signed_by_a_key_that_may_not_move_the_tag_is_rejected(team, store_url, keys):
    run("keys:generate", "--name", "carol")
    seq = forge(store_url, "tag", key="carol", tag="production", version=2, previous=1)
    repo = fresh(store_url)
    with pytest.warns(roro.RoroWarning, match=f"event {seq}"):
        assert repo.resolve("production") == 1
    assert "carol" in repo.rejected_events()[0]["reason"]


def test_a_changed_byte_in_a_signed_protected_move_is_rejected(team, store_url, monkeypatch):
    monkeypatch.setenv("RORO_SIGNING_KEY", "bob")
    fresh(store_url).add_tag("production", 2)
    store = Store(store_url)
    seq = store.reflog("default", "m").read_all()[-1].seq
    key = log_key("default", "m", seq)
    body = loads(store.backend.get(key))
    body["author"] = "someone else"
    store.backend.delete(key)
    store.backend.put(key, canonical_json(body))
    # a reader whose index applied the event before it was changed fails naming it
    with pytest.raises(SignatureError, match=f"event {seq} .*does not verify"):
        roro.Project("default", Store(store_url)).get_model_repository("m").resolve("production")
    Store(store_url).rebuild_index()
    repo = fresh(store_url)
    assert repo.resolve("production") == 1  # the fold skips it: its signature does not verify
    (rejected,) = repo.rejected_events()
    assert rejected["seq"] == seq and "does not verify" in rejected["reason"]
    assert run("verify", "m", store=store_url, ok=None).exit_code == 4


def test_a_revoked_key_counts_for_what_it_signed_before_unless_compromised(team, store_url,
                                                                           monkeypatch):
    monkeypatch.setenv("RORO_SIGNING_KEY", "bob")
    fresh(store_url).add_tag("production", 2)
    monkeypatch.delenv("RORO_SIGNING_KEY")
    run("policy:revoke", "bob", store=store_url)
    assert fresh(store_url).resolve("production") == 2  # signed while allowed: stays valid
    monkeypatch.setenv("RORO_SIGNING_KEY", "bob")
    r = run("models:tag", "m:1", "production", store=store_url, ok=False)
    assert r.exit_code == 6 and "may not move it" in r.stderr
    # written by hand with the removed key: rejected by every reader
    seq = forge(store_url, "tag", key="bob", tag="production", version=1, previous=2)
    assert fresh(store_url).resolve("production") == 2
    assert [r["seq"] for r in fresh(store_url).rejected_events()] == [seq]
    monkeypatch.delenv("RORO_SIGNING_KEY")
    run("policy:revoke", "bob", "--compromised", store=store_url)
    repo = fresh(store_url)
    assert repo.resolve("production") == 1  # every move bob ever signed is rejected now
    assert len(repo.rejected_events()) == 2


def test_a_move_made_after_a_compromised_one_still_counts(team, store_url, monkeypatch):
    """alice moved production from the version bob's move had set; once bob's key is revoked
    as compromised, bob's move is rejected and alice's move still counts (its 'previous' is
    the rejected move's target)."""
    monkeypatch.setenv("RORO_SIGNING_KEY", "bob")
    fresh(store_url).add_tag("production", 2)
    monkeypatch.setenv("RORO_SIGNING_KEY", "alice")
    repo = fresh(store_url)
    repo.new_image({"w": 3}).save()
    repo.add_tag("production", 3)
    monkeypatch.delenv("RORO_SIGNING_KEY")
    run("policy:revoke", "bob", "--compromised", store=store_url)
    repo = fresh(store_url)
    assert repo.resolve("production") == 3
    assert [r["signer"] for r in repo.rejected_events()] == ["bob"]
    assert fsck(Store(store_url)).rejected_events == 1


def test_require_signed_refuses_unsigned_saves_and_skips_forged_versions(team, store_url,
                                                                         monkeypatch):
    run("policy:require-signed", "m", store=store_url)
    repo = fresh(store_url)
    with pytest.raises(TrustError, match="requires signatures"):
        repo.new_image({"w": 3}).save()
    seq = forge(store_url, "version", version=3, comment="evil",
                image=fresh(store_url).get_model_image(2).digest)
    repo = fresh(store_url)
    assert repo.resolve("latest") == 2
    with pytest.raises(TrustError, match=f"version 3 .*rejected: event {seq}"):
        repo.get_model_image(3)
    assert run("models:show", "m:3", store=store_url, ok=False).exit_code == 6
    r = run("verify", "m", "--json", store=store_url, ok=None)
    doc = json.loads(r.stdout)
    assert r.exit_code == 4 and doc["failures"] == [seq]
    assert doc["events"][-1]["status"] == "rejected" and "requires signatures" in \
        doc["events"][-1]["error"]
    run("verify", "m:2", store=store_url)  # what serves version 2 is from before the rule
    monkeypatch.setenv("RORO_SIGNING_KEY", "bob")
    run("policy:allow", "bob", store=store_url, env={"RORO_SIGNING_KEY": ""})
    image = fresh(store_url).new_image({"w": 4}).save("honest")
    assert image.version == 4  # the forged event took number 3: numbers are never reused
    assert fresh(store_url).get_model() == {"w": 4}


def test_policy_changes_are_owner_only_and_show_lists_them(team, store_url, keys, monkeypatch):
    r = run("policy:allow", "carol-x", "--as", "bob", store=store_url, ok=False)
    assert r.exit_code == 3  # no such key
    r = run("policy:allow", keys["bob"], "--as", "bob", store=store_url, ok=False)
    assert r.exit_code == 6 and "only the policy's owner" in r.stderr
    assert run("policy:init", "--owner", "bob", store=store_url, ok=False).exit_code == 6
    doc = json.loads(run("policy:show", "--json", store=store_url).stdout)
    assert doc["owner"] == keys["alice"] and doc["pinned"] == [keys["alice"]]
    assert [e["type"] for e in doc["entries"]] == ["init", "protect"]
    assert doc["rules"]["protected"] == [{"project": "default", "repository": None,
                                          "tag": "production",
                                          "keys": sorted([keys["alice"], keys["bob"]])}]
    assert "production" in run("policy:show", store=store_url).stdout


def test_a_forged_policy_entry_is_skipped(team, store_url, keys):
    store = Store(store_url)
    policy = read_policy(store.backend)
    bob = load_signing_key("bob")
    body = {"seq": 3, "prev": policy.head_hash, "type": "unprotect", "author": "mallory",
            "time": "2026-01-01T00:00:00Z", "v": 2, "since": {}, "project": "default",
            "repository": None, "tag": "production"}
    store.backend.put_if_absent(policy_key(3), canonical_json({**body,
                                                               "sig": bob.signature_for(body)}))
    assert [e.seq for e, _ in read_policy(store.backend).rejected] == [3]
    with pytest.raises(TrustError, match="protected tag"):
        fresh(store_url).add_tag("production", 2)
    assert any(p.kind == "bad-policy" and p.seq == 3 for p in fsck(Store(store_url)).problems)


def test_pinned_readers_refuse_a_policy_log_that_got_shorter_or_another_owner(team, store_url,
                                                                              keys):
    fresh(store_url).resolve("production")  # the pinned reader remembers the policy head
    store = Store(store_url)
    saved = store.backend.get(policy_key(2))
    store.backend.delete(policy_key(2))  # a bucket writer deletes the protection
    with pytest.raises(TrustError, match="went missing or got shorter"):
        fresh(store_url).resolve("production")
    assert run("models:tag", "m:2", "production", store=store_url, ok=False).exit_code == 6
    store.backend.put(policy_key(2), saved)
    assert fresh(store_url).resolve("production") == 1
    # a policy owned by a key the reader did not pin
    for seq in (2, 1):
        store.backend.delete(policy_key(seq))
    from roro import policy as policy_module
    monkeypath_cache = policy_module.heads_path(Store(store_url).url)
    import os
    os.remove(monkeypath_cache)
    # a bucket writer starts a policy of its own (no pin of this reader names bob)
    append_entry(Store(store_url), load_signing_key("bob"), "init", {"owner": keys["bob"]})
    with pytest.raises(TrustError, match="not a key you pinned"):
        fresh(store_url).resolve("production")


def test_an_unpinned_reader_warns_once_showing_the_owner(store_url, keys):
    repo = roro.Project("default", store_url).get_model_repository("m")
    repo.new_image({"w": 1}).save()
    append_entry(Store(store_url), load_signing_key("alice"), "init", {"owner": keys["alice"]})
    with pytest.warns(PolicyWarning, match=re.escape(f"roro trust:pin {keys['alice']}")):
        fresh(store_url).resolve("latest")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh(store_url).resolve("latest")


def test_an_older_roro_refuses_a_store_with_a_policy(team, store_url, monkeypatch):
    monkeypatch.setattr(layout, "KNOWN_FEATURES", layout.KNOWN_FEATURES - {"policy"})
    with pytest.raises(StoreError, match="upgrade roro"):
        fresh(store_url).resolve("production")


def test_a_rebuilt_index_equals_the_incremental_one_with_rejected_events(team, store_url,
                                                                          monkeypatch):
    forge(store_url, "tag", tag="production", version=2, previous=1)
    monkeypatch.setenv("RORO_SIGNING_KEY", "alice")
    repo = fresh(store_url)
    repo.add_tag("production", 2)
    repo.new_image({"w": 3}).save()
    store = repo.store
    incremental = store.index.dump()
    store.rebuild_index()
    assert store.index.dump() == incremental
    assert len(incremental["rejected_events"]) == 1


def test_pickle_signed_loads_what_a_pinned_or_allowed_key_signed(team, store_url, monkeypatch):
    run("keys:generate", "--name", "carol")
    for who, w in (("alice", 3), ("bob", 4), ("carol", 5)):
        monkeypatch.setenv("RORO_SIGNING_KEY", who)
        fresh(store_url).new_image({"w": w}).save()
    monkeypatch.delenv("RORO_SIGNING_KEY")
    run("policy:allow", "bob", store=store_url)
    monkeypatch.setenv("RORO_TRUST", "pickle=signed")
    repo = fresh(store_url)
    assert repo.get_model(3) == {"w": 3}  # the pinned owner
    assert repo.get_model(4) == {"w": 4}  # a key the pinned policy allows
    with pytest.raises(TrustError, match=r"signed by 'carol'"):
        repo.get_model(5)  # a valid signature by a key nobody trusts here
    with pytest.raises(TrustError, match="not signed"):
        repo.get_model(2)


def test_a_reader_behind_the_writers_policy_reads_it_again(team, store_url):
    reader = roro.Project("default", Store(store_url)).get_model_repository("m")
    assert reader.resolve("production") == 1  # this handle read the policy: production protected
    run("policy:unprotect", "production", store=store_url)  # another process changes it
    run("models:tag", "m:2", "production", store=store_url)  # and moves the tag unsigned
    # the move names the newer policy head: the reader reads the policy again, and accepts it
    assert reader.resolve("production") == 2
    assert reader.rejected_events() == []


def test_garbage_in_the_policy_log_blocks_nobody(store_url, keys):
    """Bytes a bucket writer puts under policy/log/ (before an init, after it, a stray key) are
    skipped and reported; the owner appends after them; readers go on."""
    store = Store(store_url)
    roro.Project("default", store).get_model_repository("m").new_image({"w": 1}).save()
    store.backend.put_if_absent(policy_key(1), b"not json")
    store.backend.put_if_absent("policy/log/notes.txt", b"hello")
    run("policy:init", "--owner", "alice", store=store_url)  # goes after the garbage
    garbage = canonical_json({"seq": 3, "prev": read_policy(store.backend).head_hash,
                              "type": "protect"})
    store.backend.put_if_absent(policy_key(3), garbage)
    run("policy:protect", "m:production", "--key", "alice", store=store_url)
    policy = read_policy(Store(store_url).backend)
    assert [e.type for e in policy.entries] == ["init", "protect"]
    assert [e.seq for e, _ in policy.rejected] == [1, 3] and policy.broken is None
    assert fresh(store_url).resolve("latest") == 1
    assert run("models:tag", "m:1", "production", store=store_url, ok=False).exit_code == 6
    kinds = sorted(p.kind for p in fsck(Store(store_url)).problems)
    assert kinds == ["bad-policy", "bad-policy", "stray-file"]


def test_pins_per_remote_and_in_roro_yml(store_url, keys, tmp_path, monkeypatch):
    import yaml

    from roro.config import pinned_keys
    work = tmp_path / "work"
    work.mkdir()
    (work / "roro.yml").write_text(yaml.safe_dump({"remotes": {"prod": {"store": store_url}}}))
    monkeypatch.chdir(work)
    r = run("trust:pin", keys["bob"], "--remote", "prod", "--json")
    assert json.loads(r.stdout)["store"] == Store(store_url).url
    assert pinned_keys(Store(store_url).url) == {keys["bob"]}
    assert run("trust:pin", keys["bob"], "--remote", "nope", ok=False).exit_code == 1
    assert run("trust:pin", "not-a-fingerprint", ok=False).exit_code == 2  # a bad value
    (work / "roro.yml").write_text(yaml.safe_dump({"trust": {"keys": [keys["alice"]]}}))
    assert pinned_keys("s3://elsewhere/x") == {keys["alice"]}  # trust: keys pins every store
    roro.Project("default", store_url).get_model_repository("m").new_image({"w": 1}).save()
    append_entry(Store(store_url), load_signing_key("alice"), "init", {"owner": keys["alice"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pinned through roro.yml: no warning
        assert fresh(store_url).resolve("latest") == 1


def test_an_event_cannot_be_backdated_to_an_older_policy(team, store_url):
    """The watermark: moves written before the protection stay valid (production -> 1 was an
    unsigned move); a move written after it is judged by it, whatever policy head it names."""
    first = read_policy(Store(store_url).backend).entries[0]
    seq = forge(store_url, "tag", policy=f"1:{first.hash}", tag="production", version=2,
                previous=1)
    repo = fresh(store_url)
    assert repo.resolve("production") == 1
    assert [r["seq"] for r in repo.rejected_events()] == [seq]
    assert [m["seq"] for m in repo.get_tag_history("production")] == [3]  # the unsigned move


def test_policy_commands_refuse_bad_input_in_one_line(team, store_url):
    assert run("policy:protect", "latest", "--key", "alice", store=store_url,
               ok=False).exit_code == 2
    assert run("policy:protect", "../x:prod", "--key", "alice", store=store_url,
               ok=False).exit_code == 2
    assert run("policy:protect", "prod", store=store_url, ok=None).exit_code == 2  # no --key
    assert run("policy:require-signed", "no/such", store=store_url, ok=False).exit_code == 2
    assert [e["type"] for e in json.loads(run("policy:show", "--json",
                                              store=store_url).stdout)["entries"]] == \
        ["init", "protect"]
