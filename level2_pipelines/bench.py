"""Serving speed with the prediction log on and off: the level 2 service, at c=1, 8 and 32.

    python -m level2_pipelines.bench [--seconds 4] [--rounds 3]

One pipeline run trains and promotes a champion into a fresh state folder under state/; then
two copies of the real service (`python -m level2_pipelines.serve`) follow it, one with
LEVEL2_PREDICTION_LOG=false, and are loaded in turn (round-robin per round) with the loopback
load generator from `shared/`, so a noisy moment on this shared machine hurts both alike. Each
figure is the median over rounds. Target: with the log on, at least 80 % of the throughput
with it off at c=32. After the load, the logging copy is stopped cleanly and its log must hold
every answer it gave. Writes results.md and results.json next to the runs.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from level2_pipelines.settings import Settings
from shared.contract import EXAMPLE_PAYLOAD
from shared.loadgen import round_robin, run_load
from shared.servers import free_port, running_server

CONCURRENCY = (1, 8, 32)
TARGET_SHARE = 0.80  # throughput with the log on / off, at c=32


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark level 2 serving, log on and off.")
    parser.add_argument("--seconds", type=float, default=4.0, help="per load run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out = Settings().state_dir / "bench"
    shutil.rmtree(out, ignore_errors=True)
    env = {"LEVEL2_STATE_DIR": str(out), "LEVEL2_PORT": "1"}  # no service to deploy to yet
    print(f"bench: one pipeline run to train a champion into {out}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "level2_pipelines.pipeline_cli"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    ports = {"log on": free_port(), "log off": free_port()}
    payload = json.dumps(EXAMPLE_PAYLOAD).encode()
    servers = {
        name: running_server(
            "level2_pipelines.serve",
            env
            | {"LEVEL2_PORT": str(port), "LEVEL2_PREDICTION_LOG": str(name == "log on").lower()},
            port,
            "/ready",
        )
        for name, port in ports.items()
    }
    targets = {
        name: lambda c, port=port: run_load(
            port, "/predict", payload, concurrency=c, seconds=args.seconds
        )
        for name, port in ports.items()
    }
    print("bench: starting the service twice, with the prediction log on and off", flush=True)
    with servers["log on"], servers["log off"]:
        rows, runs = round_robin(targets, CONCURRENCY, args.rounds)
    # Both stopped cleanly (SIGTERM): the logging one wrote what was still pending.
    answered = sum(r.ok for (name, _), results in runs.items() if name == "log on" for r in results)
    engine = sa.create_engine(Settings(state_dir=out).resolved_prediction_log_uri)
    with engine.connect() as connection:
        logged = connection.execute(sa.text("select count(*) from predictions")).scalar()
    engine.dispose()
    report(rows, answered, logged, args, out)


def report(rows: list[dict], answered: int, logged: int, args, out: Path) -> None:
    off = {r["concurrency"]: r["requests_per_s"] for r in rows if r["target"] == "log off"}
    lines = [
        f"Median of {args.rounds} rounds of {args.seconds:g} s per cell; one uvicorn worker each.",
        "",
        "| prediction log | concurrency | requests/s | p50 ms | p99 ms | on / off | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["concurrency"], r["target"])):
        r["share_of_off"] = r["requests_per_s"] / off[r["concurrency"]]
        lines.append(
            f"| {r['target']} | {r['concurrency']} | {r['requests_per_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['share_of_off']:.2f} | {r['errors']} |"
        )
    on32 = next(r for r in rows if r["target"] == "log on" and r["concurrency"] == 32)
    met = on32["share_of_off"] >= TARGET_SHARE
    lines += [
        "",
        f"log on at c=32: {on32['share_of_off']:.2f} of the throughput with it off "
        f"(target >= {TARGET_SHARE:.2f}): {'met' if met else 'NOT met'}",
        f"answers given with the log on: {answered:,}; rows in the log after a clean stop: "
        f"{logged:,} ({'none lost' if logged == answered else f'{answered - logged:,} LOST'})",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nbench: wrote {out / 'results.md'} and results.json")


if __name__ == "__main__":
    main()
