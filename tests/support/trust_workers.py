"""Worker functions for the multi-process tests. They live in their own module, which imports only
roro, so 'spawn'/'forkserver' children can import them cheaply (not a test module and pytest)."""

from __future__ import annotations

import json
import time
import traceback


def _fail(out_path: str) -> None:
    with open(out_path + ".error", "w") as f:
        f.write(traceback.format_exc())


def save_many(url: str, worker: int, count: int, barrier, out_path: str) -> None:
    """Save ``count`` small models into p/m; record (start ns, end ns, version, worker, i)."""
    try:
        from roro import Project
        repo = Project("p", store=url).get_model_repository("m")
        rows = []
        barrier.wait()
        for i in range(count):
            image = repo.new_image({"worker": worker, "i": i})
            image["worker"] = worker
            image["i"] = i
            start = time.monotonic_ns()
            image.save()
            rows.append([start, time.monotonic_ns(), image.version, worker, i])
        with open(out_path, "w") as f:
            json.dump(rows, f)
    except BaseException:
        _fail(out_path)
        raise


def move_tag(url: str, targets: list[int], barrier, out_path: str) -> None:
    """Move tag 'prod' of p/m to each of ``targets`` in turn."""
    try:
        from roro import Project
        repo = Project("p", store=url).get_model_repository("m")
        barrier.wait()
        for v in targets:
            repo.add_tag("prod", v)
        with open(out_path, "w") as f:
            json.dump(targets, f)
    except BaseException:
        _fail(out_path)
        raise
