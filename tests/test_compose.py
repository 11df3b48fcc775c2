"""Level 2's team in containers, walked for real: `make test-compose` (minutes).

One module brings `infra/compose.yaml` up once (`tools.compose`: images built here, secrets made
at random, free ports, a project name of its own), walks the whole loop a team lives, and takes
it down, checking nothing is left behind:

up → the deployments published from a checkout name the workers' code (/app) → a run on a
worker container → the service container serves the champion → a landed batch trained by a
worker and served → two batches landed at once, each trained once, one champion chain → drifted
traffic with feedback → the monitor's deployment asks, a worker retrains → rollback through the
service → Prometheus scraped the service → down.

Where no Docker engine can run (not root, no dockerd), the module is skipped, saying why.
"""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from bench.drift import ask, request_body
from shared.data import data_checksum, load_penguins
from shared.servers import free_port
from shared.simulate import Drift, simulate_batch
from tools import compose, images

pytestmark = [pytest.mark.compose, pytest.mark.timeout(2400)]

MODEL = "penguins-species"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
WAIT_S = 420  # a training run in a worker container on a busy 2-core machine: ~1-2 min


class Team:
    def __init__(self, env: dict[str, str], token: str) -> None:
        self.env, self.token = env, token
        self.service = f"http://127.0.0.1:{env['LEVEL2_TEAM_SERVICE_PORT']}"
        self.prefect = f"http://127.0.0.1:{env['LEVEL2_TEAM_PREFECT_PORT']}/api"
        self.mlflow = MlflowClient(f"http://127.0.0.1:{env['LEVEL2_TEAM_MLFLOW_PORT']}")
        self.prometheus = f"http://127.0.0.1:{env['LEVEL2_TEAM_PROMETHEUS_PORT']}"

    def served(self) -> str | None:
        try:
            return httpx.get(f"{self.service}/model", timeout=5).json().get("version")
        except (httpx.HTTPError, ValueError):
            return None

    def champion(self) -> str:
        return str(self.mlflow.get_model_version_by_alias(MODEL, "champion").version)

    def flow_runs(self, deployment: str) -> list[dict]:
        body = {"deployments": {"name": {"any_": [deployment]}}}
        response = httpx.post(f"{self.prefect}/flow_runs/filter", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def versions_trained_on(self, checksum: str) -> list[str]:
        found = self.mlflow.search_model_versions(
            f"name = '{MODEL}' and tags.batch_checksum = '{checksum}'"
        )
        return sorted(str(v.version) for v in found)


def wait_for(what: str, condition, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(2)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def leftovers(project: str) -> list[str]:
    """Containers, networks and volumes still labelled with the project."""
    label = f"label=com.docker.compose.project={project}"
    found = []
    for kind in ("container", "network", "volume"):
        listing = ["docker", kind, "ls", "--quiet", "--filter", label]
        if kind == "container":
            listing.insert(3, "--all")
        done = subprocess.run(listing, capture_output=True, text=True, timeout=60)
        found += [f"{kind} {name}" for name in done.stdout.split()]
    return found


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    try:
        daemon = images.start_engine()
    except images.ImageError as error:
        pytest.skip(f"no Docker engine can run here: {error}")
    project = f"penguins-test-{uuid.uuid4().hex[:6]}"
    scratch = tmp_path_factory.mktemp("compose")
    env_file = scratch / ".env"
    env_file.write_text(
        f"LEVEL2_TEAM_PG_PASSWORD={uuid.uuid4().hex}\nLEVEL2_ADMIN_TOKEN={uuid.uuid4().hex}\n"
    )
    env = {
        "COMPOSE_PROJECT_NAME": project,
        "LEVEL2_MONITOR_EVERY_S": "10",  # the drift step waits for the scheduled monitor
        **{f"LEVEL2_TEAM_{name}_PORT": str(free_port()) for name in
           ("PREFECT", "MLFLOW", "SERVICE", "PROMETHEUS")},
    }  # fmt: skip
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    patched = pytest.MonkeyPatch()
    patched.setattr(compose, "env_file", lambda: env_file)
    try:
        compose.up()  # what `make compose-up` does (and `make compose-status`, at its end)
        yield Team(env, compose.secret("LEVEL2_ADMIN_TOKEN"))
    finally:
        print(compose.compose("logs", "--tail=40", check=False).stdout[-20000:])
        compose.compose("down", "--remove-orphans", "--volumes", "--timeout=20", check=False)
        patched.undo()
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
        if daemon is not None:
            images.stop_engine(daemon.pid)


def test_up_starts_every_service_healthy(team):
    states = compose.compose("ps", "--all", "--format", "{{.Service}} {{.State}} {{.Health}}")
    lines = set(states.stdout.splitlines())
    for service in ("postgres", "mlflow", "prefect-server", "watcher", "service", "prometheus"):
        assert f"{service} running healthy" in lines, lines
    assert lines >= {"worker running healthy", "publish exited "}, lines


def test_a_deployment_published_from_a_checkout_runs_on_a_worker_container(team):
    """CD: published from this checkout (as a CI runner would), naming /app, the image's code;
    a worker container runs it, and the service container comes to serve its champion."""
    env = os.environ | {
        "PREFECT_API_URL": team.prefect,
        "LEVEL2_WORK_POOL": "penguins-pool",
        "LEVEL2_WORKER_CODE_DIR": "/app",
    }
    published = subprocess.run(
        [sys.executable, "-m", "level2_pipelines.triggers", "--publish"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    started = subprocess.run(
        [sys.executable, "-m", "prefect", "deployment", "run", "penguins-training/on-demand"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    run = wait_for(
        "the on-demand run",
        lambda: [r for r in team.flow_runs("on-demand") if r["state_type"] in TERMINAL],
    )
    assert run[0]["state_type"] == "COMPLETED", run[0]["state"]
    assert wait_for("the champion served", lambda: team.served() == team.champion())


def land_batch(name: str, seed: int) -> str:
    """Land a simulated batch in the watcher's incoming volume; return its checksum."""
    batch = simulate_batch(240, seed=seed)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / name
    batch.to_csv(path, index=False)
    compose.land(path)
    return data_checksum(batch)


def run_of(team: Team, name: str) -> dict | None:
    runs = [
        r
        for r in team.flow_runs("on-new-data")
        if r["parameters"].get("incoming_name") == name and r["state_type"] in TERMINAL
    ]
    return runs[0] if runs else None


def test_a_landed_batch_is_trained_by_a_worker_and_served(team):
    before = team.champion()
    checksum = land_batch("landed.csv", seed=11)
    run = wait_for("the on-new-data run", lambda: run_of(team, "landed.csv"))
    assert run["state_type"] == "COMPLETED", run["state"]
    assert len(team.versions_trained_on(checksum)) == 1
    assert wait_for("the new champion served", lambda: team.served() == team.champion())
    assert team.champion() != before


def test_two_batches_at_once_are_each_trained_once_with_one_champion_chain(team):
    """Two workers, two batches at the same moment: the decision is one at a time across
    containers, so each batch is trained once and the rollback chain holds every champion."""
    first = land_batch("first.csv", seed=21)
    second = land_batch("second.csv", seed=22)
    runs = wait_for(
        "both runs",
        lambda: (a := run_of(team, "first.csv")) and (b := run_of(team, "second.csv")) and [a, b],
    )
    assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"], runs
    assert len(team.versions_trained_on(first)) == 1
    assert len(team.versions_trained_on(second)) == 1
    chain, version = [], team.champion()
    while version is not None:  # champion -> the one it replaced -> ... -> the first
        assert version not in chain, f"the rollback chain loops: {[*chain, version]}"
        chain.append(version)
        version = team.mlflow.get_model_version(MODEL, version).tags.get("previous_champion")
    assert chain[-1] == "1", chain


def test_drifted_traffic_with_feedback_is_retrained_on(team):
    before = team.champion()
    shift = float(load_penguins()["bill_length_mm"].std())
    birds = simulate_batch(200, seed=31, drift=Drift(mean_shift={"bill_length_mm": shift}))
    answered, confirmed = ask(team.service, birds, team.token)
    assert answered == confirmed == 200
    run = wait_for(
        "the on-drift run",
        lambda: [r for r in team.flow_runs("on-drift") if r["state_type"] in TERMINAL],
    )
    assert run[0]["state_type"] == "COMPLETED", run[0]["state"]
    assert wait_for("the retrained champion served", lambda: team.served() == team.champion())
    assert team.champion() != before
    # The monitor ran in a worker container; its verdict reaches the service's /metrics
    # through the tracking server (a verdict read is one with a time it was checked).
    assert wait_for("the verdict on the service's /metrics", lambda: drift_checked_at(team) > 0, 90)


def drift_checked_at(team: Team) -> float:
    for line in httpx.get(f"{team.service}/metrics", timeout=10).text.splitlines():
        if line.startswith("penguins_drift_checked_timestamp_seconds "):
            return float(line.split()[1])
    return 0.0


def test_rollback_through_the_service(team):
    current = team.champion()
    previous = team.mlflow.get_model_version(MODEL, current).tags["previous_champion"]
    response = httpx.post(
        f"{team.service}/admin/rollback",
        headers={"Authorization": f"Bearer {team.token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert team.champion() == previous
    assert wait_for("the rolled-back champion served", lambda: team.served() == previous)
    bird = request_body(simulate_batch(1, seed=5).iloc[0].to_dict())
    assert (
        httpx.post(f"{team.service}/predict", json=bird, timeout=10).json()["model_version"]
        == previous
    )


def test_prometheus_scrapes_the_service(team):
    def scraped():
        query = httpx.get(
            f"{team.prometheus}/api/v1/query",
            params={"query": 'http_requests_total{handler="/predict"}'},
            timeout=10,
        ).json()
        return query["data"]["result"]

    assert wait_for("Prometheus's scrape", scraped, timeout=60)


def test_down_leaves_no_container_network_or_volume(team):
    compose.down(volumes=True)  # what `make compose-down VOLUMES=1` does
    assert leftovers(os.environ["COMPOSE_PROJECT_NAME"]) == []
