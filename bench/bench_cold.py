"""Cold start on SeaweedFS: ``roro models:log r -n N`` on a machine that has never seen the store,
without checkpoints and with them (the newest checkpoint at the head, and just behind it: the
worst case of writers' checkpoints, 3 events back), as whole processes, and the requests the same
read makes in-process (``CountingBackend``).

    PYTHONPATH=.:tests python bench/bench_cold.py [VERSIONS ...] [--runs 3] [--endpoint URL]

Starts its own SeaweedFS unless ``--endpoint`` names one. The history is written with the
library's own event and manifest builders straight into the bucket (tests/support/history.py),
16 PUTs in flight; the time that takes is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from support.history import fill  # noqa: E402
from support.s3servers import DUMMY_CREDENTIALS, create_bucket, start_seaweedfs  # noqa: E402

from roro.project import Project  # noqa: E402
from roro.refs import checkpoint as checkpoints  # noqa: E402
from roro.storage import open_backend, parse_store_url  # noqa: E402
from roro.storage.layout import CHECKPOINT_FEATURE  # noqa: E402
from roro.storage.wrappers import CountingBackend  # noqa: E402
from roro.store import Store  # noqa: E402


def cold_requests(url: str, limit: int) -> int:
    os.environ["RORO_CACHE_DIR"] = tempfile.mkdtemp(prefix="cold-")
    counted = CountingBackend(open_backend(parse_store_url(url)))
    store = Store(counted)
    Project("p", store).get_model_repository("r").list_model_images(limit=limit)
    store.close()
    return sum(counted.counts.values())


#: CPU seconds (user + system) of the last :func:`cold_seconds`' processes, median: on a
#: machine shared with other work the wall time says more about the others.
last_cpu: list[float] = []


def cold_seconds(url: str, limit: int, runs: int) -> float:
    times, cpu = [], []
    for _ in range(runs):
        env = {**os.environ, "RORO_CACHE_DIR": tempfile.mkdtemp(prefix="cold-"),
               "RORO_STORE": url, "RORO_PROJECT": "p"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "roro", "models:log", "r", "-n", str(limit)],
                       env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    last_cpu[:] = [statistics.median(cpu)]
    return statistics.median(times)


def warm_seconds(url: str, limit: int, runs: int) -> dict[str, float]:
    """Issue 18's warm reads: ``models:log r -n LIMIT`` and ``models:show r`` as whole processes
    on a machine whose cache already holds the store's index (one cold read first): median wall
    seconds of each, and their CPU under ``*_cpu``."""
    env = {**os.environ, "RORO_CACHE_DIR": tempfile.mkdtemp(prefix="warm-"),
           "RORO_STORE": url, "RORO_PROJECT": "p"}
    commands = {"log": ["models:log", "r", "-n", str(limit)], "show": ["models:show", "r"]}
    for argv in commands.values():  # the cold read, and the bytecode of each command's path
        subprocess.run([sys.executable, "-m", "roro", *argv], env=env, check=True,
                       capture_output=True)
    out: dict[str, float] = {}
    for name, argv in commands.items():
        times, cpu = [], []
        for _ in range(runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "roro", *argv], env=env, check=True,
                           capture_output=True)
            times.append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        out[name], out[name + "_cpu"] = statistics.median(times), statistics.median(cpu)
    return out


def measure(endpoint: str, n: int, limit: int, runs: int,
            without: bool = True) -> dict[str, object]:
    """Cold reads of an ``n``-version history: without checkpoints (unless not ``without``),
    with one at the head, and with one 3 events behind: (requests, seconds) each."""
    url = f"s3://{create_bucket(endpoint)}/cold-{n}"
    t = time.perf_counter()
    manifests: dict[str, bytes] = {}
    events = fill(Store(url), "p", "r", n, manifests=manifests)
    out: dict[str, object] = {"versions": n, "build_seconds": round(time.perf_counter() - t, 1)}
    if without:
        out["none"] = (cold_requests(url, limit), cold_seconds(url, limit, runs))
        out["none_cpu"] = last_cpu[0]
    t = time.perf_counter()
    made = checkpoint_from(url, events, manifests)
    out["checkpoint_seconds"] = round(time.perf_counter() - t, 2)
    out["checkpoint_bytes"] = made.size
    out["at_head"] = (cold_requests(url, limit), cold_seconds(url, limit, runs))
    out["at_head_cpu"] = last_cpu[0]
    # the worst case writers leave: 3 events behind the newest checkpoint
    fill(Store(url), "p", "r", 3, start=n, first_version=n + 1)
    out["worst"] = (cold_requests(url, limit), cold_seconds(url, limit, runs))
    out["worst_cpu"] = last_cpu[0]
    out["warm"] = warm_seconds(url, limit, runs)
    return out


def checkpoint_from(url: str, events: list[bytes],
                    manifests: dict[str, bytes]) -> checkpoints.Written:
    """The checkpoint at the end of a history :func:`fill` just wrote, from the bytes it
    returned (``roro checkpoint`` would first index the whole log: two GETs a version)."""
    store = Store(url)
    try:
        return checkpoints.build(
            store.reflog("p", "r"), store.objects, len(events),
            manifest=lambda digest, version: manifests.get(digest),
            known={seq: raw for seq, raw in enumerate(events, 1)},
            before_first_write=lambda: store.require_feature(CHECKPOINT_FEATURE))
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("versions", nargs="*", type=int, default=[2000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--endpoint")
    parser.add_argument("--without-up-to", type=int, default=10_000,
                        help="measure the read without checkpoints up to this many versions")
    args = parser.parse_args()
    os.environ.update(DUMMY_CREDENTIALS)
    stop = None
    endpoint = args.endpoint
    if endpoint is None:
        endpoint, stop = start_seaweedfs(tempfile.mkdtemp(prefix="weed-"))
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        for n in args.versions:
            r = measure(endpoint, n, args.limit, args.runs, without=n <= args.without_up_to)
            print(json.dumps(r))
            for what in ("none", "at_head", "worst"):
                if what not in r:
                    continue
                req, sec = r[what]  # type: ignore[misc]
                print(f"{n:>7} versions, cold models:log -n {args.limit}, checkpoint {what:8}: "
                      f"{req:>6} requests, {sec:6.2f} s, CPU {r[what + '_cpu']:5.2f} s "
                      f"(medians of {args.runs})")
            for what in ("log", "show"):
                print(f"{n:>7} versions, warm models:{what}: {r['warm'][what]:.2f} s, "
                      f"CPU {r['warm'][what + '_cpu']:.2f} s")
    finally:
        if stop is not None:
            stop()


if __name__ == "__main__":
    main()
