"""Tools for S3 tests: injected faults, a recorder of S3 calls, and a check of a whole store.

Faults go through botocore's event hooks (``before-send`` answers or raises instead of the
server), so botocore's real retry logic runs; its ``Stubber`` would bypass it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from roro.objects import ObjectStore
from roro.refs import RefLog, fold
from roro.refs.log import list_projects, list_repositories
from roro.storage import Backend
from roro.storage.layout import object_key


class RawBody(io.BytesIO):
    """The raw body of a fake response: botocore streams it or reads it."""

    def stream(self, **_):
        yield self.getvalue()


def fake_response(request, status: int, code: str, message: str = "injected") -> AWSResponse:
    """An S3 error response, as the server would send it."""
    body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message></Error>").encode()
    return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, RawBody(body))


def dropped_connection(request) -> Exception:
    """What botocore raises when the server closes the connection before answering."""
    from botocore.exceptions import ConnectionClosedError
    return ConnectionClosedError(endpoint_url=request.url)


@pytest.fixture
def no_backoff(monkeypatch):
    """Keep botocore's retry decisions but not its sleeps (up to 1+2+4+8 s for 5 attempts)."""
    from botocore.retries import standard
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


class S3Calls:
    """Every S3 operation a backend's client makes, as ``(operation, key)`` with the key
    relative to the store (None for bucket-level calls)."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.calls: list[tuple[str, str | None]] = []
        backend.client.meta.events.register("before-parameter-build.s3", self._record)

    def _record(self, params, model, **_):
        key = params.get("Key")
        if key is not None and self.backend.prefix:
            key = key[len(self.backend.prefix) + 1:]
        self.calls.append((model.name, key))

    def clear(self) -> None:
        self.calls.clear()

    def count(self, operations: Iterable[str], digests: Iterable[str] | None = None) -> int:
        """Calls of any of ``operations``, only on the objects of ``digests`` if given."""
        ops = set(operations)
        keys = None if digests is None else {object_key(d) for d in digests}
        return sum(1 for op, key in self.calls if op in ops and (keys is None or key in keys))


UPLOADS = ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")
DOWNLOADS = ("GetObject",)


def inject(backend: Any, event: str, plan: list[Callable[[Any], Any] | None]) -> list[int]:
    """Answer the first ``len(plan)`` requests of ``event`` (``before-send.s3.<Operation>``)
    with ``plan[i](request)``: a fake response, or an exception to raise (None: let it through).
    Returns a list that counts every request seen."""
    seen: list[int] = []

    def handler(request, **_):
        seen.append(1)
        if len(seen) <= len(plan) and plan[len(seen) - 1] is not None:
            outcome = plan[len(seen) - 1](request)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return None

    backend.client.meta.events.register(event, handler)
    return seen


def check_store(backend: Backend) -> dict[str, list[int]]:
    """An fsck of a whole store: every log reads back whole (contiguous, hash-chained, valid
    events), and every object that an event names (manifest, model, attachments) is present and
    hashes to its name. Returns ``{"project/repo": [seq, ...]}``; raises on any defect."""
    objects = ObjectStore(backend)
    out = {}
    for project in list_projects(backend):
        for repo in list_repositories(backend, project):
            events = RefLog(backend, project, repo).read_all()
            fold(repo, events)  # the hash chain and the fold rules hold
            for e in events:
                if e.type == "version":
                    objects.verify(e["image"])
                    manifest = objects.read_json(e["image"])
                    for digest in [manifest["model"]["digest"],
                                   *(a["digest"] for a in manifest["attachments"])]:
                        objects.verify(digest)
            out[f"{project}/{repo}"] = [e.seq for e in events]
    return out
