"""The drift loop, timed end to end with the workshop's servers: `make bench-drift` (~3 min).

    python -m bench.drift [--every 10]

On a fresh clone of this checkout's HEAD (as `make bench-workshop` makes one): `make level2`
trains a champion, `make level2-up` starts the Prefect server, the MLflow UI, the warm worker and
the deployments (the drift monitor every `--every` seconds), `make level2-serve` serves the
champion. Then the world moves: 200 birds with bills one standard deviation longer are asked
about, and their true species confirmed through `POST /feedback`, while a steady trickle of
ordinary requests runs beside them. Nothing else is done by hand: the scheduled monitor must
find the drift and emit `penguins.drift.detected`, the on-drift deployment's trigger must start
a training run on the confirmed birds, and the service must come to serve its champion. Printed:
the seconds from the traffic's start to each step, what /metrics shows at the end, and how many
requests failed (the target is none). Everything runs on loopback and is stopped at the end.
"""

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.workshop import Clone, served_version
from shared.data import load_penguins
from shared.simulate import Drift, simulate_batch

LOOP_TIMEOUT_S = 300.0


def request_body(bird: dict) -> dict:
    """A simulated bird as a request: its features, an unknown sex left out."""
    return {k: v for k, v in bird.items() if k not in ("species", "year") and v == v}


def ask(base_url: str, birds, token: str) -> tuple[int, int]:
    """Each bird to /predict, then its true species to /feedback: (answered, confirmed)."""
    answered = confirmed = 0
    with httpx.Client(base_url=base_url, timeout=10) as http:
        for bird in birds.to_dict("records"):
            response = http.post("/predict", json=request_body(bird))
            if response.status_code != 200:
                continue
            answered += 1
            confirmation = {"prediction_id": response.json()["prediction_id"]}
            feedback = http.post(
                "/feedback",
                json=confirmation | {"species": bird["species"]},
                headers={"Authorization": f"Bearer {token}"},
            )
            confirmed += feedback.status_code == 200
    return answered, confirmed


class Trickle(threading.Thread):
    """Ordinary requests, one a second, all through the loop: every answer must be a 200."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url, self.stop = base_url, threading.Event()
        self.sent, self.failed = 0, []
        self.latencies: list[float] = []

    def run(self) -> None:
        birds = simulate_batch(500, seed=77).to_dict("records")
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while not self.stop.is_set():
                bird = birds[self.sent % len(birds)]
                started = time.perf_counter()
                try:
                    status = http.post("/predict", json=request_body(bird)).status_code
                except httpx.HTTPError as error:
                    status = type(error).__name__
                self.latencies.append(time.perf_counter() - started)
                self.sent += 1
                if status != 200:
                    self.failed.append(status)
                self.stop.wait(1.0)  # a trickle: the monitor's window stays mostly drifted


def wait_for(what: str, condition, started: float) -> float:
    """Seconds from `started` until `condition()` holds."""
    while time.perf_counter() - started < LOOP_TIMEOUT_S:
        if condition():
            return time.perf_counter() - started
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not within {LOOP_TIMEOUT_S:.0f} s")


def on_drift_runs(api: str) -> list[dict]:
    """The flow runs of the on-drift deployment, from the Prefect server's REST API."""
    body = {"deployments": {"name": {"any_": ["on-drift"]}}}
    response = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the drift loop with the servers up.")
    parser.add_argument("--every", type=int, default=10, help="seconds between monitor runs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    clone = Clone(workdir / "clone")
    clone.env["LEVEL2_MONITOR_EVERY_S"] = str(args.every)
    state = clone.root / "state" / "level2"
    api = f"http://127.0.0.1:{clone.env['LEVEL2_PREFECT_PORT']}/api"
    print(f"bench-drift: a champion first (make level2) in {clone.root}", flush=True)
    clone.make("level2")
    shift = float(load_penguins()["bill_length_mm"].std())
    birds = simulate_batch(200, seed=31, drift=Drift(mean_shift={"bill_length_mm": shift}))
    steps: dict[str, float] = {}
    with clone.servers() as base_url:
        wait_for("the service", lambda: served_version(base_url) is not None, time.perf_counter())
        before = served_version(base_url)
        trickle = Trickle(base_url)
        trickle.start()
        token = (state / "admin_token").read_text().strip()
        print(f"bench-drift: servers up, v{before} served; the drifted birds arrive", flush=True)
        started = time.perf_counter()
        answered, confirmed = ask(base_url, birds, token)
        steps["drifted traffic and feedback sent"] = time.perf_counter() - started

        def detected() -> bool:
            latest = state / "monitor" / "latest.json"
            return latest.exists() and json.loads(latest.read_text())["status"] == "drift"

        steps["drift detected (scheduled monitor)"] = wait_for("detection", detected, started)
        steps["training run started (on-drift trigger)"] = wait_for(
            "the on-drift run", lambda: bool(on_drift_runs(api)), started
        )
        steps["new champion served"] = wait_for(
            "the new champion", lambda: served_version(base_url) not in (None, before), started
        )
        trickle.stop.set()
        trickle.join()
        after = served_version(base_url)
        metrics = httpx.get(f"{base_url}/metrics", timeout=10).text
    shown = [
        line
        for line in metrics.splitlines()
        if line.startswith(
            ("penguins_drift_detected", "penguins_live_accuracy", "penguins_served_model_info")
        )
    ]
    print(f"\nbench-drift: {answered} drifted answers, {confirmed} confirmed species")
    for step, seconds in steps.items():
        print(f"  {seconds:6.1f} s  {step}")
    print(
        f"  served v{before} -> v{after}; ordinary requests during the "
        f"loop: {trickle.sent}, failed: {len(trickle.failed)} {trickle.failed[:5] or ''}"
        f"(median {statistics.median(trickle.latencies) * 1000:.1f} ms)"
    )
    print("  /metrics at the end:\n    " + "\n    ".join(shown))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
