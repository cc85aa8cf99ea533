"""Faults during saves and loads of a multipart-sized model, through the public API.

Throttling (503 SlowDown), server errors (500), and dropped connections (before an answer, and in
the middle of a response body) are injected with botocore's event hooks, so botocore's and
s3transfer's real retry logic runs against a real server (moto, SeaweedFS). Every save either
completes with data that loads back verified, or fails with one clear RoroError and NO ref
written: the log has no new event, and every event's objects exist and verify (``check_store``).
"""

from __future__ import annotations

import io
import os

import pytest
from botocore.response import StreamingBody
from support.s3faults import S3Calls, check_store, dropped_connection, fake_response, inject
from support.s3servers import create_bucket, s3_client

from roro import Project, StoreError
from roro.storage.layout import object_key

MiB = 1 << 20
PARTS = {"multipart_threshold": 5 * MiB, "multipart_chunksize": 5 * MiB}


def slow_down(request):
    return fake_response(request, 503, "SlowDown", "Please reduce your request rate.")


def internal_error(request):
    return fake_response(request, 500, "InternalError", "We encountered an internal error.")


def unreachable(request):
    from botocore.exceptions import EndpointConnectionError
    return EndpointConnectionError(endpoint_url=request.url)


@pytest.fixture
def url(s3_endpoint) -> str:
    return f"s3://{create_bucket(s3_endpoint)}/team"


@pytest.fixture
def repo(url, no_backoff):
    """A repository with one version saved without faults (the state a failure must keep)."""
    r = Project("p", url, **PARTS).get_model_repository("m")
    r.new_image(b"v1").save()  # also passes the conditional-write probe of this handle
    return r


def pending_uploads(endpoint: str, url: str) -> list:
    client = s3_client(endpoint)
    try:
        bucket = url[len("s3://"):].split("/")[0]
        return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    finally:
        client.close()


def fresh_loader(url: str, tmp_path, monkeypatch, name: str) -> Project:
    """Another machine: its own cache (and index), nothing in memory."""
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / name))
    return Project("p", url, **PARTS)


def test_save_survives_throttling_errors_and_dropped_connections(
        repo, url, s3_endpoint, tmp_path, monkeypatch, spool_dir):
    backend = repo.project.store.backend
    seen = {
        # the blob: existence check, then a 3-part multipart upload
        "HeadObject": inject(backend, "before-send.s3.HeadObject", [internal_error]),
        "CreateMultipartUpload": inject(backend, "before-send.s3.CreateMultipartUpload",
                                        [dropped_connection]),
        "UploadPart": inject(backend, "before-send.s3.UploadPart",
                             [slow_down, dropped_connection, None, slow_down]),
        "CompleteMultipartUpload": inject(backend, "before-send.s3.CompleteMultipartUpload",
                                          [internal_error]),
        # the manifest (3 faults, then it lands), then the event (1 fault, then it lands)
        "PutObject": inject(backend, "before-send.s3.PutObject",
                            [slow_down, dropped_connection, unreachable, None, internal_error]),
        "ListObjectsV2": inject(backend, "before-send.s3.ListObjectsV2", [slow_down]),
    }
    model = os.urandom(12 * MiB)
    image = repo.new_image(model).save(comment="through the storm")
    assert image.version == 2
    planned = {"HeadObject": 1, "CreateMultipartUpload": 1, "UploadPart": 4,
               "CompleteMultipartUpload": 1, "PutObject": 5, "ListObjectsV2": 1}
    for op, n in planned.items():
        assert len(seen[op]) > n, f"{op}: the faults were not all met"
    assert check_store(backend) == {"p/m": [1, 2]}
    assert pending_uploads(s3_endpoint, url) == []
    assert os.listdir(spool_dir) == []
    loaded = fresh_loader(url, tmp_path, monkeypatch, "other").get_model_repository("m")
    assert loaded.get_model() == model
    assert loaded.get_model_image().comment == "through the storm"


