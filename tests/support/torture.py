"""The torture test's worker: one process doing random operations on a store through a
FaultyBackend, recording what it saw committed.

Run as ``python -m support.torture URL MIRROR SEED OUT`` (with ``tests`` on the path). Every
choice comes from ``random.Random(SEED)``, so a failing run can be replayed with the same seed
(timing between processes differs, the operations do not). Each committed operation is appended
to ``OUT`` as one JSON line, flushed and fsynced before the next operation starts, so a worker
killed with SIGKILL has recorded exactly what it saw committed.

Faults (deterministic, from the same seed): slow, failing and bit-flipping reads; failing writes,
before or after they happen (a lost answer); torn writes of *objects*. Events, keep markers and
the gc lock are not torn: every real backend writes a key whole or not at all (DESIGN.md §2 rests
on it); a torn event would be a broken log that no writer could avoid.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
import traceback
import warnings

MODELS = 6  # a small pool, so that saves reuse each other's blobs (and gc has orphans to take)
ATTACHMENTS = 4
OPS = [("save", 40), ("tag", 12), ("delete", 10), ("gc", 10), ("rebuild", 5), ("sync", 8),
       ("load", 15)]


def model_of(n: int) -> dict:
    return {"model": n, "weights": [n] * 50}


def attachment_of(n: int) -> bytes:
    return hashlib.sha256(f"attachment {n}".encode()).digest() * (64 + 32 * n)


def faulty_store(url: str, rng: random.Random, calm: bool = False):
    """A store whose backend injects faults; ``calm``: only slow ones (gc reads every log and
    lists every object: at 2 % of failing or flipped reads it would almost never get to delete
    anything, and its deletions racing saves are what the test is for)."""
    from roro import Store
    from roro.storage import open_backend
    from roro.storage.faulty import READS, FaultyBackend

    backend = FaultyBackend(open_backend(url), seed=rng.randrange(2**32))
    backend.slow(*READS, "put", "put_file", "put_if_absent", delay=0.02, probability=0.05,
                 times=None)
    if calm:
        return Store(backend)
    backend.fail(*READS, probability=0.02, times=None)
    backend.flip_bits(probability=0.02, times=None)
    backend.fail("put", "put_file", "put_if_absent", probability=0.02, times=None)
    backend.fail("put", "put_file", "put_if_absent", applied=True, probability=0.02, times=None)
    backend.tear("put", "put_file", where=lambda key: key.startswith("objects/"),
                 probability=0.02, times=None)
    return Store(backend)


def main(url: str, mirror: str, seed: int, out_path: str, operations: int) -> None:
    from roro import Project, RoroError, sync
    from roro.check import gc
    from roro.objects.keep import min_grace

    warnings.simplefilter("ignore")  # index-behind warnings are expected under faults
    rng = random.Random(seed)
    store = faulty_store(url, rng)
    calm_store = faulty_store(url, rng, calm=True)
    repo = Project("p", store=store).get_model_repository("m")
    names, weights = zip(*OPS, strict=True)
    stats: dict[str, int] = {}
    with open(out_path, "a") as out:
        def record(**entry) -> None:
            out.write(json.dumps(entry) + "\n")
            out.flush()
            os.fsync(out.fileno())

        for _ in range(operations):
            op = rng.choices(names, weights)[0]
            try:
                if op == "save":
                    m, a = rng.randrange(MODELS), rng.randrange(ATTACHMENTS)
                    image = repo.new_image(model_of(m))
                    image["m"] = m
                    image.attach("a.bin", attachment_of(a))
                    image.save()
                    record(op="save", version=image.version, model=m, attachment=a)
                elif op == "tag":
                    repo.add_tag(rng.choice(["prod", "staging"]), rng.randint(1, 30))
                elif op == "delete":
                    if repo.delete_version(rng.randint(1, 30)):
                        pass
                elif op == "gc":
                    # half of the runs without failing reads, so that gc gets to delete
                    target = calm_store if rng.random() < 0.5 else store
                    deleted = len(gc(target, grace_seconds=min_grace()).deleted)
                    stats["gc deleted"] = stats.get("gc deleted", 0) + deleted
                elif op == "rebuild":
                    store.rebuild_index()
                elif op == "sync":
                    sync(store, mirror)
                elif op == "load":
                    repo.get_model()
                stats[op] = stats.get(op, 0) + 1
            except RoroError as e:  # an injected fault, a refused request, a lost race: fine
                key = f"{op} {type(e).__name__}"
                stats[key] = stats.get(key, 0) + 1
            time.sleep(rng.uniform(0, 0.02))
    with open(out_path + ".stats", "w") as f:
        json.dump(stats, f)


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    except BaseException:
        with open(sys.argv[4] + ".error", "w") as f:
            f.write(traceback.format_exc())
        raise
