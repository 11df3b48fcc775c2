"""Where a level 2 pipeline run spends its MLflow time: each MLflow call the run makes, timed.

    python -m bench.mlflow_run [--runs N] [--state DIR]

Runs the training flow N times (forced, default 2) in this process under Prefect's test
harness, against the level 2 store in DIR (default: a new temporary folder), and prints seconds
per MLflow call and per pipeline stage for each run. The first run pays MLflow's first-use costs
(imports, opening the store), as `make level2` does every time; later runs show the warm costs.
For medians of first runs, run it several times with the same --state. A call made inside
another timed call counts in both (e.g. `client.get_registered_model` inside
`client.set_model_version_tag`): the rows are not meant to add up.
"""

import argparse
import functools
import os
import tempfile
import time
from collections import defaultdict


def timed_calls() -> dict[str, float]:
    """Wrap the MLflow entry points level 2 uses so each call adds its seconds to the result."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient

    from level2_pipelines import pipeline, train

    seconds: dict[str, float] = defaultdict(float)

    def wrap(owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - start

        setattr(owner, name, timed)

    for name in [n for n in vars(MlflowClient) if not n.startswith("_")]:
        if callable(getattr(MlflowClient, name)):
            wrap(MlflowClient, name, f"client.{name}")
    for name in ["start_run", "log_figure", "set_tags"]:
        wrap(mlflow, name, f"mlflow.{name}")
    wrap(mlflow.sklearn, "log_model", "mlflow.sklearn.log_model")
    wrap(train, "logged_sha256", "train.logged_sha256")
    wrap(pipeline, "connect", "tracking.connect")
    wrap(pipeline, "load_version", "model.load_version (champion)")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--state", help="level 2 state folder (default: a new temporary one)")
    args = parser.parse_args()
    os.environ["LEVEL2_STATE_DIR"] = args.state or tempfile.mkdtemp(prefix="bench-mlflow-")
    os.environ.setdefault("LEVEL2_PORT", "1")  # no service to deploy to
    os.environ.setdefault("LEVEL2_ADMIN_TOKEN", "bench-token-not-a-placeholder")
    from prefect.testing.utilities import prefect_test_harness

    from level2_pipelines.pipeline import training_pipeline

    seconds = timed_calls()
    rows = []
    with prefect_test_harness(server_startup_timeout=180):
        for _ in range(args.runs):
            seconds.clear()
            start = time.perf_counter()
            outcome = training_pipeline(force=True)
            row = {"flow (wall)": time.perf_counter() - start, **seconds}
            row |= {f"stage {k}:{s}": v for (k, s), v in outcome.clock.seconds.items()}
            rows.append(row)
    print(f"{'seconds':44}" + "".join(f"{'run ' + str(i + 1):>9}" for i in range(len(rows))))
    for key in sorted({k for row in rows for k in row}):
        print(f"{key:44}" + "".join(f"{row.get(key, 0.0):9.3f}" for row in rows))


if __name__ == "__main__":
    main()
