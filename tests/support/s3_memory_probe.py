"""Run in a subprocess by test_s3_large.py: save or load one large model on an S3 store and
print, as JSON, the peak resident memory (``VmHWM``, see :func:`peak_rss`) before and after.

Usage: python s3_memory_probe.py save|load STORE_URL SIZE_BYTES [SHA256_HEX]
"""

from __future__ import annotations

import hashlib
import json
import resource
import sys
import time


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes.

    ``VmHWM`` from /proc/self/status: the high-water mark of this process's own memory. Not
    ``getrusage().ru_maxrss`` alone: Linux carries that over from the parent through
    fork/vfork + exec, so a child of a big pytest process starts with the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def random_array(size: int):
    """``size`` random bytes as a numpy array, made without a second copy at any moment."""
    import numpy as np
    rng = np.random.default_rng(0)
    model = np.empty(size, dtype=np.uint8)
    step = 8 << 20
    for i in range(0, size, step):
        n = min(step, size - i)
        model[i:i + n] = np.frombuffer(rng.bytes(n), dtype=np.uint8)
    return model


def main() -> None:
    action, url, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    import cloudpickle  # noqa: F401 - imported before the baseline, as a long-lived program would
    import numpy as np

    import roro

    project = roro.Project("p", url)
    repo = project.get_model_repository("big")
    project.list_model_repositories()  # boto3 imported and its client made: in the baseline
    result: dict = {}
    if action == "save":
        baseline = peak_rss()
        model = random_array(size)
        result["sha256"] = hashlib.sha256(memoryview(model)).hexdigest()
        with_model = peak_rss()
        started = time.monotonic()
        image = repo.new_image(model).save()
        result.update(seconds=time.monotonic() - started, version=image.version,
                      digest=image.manifest["model"]["digest"],
                      chunks=image.manifest["model"].get("chunks"))
    else:
        expected = sys.argv[4]
        baseline = with_model = peak_rss()
        started = time.monotonic()
        model = repo.get_model()
        result["seconds"] = time.monotonic() - started
        assert isinstance(model, np.ndarray) and model.nbytes == size, (type(model), model.nbytes)
        result["sha256"] = hashlib.sha256(memoryview(model)).hexdigest()
        assert result["sha256"] == expected, "loaded bytes differ"
    result.update(baseline=baseline, with_model=with_model, peak=peak_rss())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
