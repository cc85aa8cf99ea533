"""One MLflow operation in a fresh process, for issue 17's comparison (``bench/run.py --only
mlflow``). Runs in MLflow's own virtual environment (never roro's: MLflow's dependencies stay out
of ours), so it imports nothing of roro.

    <mlflow-venv>/bin/python bench/mlflow_child.py OP ARGS_JSON

OP is ``mlflow-save`` (``cloudpickle.dump`` of the model to a file, then ``mlflow.log_artifact``
in a new run: what a user of MLflow's artifact store does with a Python object) or
``mlflow-load`` (``mlflow.artifacts.download_artifacts`` of that file, then ``cloudpickle.load``).
Prints the same JSON line as ``bench/child.py`` (``seconds``, ``rss_before``, ``hwm``), plus
``run_id`` for a save.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from child import make_model, reset_peak, status


def main() -> None:
    op, args = sys.argv[1], json.loads(sys.argv[2])
    import cloudpickle
    import mlflow
    mlflow.set_tracking_uri(args["tracking"])
    result: dict = {}
    if op == "mlflow-save":
        model = make_model(args["size"], args.get("seed", 1))
        experiment = mlflow.get_experiment_by_name("bench")
        exp_id = experiment.experiment_id if experiment else mlflow.create_experiment(
            "bench", artifact_location=args["artifacts"])
    work = tempfile.mkdtemp(prefix="mlflow-bench-", dir=args.get("tmp"))
    reset_peak()
    rss_before = status("VmRSS")
    t = time.perf_counter()
    if op == "mlflow-save":
        with mlflow.start_run(experiment_id=exp_id) as run:
            path = os.path.join(work, "model.pkl")
            with open(path, "wb") as f:
                cloudpickle.dump(model, f)
            mlflow.log_artifact(path, artifact_path="model")
        result["run_id"] = run.info.run_id
    elif op == "mlflow-load":
        path = mlflow.artifacts.download_artifacts(run_id=args["run_id"],
                                                   artifact_path="model/model.pkl", dst_path=work)
        with open(path, "rb") as f:
            model = cloudpickle.load(f)
        assert model["weights"].size == args["size"]
    else:
        raise SystemExit(f"unknown op {op}")
    result.update(seconds=time.perf_counter() - t, rss_before=rss_before, hwm=status("VmHWM"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
