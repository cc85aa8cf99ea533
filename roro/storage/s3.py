"""A store in an S3-compatible bucket: ``s3://bucket/prefix``.

Keys live at ``<prefix>/<key>`` in the bucket. Create-if-absent is ``PutObject`` with
``If-None-Match: *`` (412 means someone else won); :meth:`S3Backend.probe_conditional_writes` checks
that a store really honours it before the refs layer relies on it.

boto3 is imported only when the first request is made (it costs ~0.2 s to import). Every botocore
and boto3 exception is translated to a :class:`roro.RoroError` in exactly one place,
:meth:`S3Backend._translate`, through the :meth:`S3Backend._boto` context manager that wraps every
client call; no botocore type escapes this module.

Retries of transient faults (5xx, throttling, dropped connections) are botocore's ``standard`` mode,
set explicitly because the default mode has changed across releases. Every wait has a deadline a
user can predict (issue 13): while the endpoint has never answered this backend, a request waits at
most ``first_contact_timeout`` seconds for an answer and is not retried (an endpoint that accepts
connections and never answers fails in ~10 s, not 6 × 60 s); once it has answered, a request's
retries stop when ``retry_deadline`` seconds have passed since it began, and no attempt waits past
that deadline.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from ..environment import cache_dir
from ..errors import ConflictError, RoroError, StoreError
from ..units import env_seconds
from .base import (
    Backend,
    KeyInfo,
    KeyInfos,
    KeyNotFoundError,
    Names,
    SizedReader,
    TooLargeError,
    check_key,
    refuse_too_large,
)
from .url import parse_s3_url

__all__ = ["S3Backend", "parse_s3_url"]

MiB = 1 << 20
MULTIPART_THRESHOLD = 64 * MiB
MULTIPART_CHUNKSIZE = 32 * MiB
MAX_CONCURRENCY = 8
#: Objects up to this size are written with one conditional PUT (the bytes in one request, a
#: 412 if present); larger ones are looked for (HEAD) before their bytes are sent.
CONDITIONAL_PUT_MAX = 8 * MiB
#: Attempts of a chunk's GET whose body ended early (botocore retries the request, not the body).
GET_INTO_ATTEMPTS = 2
CONFLICT_RETRIES = 5  # attempts of a conditional put answered 409 ConditionalRequestConflict
PROBE_PREFIX = "roro-probe/"
FIRST_CONTACT_TIMEOUT = 10.0  # seconds a request waits for an endpoint that never answered yet
RETRY_DEADLINE = 120.0  # seconds one request may spend in all its attempts, once it answered
#: Environment variables for the two deadlines (a store option or roro.yml key wins over them).
DEADLINE_VARIABLES = {"first_contact_timeout": "RORO_S3_FIRST_CONTACT_TIMEOUT",
                      "retry_deadline": "RORO_S3_RETRY_DEADLINE"}

_ACCESS_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                  "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "Forbidden", "403"}
_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                    "TokenRefreshRequired"}
_AMBIGUOUS_404 = {"404", "NotFound"}  # HEAD responses have no body: missing key or missing bucket


class _Expected(Exception):
    """An S3 error code the caller asked to handle itself (e.g. 412 in put_if_absent)."""

    def __init__(self, code: str, retry_attempts: int):
        super().__init__(code)
        self.code = code
        self.retry_attempts = retry_attempts


class S3Backend(Backend):
    """Raw keys in an S3 bucket, under an optional prefix.

    Args:
        url: ``s3://bucket`` or ``s3://bucket/prefix``.
        endpoint_url: an S3-compatible endpoint (SeaweedFS, MinIO, ...); defaults to the
            ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` environment variable, else AWS.
        region: the bucket's region; defaults to boto3's resolution (``AWS_DEFAULT_REGION``...).
        max_retries: retries of a failed request after the first attempt, in botocore's standard
            retry mode (botocore calls it ``max_attempts``: 5 means up to 6 attempts).
        connect_timeout, read_timeout: seconds (``read_timeout``: the longest silence within one
            attempt, once the endpoint has answered).
        first_contact_timeout: seconds a request waits for an answer while the endpoint has never
            answered this backend (it is then not retried); default ``$RORO_S3_FIRST_CONTACT_TIMEOUT``,
            else 10.
        retry_deadline: seconds one request may spend in all its attempts once the endpoint has
            answered; default ``$RORO_S3_RETRY_DEADLINE``, else 120.
        multipart_threshold, multipart_chunksize: bytes, for :meth:`put_file` and :meth:`download`.

    Credentials come from the standard chain (environment, profile, instance role...). The option
    names are :data:`roro.storage.url.STORE_OPTIONS`.
    """

    remote = True

    def __init__(self, url: str, endpoint_url: str | None = None, region: str | None = None, *,
                 max_retries: int = 5, connect_timeout: float = 5, read_timeout: float = 60,
                 multipart_threshold: int = MULTIPART_THRESHOLD,
                 multipart_chunksize: int = MULTIPART_CHUNKSIZE,
                 first_contact_timeout: float | None = None,
                 retry_deadline: float | None = None):
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.endpoint_url = (endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                             or os.environ.get("AWS_ENDPOINT_URL") or None)
        self.region = region
        self.max_retries = max_retries
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.first_contact_timeout = _seconds("first_contact_timeout", first_contact_timeout,
                                              FIRST_CONTACT_TIMEOUT)
        self.retry_deadline = _seconds("retry_deadline", retry_deadline, RETRY_DEADLINE)
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._bucket_seen = False  # set once the bucket is known to exist
        self._reached = False  # set once the endpoint has answered any request
        self._prepared = False  # set once the conditional-write probe passed

    # -- client ----------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use (tests register botocore event hooks on it)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    with self._boto("connect"):
                        self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        import boto3  # boto3 (~0.2 s): at the first S3 request
        from botocore.config import Config  # boto3 (~0.2 s): at the first S3 request
        from botocore.httpsession import URLLib3Session  # (imported with boto3 above)

        # A recent botocore lets each request carry its own read timeout (request.context); with
        # an older one every attempt waits at most the first-contact timeout instead.
        self._per_request_timeouts = hasattr(URLLib3Session, "_get_request_timeout")
        read_timeout = self.read_timeout if self._per_request_timeouts else min(
            self.read_timeout, self.first_contact_timeout)
        config = Config(
            retries={"mode": "standard", "max_attempts": self.max_retries},
            connect_timeout=self.connect_timeout, read_timeout=read_timeout,
            max_pool_connections=32,
            # We keep our own sha256 of every object; CRC trailers only break older S3 clones.
            request_checksum_calculation="when_required",
            # Custom endpoints (SeaweedFS, MinIO, an IP address) rarely have wildcard DNS.
            s3={"addressing_style": "path"} if self.endpoint_url else None,
        )
        try:
            session = boto3.session.Session()
            client = session.client("s3", endpoint_url=self.endpoint_url,
                                    region_name=self.region, config=config)
        except ValueError as e:  # botocore says "Invalid endpoint: ..."
            raise StoreError(f"cannot use endpoint {self.endpoint_url!r} for store {self.url}: "
                             f"{e}") from e
        client.meta.events.register_first("needs-retry.s3", self._fail_fast_if_never_reached)
        client.meta.events.register_first("before-call.s3", self._start_clock)
        client.meta.events.register_first("before-send.s3", self._bound_attempt)
        return client

    def _start_clock(self, context: dict[str, Any] | None = None, **_: Any) -> None:
        """When a request begins (before its first attempt): the start of its deadline."""
        if context is not None:
            context.setdefault("roro_started", time.monotonic())

    def _bound_attempt(self, request: Any = None, **_: Any) -> None:
        """Before each attempt: how long it may wait for an answer (the first-contact timeout
        while the endpoint never answered; else the read timeout, but never past the request's
        deadline)."""
        context = getattr(request, "context", None)
        if context is None:
            return
        if not self._reached:
            context["read_timeout"] = self.first_contact_timeout
            return
        left = self.retry_deadline - (time.monotonic() - context.get("roro_started",
                                                                       time.monotonic()))
        context["read_timeout"] = max(1.0, min(self.read_timeout, left))

    def _fail_fast_if_never_reached(self, response: Any = None,
                                    caught_exception: BaseException | None = None,
                                    request_dict: dict[str, Any] | None = None,
                                    **_: Any) -> bool | None:
        """Veto botocore's retries of a connection that could not even be opened while the
        endpoint has never answered: a wrong endpoint URL, a DNS name that does not resolve or a
        server that is down then fails in one attempt instead of after ~30 s of back-off. Once
        the endpoint has answered, such errors are transient and retried as usual.

        Runs before botocore's own retry handler on ``needs-retry``; returning False (not None)
        ends the retries there."""
        if response is not None:
            self._reached = True
        elif not self._reached and caught_exception is not None:
            return False  # never answered: no retry (a wrong URL, a server down or silent)
        started = (request_dict or {}).get("context", {}).get("roro_started")
        if started is not None and time.monotonic() - started >= self.retry_deadline:
            return False  # the request's deadline has passed: raise what the last attempt got
        return None

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig  # boto3 (~0.2 s): at the first S3 request
        return TransferConfig(multipart_threshold=self.multipart_threshold,
                              multipart_chunksize=self.multipart_chunksize,
                              max_concurrency=MAX_CONCURRENCY, use_threads=True)

    def _endpoint(self) -> str:
        if self._client is not None:
            return self._client.meta.endpoint_url
        return self.endpoint_url or "the default AWS endpoint"

    # -- error mapping: the one place where botocore exceptions become roro errors ----------------
    @contextmanager
    def _boto(self, op: str, key: str | None = None,
              expect: frozenset[str] = frozenset()) -> Iterator[None]:
        """Run a block of client calls; translate what it raises. ClientErrors whose code is in
        ``expect`` are raised as :class:`_Expected` for the caller to handle."""
        try:
            yield
        except RoroError:
            raise
        except Exception as e:
            code = _error_code(e)
            if code is not None and code in expect:
                raise _Expected(code, _retry_attempts(e)) from e
            err = self._translate(e, op, key)
            if err is None:
                raise
            raise err from e

    def _translate(self, exc: BaseException, op: str, key: str | None) -> RoroError | None:
        from boto3.exceptions import (  # boto3 (~0.2 s): at the first S3 request
            Boto3Error,
            S3UploadFailedError,
        )
        from botocore import exceptions as bex  # (imported with boto3 above)

        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, bex.ClientError):
            exc = exc.__context__  # s3transfer hides the real error behind a message
        what = f"{op} {key!r}" if key is not None else op
        if isinstance(exc, bex.ClientError):
            code = _error_code(exc) or ""
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = exc.response.get("Error", {}).get("Message", "")
            if code == "NoSuchBucket":
                return self._no_bucket()
            if code == "NoSuchKey" and key is not None:
                return KeyNotFoundError(key, self.url)
            if code in _AMBIGUOUS_404 and key is not None:
                self._check_bucket()  # raises if the bucket is what is missing
                return KeyNotFoundError(key, self.url)
            if code in _BAD_CREDENTIALS:
                return StoreError(f"endpoint {self._endpoint()} rejected the credentials for "
                                  f"store {self.url} ({code} on {what}): check "
                                  "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
            if code in _ACCESS_DENIED or status == 403:
                return StoreError(f"access denied to store {self.url} at endpoint "
                                  f"{self._endpoint()} ({code} on {what}): check credentials "
                                  "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE) "
                                  "and that they may read, list and write the bucket's prefix "
                                  "(see docs/s3.md)")
            return StoreError(f"S3 error on store {self.url} at endpoint {self._endpoint()}: "
                              f"{code or status} {message} (during {what})".rstrip())
        if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError,
                            bex.CredentialRetrievalError)):
            return StoreError(f"no usable AWS credentials for store {self.url} ({exc}): set "
                              "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
        if isinstance(exc, (bex.EndpointConnectionError, bex.ConnectTimeoutError,
                            bex.ProxyConnectionError)):
            return StoreError(f"cannot reach endpoint {self._endpoint()} for store {self.url}: "
                              "check the endpoint URL (AWS_ENDPOINT_URL or endpoint_url in "
                              "roro.yml) and the network")
        if isinstance(exc, bex.ReadTimeoutError) and not self._reached:
            return StoreError(f"endpoint {self._endpoint()} accepted the connection but did not "
                              f"answer within {self.first_contact_timeout:g} s (during {what} on "
                              f"store {self.url}): check the endpoint URL (AWS_ENDPOINT_URL or "
                              f"endpoint_url in roro.yml), or raise first_contact_timeout "
                              f"(RORO_S3_FIRST_CONTACT_TIMEOUT) for a slow endpoint")
        if isinstance(exc, bex.ReadTimeoutError):
            return StoreError(f"endpoint {self._endpoint()} stopped answering during {what} on "
                              f"store {self.url}: gave up at the retry deadline of "
                              f"{self.retry_deadline:g} s (retry_deadline, "
                              f"RORO_S3_RETRY_DEADLINE); try again")
        if isinstance(exc, bex.HTTPClientError):  # dropped connections, broken streams
            return StoreError(f"the connection to endpoint {self._endpoint()} kept failing during "
                              f"{what} on store {self.url} ({exc}; retried up to the deadline of "
                              f"{self.retry_deadline:g} s); try again")
        if isinstance(exc, (bex.BotoCoreError, Boto3Error)):
            return StoreError(f"S3 failure during {what} on store {self.url} at endpoint "
                              f"{self._endpoint()}: {exc}")
        return None

    def _no_bucket(self) -> StoreError:
        return StoreError(f"bucket {self.bucket} does not exist at endpoint {self._endpoint()}: "
                          "create it, or check the store URL and endpoint")

    def _check_bucket(self) -> None:
        """After an ambiguous 404 (HEAD has no error body): raise if the bucket is missing."""
        if self._bucket_seen:
            return
        from botocore.exceptions import ClientError  # boto3 (~0.2 s): at the first S3 request
        try:
            with self._boto("HeadBucket", expect=frozenset(_AMBIGUOUS_404 | {"NoSuchBucket"})):
                try:
                    self.client.head_bucket(Bucket=self.bucket)
                except ClientError as e:
                    # Allowed to read objects but not to HEAD the bucket: assume it exists.
                    if _error_code(e) not in _ACCESS_DENIED:
                        raise
        except _Expected:
            raise self._no_bucket() from None
        self._bucket_seen = True

    # -- keys ------------------------------------------------------------------------------------
    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _full_prefix(self, prefix: str) -> str:
        check_key(prefix + "x")  # a prefix is a key without its last characters
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    def _strip(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    # -- reads -----------------------------------------------------------------------------------
    def get(self, key: str, max_size: int | None = None) -> bytes:
        if max_size is None:
            with self.open(key) as f:
                return f.read()
        full = self._full(key)
        with self._boto("GetObject", key):
            response = self.client.get_object(Bucket=self.bucket, Key=full)
        body = response["Body"]
        try:
            refuse_too_large(key, int(response.get("ContentLength") or 0), max_size, self.url)
            with self._boto("GetObject", key):
                data: bytes = body.read(max_size + 1)  # never more, whatever the header said
            refuse_too_large(key, len(data), max_size, self.url)
            return data
        finally:
            body.close()

    def get_into(self, key: str, buffer: memoryview) -> int:
        """GetObject, its body read straight from the socket into ``buffer`` (no copy in
        between: http.client's ``readinto`` under urllib3). An object longer than the view is
        :class:`TooLargeError` before a byte is read (its Content-Length) or as soon as a byte
        too many arrives; a body that ends before its Content-Length (a dropped connection) is
        fetched once more, then a StoreError."""
        for attempt in range(GET_INTO_ATTEMPTS):
            try:
                return self._get_into(key, buffer)
            except _Truncated as e:
                if attempt + 1 == GET_INTO_ATTEMPTS:
                    raise StoreError(f"the connection to endpoint {self._endpoint()} broke "
                                     f"during GetObject {key!r} on store {self.url}: {e} "
                                     f"({GET_INTO_ATTEMPTS} attempts); try again") from None
        raise AssertionError("unreachable")

    def _get_into(self, key: str, buffer: memoryview) -> int:
        import http.client  # with boto3, at the first S3 request
        full = self._full(key)
        with self._boto("GetObject", key):
            response = self.client.get_object(Bucket=self.bucket, Key=full)
        body = response["Body"]
        limit = len(buffer)
        try:
            length = response.get("ContentLength")
            if length is not None:
                refuse_too_large(key, int(length), limit, self.url)
            raw: Any = getattr(body, "_raw_stream", None)
            fp: Any = getattr(raw, "_fp", None)
            direct = isinstance(fp, http.client.HTTPResponse) \
                and not raw.headers.get("content-encoding")
            got = 0
            try:
                with self._boto("GetObject", key):
                    while got < limit:
                        view = buffer[got:]
                        if direct:
                            n = fp.readinto(view)
                        else:  # bounded pieces through botocore: no chunk-sized copy
                            data = body.read(min(len(view), MiB))
                            n = len(data)
                            view[:n] = data
                        if not n:
                            break
                        got += n
                    extra = (fp.read(1) if direct else body.read(1)) \
                        if got == limit and length is None else b""
            except (OSError, http.client.HTTPException) as e:
                raise _Truncated(f"{type(e).__name__} after {got} bytes") from None
            if extra:
                raise TooLargeError(key, limit + 1, limit, self.url)
            if length is not None and got < int(length):
                raise _Truncated(f"the body ended after {got} of its {length} bytes")
            if direct and fp.isclosed():
                raw.release_conn()  # read to its end: the connection serves the next GET
            return got
        finally:
            body.close()

    def open(self, key: str) -> BinaryIO:
        full = self._full(key)
        with self._boto("GetObject", key):
            body = self.client.get_object(Bucket=self.bucket, Key=full)["Body"]
        return io.BufferedReader(_BodyReader(self, body, key), buffer_size=MiB)

    def download(self, key: str, path: str) -> None:
        """Parallel ranged GETs for large objects; the file appears at ``path`` only when whole."""
        full = self._full(key)
        with self._boto("GetObject", key):
            self.client.download_file(self.bucket, full, os.fspath(path),
                                      Config=self._transfer_config())

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except KeyNotFoundError:
            return False
        return True

    def stat(self, key: str) -> KeyInfo:
        full = self._full(key)
        with self._boto("HeadObject", key):
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        return KeyInfo(key, int(head["ContentLength"]), head["LastModified"].timestamp(),
                       _etag(head.get("ETag")))

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        """Keys in the order the server lists them: UTF-8 byte order on AWS S3 and moto.

        SeaweedFS lists directory by directory, so a key under ``a/`` comes before a sibling
        ``a-b`` or ``a.b``; and its ``StartAfter`` skips in that order. The key layout never puts
        such siblings under one listed prefix where order matters (log keys are fixed-width file
        names in one directory; object keys are hex).
        """
        full_prefix = self._full_prefix(prefix)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_prefix}
        if start_after is not None:
            kwargs["StartAfter"] = self._full(start_after)
        return self._list(kwargs, prefix, start_after)

    def _list(self, kwargs: dict[str, Any], prefix: str, start_after: str | None) -> Iterator[str]:
        for info in self._list_info(kwargs, prefix, start_after):
            yield info.key

    def list_info(self, prefix: str, start_after: str | None = None) -> Iterator[KeyInfo]:
        """Sizes, modification times and ETags come with the listing: no request per key."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._full_prefix(prefix)}
        if start_after is not None:
            kwargs["StartAfter"] = self._full(start_after)
        return self._list_info(kwargs, prefix, start_after)

    def _list_info(self, kwargs: dict[str, Any], prefix: str,
                   start_after: str | None) -> Iterator[KeyInfo]:
        with self._boto(f"ListObjectsV2 {prefix!r}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                for item in page.get("Contents", ()):
                    key = self._strip(item["Key"])
                    if start_after is None or key > start_after:
                        yield KeyInfo(key, int(item["Size"]), item["LastModified"].timestamp(),
                                      _etag(item.get("ETag")))

    def list_dirs(self, prefix: str) -> Names:
        full_prefix = self._full_prefix(prefix)
        names = set()
        with self._boto(f"ListObjectsV2 {prefix!r}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix, Delimiter="/"):
                for item in page.get("CommonPrefixes", ()):
                    name = item["Prefix"][len(full_prefix):].rstrip("/")
                    if name:
                        names.add(name)
        return sorted(names)

    # -- writes ----------------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        full = self._full(key)
        with self._boto("PutObject", key):
            self.client.put_object(Bucket=self.bucket, Key=full, Body=bytes(data))

    def replace(self, key: str, data: bytes) -> None:
        self.put(key, data)  # a PutObject replaces atomically

    def put_file(self, key: str, path: str) -> None:
        """Multipart above the threshold, parts in parallel; a failed upload is aborted."""
        full = self._full(key)
        with self._boto("PutObject", key):
            self.client.upload_file(os.fspath(path), self.bucket, full,
                                    Config=self._transfer_config())

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._put_conditional(key, data, lost_answer_is_ours=True)

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """412 always means "was present": a retried attempt's lost answer is not taken for a
        creation (the bytes would be the same either way); the caller looks at its age."""
        return self._put_conditional(key, data, lost_answer_is_ours=False)

    def _put_conditional(self, key: str, data: bytes, lost_answer_is_ours: bool) -> bool:
        full = self._full(key)
        # A read-only file over the caller's bytes, not bytes: botocore's connection glues a
        # bytes body to the headers before sending, and a bytearray would be a copy of its own
        # (either: one more copy of every chunk in flight, up to 16 MiB each).
        body = _ViewFile(data)
        for attempt in range(CONFLICT_RETRIES):
            try:
                with self._boto("PutObject", key, expect=frozenset({
                        "PreconditionFailed", "ConditionalRequestConflict"})):
                    self.client.put_object(Bucket=self.bucket, Key=full, Body=body, IfNoneMatch="*")
                return True
            except _Expected as e:
                if e.code == "PreconditionFailed":
                    # After a retried attempt our own first try may have landed and only its
                    # answer was lost: then the key holds exactly our bytes, and we created it.
                    return (lost_answer_is_ours and e.retry_attempts > 0
                            and self.get(key) == bytes(data))
                # 409: a concurrent conditional write to this key is in flight; try again.
                time.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))
        raise ConflictError(f"conditional writes to {key!r} on store {self.url} kept conflicting "
                            f"(409 ConditionalRequestConflict, {CONFLICT_RETRIES} attempts); "
                            "try again")

    def delete(self, key: str) -> None:
        full = self._full(key)
        with self._boto("DeleteObject", key):
            self.client.delete_object(Bucket=self.bucket, Key=full)

    def put_file_if_absent(self, key: str, path: str) -> bool:
        """A small file (up to :data:`CONDITIONAL_PUT_MAX`, below the multipart threshold) is
        one ``PutObject`` with ``If-None-Match: *`` (412: present); a larger one is looked for
        first (HEAD), so that its bytes are not sent for nothing, then uploaded (multipart above
        the threshold)."""
        size = os.path.getsize(path)
        if size <= min(CONDITIONAL_PUT_MAX, self.multipart_threshold - 1):
            with open(path, "rb") as f:
                return self.put_bytes_if_absent(key, f.read())
        try:
            if self.stat(key).size == size:
                return False  # present (one of another size is damage: written again)
        except KeyNotFoundError:
            pass
        self.put_file(key, path)
        return True

    def collect_temp(self, older_than: float, dry_run: bool = False) -> KeyInfos:
        """Incomplete multipart uploads under the store's prefix (a killed save's, or one whose
        abort failed) started more than ``older_than`` seconds ago: aborted, unless ``dry_run``.
        They keep costing storage until aborted, and S3 lists them nowhere else. Sizes are the
        parts uploaded (one ListParts each); ages are the server's clock (keep the grace period
        far above any skew)."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        now = time.time()
        out: KeyInfos = []
        with self._boto("ListMultipartUploads"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix)
            stale = [(u["Key"], u["UploadId"], u["Initiated"].timestamp())
                     for page in pages for u in page.get("Uploads", ())
                     if now - u["Initiated"].timestamp() >= older_than]
        for full, upload_id, started in stale:
            key = self._strip(full)
            with self._boto("ListParts", key):
                size = sum(p.get("Size", 0) for page in self.client.get_paginator(
                    "list_parts").paginate(Bucket=self.bucket, Key=full, UploadId=upload_id)
                    for p in page.get("Parts", ()))
            if not dry_run:
                try:
                    with self._boto("AbortMultipartUpload", key, expect=frozenset({
                            "NoSuchUpload", "404"})):
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=full,
                                                           UploadId=upload_id)
                except _Expected:
                    continue  # completed or aborted meanwhile
            out.append(KeyInfo(f"{key} (multipart upload {upload_id})", size, started))
        return out

    def cache_identity(self) -> str:
        """The URL and the endpoint it resolved to: the same bucket name on two servers is two
        stores."""
        return json.dumps([self.url, self.endpoint_url])

    def prepare_for_writes(self) -> None:
        """Probe conditional writes before the first write of this handle, unless this machine
        probed the same endpoint and bucket through the same proxy settings less than
        :data:`PROBE_MAX_AGE` ago (a record in the user cache, ``probes/``): another endpoint or
        proxy, which may drop ``If-None-Match``, is probed anew. Only a pass is recorded."""
        if not self._prepared:
            record = self._probe_record()
            if not _recent_probe(*record):
                self.probe_conditional_writes()
                _write_probe(*record)
            self._prepared = True

    def _probe_record(self) -> tuple[str, dict[str, Any]]:
        """Where this machine records a passed probe of this endpoint, bucket and proxy
        settings, and what the record says of them."""
        proxies = sorted((k, v) for k, v in os.environ.items()
                         if k.lower() in _PROXY_VARIABLES and v)
        identity = {"endpoint": self._endpoint(), "bucket": self.bucket, "proxies": proxies}
        name = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
        return os.path.join(cache_dir(), "probes", f"{name}.json"), identity

    def probe_conditional_writes(self) -> None:
        """Check that the store refuses a second ``If-None-Match: *`` write of one key.

        Raises:
            StoreError: the store overwrote the key (or rejected the header): using it would let
                two writers both believe they published the same ref.
        """
        key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        full = self._full(key)
        unsafe = StoreError(f"store {self.url} at endpoint {self._endpoint()} does not honour "
                            "conditional writes (PutObject with If-None-Match: *), which roro "
                            "needs to keep concurrent saves safe; refusing to write to it. Use "
                            "a server that supports them (AWS S3, MinIO, SeaweedFS, Cloudflare "
                            "R2, Ceph RGW: see docs/s3.md)")
        with self._boto("PutObject", key):
            self.client.put_object(Bucket=self.bucket, Key=full, Body=b"first", IfNoneMatch="*")
        try:
            try:
                with self._boto("PutObject", key, expect=frozenset({"PreconditionFailed"})):
                    self.client.put_object(Bucket=self.bucket, Key=full, Body=b"second",
                                           IfNoneMatch="*")
            except _Expected:
                pass  # 412: refused, as it must be
            except StoreError as e:
                raise StoreError(f"{unsafe} (the second write failed otherwise: {e})") from e
            else:
                raise unsafe
            if self.get(key) != b"first":
                raise unsafe
        finally:
            try:
                self.delete(key)
            except RoroError:
                pass

    def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


#: How long a passed conditional-write probe is trusted on this machine (re-probed after that).
PROBE_MAX_AGE = 24 * 3600
_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})


def _recent_probe(path: str, identity: dict[str, Any]) -> bool:
    """Did this machine pass the probe of ``identity`` less than PROBE_MAX_AGE ago?"""
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read(64 << 10))
        age = time.time() - float(record["probed_at"])
        return record.get("identity") == json.loads(json.dumps(identity)) \
            and 0 <= age < PROBE_MAX_AGE
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_probe(path: str, identity: dict[str, Any]) -> None:
    """Record a passed probe (best effort: without the record, the next handle probes)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "w") as f:
            json.dump({"identity": identity, "probed_at": time.time()}, f)
        os.replace(tmp, path)
    except OSError:
        pass


class _Truncated(Exception):
    """A GetObject body that ended before its Content-Length (the connection broke)."""


class _BodyReader(io.RawIOBase):
    """A GetObject body as a raw binary stream whose read errors are roro errors."""

    def __init__(self, backend: S3Backend, body: Any, key: str):
        self._backend = backend
        self._body = body
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with self._backend._boto("GetObject", self._key):
            data = self._body.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                self._body.close()
            finally:
                super().close()


def _seconds(option: str, value: float | None, default: float) -> float:
    """A deadline: the option if given, else its environment variable, else ``default``."""
    if value is None:
        return env_seconds(DEADLINE_VARIABLES[option], default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise StoreError(f"{option} must be a positive number of seconds, not {value!r}")
    return float(value)


def _etag(value: Any) -> str | None:
    """An ETag as S3 sends it (``"<hex>"``, quotes included), without the quotes."""
    return value.strip('"') if isinstance(value, str) and value else None


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def _retry_attempts(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)
    return 0


class _ViewFile(SizedReader):
    """A seekable, read-only binary file over a bytes-like object, without a copy of it (each
    read copies only what it returns): a PUT body botocore can hash, sign, send in blocks and
    rewind for a retry."""

    def __init__(self, data: Any) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B")

    def __len__(self) -> int:
        return len(self._view)

    def _size(self) -> int:
        return len(self._view)

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        n = max(0, min(len(out), len(self._view) - self._pos))
        out[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n
