"""Many processes writing one repository of a folder store at once: gap-free versions in the order
saves completed, an unbroken tag history, nothing lost, fsck clean."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest
from support import trust_workers
from support.trust_helpers import ROOT, log_state

from roro import Project, Store
from roro.check import fsck

SAVERS, SAVES = 16, 50
MOVERS, MOVES = 32, 5


def context():
    """forkserver: children fork from a server that has already imported roro, so starting 32
    of them is cheap, and none inherits pytest's threads or locks (as 'fork' would)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["support.trust_workers", "roro", "cloudpickle", "sqlite3"])
    return ctx


def run_workers(target, argsets, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ctx = context()
    barrier = ctx.Barrier(len(argsets))
    procs, outs = [], []
    for n, args in enumerate(argsets):
        out = str(tmp_path / f"worker-{n}.json")
        outs.append(out)
        procs.append(ctx.Process(target=target, args=(*args, barrier, out)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    errors = [open(o + ".error").read() for o in outs if os.path.exists(o + ".error")]
    assert not errors, errors[0]
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return [json.load(open(o)) for o in outs]


@pytest.mark.slow
def test_16_processes_times_50_saves(tmp_path, monkeypatch):
    url = str(tmp_path / "store")
    Store(url).ensure_initialized()
    results = run_workers(trust_workers.save_many,
                          [(url, w, SAVES) for w in range(SAVERS)], tmp_path, monkeypatch)
    rows = [r for worker_rows in results for r in worker_rows]
    assert len(rows) == SAVERS * SAVES

    # versions 1..800: no gap, no duplicate
    assert sorted(r[2] for r in rows) == list(range(1, SAVERS * SAVES + 1))

    # a save that completed before another began got the smaller version
    by_start = sorted(rows, key=lambda r: r[0])
    ended = sorted(rows, key=lambda r: r[1])
    highest_finished, j = 0, 0
    for start, _, version, *_ in by_start:
        while j < len(ended) and ended[j][1] < start:
            highest_finished = max(highest_finished, ended[j][2])
            j += 1
        assert version > highest_finished
    # and each worker's own saves are in its order
    for w in range(SAVERS):
        mine = [r[2] for r in rows if r[3] == w]
        assert mine == sorted(mine)

    # the store says the same: every version is the model its saver recorded
    store = Store(url)
    repo = Project("p", store=store).get_model_repository("m")
    assert repo.count() == SAVERS * SAVES
    recorded = {r[2]: (r[3], r[4]) for r in rows}
    for image in repo.list_model_images():
        assert (image["worker"], image["i"]) == recorded[image.version]
    assert repo.get_model(800) == dict(zip(("worker", "i"), recorded[800], strict=True))
    state = log_state(store, "p", "m")
    assert sorted(state.versions) == list(range(1, 801)) and state.last_seq == 800
    report = fsck(store)
    assert report.ok and report.unreferenced == [], report.problems


@pytest.mark.slow
def test_32_workers_moving_one_tag(tmp_path, monkeypatch):
    url = str(tmp_path / "store")
    repo = Project("p", store=url).get_model_repository("m")
    total = MOVERS * MOVES
    for i in range(total):
        repo.new_image(i).save()
    # every move targets a version nobody else targets, so every call must be a recorded move
    targets = [list(range(w * MOVES + 1, w * MOVES + MOVES + 1)) for w in range(MOVERS)]
    run_workers(trust_workers.move_tag, [(url, t) for t in targets], tmp_path, monkeypatch)

    history = Project("p", store=Store(url)).get_model_repository("m").get_tag_history("prod")
    assert len(history) == total, "a tag move was lost"
    assert sorted(h["version"] for h in history) == list(range(1, total + 1))
    # one unbroken chain: each move starts where the previous one ended
    previous = None
    for h in history:
        assert h["previous"] == previous
        previous = h["version"]
    assert repo.get_tags()["prod"] == previous
    # each worker's moves are recorded in the order it made them
    position = {h["version"]: n for n, h in enumerate(history)}
    for mine in targets:
        assert [position[v] for v in mine] == sorted(position[v] for v in mine)
    assert log_state(Store(url), "p", "m").tags == {"prod": previous}
    assert fsck(Store(url)).ok