def _cut_body_once(state):
    """An ``after-call`` hook: the first GetObject response body dies after half its bytes
    (a connection dropped mid-transfer; s3transfer sees an IncompleteReadError)."""
    def handler(parsed, **_):
        if state and "Body" in parsed:
            state.pop()
            body = parsed["Body"]
            length = int(parsed["ContentLength"])
            head = body.read(length // 2)
            body.close()
            parsed["Body"] = StreamingBody(io.BytesIO(head), length)
    return handler


def test_load_survives_throttling_errors_and_dropped_connections(
        repo, url, tmp_path, monkeypatch):
    model = os.urandom(12 * MiB)
    digest = repo.new_image(model).save().manifest["model"]["digest"]
    loader = fresh_loader(url, tmp_path, monkeypatch, "loader")
    backend = loader.store.backend
    calls = S3Calls(backend)
    lrepo = loader.get_model_repository("m")
    lrepo.get_model_image()  # index and manifest first: every fault below hits the blob
    seen = inject(backend, "before-send.s3.GetObject",
                  [dropped_connection, slow_down, internal_error])
    cut = [1]
    backend.client.meta.events.register("after-call.s3.GetObject", _cut_body_once(cut))
    assert lrepo.get_model() == model
    assert not cut
    # 3 ranged GETs; s3transfer asked again for the range whose body was cut; and botocore
    # retried each of the 3 faulted attempts
    assert calls.count(["GetObject"], [digest]) == 3 + 1
    assert len(seen) == 3 + 1 + 3
    assert check_store(backend) == {"p/m": [1, 2]}


def test_save_that_keeps_failing_writes_no_ref(repo, url, s3_endpoint, spool_dir):
    backend = repo.project.store.backend
    handler = lambda request, **_: slow_down(request)  # noqa: E731
    backend.client.meta.events.register("before-send.s3.UploadPart", handler)
    image = repo.new_image(os.urandom(12 * MiB))
    with pytest.raises(StoreError, match="SlowDown") as info:
        image.save()
    assert type(info.value) is StoreError and "\n" not in str(info.value)
    assert not image.saved
    assert check_store(backend) == {"p/m": [1]}  # no new event
    assert repo.count() == 1
    assert pending_uploads(s3_endpoint, url) == []  # the failed upload was aborted
    assert os.listdir(spool_dir) == []
    # the draft is intact: once the store recovers, the same image saves
    backend.client.meta.events.unregister("before-send.s3.UploadPart", handler)
    assert image.save().version == 2
    assert check_store(backend) == {"p/m": [1, 2]}


def test_dropped_connections_on_the_ref_write_publish_nothing(repo, spool_dir):
    backend = repo.project.store.backend

    def drop_event_writes(request, **_):
        if "/log/" in request.url:
            raise dropped_connection(request)

    backend.client.meta.events.register("before-send.s3.PutObject", drop_event_writes)
    image = repo.new_image(os.urandom(100_000))
    with pytest.raises(StoreError, match="connection to endpoint .* kept failing during "
                                         "PutObject 'refs/p/m/log/0000000002.json'"):
        image.save()
    assert not image.saved
    assert check_store(backend) == {"p/m": [1]}
    assert os.listdir(spool_dir) == []


def test_load_that_keeps_failing_is_a_clear_error_and_caches_nothing(
        repo, url, tmp_path, monkeypatch):
    digest = repo.new_image(os.urandom(12 * MiB)).save().manifest["model"]["digest"]
    loader = fresh_loader(url, tmp_path, monkeypatch, "loader")
    lrepo = loader.get_model_repository("m")
    lrepo.get_model_image()
    def drop(request, **_):
        raise dropped_connection(request)

    loader.store.backend.client.meta.events.register("before-send.s3.GetObject", drop)
    with pytest.raises(StoreError, match=f"kept failing during GetObject '{object_key(digest)}'"):
        lrepo.get_model()
    cache = os.path.join(loader.store.cache_root(), "cache")
    leftovers = [f for _, _, files in os.walk(cache) for f in files]
    assert object_key(digest).split("/")[-1] not in leftovers
    assert not [f for f in leftovers if ".tmp" in f]
