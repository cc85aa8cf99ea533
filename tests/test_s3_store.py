"""The Python API on S3 stores (moto, and a real SeaweedFS server): configuration, the probe,
clear errors, dedup, "listing never downloads a model", and the local object cache.

Faults during transfers are in test_s3_faults.py; the 512 MiB round trip in test_s3_large.py.
"""

from __future__ import annotations

import os
import pickle
import time

import pytest
from support.s3faults import DOWNLOADS, UPLOADS, S3Calls, check_store
from support.s3servers import (
    READONLY_CREDENTIALS,
    create_bucket,
    free_ports,
    s3_client,
    use_endpoint,
)

import roro
from roro import IntegrityError, Project, StoreError
from roro.digests import digest_bytes
from roro.storage.layout import object_key

MiB = 1 << 20


@pytest.fixture
def s3_url(s3_endpoint) -> str:
    return f"s3://{create_bucket(s3_endpoint)}/team"


def bucket_keys(endpoint: str, url: str) -> list[str]:
    bucket = url[len("s3://"):].split("/")[0]
    client = s3_client(endpoint)
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))
    finally:
        client.close()


def cache_files(store: roro.Store) -> list[str]:
    root = os.path.join(store.cache_root(), "cache")
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


def model_digest(image) -> str:
    return image.manifest["model"]["digest"]


# -- where the store and its endpoint come from ----------------------------------------------------
def test_store_and_endpoint_from_roro_yml(s3_endpoint, tmp_path, monkeypatch):
    bucket = create_bucket(s3_endpoint)
    (tmp_path / "roro.yml").write_text(
        f"project: team\nstore: s3://{bucket}/models\nendpoint_url: {s3_endpoint}\n")
    (dead,) = free_ports(1)
    # roro.yml's endpoint_url beats the global AWS_ENDPOINT_URL for roro.yml's store
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead}")
    project = roro.get_current_project()
    assert (project.name, project.store.url) == ("team", f"s3://{bucket}/models")
    project.get_model_repository("m").new_image({"w": 1}).save()
    keys = bucket_keys(s3_endpoint, f"s3://{bucket}")
    assert "models/roro.json" in keys and "models/refs/team/m/log/0000000001.json" in keys
    assert roro.get_current_project().get_model_repository("m").get_model() == {"w": 1}
    # a store given by RORO_STORE is not roro.yml's: it uses AWS_ENDPOINT_URL
    monkeypatch.setenv("RORO_STORE", f"s3://{bucket}/models")
    with pytest.raises(StoreError, match=f"cannot reach endpoint http://127.0.0.1:{dead}"):
        roro.get_current_project().list_model_repositories()


def test_endpoint_from_aws_endpoint_url(s3_endpoint, tmp_path, monkeypatch):
    bucket = create_bucket(s3_endpoint)
    (tmp_path / "roro.yml").write_text(f"project: team\nstore: s3://{bucket}/models\n")
    assert os.environ["AWS_ENDPOINT_URL"] == s3_endpoint  # set by the s3_endpoint fixture
    repo = roro.get_current_project().get_model_repository("m")
    repo.new_image([1, 2]).save(comment="first")
    assert "models/refs/team/m/log/0000000001.json" in bucket_keys(s3_endpoint, f"s3://{bucket}")
    # the same through RORO_STORE, in a fresh handle (and a fresh cache: another machine)
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "other-cache"))
    monkeypatch.setenv("RORO_STORE", f"s3://{bucket}/models")
    other = roro.get_current_project().get_model_repository("m")
    assert other.get_model() == [1, 2] and other.get_model_image().comment == "first"


def test_cache_is_keyed_by_endpoint(s3_url, s3_endpoint):
    a = roro.Store(s3_url)
    b = roro.Store(s3_url, endpoint_url="http://127.0.0.1:1")
    assert a.backend.endpoint_url == s3_endpoint
    assert a.cache_root() != b.cache_root()
    assert roro.Store(s3_url, endpoint_url=s3_endpoint).cache_root() == a.cache_root()


