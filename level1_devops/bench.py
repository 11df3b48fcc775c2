"""Serving speed: the level 1 service against `mlflow models serve` on the same fitted model,
and against calling `Pipeline.predict_proba` in-process, at concurrency 1, 8 and 32.

    python -m level1_devops.bench [--seconds 4] [--rounds 3]

Both servers run at once, one uvicorn worker each, and are loaded in turn (round-robin per
round) with the loopback load generator from `shared/`, so a noisy moment on this shared
machine hurts them alike. Each figure is the median over rounds. Writes results.json and
results.md under the state folder.
"""

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

from level1_devops.data import features_and_target, training_split
from level1_devops.model import load_artifact, types_to_trust
from level1_devops.settings import Settings
from level1_devops.train import train
from shared.contract import EXAMPLE_PAYLOAD
from shared.loadgen import LoadResult, round_robin, run_load
from shared.servers import free_port, running_server

CONCURRENCY = (1, 8, 32)
TARGET_RATIO, TARGET_P99_MS = 10.0, 25.0  # at c=32, against mlflow models serve


def in_process_load(pipeline, row: pd.DataFrame, concurrency: int, seconds: float) -> LoadResult:
    """`concurrency` threads calling predict_proba on one row, for `seconds`."""
    result = LoadResult(concurrency=concurrency, seconds=seconds)
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            pipeline.predict_proba(row)
            result.latencies_s.append(time.perf_counter() - start)  # list.append is atomic
            result.statuses[200] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def export_to_mlflow(pipeline, directory: Path, seed: int) -> Path:
    """The same fitted pipeline in MLflow's format, answering probabilities like level 1."""
    features, _ = features_and_target(training_split(seed))
    path = directory / "mlflow-model"
    shutil.rmtree(path, ignore_errors=True)  # save_model refuses an existing folder
    mlflow.sklearn.save_model(
        pipeline,
        path,
        serialization_format="skops",
        skops_trusted_types=types_to_trust(pipeline),
        pyfunc_predict_fn="predict_proba",
        signature=infer_signature(features, pipeline.predict_proba(features)),
        input_example=features.head(1),
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark level 1 serving against mlflow.")
    parser.add_argument("--seconds", type=float, default=4.0, help="per load run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(state_dir=Settings().state_dir / "bench")
    out = settings.state_dir
    print(f"bench: training the model into {settings.serving_dir}", flush=True)
    train(settings.serving_dir, settings.seed)  # served straight away: no hand-off to time
    pipeline, card = load_artifact(settings.serving_dir)
    mlflow_model = export_to_mlflow(pipeline, out, settings.seed)
    row = pd.DataFrame([EXAMPLE_PAYLOAD])
    level1_port, mlflow_port = free_port(), free_port()
    # `mlflow models serve` starts uvicorn by name: the environment's bin/ must be on PATH.
    path_env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    level1_env = {"LEVEL1_STATE_DIR": str(out), "LEVEL1_PORT": str(level1_port)}
    mlflow_args = ("models", "serve", "-m", str(mlflow_model), "--env-manager", "local")
    mlflow_args += ("-h", "127.0.0.1", "-p", str(mlflow_port))
    payload = json.dumps(EXAMPLE_PAYLOAD).encode()
    mlflow_payload = json.dumps({"dataframe_records": [EXAMPLE_PAYLOAD]}).encode()

    print("bench: starting the level 1 service and mlflow models serve", flush=True)
    with (
        running_server("level1_devops.serve", level1_env, level1_port, "/health") as level1,
        running_server("mlflow", path_env, mlflow_port, "/ping", mlflow_args) as mlflow_url,
    ):
        ours = httpx.post(f"{level1}/predict", json=EXAMPLE_PAYLOAD).json()["probabilities"]
        theirs = httpx.post(
            f"{mlflow_url}/invocations", json={"dataframe_records": [EXAMPLE_PAYLOAD]}
        ).json()
        difference = np.abs(np.array(list(ours.values())) - theirs["predictions"][0]).max()
        print(f"bench: same answer from both servers (max difference {difference:.1e})")
        targets = {
            "in-process predict_proba": lambda c: in_process_load(pipeline, row, c, args.seconds),
            "level 1 service": lambda c: run_load(
                level1_port, "/predict", payload, concurrency=c, seconds=args.seconds
            ),
            "mlflow models serve": lambda c: run_load(
                mlflow_port, "/invocations", mlflow_payload, concurrency=c, seconds=args.seconds
            ),
        }
        rows, _ = round_robin(targets, CONCURRENCY, args.rounds)
    report(rows, card.version, args, out)


def report(rows: list[dict], version: str, args: argparse.Namespace, out: Path) -> None:
    mlflow_rps = {
        r["concurrency"]: r["requests_per_s"] for r in rows if r["target"] == "mlflow models serve"
    }
    lines = [
        f"Model {version}; median of {args.rounds} rounds of {args.seconds:g} s per cell.",
        "",
        "| target | concurrency | requests/s | p50 ms | p99 ms | vs mlflow | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["concurrency"], r["target"])):
        r["vs_mlflow"] = r["requests_per_s"] / mlflow_rps[r["concurrency"]]
        lines.append(
            f"| {r['target']} | {r['concurrency']} | {r['requests_per_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['vs_mlflow']:.1f}x | {r['errors']} |"
        )
    ours = next(r for r in rows if r["target"] == "level 1 service" and r["concurrency"] == 32)
    verdict = (
        f"level 1 at c=32: {ours['vs_mlflow']:.1f}x mlflow models serve (target >= "
        f"{TARGET_RATIO:g}x), p99 {ours['p99_ms']:.1f} ms (target <= {TARGET_P99_MS:g} ms)"
    )
    met = ours["vs_mlflow"] >= TARGET_RATIO and ours["p99_ms"] <= TARGET_P99_MS
    lines += ["", verdict + (": met" if met else ": NOT met")]
    text = "\n".join(lines)
    print("\n" + text)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nbench: wrote {out / 'results.md'} and results.json")


if __name__ == "__main__":
    main()
