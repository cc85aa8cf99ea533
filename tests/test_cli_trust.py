"""``roro fsck``, ``gc``, ``index --rebuild`` and ``models:delete`` through CliRunner, on local stores."""

from __future__ import annotations

import json

import pytest
from conftest import make_store_url
from support.trust_helpers import age_all_objects, corrupt_object, flip_byte, restore_object
from test_cli import run

import roro
from roro.storage.layout import log_key, object_key

# gc with a grace period below the production floor (nobody else writes here)
pytestmark = pytest.mark.usefixtures("no_gc_floor")


@pytest.fixture(params=["memory", "folder"])
def store_url(request, tmp_path) -> str:
    return make_store_url(request.param, tmp_path)


@pytest.fixture
def repo(store_url) -> roro.ModelRepository:
    """m v1..v3 (prod -> v2), each with an attachment of its own."""
    r = roro.Project("default", store_url).get_model_repository("m")
    for i in range(1, 4):
        image = r.new_image({"weights": [i] * 10})
        image["Accuracy"] = 0.8 + i / 100
        image.attach("log.txt", f"epoch {i}\n".encode())
        image.save(comment=f"run {i}")
    r.add_tag("prod", 2)
    return r


# -- fsck ------------------------------------------------------------------------------------------
def test_fsck_clean_store(repo, store_url):
    out = run("fsck", store=store_url).stdout
    assert out.startswith("ok: 1 repositories, 4 events, 3 versions, 9 objects")
    assert "0 problems" in out and "unreferenced object" not in out
    doc = json.loads(run("fsck", "--read-data", "--json", store=store_url).stdout)
    assert doc["ok"] is True and doc["problems"] == [] and doc["read_data"] is True
    assert doc["verified"] == doc["objects"] == 9 and doc["versions"] == 3


def test_fsck_reports_a_corrupted_blob_with_repository_version_and_digests(repo, store_url):
    image = repo.get_model_image(1)
    digest = image.manifest["model"]["digest"]
    corrupt_object(repo.project.store, digest)
    # Without --read-data blobs are not re-hashed: clean (their existence is what is checked).
    run("fsck", store=store_url)
    result = run("fsck", "--read-data", store=store_url, ok=None)
    assert result.exit_code == 4 and result.stderr == ""
    problems = [line for line in result.stdout.splitlines() if line.startswith("error ")]
    assert len(problems) == 1, result.stdout
    line = problems[0]
    assert line.startswith(f"error corrupt-object: default/m:1 {digest}: ")
    assert "FAILED" in result.stdout and "1 problem " in result.stdout
    doc = json.loads(run("fsck", "--read-data", "--json", store=store_url, ok=None).stdout)
    assert doc["ok"] is False
    [p] = doc["problems"]
    assert (p["kind"], p["repository"], p["version"], p["expected"]) == (
        "corrupt-object", "m", 1, digest)
    assert p["actual"].startswith("sha256:") and p["actual"] != digest
    assert line.endswith(f"its bytes hash to {p['actual']}")  # the line names both digests


def test_fsck_reports_a_missing_manifest_and_a_broken_log(repo, store_url):
    store = repo.project.store
    manifest = repo.get_model_image(3).digest
    original = store.backend.get(object_key(manifest))
    store.backend.delete(object_key(manifest))
    result = run("fsck", store=store_url, ok=None)
    assert result.exit_code == 4
    assert f"error missing-object: default/m:3 {manifest}" in result.stdout
    restore_object(store, manifest, original)
    run("fsck", store=store_url)
    flip_byte(store, log_key("default", "m", 2), offset=5)
    result = run("fsck", store=store_url, ok=None)
    assert result.exit_code == 4 and "error broken-log: default/m" in result.stdout


def test_unreferenced_objects_are_information_not_errors(repo, store_url):
    run("models:delete", "m:1", store=store_url)
    result = run("fsck", store=store_url)
    assert "info 3 unreferenced objects" in result.stdout and "error" not in result.stdout
    doc = json.loads(run("fsck", "--json", store=store_url).stdout)
    assert doc["ok"] is True and len(doc["unreferenced"]) == 3