# -- the conditional-write probe -------------------------------------------------------------------
def _strip_if_none_match(params, **_):
    params["headers"].pop("If-None-Match", None)


def test_store_ignoring_conditional_writes_is_refused_before_anything_is_written(
        s3_url, s3_endpoint, spool_dir):
    """A server (or proxy) that drops If-None-Match would let two writers publish the same
    version; the first save through a handle probes, and refuses with nothing written."""
    project = Project("p", s3_url)
    project.store.backend.client.meta.events.register("before-call.s3.PutObject",
                                                      _strip_if_none_match)
    image = project.get_model_repository("m").new_image({"w": 1})
    for _ in range(2):  # a refusal is not remembered as a pass: every attempt is refused
        with pytest.raises(StoreError, match="does not honour conditional writes") as info:
            image.save()
        assert type(info.value) is StoreError and "docs/s3.md" in str(info.value)
        assert bucket_keys(s3_endpoint, s3_url) == []
    assert os.listdir(spool_dir) == []
    assert not image.saved and project.list_model_repositories() == []


def test_probe_runs_on_every_machine_even_on_an_initialized_store(s3_url, tmp_path,
                                                                  monkeypatch):
    first = Project("p", s3_url)
    first.get_model_repository("m").new_image(1).save()
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "another-machine"))
    second = Project("p", s3_url)  # another machine, through a proxy that drops the header
    second.store.backend.client.meta.events.register("before-call.s3.PutObject",
                                                     _strip_if_none_match)
    with pytest.raises(StoreError, match="does not honour conditional writes"):
        second.get_model_repository("m").new_image(2).save()
    assert [i.version for i in first.get_model_repository("m").list_model_images()] == [1]


# -- one clear error each, quickly ---------------------------------------------------------------
def _api_calls(project: Project):
    return {
        "save": lambda: project.get_model_repository("m").new_image(1).save(),
        "list_model_repositories": project.list_model_repositories,
        "get_model": lambda: project.get_model_repository("m").get_model(),
    }


def _assert_clear(call, pattern: str, within: float) -> StoreError:
    started = time.monotonic()
    with pytest.raises(StoreError, match=pattern) as info:
        call()
    assert time.monotonic() - started < within
    assert type(info.value) is StoreError and "\n" not in str(info.value)
    return info.value


def test_missing_bucket(s3_endpoint):
    project = Project("p", "s3://roro-no-such-bucket/team")
    for call in _api_calls(project).values():
        _assert_clear(call, f"^bucket roro-no-such-bucket does not exist at endpoint "
                            f"{s3_endpoint}: create it", within=5)


def test_unreachable_endpoint_fails_in_one_attempt(monkeypatch):
    """Nothing listens there: no retries with back-off (botocore's standard mode would spend
    ~15 s on average, up to 31 s, sleeping between its 6 attempts)."""
    from support.s3servers import DUMMY_CREDENTIALS
    for var, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    (port,) = free_ports(1)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    project = Project("p", "s3://some-bucket/team")
    attempts = []
    project.store.backend.client.meta.events.register(
        "before-send.s3", lambda **_: attempts.append(1))
    for call in _api_calls(project).values():
        _assert_clear(call, f"^cannot reach endpoint http://127.0.0.1:{port} for store "
                            "s3://some-bucket/team: check the endpoint URL", within=3)
    assert len(attempts) == 3  # one request per call


def test_wrong_secret_is_rejected_credentials(seaweedfs_endpoint, monkeypatch):
    use_endpoint(monkeypatch, seaweedfs_endpoint)
    url = f"s3://{create_bucket(seaweedfs_endpoint)}/team"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    project = Project("p", url)
    for call in _api_calls(project).values():
        _assert_clear(call, f"^endpoint {seaweedfs_endpoint} rejected the credentials for store "
                            f"{url} \\(SignatureDoesNotMatch .*check AWS_ACCESS_KEY_ID", within=5)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    _assert_clear(Project("p", url).list_model_repositories, "InvalidAccessKeyId", within=5)


