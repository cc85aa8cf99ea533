"""One measured operation in a fresh process, so that peak RSS (``VmHWM``) belongs to it alone.

    python bench/child.py OP ARGS_JSON

Prints one JSON line: ``seconds`` (the operation only), ``cpu`` (the CPU seconds, user and system,
of every thread of the process during it: what a loaded machine does not change much),
``rss_before`` (VmRSS just before it, bytes) and ``hwm`` (VmHWM just after, bytes). ``ru_maxrss`` is not used: it is inherited across
fork+exec, so a child of a big parent would report the parent's peak.
"""

from __future__ import annotations

import json
import os
import sys
import time


def status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so temporaries of the set-up do not count."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def make_model(size: int, seed: int = 1):
    import numpy as np
    return {"weights": np.random.default_rng(seed).integers(0, 255, size, dtype=np.uint8),
            "name": "big"}


def main() -> None:
    op, args = sys.argv[1], json.loads(sys.argv[2])
    result: dict = {}
    if op != "import-roro":
        import cloudpickle  # noqa: F401 - imported before the measurement, as roro imports it
        import numpy  # noqa: F401
    if op in ("pickle-save", "roro-save"):
        model = make_model(args["size"], args.get("seed", 1))
    if op.startswith("roro"):
        import roro
        project = roro.Project("bench", roro.Store(args["store"]))
        repo = project.get_model_repository("big")
        project.store.ensure_initialized()  # the S3 probe and marker: not part of the save
    if op.startswith("s3"):
        import boto3  # noqa: F401
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
        from support.s3servers import s3_client

        from roro.storage.s3 import S3Backend
        client = s3_client(args["endpoint"])
        # Issue 17's baseline: boto3's default transfer settings (8 MiB parts, 10 threads);
        # ``"tuned": true`` takes roro's own (64 MiB threshold, 32 MiB parts, 8 threads).
        if args.get("tuned"):
            config = S3Backend(f"s3://{args['bucket']}")._transfer_config()
        else:
            from boto3.s3.transfer import TransferConfig
            config = TransferConfig()
        client.head_bucket(Bucket=args["bucket"])  # connection set up outside the measurement
    reset_peak()
    rss_before = status("VmRSS")
    cpu = os.times()
    t = time.perf_counter()
    if op == "pickle-save":
        import cloudpickle
        with open(args["path"], "wb") as f:
            cloudpickle.dump(model, f)
            f.flush()
            os.fsync(f.fileno())
    elif op == "pickle-load":
        import cloudpickle
        with open(args["path"], "rb") as f:
            model = cloudpickle.load(f)
        assert model["weights"].size == args["size"]
    elif op == "roro-save":
        image = repo.new_model_image(model)
        image["kind"] = "big"
        image.save(comment="big model")
        result["version"] = image.version
    elif op == "roro-load":
        model = repo.get_model()
        assert model["weights"].size == args["size"]
    elif op == "s3-upload":
        client.upload_file(args["path"], args["bucket"], args["key"], Config=config)
    elif op == "s3-download":
        client.download_file(args["bucket"], args["key"], args["path"], Config=config)
    elif op == "import-roro":
        import roro  # noqa: F401
    else:
        raise SystemExit(f"unknown op {op}")
    seconds = time.perf_counter() - t
    done = os.times()
    result.update(seconds=seconds, rss_before=rss_before, hwm=status("VmHWM"),
                  cpu=done.user - cpu.user + done.system - cpu.system)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
