"""Many processes saving into one repository: versions 1..N, no gap, no duplicate, no error."""

from __future__ import annotations

import multiprocessing as mp

import roro


def _saver(store: str, worker: int, count: int, barrier) -> list[int]:
    repo = roro.Project("p", store).get_model_repository("shared")
    barrier.wait()
    versions = []
    for i in range(count):
        img = repo.new_image({"worker": worker, "i": i})
        img["worker"] = worker
        versions.append(img.save(comment=f"w{worker} #{i}").version)
    return versions


def test_8_processes_25_saves_each(tmp_path):
    store = str(tmp_path / "store")
    ctx = mp.get_context("spawn")
    barrier = ctx.Manager().Barrier(8)
    with ctx.Pool(8) as pool:
        results = pool.starmap(_saver, [(store, w, 25, barrier) for w in range(8)])
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