def test_read_only_credentials_can_read_but_not_save(seaweedfs_endpoint, monkeypatch, tmp_path):
    use_endpoint(monkeypatch, seaweedfs_endpoint)
    url = f"s3://{create_bucket(seaweedfs_endpoint)}/team"
    Project("p", url).get_model_repository("m").new_image("v1").save()
    for var, value in READONLY_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "reader-cache"))
    reader = Project("p", url)
    assert [r.name for r in reader.list_model_repositories()] == ["m"]
    assert reader.get_model_repository("m").get_model() == "v1"
    _assert_clear(lambda: reader.get_model_repository("m").new_image("v2").save(),
                  "^access denied to store .*AccessDenied on PutObject", within=5)
    assert [i.version for i in reader.get_model_repository("m").list_model_images()] == [1]


# -- dedup, and listing never downloads a model ------------------------------------------------------
def test_an_object_in_the_bucket_is_never_uploaded_again(s3_url):
    project = Project("p", s3_url, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    calls = S3Calls(project.store.backend)
    repo = project.get_model_repository("m")
    big = os.urandom(6 * MiB)  # a multipart upload
    first = repo.new_image(big)
    first.attach("notes.txt", b"same notes")
    first.save()
    blobs = [model_digest(first), first.get_attachment("notes.txt").digest]
    assert calls.count(["UploadPart"], blobs[:1]) == 2 and calls.count(["PutObject"], blobs[1:]) == 1
    calls.clear()
    stored_at = project.store.backend.stat(object_key(blobs[1])).mtime
    for other in (repo, project.get_model_repository("other")):  # same repo, and another one
        again = other.new_image(big)
        again.attach("notes.txt", b"same notes")
        again.save(comment="same bytes")
        assert model_digest(again) == blobs[0]
    assert calls.count(UPLOADS, blobs[:1]) == 0  # the big model: looked for, never sent
    # A small object is tried with one conditional PUT (If-None-Match: *), which S3 refuses
    # (412) when it is present: one request instead of HEAD + PUT, and nothing is replaced.
    assert calls.count(UPLOADS, blobs[1:]) == 2
    assert project.store.backend.stat(object_key(blobs[1])).mtime == stored_at
    assert calls.count(["PutObject"]) > 0  # manifests and events were written: the hook works
    assert repo.get_model(version=2) == big


def test_listing_and_showing_never_download_a_model(s3_url, tmp_path, monkeypatch):
    writer = Project("p", s3_url)
    repo = writer.get_model_repository("m")
    for i in range(3):
        image = repo.new_image(os.urandom(1000))
        image["i"] = i
        image.attach("data.bin", os.urandom(100))
        image.save()
    repo.add_tag("prod", 2)
    blobs = {model_digest(i) for i in repo.list_model_images()}
    blobs |= {a.digest for i in repo.list_model_images() for a in i.get_attachments()}
    # another machine: no index and no cache yet, so everything is read from the bucket
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "reader-cache"))
    reader = Project("p", s3_url)
    calls = S3Calls(reader.store.backend)
    r = reader.get_model_repository("m")
    assert [x.name for x in reader.list_model_repositories()] == ["m"]
    assert [(i.version, i["i"]) for i in r.list_model_images()] == [(3, 2), (2, 1), (1, 0)]
    shown = r.get_model_image(tag="prod")
    assert shown.version == 2 and shown.model_size > 1000
    assert [a.name for a in shown.get_attachments()] == ["data.bin"]
    assert r.get_model_image(version=1)["i"] == 0
    assert r.get_tags() == {"prod": 2, "latest": 3}
    assert [h["version"] for h in r.get_tag_history()] == [2]
    assert r.count() == 3
    assert calls.count(DOWNLOADS, blobs) == 0
    assert calls.count(DOWNLOADS) > 0  # the log and manifests were read: the hook works
    assert isinstance(r.get_model(), bytes)
    assert calls.count(DOWNLOADS, blobs) == 1


