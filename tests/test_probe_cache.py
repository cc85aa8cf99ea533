"""The conditional-write probe runs once per machine, endpoint, bucket and proxy settings, and
again after a day (issue 18; a departure from the per-handle probe: docs/architecture.md)."""

from __future__ import annotations

import json
import os
import time

from conftest import make_store_url, save_image

from roro.project import Project
from roro.storage.s3 import PROBE_MAX_AGE, PROBE_PREFIX
from roro.storage.wrappers import CountingBackend
from roro.store import Store


def probes(store: Store) -> list[str]:
    """The probe writes this handle's client makes (a botocore hook on PutObject)."""
    seen: list[str] = []

    def hook(params, **_):
        if PROBE_PREFIX in params["url_path"]:
            seen.append(params["url_path"])
    store.backend.client.meta.events.register("before-call.s3.PutObject", hook)
    return seen


def test_a_machine_probes_once_a_day_per_endpoint_bucket_and_proxy(s3_endpoint, tmp_path,
                                                                     monkeypatch):
    url = make_store_url("seaweedfs", tmp_path, s3_endpoint)
    first = Store(url)
    seen = probes(first)
    save_image(Project("p", first).get_model_repository("m"), 1)
    assert len(seen) == 2  # the probe: a first conditional PUT, a second one refused
    records = os.listdir(tmp_path / "cache" / "probes")
    assert len(records) == 1

    second = Store(url)  # a new handle, another process, the same machine: no probe
    seen = probes(second)
    save_image(Project("p", second).get_model_repository("m"), 2)
    assert seen == []

    path = tmp_path / "cache" / "probes" / records[0]
    record = json.loads(path.read_text())
    record["probed_at"] = time.time() - PROBE_MAX_AGE - 1  # a day old: probed again
    path.write_text(json.dumps(record))
    third = Store(url)
    seen = probes(third)
    save_image(Project("p", third).get_model_repository("m"), 3)
    assert len(seen) == 2

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # other proxy settings: probed again
    fourth = Store(url)
    seen = probes(fourth)
    save_image(Project("p", fourth).get_model_repository("m"), 4)
    assert len(seen) == 2
    assert len(os.listdir(tmp_path / "cache" / "probes")) == 2


def test_a_new_handles_small_save_costs_at_most_7_requests(s3_endpoint, tmp_path):
    """A new handle on a machine that knows the store (its index and probe record are in the
    user cache): a 100 KB model, 5 metadata keys, a 10 KB attachment."""
    url = make_store_url("seaweedfs", tmp_path, s3_endpoint)
    save_image(Project("p", url).get_model_repository("m"), b"x" * 100_000)
    counting = CountingBackend(Store(url).backend)
    repo = Project("p", Store(counting)).get_model_repository("m")
    save_image(repo, os.urandom(100_000), attachments={"notes.bin": os.urandom(10_000)},
               a=1, b=2.5, c="x", d=True, e=[1, 2])
    # roro.json and the listing of features/ (a new handle learns the store's format features,
    # DESIGN §14: this store has manifest-v2), the refresh's listing (which checks event N is
    # still there), model, attachment, manifest, event. (A warm handle: 5, test_gc_reuse.)
    assert sum(counting.counts.values()) <= 7, dict(counting.counts)
    assert counting.counts["list"] == 2 and counting.counts["get"] == 1, dict(counting.counts)