# -- gc --------------------------------------------------------------------------------------------
def test_gc_shows_what_it_would_free_then_frees_it(repo, store_url):
    store = repo.project.store
    gone = repo.get_model_image(1)
    sizes = [len(store.backend.get(object_key(d))) for d in
             (gone.digest, gone.manifest["model"]["digest"],
              gone.manifest["attachments"][0]["digest"])]
    run("models:delete", "m:1", store=store_url)
    # Young objects are spared by the default 24 h grace period.
    young = run("gc", "--dry-run", store=store_url).stdout
    assert young.startswith("Would delete 0 objects") and "3 kept as younger than 24h" in young
    age_all_objects(store, 2 * 86400)
    dry = run("gc", "--dry-run", store=store_url).stdout
    assert dry.startswith("Would delete 3 objects, which frees ") and f"({sum(sizes)} bytes)" in dry
    assert "without --dry-run" in dry
    assert len(list(store.backend.list("objects/"))) == 9  # a dry run deletes nothing
    doc = json.loads(run("gc", "--json", store=store_url).stdout)
    assert doc["dry_run"] is False and len(doc["deleted"]) == 3
    assert doc["freed_bytes"] == sum(sizes)
    assert len(list(store.backend.list("objects/"))) == 6
    assert run("gc", "--grace", "0", store=store_url).stdout.startswith("Deleted 0 objects")
    run("fsck", "--read-data", store=store_url)


@pytest.mark.parametrize("grace", ["5x", "-1h", "1h30", "abc", ""])
def test_gc_bad_duration_is_a_usage_error(repo, store_url, grace):
    result = run("gc", "--grace", grace, store=store_url, ok=False)
    assert result.exit_code == 2 and "invalid duration" in result.stderr


def test_gc_refuses_on_a_store_with_a_broken_log(repo, store_url):
    flip_byte(repo.project.store, log_key("default", "m", 2), offset=5)
    result = run("gc", "--grace", "0", store=store_url, ok=False)
    assert result.exit_code == 4 and "gc refused" in result.stderr


# -- index --rebuild -------------------------------------------------------------------------------
def test_index_rebuild_gives_the_same_answers(repo, store_url):
    before = run("models:log", "m", "--json", store=store_url).stdout
    out = run("index", "--rebuild", store=store_url).stdout
    assert out.startswith("Rebuilt ") and "1 projects, 1 repositories, 3 versions." in out
    assert run("models:log", "m", "--json", store=store_url).stdout == before
    doc = json.loads(run("index", "--rebuild", "--json", store=store_url).stdout)
    assert doc["ok"] is True and doc["versions"] == 3 and doc["failed"] == {}
    assert run("index", store=store_url, ok=False).exit_code == 2


def test_index_rebuild_names_a_broken_repository(repo, store_url):
    flip_byte(repo.project.store, log_key("default", "m", 2), offset=5)
    result = run("index", "--rebuild", store=store_url, ok=None)
    assert result.exit_code == 4
    assert "error default/m: " in result.stdout and "1 left out" in result.stdout


# -- models:delete ---------------------------------------------------------------------------------
def test_delete_a_version(repo, store_url):
    out = run("models:delete", "m:1", store=store_url).stdout
    assert out.startswith("Deleted m:1;")
    assert run("models:delete", "m:1", store=store_url).stdout == "m:1 was already deleted.\n"
    log = json.loads(run("models:log", "m", "--json", store=store_url).stdout)
    assert [v["version"] for v in log["versions"]] == [3, 2]
    result = run("models:show", "m:1", store=store_url, ok=False)
    assert result.exit_code == 3 and "deleted" in result.stderr


def test_delete_is_refused_while_tagged(repo, store_url):
    result = run("models:delete", "m:2", store=store_url, ok=False)
    assert result.exit_code == 5
    assert "tagged 'prod'" in result.stderr and "move or remove that tag first" in result.stderr
    run("models:untag", "m", "prod", store=store_url)
    run("models:delete", "m:2", store=store_url)


@pytest.mark.parametrize("spec, code", [("m", 2), ("m:prod", 2), ("m:9", 3), ("nope:1", 3),
                                        ("Bad Name:1", 2)])
def test_delete_bad_input(repo, store_url, spec, code):
    assert run("models:delete", spec, store=store_url, ok=False).exit_code == code


@pytest.mark.parametrize("args", [["fsck"], ["gc", "--dry-run"], ["index", "--rebuild"]])
def test_a_store_that_does_not_exist_is_not_reported_clean(tmp_path, args):
    missing = tmp_path / "no-such-store"
    result = run(*args, store=str(missing), ok=False)
    assert result.exit_code == 3 and "does not exist" in result.stderr
    assert not missing.exists()
    assert run(*args, store="ftp://x/y", ok=False).exit_code == 1
