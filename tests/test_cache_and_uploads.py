"""What a remote store leaves on disks (issue 13, item 15): gc aborts incomplete multipart uploads
older than the grace period (through the backend's ``collect_temp``), and the local object cache
keeps to ``RORO_CACHE_MAX`` by evicting the least recently used entries, never one that a
running process is reading."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from click.testing import CliRunner
from conftest import save_image
from support.s3servers import create_bucket, s3_client, use_endpoint

from roro import ConfigError, Project, Store
from roro.check import gc
from roro.cli import main
from roro.environment import cache_dir
from roro.objects.cache import ObjectCache

#: these tests collect what they just made, with nobody else writing: any grace period
pytestmark = pytest.mark.usefixtures("no_gc_floor")

KB = 1000


def start_upload(endpoint: str, bucket: str, key: str) -> str:
    """Start a multipart upload, send one part, and never complete it (as a killed save does)."""
    client = s3_client(endpoint)
    try:
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1,
                           Body=b"p" * 10_000)
        return upload
    finally:
        client.close()


def uploads(endpoint: str, bucket: str) -> set[str]:
    client = s3_client(endpoint)
    try:
        return {u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}
    finally:
        client.close()


@pytest.fixture
def seaweedfs(seaweedfs_endpoint, monkeypatch):
    """SeaweedFS only: moto stamps every multipart upload with one fixed time in 2010, so the
    age of an upload, which the grace period is about, means nothing there."""
    return use_endpoint(monkeypatch, seaweedfs_endpoint)


def test_gc_aborts_incomplete_multipart_uploads_after_the_grace_period(seaweedfs):
    s3_endpoint = seaweedfs
    bucket = create_bucket(s3_endpoint)
    url = f"s3://{bucket}/store"
    save_image(Project("p", store=url).get_model_repository("m"), {"v": 1})
    ours = "store/objects/sha256/ab/" + "c" * 62
    other = "elsewhere/objects/sha256/ab/" + "c" * 62  # another store in the same bucket
    start_upload(s3_endpoint, bucket, ours)
    start_upload(s3_endpoint, bucket, other)
    time.sleep(1.5)  # the server's clock stamps them in whole seconds

    assert gc(Store(url), grace_seconds=3600).temp_files == []  # too young
    planned = gc(Store(url), grace_seconds=0, dry_run=True).temp_files
    assert [t.key.split(" ")[0] for t in planned] == ["objects/sha256/ab/" + "c" * 62]
    assert uploads(s3_endpoint, bucket) == {ours, other}
    done = gc(Store(url), grace_seconds=0)
    assert [t.key.split(" ")[0] for t in done.temp_files] == ["objects/sha256/ab/" + "c" * 62]
    assert done.temp_files[0].size == 10_000 and done.freed_bytes >= 10_000
    assert uploads(s3_endpoint, bucket) == {other}


# -- the object cache -------------------------------------------------------------------------------
def cached_blobs() -> dict[str, int]:
    """digest hex -> size of every object in every store's cache."""
    out = {}
    for dirpath, _, files in os.walk(os.path.join(cache_dir(), "stores")):
        if os.sep + os.path.join("cache", "objects", "sha256") in dirpath:
            for name in files:
                if not name.startswith(".tmp-"):
                    out[os.path.basename(dirpath) + name] = os.path.getsize(
                        os.path.join(dirpath, name))
    return out


def test_the_cache_keeps_to_its_limit_least_recently_used_first(s3_endpoint, monkeypatch):
    url = f"s3://{create_bucket(s3_endpoint)}/store"
    repo = Project("p", store=url).get_model_repository("m")
    blobs = {}
    for i in range(1, 6):
        data = bytes([i]) * (100 * KB)
        blobs[i] = save_image(repo, data).manifest["model"]["digest"][7:]
    monkeypatch.setenv("RORO_CACHE_MAX", "350K")  # three models and their manifests

    def load(i):
        assert Project("p", store=url).get_model_repository("m").get_model(i) == bytes([i]) * (
            100 * KB)

    for i in (1, 2, 3):
        load(i)
        time.sleep(0.02)  # distinct modification times
    load(1)  # used again: now the most recent
    for i in (4, 5):
        time.sleep(0.02)
        load(i)
    cached = cached_blobs()
    assert sum(cached.values()) <= 350 * 1024
    assert {i for i, d in blobs.items() if d in cached} == {1, 4, 5}


def test_eviction_never_takes_an_entry_from_its_reader(s3_endpoint, monkeypatch):
    url = f"s3://{create_bucket(s3_endpoint)}/store"
    repo = Project("p", store=url).get_model_repository("m")
    data = os.urandom(300 * KB)
    digest = save_image(repo, data).manifest["model"]["digest"]
    store = Store(url)
    cache = store.objects.cache
    assert isinstance(cache, ObjectCache)

    # Another process evicts everything the instant an entry is published, before its reader
    # opened it: the reader still gets the whole, verified object.
    real_replace = os.replace

    def replace_then_evict(src, dst):
        real_replace(src, dst)
        ObjectCache(cache.root, 0, cache.shared_root).evict()

    monkeypatch.setattr("roro.objects.cache.os.replace", replace_then_evict)
    with store.objects.open_verified(digest) as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest[7:]
    monkeypatch.setattr("roro.objects.cache.os.replace", real_replace)

    # A reader with the entry open keeps reading it while it is evicted.
    with store.objects.open_verified(digest) as f:
        head = f.read(1000)
        assert ObjectCache(cache.root, 0, cache.shared_root).evict() == 0
        assert cached_blobs() == {}
        assert hashlib.sha256(head + f.read()).hexdigest() == digest[7:]
    assert Project("p", store=url).get_model_repository("m").get_model() == data


def test_an_invalid_cache_limit_is_one_clear_line(s3_endpoint, monkeypatch):
    url = f"s3://{create_bucket(s3_endpoint)}/store"
    save_image(Project("p", store=url).get_model_repository("m"), 1)
    monkeypatch.setenv("RORO_CACHE_MAX", "lots")
    with pytest.raises(ConfigError, match="RORO_CACHE_MAX"):
        Store(url).objects  # noqa: B018
    result = CliRunner().invoke(main, ["--store", url, "models:show", "m"])
    assert result.exit_code == 1 and "RORO_CACHE_MAX" in result.output
    assert len(result.output.strip().splitlines()) == 1
