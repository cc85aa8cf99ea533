"""The torture test (issue 13, item 16): random interleavings, across processes, of saves, tag
moves, deletes, gc (with a grace period of a few seconds), index rebuilds, syncs and kill -9,
through a FaultyBackend (slow, failing and bit-flipping reads; failing, answer-losing and torn
writes), on a folder store and on the SeaweedFS server.

After each round (with a clean handle on the store): fsck --read-data is clean, or reports only
harmless orphans (a torn object write that nothing references); every version a worker saw
committed, unless the log deleted it since, loads with the exact bytes saved; the sync mirror is
clean too. A failure names its seed: ``RORO_TORTURE_SEED=<seed> pytest tests/test_torture.py``
replays the same operations and faults (the interleaving depends on timing as well).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest
from conftest import _start_s3, make_store_url
from support.torture import attachment_of, model_of
from support.trust_helpers import ROOT, log_state, subprocess_env

from roro import Project, Store
from roro.check import CORRUPT_OBJECT, fsck

SEED_ENV = "RORO_TORTURE_SEED"
ROUNDS = {"folder": 4, "seaweedfs": 3}
WORKERS = 4
OPERATIONS = {"folder": 60, "seaweedfs": 30}
G_MIN = "4"  # seconds: gc collects what is 4 s old, so reuse races happen all the time


@pytest.mark.parametrize("kind", ["folder", "seaweedfs"])
def test_torture(kind, tmp_path, request, monkeypatch):
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**31))
    monkeypatch.setenv("RORO_GC_MIN_GRACE", G_MIN)
    monkeypatch.setenv("RORO_GC_LOCK_STALE", "10")  # a killed gc's lock is dead after 10 s
    endpoint = _start_s3(request, monkeypatch, kind) if kind == "seaweedfs" else None
    url = make_store_url(kind, tmp_path, endpoint)
    mirror = make_store_url("folder", tmp_path)
    rng = random.Random(seed)
    try:
        for round_ in range(ROUNDS[kind]):
            run_round(kind, url, mirror, rng, tmp_path / f"round-{round_}")
            check(url, mirror, sorted((tmp_path).glob("round-*/worker-*.jsonl")))
    except BaseException as e:
        (tmp_path / "seed").write_text(str(seed))
        raise AssertionError(f"torture test failed; replay with {SEED_ENV}={seed}: "
                             f"{type(e).__name__}: {e}") from e
    print(f"torture {kind}: {SEED_ENV}={seed}: {summary(tmp_path)}")


def summary(directory) -> dict[str, int]:
    """What the workers did, summed (``pytest -s`` shows it)."""
    total: dict[str, int] = {}
    for path in directory.glob("round-*/worker-*.jsonl.stats"):
        for key, n in json.loads(path.read_text()).items():
            total[key] = total.get(key, 0) + n
    return dict(sorted(total.items()))


def run_round(kind: str, url: str, mirror: str, rng: random.Random, directory) -> None:
    directory.mkdir()
    env = subprocess_env(PYTHONPATH=os.path.join(ROOT, "tests") + os.pathsep + ROOT)
    procs = []
    for n in range(WORKERS):
        out = directory / f"worker-{n}.jsonl"
        out.touch()
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "support.torture", url, mirror, str(rng.randrange(2**32)),
             str(out), str(OPERATIONS[kind])], env=env, stderr=subprocess.PIPE, text=True), out))
    victim = rng.randrange(WORKERS)
    time.sleep(rng.uniform(0.5, 4.0))
    procs[victim][0].kill()  # kill -9, wherever it is
    for n, (proc, out) in enumerate(procs):
        _, stderr = proc.communicate(timeout=240)
        error = out.with_name(out.name + ".error")
        if n != victim or proc.returncode != -9:
            assert proc.returncode == 0, (error.read_text() if error.exists() else stderr)[-3000:]


def check(url: str, mirror: str, records) -> None:
    """The invariants, read through clean handles (no fault injection)."""
    store = Store(url)
    report = fsck(store, read_data=True)
    harmful = [p for p in report.problems if not (p.kind == CORRUPT_OBJECT and not p.references)]
    assert not harmful, [str(p) for p in harmful]
    state = log_state(store, "p", "m")
    repo = Project("p", store=store).get_model_repository("m")
    saves = [json.loads(line) for path in records for line in path.read_text().splitlines()]
    assert saves, "no worker saw a save committed: the faults are too many to test anything"
    for entry in saves:
        v = entry["version"]
        if v in state.deleted:
            continue
        assert v in state.versions, f"version {v} was reported saved but the log lacks it"
        assert repo.get_model(v) == model_of(entry["model"]), f"version {v}"
        image = repo.get_model_image(v)
        assert image.get_attachment("a.bin").read() == attachment_of(entry["attachment"])
    mirror_report = fsck(Store(mirror), read_data=True)
    assert mirror_report.ok, [str(p) for p in mirror_report.problems]
