"""Many processes saving into one repository: versions 1..N, no gap, no duplicate, no error.

On a folder store, and on a real S3 server (SeaweedFS), where create-if-absent is a conditional
PutObject and the 8 writers share nothing but the bucket (and, being on one machine, the cache).
"""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest
from conftest import make_store_url

import roro


def _saver(store: str, worker: int, count: int, barrier) -> tuple[list[int], float]:
    repo = roro.Project("p", store).get_model_repository("shared")
    barrier.wait()
    started = time.monotonic()
    versions = []
    for i in range(count):
        img = repo.new_image({"worker": worker, "i": i})
        img["worker"] = worker
        versions.append(img.save(comment=f"w{worker} #{i}").version)
    return versions, time.monotonic() - started


@pytest.mark.parametrize("kind", ["folder", pytest.param("seaweedfs", marks=pytest.mark.slow)])
def test_8_processes_25_saves_each(kind, request, tmp_path, monkeypatch):
    endpoint = None
    if kind == "seaweedfs":
        from support.s3servers import use_endpoint
        endpoint = use_endpoint(monkeypatch, request.getfixturevalue("seaweedfs_endpoint"))
    store = make_store_url(kind, tmp_path, endpoint)
    ctx = mp.get_context("spawn")  # children inherit the environment: the endpoint, the cache
    barrier = ctx.Manager().Barrier(8)
    started = time.monotonic()
    with ctx.Pool(8) as pool:
        outcomes = pool.starmap(_saver, [(store, w, 25, barrier) for w in range(8)])
    elapsed = time.monotonic() - started
    results = [versions for versions, _ in outcomes]
    got = sorted(v for r in results for v in r)
    assert got == list(range(1, 201))
    for r in results:
        assert r == sorted(r)  # each writer's own saves are ordered
    repo = roro.Project("p", store).get_model_repository("shared")
    images = repo.list_model_images()
    assert [i.version for i in images] == list(range(200, 0, -1))
    # the version each process was told is the version the log holds for its image
    by_worker = {}
    for img in images:
        by_worker.setdefault(img["worker"], []).append(img.version)
    for w, r in enumerate(results):
        assert sorted(by_worker[w]) == r
    print(f"{kind}: 8 x 25 saves in {elapsed:.1f} s "
          f"(writers busy {min(s for _, s in outcomes):.1f}-{max(s for _, s in outcomes):.1f} s)")
