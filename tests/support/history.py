"""Long histories, written fast: events and manifests built with the library's own builders and
put straight into a store, in parallel (what a real save does, minus the per-save refresh and
checkpoint), for tests and benchmarks that need hundreds or thousands of versions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from roro.digests import digest_bytes
from roro.objects.canonical import canonical_json
from roro.refs.events import make_event
from roro.storage.layout import log_key, object_key
from roro.store import Store

MODEL = b"model bytes shared by every version"


def manifest(i: int, blob: str) -> bytes:
    return canonical_json({
        "format": "roro.image/1", "author": "bench", "comment": f"v{i}",
        "timestamp": f"2026-11-27T10:00:00.{i:06d}Z",
        "model": {"digest": blob, "size": len(MODEL), "serializer": "cloudpickle",
                  "type": "builtins.bytes", "python": "3.11.0", "cloudpickle": "3.0.0"},
        "attachments": [], "metadata": {"i": i, "alpha": i / 7, "name": f"run-{i}"}})


def fill(store: Store, project: str, repository: str, versions: int, *, start: int = 0,
         tag_every: int = 0, workers: int = 16, first_version: int | None = None,
         manifests: dict[str, bytes] | None = None) -> list[bytes]:
    """Append ``versions`` version events (and a tag move every ``tag_every`` versions) after
    event ``start`` of a log that holds ``start`` events written by this function (or none);
    returns the bytes of every event written. ``first_version``: the number of the first new
    version when the caller knows it (else the log is read to count them); ``manifests``
    receives the manifests written, by digest."""
    store.ensure_initialized()
    backend = store.backend
    blob = digest_bytes(MODEL)
    backend.put_bytes_if_absent(object_key(blob), MODEL)
    prev = None
    if start:
        prev = digest_bytes(backend.get(log_key(project, repository, start)))
    events, objects = [], []
    seq = start
    version = sum(1 for _ in range(0))  # versions before ``start``: counted below
    if first_version is not None:
        version = first_version - 1
    elif start:
        from roro.refs.log import RefLog
        version = sum(1 for e in RefLog(backend, project, repository).read_after(0)
                      if e.type == "version")
    tag_target = None
    for _ in range(versions):
        version += 1
        seq += 1
        m = manifest(version, blob)
        d = digest_bytes(m)
        objects.append((object_key(d), m))
        if manifests is not None:
            manifests[d] = m
        e = make_event(seq, prev, "version", "bench", f"2026-11-27T10:00:00.{seq:06d}Z",
                       version=version, image=d, comment=f"v{version}")
        events.append((log_key(project, repository, seq), e.raw))
        prev = e.hash
        if tag_every and version % tag_every == 0:
            seq += 1
            e = make_event(seq, prev, "tag", "bench", f"2026-11-27T10:00:00.{seq:06d}Z",
                           tag="best", version=version, previous=tag_target)
            tag_target = version
            events.append((log_key(project, repository, seq), e.raw))
            prev = e.hash
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda kv: backend.put_bytes_if_absent(*kv), objects))
        list(pool.map(lambda kv: backend.put_if_absent(*kv), events))
    return [raw for _, raw in events]
