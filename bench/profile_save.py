"""Where a folder save's (and load's) wall time goes, thread by thread (issue 17).

    PYTHONPATH=. python bench/profile_save.py [--size MIB] [--runs N] [--load] [--dir DIR]

In one process: builds a numpy model, then per run saves it with ``cloudpickle.dump`` + fsync
(the baseline) and with roro into a fresh folder store, while a sampler thread reads
``/proc/self/task/*/schedstat`` (CPU time and run-queue wait of every thread, in ns) and
``/proc/stat`` (the whole machine's busy time, so other processes' share shows) every 10 ms.
roro's stages are timed by wrapping them (the pickler's cut and waits, the whole-blob hash
thread's updates, each chunk's hash, stat, write, fsync, link and directory fsync on the pool):
nothing in ``roro/`` is changed. Prints, per run, a table per thread (wall in each stage, CPU,
run-queue wait) and a timeline in 100 ms steps (how busy each thread and each core was).
``--load`` also loads the model back (``cloudpickle.load`` against ``get_model``).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Any

MiB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")
REAL_FSYNC = os.fsync  # the baseline's, whatever --no-fsync does to roro's


def recycle_pages(directory: str, size: int) -> None:
    """Write ``size`` bytes to a scratch file and delete it: the page-cache writes that follow
    reuse its pages. This VM reports free memory to its host (``page_reporting``): a page the
    guest has not used for ~2 s costs a host fault when touched again, ~1 s of CPU per 512 MiB
    written into the page cache, while recently freed pages cost ~0.1 s (bench/README.md)."""
    block = bytes(MiB)
    path = os.path.join(directory, "recycle.tmp")
    with open(path, "wb") as f:
        for _ in range(0, size + 64 * MiB, MiB):
            f.write(block)
    os.unlink(path)


# -- sampling -------------------------------------------------------------------------------------
def machine_busy() -> tuple[float, float]:
    """(busy, total) seconds of every CPU of the machine so far (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / TICK, sum(fields) / TICK


def task_times() -> dict[int, tuple[int, int]]:
    """{tid: (ns on a CPU, ns waiting on a run queue)} of every thread of this process."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                run, wait, _ = f.read().split()
            out[int(tid)] = (int(run), int(wait))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
    return out


class Sampler:
    def __init__(self, every: float = 0.01):
        self.every = every
        self.samples: list[tuple[float, tuple[float, float], dict[int, tuple[int, int]]]] = []
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _sample(self) -> None:
        for t in threading.enumerate():
            if t.native_id is not None and t.native_id not in self.names:
                self.names[t.native_id] = t.name
        self.samples.append((time.perf_counter(), machine_busy(), task_times()))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> Sampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# -- stage timing ---------------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.spans: list[tuple[str, str, float, float, float]] = []  # thread, stage, t0, t1, cpu
        self._local = threading.local()
        self._lock = threading.Lock()

    @contextmanager
    def span(self, stage: str):
        t0, c0 = time.perf_counter(), time.thread_time()
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        stack.append(stage)
        try:
            yield
        finally:
            stack.pop()
            with self._lock:
                self.spans.append((threading.current_thread().name, stage, t0,
                                   time.perf_counter(), time.thread_time() - c0))

    def current(self) -> str | None:
        stack = getattr(self._local, "stack", None)
        return stack[-1] if stack else None

    def wrap(self, owner: Any, attr: str, stage: str) -> None:
        original = getattr(owner, attr)

        def wrapped(*a: Any, **k: Any) -> Any:
            with self.span(stage):
                return original(*a, **k)
        setattr(owner, attr, wrapped)


def instrument(rec: Recorder) -> None:
    """Wrap roro's save stages (the module attributes the code looks up at call time)."""
    from roro.objects import chunks, chunksink
    from roro.objects.store import ObjectStore
    from roro.storage import folder
    reader = chunks.ChunkedReader
    rec.wrap(reader, "_fill", "load: fill chunk")
    rec.wrap(reader, "_fetch", "load: fetch chunk (copied)")
    rec.wrap(reader, "readinto", "load: readinto")
    rec.wrap(chunks, "digest_bytes", "load: chunk sha256")
    rec.wrap(folder.FolderBackend, "get_into", "load: read into buffer")
    sink = chunksink.ChunkSink
    rec.wrap(sink, "_store", "store chunk")
    rec.wrap(sink, "_settle", "pickler waits (settle)")
    rec.wrap(sink, "finish", "finish")
    rec.wrap(chunksink, "digest_bytes", "chunk sha256")
    rec.wrap(ObjectStore, "info", "stat")
    rec.wrap(folder.FolderBackend, "_spool", "write tmp")
    rec.wrap(folder.FolderBackend, "_link", "link")

    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        where = rec.current()
        with rec.span("fsync dir" if where == "link" else "fsync file"):
            real_fsync(fd)
    os.fsync = fsync  # type: ignore[assignment]

    class TimedHasher:
        def __init__(self, inner: Any):
            self.inner = inner

        def update(self, data: Any) -> None:
            with rec.span("whole-blob sha256"):
                self.inner.update(data)

        def hexdigest(self) -> str:
            return self.inner.hexdigest()

    real_new = chunksink.new_hasher
    chunksink.new_hasher = lambda: TimedHasher(real_new())  # type: ignore[assignment]

    real_init = sink.__init__

    def init(self: Any, *a: Any, **k: Any) -> None:
        real_init(self, *a, **k)
        cdc = self._cdc

        class TimedCDC:
            def cut_buf(self, buf: Any):
                it = iter(cdc.cut_buf(buf))
                while True:
                    with rec.span("cut (FastCDC)"):
                        c = next(it, None)
                    if c is None:
                        return
                    yield c
        self._cdc = TimedCDC()
    sink.__init__ = init  # type: ignore[method-assign]


# -- reporting ------------------------------------------------------------------------------------
def kind(name: str) -> str:
    if name.startswith("roro-chunks-hash"):
        return "chunkhash"
    if name.startswith("roro-chunks"):
        return "pool"
    if name.startswith("roro-hash"):
        return "hash"
    return {"MainThread": "pickler"}.get(name, name)


def report(title: str, wall: float, sampler: Sampler, rec: Recorder | None, t0: float) -> None:
    first, last = sampler.samples[0], sampler.samples[-1]
    names = sampler.names
    print(f"\n== {title}: {wall:.3f} s wall")
    run: dict[str, float] = collections.Counter()
    waitq: dict[str, float] = collections.Counter()
    for tid, (r1, w1) in last[2].items():
        r0, w0 = first[2].get(tid, (0, 0))
        # A thread that ended before the last sample: its latest sample.
        run[kind(names.get(tid, str(tid)))] += (r1 - r0) / 1e9
        waitq[kind(names.get(tid, str(tid)))] += (w1 - w0) / 1e9
    ended: dict[int, tuple[int, int]] = {}
    for _, _, tasks in sampler.samples:
        for tid, v in tasks.items():
            if tid not in last[2]:
                ended[tid] = v
    for tid, (r1, w1) in ended.items():
        r0, w0 = first[2].get(tid, (0, 0))
        run[kind(names.get(tid, str(tid)))] += (r1 - r0) / 1e9
        waitq[kind(names.get(tid, str(tid)))] += (w1 - w0) / 1e9
    busy = last[1][0] - first[1][0]
    total = last[1][1] - first[1][1]
    ours = sum(v for k, v in run.items() if k != "sampler")
    print(f"   CPU of this process {ours:.3f} s ({ours / wall:.2f} cores on average); "
          f"machine busy {busy:.2f} of {total:.2f} core-s ({busy / max(total, 1e-9):.0%}); "
          f"others ~{max(busy - ours - run.get('sampler', 0), 0):.2f} core-s")
    print("   thread   CPU s   run-queue wait s")
    for k in sorted(run):
        print(f"   {k:8} {run[k]:6.3f}  {waitq[k]:6.3f}")
    if rec is not None:
        stages: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0, 0, 0])
        for name, stage, a, b, cpu in rec.spans:
            s = stages[(kind(name), stage)]
            s[0] += b - a
            s[1] += cpu
            s[2] += 1
        print("   thread   stage                        wall s   CPU s   count")
        for (k, stage), (w, c, n) in sorted(stages.items()):
            print(f"   {k:8} {stage:28} {w:6.3f}  {c:6.3f}  {n:6d}")
    # timeline: 100 ms steps
    step = 0.1
    print("   t(s)   cores: ours  others | pickler hash  chunkhash pool(sum)")
    marks = [s for s in sampler.samples]
    at = 0
    while at < len(marks) - 1:
        t_start = marks[at][0]
        j = at
        while j < len(marks) - 1 and marks[j][0] - t_start < step:
            j += 1
        a, b = marks[at], marks[j]
        dt = b[0] - a[0]
        per: dict[str, float] = collections.Counter()
        for tid, (r1, _) in b[2].items():
            r0 = a[2].get(tid, (0, 0))[0]  # a thread born in the step: from 0
            per[kind(names.get(tid, str(tid)))] += (r1 - r0) / 1e9
        for tid, (r0, _) in a[2].items():  # threads that ended in the step
            if tid not in b[2]:
                later = [s[2][tid][0] for s in marks[at:j + 1] if tid in s[2]]
                per[kind(names.get(tid, str(tid)))] += (later[-1] - r0) / 1e9
        ours = sum(v for k, v in per.items() if k != "sampler")
        mach = (b[1][0] - a[1][0]) / max(dt, 1e-9)
        print(f"   {a[0] - t0:5.2f}  {ours / dt:10.2f} {max(mach - ours / dt, 0):6.2f} | "
              f"{per.get('pickler', 0) / dt:7.2f} {per.get('hash', 0) / dt:5.2f} "
              f"{per.get('chunkhash', 0) / dt:9.2f} "
              f"{per.get('pool', 0) / dt:6.2f}")
        at = j


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--load", action="store_true")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--quiet", action="store_true", help="no timeline, no stage table")
    ap.add_argument("--no-instrument", action="store_true")
    ap.add_argument("--recycle", action="store_true",
                    help="before each save, write and delete a scratch file of the model's size, so "
                         "both saves write into page-cache pages the guest just freed (see "
                         "recycle_pages)")
    ap.add_argument("--cold", action="store_true",
                    help="no small save first: the save pays the store's first-save set-up")
    ap.add_argument("--threads", type=int, default=None, help="chunk store threads (folder)")
    ap.add_argument("--no-fsync", action="store_true",
                    help="an upper bound, never a mode of roro: chunk files not fsynced")
    args = ap.parse_args()
    if args.no_fsync:
        from roro.storage import folder
        folder.os.fsync = lambda fd: None  # type: ignore[assignment]
    if args.threads:
        from roro.objects import chunksink
        chunksink.STORE_THREADS_LOCAL = args.threads
    import cloudpickle
    import numpy as np

    import roro
    rec = None if args.no_instrument else Recorder()
    if rec is not None:
        instrument(rec)
    top = tempfile.mkdtemp(prefix="profile-save-", dir=args.dir)
    size = args.size * MiB
    walls: dict[str, list[float]] = collections.defaultdict(list)
    try:
        for i in range(args.runs):
            model = {"weights": np.random.default_rng(i).integers(0, 255, size, dtype=np.uint8),
                     "name": "big"}
            pkl = os.path.join(top, "big.pkl")
            if args.recycle:
                recycle_pages(top, size)
            with Sampler() as s:
                t = time.perf_counter()
                with open(pkl, "wb") as f:
                    cloudpickle.dump(model, f)
                    f.flush()
                    REAL_FSYNC(f.fileno())
                wall = time.perf_counter() - t
            walls["dump + fsync"].append(wall)
            print(f"\n-- run {i}, load average {os.getloadavg()[0]:.2f}")
            report("cloudpickle.dump + fsync", wall, s, None, t)
            store = os.path.join(top, f"store-{i}")
            project = roro.Project("bench", roro.Store(store))
            repo = project.get_model_repository("big")
            project.store.ensure_initialized()
            if not args.cold:
                repo.new_model_image({"x": 1}).save()  # first-save set-up outside the measurement
            if args.recycle:
                recycle_pages(top, size)
            if rec is not None:
                rec.spans.clear()
            with Sampler() as s:
                t = time.perf_counter()
                image = repo.new_model_image(model)
                image.save(comment="big model")
                wall = time.perf_counter() - t
            walls["roro save"].append(wall)
            report("roro save", wall, s, None if args.quiet else rec, t)
            if args.load:
                with Sampler() as s:
                    t = time.perf_counter()
                    with open(pkl, "rb") as f:
                        back = cloudpickle.load(f)
                    wall = time.perf_counter() - t
                walls["cloudpickle.load"].append(wall)
                del back
                report("cloudpickle.load", wall, s, None, t)
                if rec is not None:
                    rec.spans.clear()
                with Sampler() as s:
                    t = time.perf_counter()
                    back = repo.get_model()
                    wall = time.perf_counter() - t
                walls["roro load"].append(wall)
                del back
                report("roro load", wall, s, None if args.quiet else rec, t)
            if os.path.exists(pkl):
                os.unlink(pkl)
            shutil.rmtree(store)
            del model
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print()
    for k, v in walls.items():
        print(f"{k:16} median {sorted(v)[len(v) // 2]:.3f} s  ({', '.join(f'{x:.3f}' for x in v)})")
    if "roro save" in walls:
        m = lambda k: sorted(walls[k])[len(walls[k]) // 2]  # noqa: E731
        print(f"save ratio {m('dump + fsync') / m('roro save'):.2f}", end="")
        if args.load:
            print(f"   load ratio {m('cloudpickle.load') / m('roro load'):.2f}", end="")
        print(f"   load average now {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
