"""S3-specific behaviour of the S3 backend, on moto and on a real S3 server (SeaweedFS).

The storage contract itself runs on both through ``store_url`` in test_storage_contract.py. Faults
that no real server produces on demand (5xx, lost responses, a store ignoring If-None-Match, 403)
are injected with botocore events, which exercise botocore's real retry logic.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from botocore.awsrequest import AWSResponse
from support.s3faults import RawBody, fake_response
from support.s3servers import create_bucket, free_ports, s3_client

from roro.errors import ConflictError, NotFoundError, StoreError
from roro.storage import KeyNotFoundError, open_backend
from roro.storage.s3 import S3Backend, parse_s3_url

MiB = 1 << 20


@pytest.fixture
def backend(s3_endpoint):
    b = S3Backend(f"s3://{create_bucket(s3_endpoint)}/pre/fix")
    yield b
    b.close()


@pytest.fixture
def moto_backend(moto_endpoint, monkeypatch):
    from support.s3servers import use_endpoint
    use_endpoint(monkeypatch, moto_endpoint)
    b = S3Backend(f"s3://{create_bucket(moto_endpoint)}/p")
    yield b
    b.close()


# -- URLs and lazy import --------------------------------------------------------------------------
@pytest.mark.parametrize("url, expected", [
    ("s3://bucket", ("bucket", "")),
    ("s3://bucket/", ("bucket", "")),
    ("s3://my.bucket-1/a/b/", ("my.bucket-1", "a/b")),
])
def test_parse_url(url, expected):
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize("url", ["s3://", "s3://ab", "s3://Upper", "s3://b_x/p", "s3://bucket/a/../b",
                                 "s3://bucket/a//b", "s3://-bucket"])
def test_bad_url_refused(url):
    with pytest.raises(StoreError):
        S3Backend(url)


def test_import_and_construction_touch_no_boto3():
    code = ("import sys; from roro.storage import open_backend; "
            "b = open_backend('s3://some-bucket/p', endpoint_url='http://127.0.0.1:9'); "
            "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'imported'; "
            "print(b.url)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "s3://some-bucket/p"


# -- layout ----------------------------------------------------------------------------------------
def test_keys_live_under_the_prefix(backend, s3_endpoint):
    backend.put("objects/sha256/ab/cd", b"x")
    other = S3Backend(f"s3://{backend.bucket}/pre/other")
    assert list(other.list("")) == []
    raw = s3_client(s3_endpoint)
    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=backend.bucket)["Contents"]]
    assert keys == ["pre/fix/objects/sha256/ab/cd"]
    assert list(backend.list("")) == ["objects/sha256/ab/cd"]
    assert backend.list_dirs("") == ["objects"]


def test_list_order_of_layout_keys(backend):
    """Log keys (fixed width, one directory) and object keys (hex) list in byte order on both."""
    logs = [f"refs/p/r/log/{i:010d}.json" for i in (12, 1, 1000, 2, 11)]
    objects = [f"objects/sha256/{h}/{h * 31}" for h in ("0a", "ff", "a0", "09")]
    for k in logs + objects:
        backend.put(k, b"x")
    assert list(backend.list("refs/p/r/log/")) == sorted(logs)
    assert list(backend.list("objects/")) == sorted(objects)
    assert list(backend.list("refs/p/r/log/", start_after=sorted(logs)[2])) == sorted(logs)[3:]


def test_list_and_list_dirs_follow_pages(backend):
    """Pages of two keys (a real server paginating with continuation tokens)."""
    def small_pages(params, **_):
        params["MaxKeys"] = 2

    backend.client.meta.events.register("before-parameter-build.s3.ListObjectsV2", small_pages)
    pages = []
    backend.client.meta.events.register("after-call.s3.ListObjectsV2", lambda **_: pages.append(1))
    keys = [f"k/{i:04d}" for i in range(7)]
    for k in keys + [f"d/{name}/x" for name in "abcde"]:
        backend.put(k, b"")
    assert list(backend.list("k/")) == keys
    assert len(pages) == 4
    assert list(backend.list("k/", start_after="k/0002")) == keys[3:]
    assert backend.list_dirs("d/") == list("abcde")


# -- errors ----------------------------------------------------------------------------------------
def test_missing_bucket_is_a_clear_store_error(s3_endpoint):
    b = S3Backend("s3://roro-no-such-bucket/p")
    for call in (lambda: b.get("a/b"), lambda: b.exists("a/b"), lambda: b.stat("a/b"),
                 lambda: b.put("a/b", b"x"), lambda: b.put_if_absent("a/b", b"x"),
                 lambda: list(b.list("a/")), lambda: b.list_dirs("a/"),
                 lambda: b.download("a/b", "out"), b.probe_conditional_writes):
        with pytest.raises(StoreError, match=f"bucket roro-no-such-bucket does not exist at "
                                             f"endpoint {s3_endpoint}"):
            call()


def test_missing_key_is_key_not_found(backend, tmp_path):
    for call in (lambda: backend.get("a/missing"), lambda: backend.open("a/missing"),
                 lambda: backend.stat("a/missing"),
                 lambda: backend.download("a/missing", str(tmp_path / "out"))):
        with pytest.raises(KeyNotFoundError) as info:
            call()
        assert isinstance(info.value, NotFoundError) and info.value.key == "a/missing"
        assert "botocore" not in type(info.value).__module__
    assert not (tmp_path / "out").exists()
    assert backend.exists("a/missing") is False
    backend.delete("a/missing")


def test_unreachable_endpoint_fails_fast(monkeypatch):
    from support.s3servers import DUMMY_CREDENTIALS
    for var, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    (port,) = free_ports(1)  # nothing listens there
    endpoint = f"http://127.0.0.1:{port}"
    b = S3Backend("s3://some-bucket/p", endpoint_url=endpoint, max_retries=1, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(StoreError, match=f"cannot reach endpoint {endpoint}"):
        b.get("a/b")
    assert time.monotonic() - started < 10


def test_invalid_endpoint_is_store_error():
    with pytest.raises(StoreError, match="cannot use endpoint"):
        S3Backend("s3://some-bucket/p", endpoint_url="not a url").get("a/b")


def test_no_credentials_is_store_error(moto_endpoint, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    b = S3Backend("s3://some-bucket/p", endpoint_url=moto_endpoint, region="us-east-1")
    with pytest.raises(StoreError, match="no usable AWS credentials"):
        b.get("a/b")


def test_access_denied_is_store_error(moto_backend):
    def deny(request, **_):
        return fake_response(request, 403, "AccessDenied", "Access Denied")

    moto_backend.client.meta.events.register("before-send.s3.GetObject", deny)
    with pytest.raises(StoreError, match="access denied .*check credentials"):
        moto_backend.get("a/b")


# -- conditional writes ----------------------------------------------------------------------------
def test_probe_conditional_writes_passes(backend):
    backend.probe_conditional_writes()
    assert list(backend.list("")) == []  # the probe key is gone


@pytest.mark.parametrize("operation", ["probe", "put_if_absent"])
def test_store_ignoring_if_none_match(backend, operation):
    """A real server that receives no If-None-Match header overwrites, as a store without
    conditional writes would; the probe must refuse it."""
    def strip_condition(params, **_):
        params["headers"].pop("If-None-Match", None)

    backend.client.meta.events.register("before-call.s3.PutObject", strip_condition)
    if operation == "probe":
        with pytest.raises(StoreError, match="does not honour conditional writes"):
            backend.probe_conditional_writes()
        assert list(backend.list("")) == []
    else:  # what the probe protects against: two writers both "win"
        assert backend.put_if_absent("k", b"one") and backend.put_if_absent("k", b"two")


def test_put_if_absent_retries_409_conflict(moto_backend):
    calls = []

    def conflict_once(request, **_):
        calls.append(1)
        if len(calls) == 1:
            return fake_response(request, 409, "ConditionalRequestConflict")

    moto_backend.client.meta.events.register("before-send.s3.PutObject", conflict_once)
    assert moto_backend.put_if_absent("k", b"mine") is True
    assert moto_backend.get("k") == b"mine" and len(calls) == 2


def test_put_if_absent_409_forever_is_conflict_error(moto_backend):
    moto_backend.client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: fake_response(request, 409, "ConditionalRequestConflict"))
    with pytest.raises(ConflictError):
        moto_backend.put_if_absent("k", b"mine")


def _send_for_real(request) -> None:
    """Deliver a signed botocore request ourselves (the server applies it)."""
    body = request.body
    if hasattr(body, "read"):
        body.seek(0)
        body = body.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() != "expect"}  # unsigned
    headers.setdefault("Content-Type", "binary/octet-stream")  # else urllib sends a form type
    req = urllib.request.Request(request.url, data=body, method=request.method, headers=headers)
    urllib.request.urlopen(req, timeout=10).read()


def test_put_if_absent_lost_response_then_412_is_still_ours(backend, no_backoff):
    """The first attempt lands but its answer is lost (500); the retry gets 412 for our own write:
    that is a win, not a loss."""
    def land_then_fail(request, **_):
        if not land_then_fail.done:
            land_then_fail.done = True
            _send_for_real(request)
            return fake_response(request, 500, "InternalError")
    land_then_fail.done = False

    backend.client.meta.events.register("before-send.s3.PutObject", land_then_fail)
    assert backend.put_if_absent("refs/p/r/log/0000000001.json", b"mine") is True
    assert backend.get("refs/p/r/log/0000000001.json") == b"mine"


def test_put_if_absent_retry_then_412_of_another_writer_is_a_loss(backend, no_backoff):
    backend.put_if_absent("refs/p/r/log/0000000001.json", b"theirs")

    def fail_once(request, **_):
        if not fail_once.done:
            fail_once.done = True
            return fake_response(request, 500, "InternalError")
    fail_once.done = False

    backend.client.meta.events.register("before-send.s3.PutObject", fail_once)
    assert backend.put_if_absent("refs/p/r/log/0000000001.json", b"mine") is False
    assert fail_once.done


# -- retries ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("status, code", [(500, "InternalError"), (503, "SlowDown")])
def test_transient_errors_are_retried(moto_backend, no_backoff, status, code):
    attempts = []

    def fail_twice(request, **_):
        attempts.append(1)
        if len(attempts) <= 2:
            return fake_response(request, status, code)

    moto_backend.client.meta.events.register("before-send.s3.PutObject", fail_twice)
    moto_backend.put("a/b", b"data")
    assert len(attempts) == 3
    assert moto_backend.get("a/b") == b"data"


def test_persistent_errors_become_store_error(moto_backend, no_backoff):
    attempts = []

    def always_fail(request, **_):
        attempts.append(1)
        return fake_response(request, 503, "SlowDown", "Please reduce your request rate")

    moto_backend.client.meta.events.register("before-send.s3.PutObject", always_fail)
    with pytest.raises(StoreError, match="SlowDown") as info:
        moto_backend.put("a/b", b"data")
    assert type(info.value) is StoreError
    assert len(attempts) == 6  # botocore's max_attempts=5 counts retries: 1 + 5 attempts
    assert not moto_backend.exists("a/b")


def test_read_error_mid_stream_is_store_error(moto_backend):
    moto_backend.put("a/b", b"x" * 1000)

    def short_body(request, **_):
        return AWSResponse(request.url, 200, {"Content-Length": "1000"}, RawBody(b"x" * 10))

    moto_backend.client.meta.events.register("before-send.s3.GetObject", short_body)
    with pytest.raises(StoreError):
        moto_backend.get("a/b")


# -- large files -----------------------------------------------------------------------------------
def test_multipart_put_file_round_trip(s3_endpoint, tmp_path):
    b = S3Backend(f"s3://{create_bucket(s3_endpoint)}/m", multipart_threshold=5 * MiB,
                  multipart_chunksize=5 * MiB)
    parts = []
    b.client.meta.events.register("before-call.s3.UploadPart", lambda **_: parts.append(1))
    data = os.urandom(20 * MiB + 123)
    src = tmp_path / "big"
    src.write_bytes(data)
    b.put_file("objects/big", str(src))
    assert len(parts) == 5
    assert b.stat("objects/big").size == len(data)
    dst = tmp_path / "down"
    b.download("objects/big", str(dst))  # parallel ranged GETs
    assert dst.read_bytes() == data
    with b.open("objects/big") as f:
        assert f.read(10) == data[:10]
        assert f.read() == data[10:]
    b.close()


def test_failed_multipart_upload_is_aborted(moto_backend, tmp_path, no_backoff):
    b = S3Backend(f"s3://{moto_backend.bucket}/m", multipart_threshold=5 * MiB,
                  multipart_chunksize=5 * MiB, max_retries=1)
    b.client.meta.events.register(
        "before-send.s3.UploadPart",
        lambda request, **_: fake_response(request, 500, "InternalError"))
    src = tmp_path / "big"
    src.write_bytes(os.urandom(11 * MiB))
    with pytest.raises(StoreError, match="InternalError"):
        b.put_file("objects/big", str(src))
    assert not b.exists("objects/big")
    uploads = b.client.list_multipart_uploads(Bucket=b.bucket).get("Uploads", [])
    assert uploads == []


# -- writes of content-addressed objects -----------------------------------------------------------
def test_a_small_object_is_one_conditional_put_a_large_one_looks_first(backend, tmp_path,
                                                                      monkeypatch):
    from roro.storage import s3
    calls = []
    backend.client.meta.events.register("before-call.s3", lambda model, params, **_: calls.append(
        (model.name, "If-None-Match" in params.get("headers", {}))))
    small = tmp_path / "small"
    small.write_bytes(b"small object")
    assert backend.put_file_if_absent("objects/small", str(small)) is True
    assert backend.put_file_if_absent("objects/small", str(small)) is False
    assert calls == [("PutObject", True), ("PutObject", True)]
    calls.clear()
    monkeypatch.setattr(s3, "CONDITIONAL_PUT_MAX", 4)
    assert backend.put_file_if_absent("objects/large", str(small)) is True
    assert backend.put_file_if_absent("objects/large", str(small)) is False
    # (HeadBucket: once per handle, after the first 404 of a HEAD, to tell a missing key from
    # a missing bucket)
    assert [n for n, _ in calls if n != "HeadBucket"] == ["HeadObject", "PutObject", "HeadObject"]


def test_open_backend_uses_env_endpoint(s3_endpoint):
    b = open_backend(f"s3://{create_bucket(s3_endpoint)}/x")
    assert isinstance(b, S3Backend) and b.endpoint_url == s3_endpoint
    b.put("k", b"v")
    assert b.get("k") == b"v"


# -- the test servers themselves -------------------------------------------------------------------
def test_seaweedfs_that_cannot_start_reports_its_log(tmp_path, monkeypatch):
    from support import s3servers

    real = s3servers.seaweedfs_command
    monkeypatch.setattr(s3servers, "seaweedfs_command",
                        lambda workdir, ports: real(workdir, ports) + ["-no.such.flag=1"])
    with pytest.raises(s3servers.ServerStartError, match="SeaweedFS exited with status"):
        s3servers.start_seaweedfs(tmp_path / "sw", timeout=20)
