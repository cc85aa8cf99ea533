"""Long histories written fast: what ``save()`` writes (manifests through the object store, version
events through the ref log), without pickling one model per version. For scale tests, the web UI's
browser tests and ``make bench``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import roro
from roro.objects.canonical import canonical_json
from roro.objects.manifest import FORMAT_V1 as FORMAT  # version 1 manifests, as before formats

BASE_TIME = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def build_history(store: roro.Store, project: str, repositories: list[str], total: int,
                  metadata: Callable[[int], dict[str, Any]] = lambda i: {"i": i},
                  author: str = "bench") -> None:
    """``total`` versions spread round-robin over ``repositories``; version ``i`` (0-based, over
    all repositories) gets ``metadata(i)``. Each repository must be new."""
    store.ensure_initialized()
    objects = store.objects
    model = objects.put_bytes(b"not really a pickle")
    heads = {name: (0, None) for name in repositories}  # name -> (last version, hash of last event)
    for i in range(total):
        name = repositories[i % len(repositories)]
        when = (BASE_TIME + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        version, prev = heads[name]
        version += 1
        manifest = {"format": FORMAT, "attachments": [], "author": author,
                    "comment": f"save {i}", "metadata": metadata(i), "timestamp": when,
                    "model": {"digest": model, "size": 19, "serializer": "cloudpickle",
                              "type": "builtins.bytes", "python": "3.11.7", "cloudpickle": "3.0.0"}}
        digest = objects.put_bytes(canonical_json(manifest))
        event = store.reflog(project, name).append(version, prev, "version", author, when,
                                                   version=version, image=digest,
                                                   comment=f"save {i}")
        assert event is not None
        heads[name] = (version, event.hash)