# -- the local object cache ----------------------------------------------------------------------
class Loud:
    """A model that leaves a mark when it is unpickled (its bytes reached the unpickler)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (_mark, (self.path,))


def _mark(path: str) -> str:
    with open(path, "w") as f:
        f.write("unpickled")
    return path


def test_loading_twice_downloads_once_and_a_corrupted_entry_is_refetched(s3_url):
    repo = Project("p", s3_url).get_model_repository("m")
    model = os.urandom(200_000)
    digest = model_digest(repo.new_image(model).save())
    loader = Project("p", s3_url)  # a fresh handle: nothing in memory, the cache on disk
    calls = S3Calls(loader.store.backend)
    lrepo = loader.get_model_repository("m")
    assert lrepo.get_model() == model
    assert calls.count(DOWNLOADS, [digest]) == 1
    third = Project("p", s3_url)  # another handle (another process) on this machine
    third_calls = S3Calls(third.store.backend)
    assert third.get_model_repository("m").get_model() == model
    assert lrepo.get_model() == model
    # both later loads came from the cache
    assert calls.count(DOWNLOADS, [digest]) == 1 and third_calls.count(DOWNLOADS, [digest]) == 0
    entry = os.path.join(loader.store.cache_root(), "cache", *object_key(digest).split("/"))
    with open(entry, "r+b") as f:  # flip one byte of the cached copy
        f.seek(100_000)
        byte = f.read(1)
        f.seek(100_000)
        f.write(bytes([byte[0] ^ 1]))
    assert lrepo.get_model() == model
    assert calls.count(DOWNLOADS, [digest]) == 2  # detected, dropped and fetched again
    with open(entry, "rb") as f:
        assert digest_bytes(f.read()) == digest
    assert not [f for f in cache_files(loader.store) if ".tmp" in f]


def test_corrupted_cached_manifest_is_refetched(s3_url):
    repo = Project("p", s3_url).get_model_repository("m")
    image = repo.new_image("x").save()
    repo.get_model_image(version=1)  # reads the manifest through the cache
    entry = os.path.join(repo.project.store.cache_root(), "cache",
                         *object_key(image.digest).split("/"))
    data = open(entry, "rb").read()
    assert digest_bytes(data) == image.digest
    with open(entry, "wb") as f:
        f.write(data.replace(b'"comment":""', b'"comment":"edited"'))
    fresh = Project("p", s3_url)
    calls = S3Calls(fresh.store.backend)
    shown = fresh.get_model_repository("m").get_model_image(version=1)
    assert shown.digest == image.digest and shown.comment == ""
    assert calls.count(DOWNLOADS, [image.digest]) == 1
    assert open(entry, "rb").read() == data


def test_corruption_in_the_bucket_is_an_integrity_error_and_nothing_is_unpickled(
        s3_url, s3_endpoint, tmp_path):
    repo = Project("p", s3_url).get_model_repository("m")
    digest = model_digest(repo.new_image(os.urandom(1000)).save())
    # an attacker (or a bad disk) replaces the blob with a pickle that would run code
    mark = tmp_path / "unpickled"
    bucket, prefix = s3_url[len("s3://"):].split("/", 1)
    client = s3_client(s3_endpoint)
    client.put_object(Bucket=bucket, Key=f"{prefix}/{object_key(digest)}",
                      Body=pickle.dumps(Loud(str(mark))))
    client.close()
    loader = Project("p", s3_url)
    with pytest.raises(IntegrityError, match=f"object {digest} is corrupted") as info:
        loader.get_model_repository("m").get_model()
    assert info.value.digest == digest and info.value.actual != digest
    assert not mark.exists()
    assert all(object_key(digest).split("/")[-1] not in f for f in cache_files(loader.store))
    assert not [f for f in cache_files(loader.store) if ".tmp" in f]
    with pytest.raises(IntegrityError, match=digest):
        check_store(loader.store.backend)
