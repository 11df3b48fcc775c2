"""Team mode against the real servers: PostgreSQL, an MLflow server, a Prefect server and its
workers, the service, Prometheus. `make test-team` runs it (minutes; `make test` leaves it out).

One module brings the team up once, on free ports, with databases of its own, and takes it
down at the end: every check below reads what a real run left behind, in the servers' own
tables where it can. Without PostgreSQL the module is skipped, saying why.
"""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from level2_pipelines.ops import prometheus
from level2_pipelines.ops.team_postgres import DATABASES, connect, postgres_problem
from level2_pipelines.ops.team_settings import TeamSettings, environment
from shared.contract import FEATURES, NUMERIC_FEATURES
from shared.servers import free_port
from shared.simulate import simulate_batch

pytestmark = [pytest.mark.team, pytest.mark.timeout(900)]

TEAM_ENV = {
    # Fresh databases and its own ports, so it never meets a team someone left running.
    "LEVEL2_TEAM_DB_PREFIX": f"test_{uuid.uuid4().hex[:8]}",
    # The monitor's deployment would start a run every minute; not what this test is about.
    "LEVEL2_MONITOR_EVERY_S": "3600",
}


def team_command(*args: str, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "level2_pipelines.ops.team", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"team {' '.join(args)} failed:\n{output}"
    return output


def processes_of(state_dir: Path) -> list[str]:
    """Live processes whose environment points at this team's state folder."""
    marker = f"LEVEL2_STATE_DIR={state_dir / 'level2'}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(f"{entry.name}: {(entry / 'cmdline').read_bytes()[:120]!r}")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """Team mode up; yields (settings, environment, what `up` printed, seconds it took)."""
    env = os.environ | TEAM_ENV
    env["LEVEL2_TEAM_STATE_DIR"] = str(tmp_path_factory.mktemp("team"))
    for name in ("PREFECT", "MLFLOW", "SERVICE", "PROMETHEUS"):
        env[f"LEVEL2_TEAM_{name}_PORT"] = str(free_port())
    os.environ.update({k: v for k, v in env.items() if k.startswith("LEVEL2_TEAM_")})
    settings = TeamSettings()
    problem = postgres_problem(settings)
    if problem is not None:
        pytest.skip(f"team mode needs PostgreSQL: {problem}")
    started = time.monotonic()
    try:
        output = team_command("up", env=env)
        yield settings, env, output, time.monotonic() - started
    finally:
        subprocess.run(
            [sys.executable, "-m", "level2_pipelines.ops.team", "down", "--drop-databases"],
            env=env,
            timeout=180,
        )
        for name in env:
            if name.startswith("LEVEL2_TEAM_"):
                os.environ.pop(name, None)


@pytest.fixture(scope="module")
def trained(team):
    """One on-demand pipeline run, started through the Prefect server and taken by a worker."""
    _, env, _, _ = team
    return team_command("run", env=env)


def sql(settings: TeamSettings, purpose: str, query: str, *args) -> list[tuple]:
    with connect(settings, settings.database(purpose)) as connection:
        return connection.execute(query, args).fetchall()


def test_up_starts_every_server_and_both_workers(team):
    settings, _, output, seconds = team
    print(f"team up: {seconds:.1f} s\n{output}")
    for name in ("mlflow", "prefect", "worker-1", "worker-2", "watcher", "service"):
        assert f"{name}: up (pid" in output
    assert f"workers: 2 online in pool {settings.work_pool}" in output
    assert "deployments: 9 published" in output
    created = {row[0] for row in sql(settings, "mlflow", "SELECT datname FROM pg_database")}
    assert {settings.database(p) for p in DATABASES} <= created
    assert "PGPASSWORD" not in output and "password" not in output.lower()


def test_a_run_is_taken_by_a_worker_and_recorded_in_prefects_database(team, trained):
    settings, *_ = team
    print(trained)
    assert "Completed after" in trained
    assert "taken by worker-" in trained
    flow_run_id = trained.split("(", 1)[1].split(")", 1)[0]
    rows = sql(
        settings,
        "prefect",
        "SELECT f.state_type, d.name, p.name, f.infrastructure_pid FROM flow_run f "
        "JOIN deployment d ON d.id = f.deployment_id "
        "JOIN work_queue q ON q.id = f.work_queue_id "
        "JOIN work_pool p ON p.id = q.work_pool_id WHERE f.id = %s",
        flow_run_id,
    )
    assert len(rows) == 1
    state, deployment, pool, pid = rows[0]
    assert (state, deployment, pool) == ("COMPLETED", "on-demand", settings.work_pool)
    assert pid  # the worker started it as a process of its own


def test_the_champion_is_in_mlflows_database_and_served_through_the_tracking_server(team, trained):
    settings, *_ = team
    rows = sql(
        settings,
        "mlflow",
        "SELECT v.version, v.status, r.status, v.source FROM registered_model_aliases a "
        "JOIN model_versions v ON v.name = a.name AND v.version = a.version "
        "JOIN runs r ON r.run_uuid = v.run_id WHERE a.alias = 'champion'",
    )
    assert len(rows) == 1
    version, version_status, run_status, source = rows[0]
    assert (version_status, run_status) == ("READY", "FINISHED")
    assert source.startswith("models:/")
    assert f"serving version {version} (champion {version})" in trained
    ready = httpx.get(f"{settings.service_url}/ready", timeout=5).json()
    assert ready["model_version"] == str(version)
    # Artifacts went through the server into the team's folder, not a client's path.
    assert any((settings.state_dir / "mlartifacts").rglob("MLmodel"))


def test_answers_are_logged_in_the_predictions_database(team, trained):
    settings, *_ = team
    bird = {
        "island": "Biscoe",
        "bill_length_mm": 47.5,
        "bill_depth_mm": 14.2,
        "flipper_length_mm": 217,
        "body_mass_g": 4875,
        "sex": "female",
    }
    answer = httpx.post(f"{settings.service_url}/predict", json=bird, timeout=5).json()
    deadline = time.monotonic() + 15
    while True:  # written off the request path, within a flush interval or two
        rows = sql(
            settings,
            "predictions",
            "SELECT model_version FROM predictions WHERE prediction_id = %s",
            answer["prediction_id"],
        )
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rows == [(answer["model_version"],)]


def test_a_landed_batch_is_trained_on_by_a_worker(team, trained):
    """The watcher's event, the Prefect server's trigger (its automation, in PostgreSQL), the
    on-new-data deployment, a worker: a batch dropped into incoming/ ends as a model version."""
    settings, *_ = team
    incoming = settings.level2_state_dir / "incoming"
    batch = simulate_batch(240, seed=11)
    batch.to_csv(incoming / ".landing.csv", index=False)  # written whole, then renamed
    (incoming / ".landing.csv").rename(incoming / "landed.csv")
    deadline = time.monotonic() + 300
    while True:
        rows = sql(
            settings,
            "prefect",
            "SELECT f.state_type FROM flow_run f JOIN deployment d ON d.id = f.deployment_id "
            "WHERE d.name = 'on-new-data' AND f.parameters->>'incoming_name' = 'landed.csv'",
        )
        if (rows and rows[0][0] in {"COMPLETED", "FAILED", "CRASHED"}) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(1)
    assert rows == [("COMPLETED",)]
    versions = sql(settings, "mlflow", "SELECT count(*) FROM model_versions")
    assert versions == [(2,)]


def test_a_canary_is_judged_on_live_evidence_and_the_service_follows(team, trained):
    """The earlier version rolled out as a canary to half the callers, against the team's MLflow
    server: the service answers some callers with it, the feedback comes back, and the judge
    (a command, as a person or the rollout deployment runs it) promotes it on that evidence;
    the service then serves it as champion."""
    settings, *_ = team
    level2 = environment(settings) | {
        "LEVEL2_ROLLOUT_MIN_CONFIRMED": "20",
        "LEVEL2_ROLLOUT_TOLERANCE": "0.2",  # both versions are good: the test is the path
    }
    champion_now = httpx.get(f"{settings.service_url}/ready", timeout=5).json()["model_version"]
    canary = str(int(champion_now) - 1)

    def rollout(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "level2_pipelines.rollout", *args],
            env=level2,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    started = rollout("start", "canary", "--share", "0.5", "--version", canary)
    birds = simulate_batch(160, seed=5).dropna(subset=list(NUMERIC_FEATURES))

    def bird(row) -> dict:  # a request's fields; a missing sex is None
        return {name: None if pd.isna(row[name]) else row[name] for name in FEATURES}

    seen: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:  # the service polls every second
        for caller in range(10):
            answer = httpx.post(
                f"{settings.service_url}/predict",
                json=bird(birds.iloc[0]),
                headers={"X-Caller-Id": f"warm-{caller}"},
                timeout=5,
            ).json()
            seen[answer["model_version"]] = 1
        time.sleep(0.5)
    assert set(seen) == {champion_now, canary}, seen
    answered = {champion_now: 0, canary: 0}
    token = (settings.level2_state_dir / "admin_token").read_text().strip()  # the service's own
    admin = {"Authorization": f"Bearer {token}"}
    for n, row in birds.iterrows():
        answer = httpx.post(
            f"{settings.service_url}/predict",
            json=bird(row),
            headers={"X-Caller-Id": f"caller-{n}"},
            timeout=5,
        ).json()
        answered[answer["model_version"]] += 1
        feedback = {"prediction_id": answer["prediction_id"], "species": row["species"]}
        given = httpx.post(
            f"{settings.service_url}/feedback", json=feedback, headers=admin, timeout=5
        )
        assert given.status_code == 200, given.text

    judged = rollout("judge")

    print(started, answered, judged)
    assert f"promote v{canary} (canary)" in judged
    alias = sql(
        settings,
        "mlflow",
        "SELECT version FROM registered_model_aliases WHERE alias = 'champion'",
    )
    assert alias == [(int(canary),)]
    deadline = time.monotonic() + 30
    while httpx.get(f"{settings.service_url}/ready", timeout=5).json()["model_version"] != canary:
        assert time.monotonic() < deadline, "the service did not follow the promotion"
        time.sleep(0.5)


def test_prometheus_scrapes_the_service(team, trained):
    settings, _, output, _ = team
    if "prometheus: up" not in output:
        assert "prometheus: not installed" in output and "ops.prometheus install" in output
        pytest.skip("the prometheus binary is not installed here; team-up said how to add it")
    deadline = time.monotonic() + 30
    while True:
        query = httpx.get(
            f"{settings.prometheus_url}/api/v1/query",
            params={"query": 'http_requests_total{handler="/predict"}'},
            timeout=5,
        ).json()
        if query["data"]["result"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert query["data"]["result"], "Prometheus has no http_requests_total for /predict"


def test_prometheus_loaded_the_alert_rules(team, trained):
    """Team mode's Prometheus evaluates every alert of infra/prometheus/alerts.yml, healthy."""
    settings, _, output, _ = team
    if "prometheus: up" not in output:
        pytest.skip("the prometheus binary is not installed here; team-up said how to add it")
    expected = {
        rule["alert"]
        for group in yaml.safe_load(prometheus.RULES.read_text())["groups"]
        for rule in group["rules"]
    }

    answer = httpx.get(f"{settings.prometheus_url}/api/v1/rules", timeout=5).json()

    loaded = {rule["name"]: rule for g in answer["data"]["groups"] for rule in g["rules"]}
    assert set(loaded) == expected
    assert {rule["health"] for rule in loaded.values()} <= {"ok", "unknown"}


def test_down_leaves_no_process_and_drop_removes_the_databases(team, trained):
    settings, env, _, _ = team
    assert processes_of(settings.state_dir)  # the check below can see them while they run
    output = team_command("down", "--drop-databases", env=env)
    print(output)  # seconds per process (`make test-team` shows passed tests' output)
    assert "service: stopped" in output and "worker-1: stopped" in output
    deadline = time.monotonic() + 10
    while processes_of(settings.state_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_of(settings.state_dir) == []
    ours = [settings.database(purpose) for purpose in DATABASES]
    with connect(settings) as connection:
        left = connection.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (ours,)
        ).fetchall()
    assert left == []
    assert "nothing running" in team_command("down", env=env)  # and says so a second time
