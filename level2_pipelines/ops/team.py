"""Team mode: level 2 on the servers a team runs, started here on one machine.

    make team-up | team-status | team-run | team-down
    python -m level2_pipelines.ops.team up | status | run | down [--drop-databases]

By default level 2 keeps everything within one person's reach: SQLite files for MLflow and the
prediction log, a temporary Prefect API, a run in the process that asked for it. A team that
outgrows one laptop moves to servers, with the same code and other settings:

- PostgreSQL: three databases, made if missing: `<prefix>_mlflow` (runs, registry),
  `<prefix>_prefect` (flow runs, deployments, events), `<prefix>_predictions` (the log);
- an MLflow tracking server on the first, proxying artifacts into the team's state folder:
  clients speak HTTP only, never to the database or the artifact folder;
- a Prefect server on the second, a `process` work pool and its workers; the deployments
  (nightly, on new data, on drift, on demand, the monitor) are published to the pool, and
  whichever worker is free runs each flow run, as a subprocess of its own;
- the watcher that turns a batch landing in `incoming/` into `penguins.batch.landed`;
- the level 2 service following `champion` through the tracking server;
- Prometheus scraping the service's `/metrics` and evaluating the alert rules, when its binary
  is installed (on PATH, or fetched into the state folder by `python -m
  level2_pipelines.ops.prometheus install`).

Only environment variables differ from embedded mode (`team_settings.environment()` lists them): the
pipeline, the service and the monitor do not know which mode they run in. PostgreSQL's
address comes from LEVEL2_TEAM_PG_* (default: 127.0.0.1:5432, user postgres, no password);
a password goes to the processes in PGPASSWORD / PREFECT_SERVER_DATABASE_PASSWORD, never on a
command line and never printed. Every process binds 127.0.0.1; each keeps its pid and log
under state/team/servers/ and stops with its whole process group.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import httpx

from level2_pipelines.ops import prometheus
from level2_pipelines.ops.processes import (
    BIN_DIR,
    MLFLOW_SERVER_ENV,
    kept_alive,
    mlflow_server,
    prefect_server,
)
from level2_pipelines.ops.team_postgres import (
    DATABASES,
    drop_databases,
    ensure_databases,
    postgres_problem,
)
from level2_pipelines.ops.team_settings import TeamSettings, environment
from level2_pipelines.settings import Settings

PROMETHEUS_INSTALL = "python -m level2_pipelines.ops.prometheus install (or apt install prometheus)"
RUN_TIMEOUT_S = 600.0
CODE_ROOT = Path(__file__).resolve().parents[2]  # the folder the package is imported from


# --- The processes ----------------------------------------------------------------------------


def prometheus_config(team: TeamSettings) -> Path:
    return team.state_dir / "prometheus" / "prometheus.yml"


def write_prometheus_config(team: TeamSettings) -> None:
    """Scrape the service every 5 s; evaluate the alert rules as often."""
    path = prometheus_config(team)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prometheus.config(f"127.0.0.1:{team.service_port}", scrape_interval="5s"))


def commands(team: TeamSettings) -> dict[str, tuple[list[str], str | None, dict[str, str]]]:
    """name -> (command, URL that answers once it is up, environment), in starting order."""
    env = environment(team)
    mlflow_env = env | MLFLOW_SERVER_ENV | {"MLFLOW_BACKEND_STORE_URI": team.database_uri("mlflow")}
    prefect_env = env | {
        "PREFECT_SERVER_DATABASE_DRIVER": "postgresql+asyncpg",
        "PREFECT_SERVER_DATABASE_HOST": team.pg_host,
        "PREFECT_SERVER_DATABASE_PORT": str(team.pg_port),
        "PREFECT_SERVER_DATABASE_USER": team.pg_user,
        "PREFECT_SERVER_DATABASE_NAME": team.database("prefect"),
    }
    if team.pg_password is not None:
        prefect_env["PREFECT_SERVER_DATABASE_PASSWORD"] = team.pg_password.get_secret_value()
    found = {
        "mlflow": (
            # Artifacts go through the server (`mlflow-artifacts:/`) into this folder.
            mlflow_server(
                team.mlflow_port,
                "--artifacts-destination",
                (team.state_dir / "mlartifacts").resolve().as_uri(),
            ),
            f"{team.mlflow_url}/health",
            mlflow_env,
        ),
        "prefect": (
            prefect_server(team.prefect_port),
            f"{team.prefect_api_url}/health",
            prefect_env,
        ),
    }
    for number in range(1, team.workers + 1):
        found[f"worker-{number}"] = (
            [
                str(BIN_DIR / "prefect"),
                "worker",
                "start",
                "--pool",
                team.work_pool,
                "--type",
                "process",
                "--name",
                f"{team.db_prefix}-worker-{number}",
                "--limit",
                "1",  # one flow run at a time each: a run takes a core while it trains
            ],
            None,  # ready once the pool lists it (`wait_for_workers`)
            env,
        )
    found["watcher"] = (  # restarted when it dies or stops beating
        kept_alive(
            [sys.executable, "-m", "level2_pipelines.triggers", "--watch"],
            team.level2_state_dir / "servers" / "watcher.json",
        ),
        None,
        env,
    )
    found["service"] = (
        [sys.executable, "-m", "level2_pipelines.serve"],
        f"{team.service_url}/health",
        env,
    )
    binary = prometheus.binary("prometheus")
    if binary is not None:
        found["prometheus"] = (
            [
                binary,
                f"--config.file={prometheus_config(team)}",
                f"--storage.tsdb.path={team.state_dir / 'prometheus' / 'data'}",
                f"--web.listen-address=127.0.0.1:{team.prometheus_port}",
            ],
            f"{team.prometheus_url}/-/ready",
            env,
        )
    return found


def create_work_pool(team: TeamSettings) -> None:
    """The `process` pool the deployments are published to (left as it is if it exists)."""
    response = httpx.post(
        f"{team.prefect_api_url}/work_pools/",
        json={"name": team.work_pool, "type": "process"},
        timeout=30,
    )
    if response.status_code not in (201, 409):  # 409: it exists
        response.raise_for_status()


def pool_workers(team: TeamSettings) -> list[dict]:
    """The workers the Prefect server knows in the pool, with their status and heartbeat."""
    response = httpx.post(
        f"{team.prefect_api_url}/work_pools/{team.work_pool}/workers/filter", json={}, timeout=10
    )
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return response.json()


def wait_for_workers(team: TeamSettings) -> None:
    deadline = time.monotonic() + 120
    names = {f"{team.db_prefix}-worker-{n}" for n in range(1, team.workers + 1)}
    while True:
        online = {w["name"] for w in pool_workers(team) if w.get("status") == "ONLINE"}
        if names <= online:
            print(f"workers: {len(names)} online in pool {team.work_pool}")
            return
        if time.monotonic() > deadline:
            sys.exit(
                f"workers: {sorted(names - online)} not online; see {team.processes.directory}"
            )
        time.sleep(0.5)


def publish(team: TeamSettings) -> None:
    """Register the deployments on the team's Prefect server, on the pool: continuous delivery
    does the same from CI (`python -m level2_pipelines.triggers --publish`)."""
    result = subprocess_run([sys.executable, "-m", "level2_pipelines.triggers", "--publish"], team)
    names = [line.split("deployment ", 1)[1] for line in result if "deployment " in line]
    print(f"deployments: {len(names)} published to pool {team.work_pool}")


def subprocess_run(command: list[str], team: TeamSettings) -> list[str]:
    done = subprocess.run(
        command, env=environment(team), cwd=CODE_ROOT, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[1:])} failed:\n{done.stdout}{done.stderr}")
    return done.stdout.splitlines()


def up(team: TeamSettings) -> None:
    started = time.monotonic()
    problem = postgres_problem(team)
    if problem is not None:
        sys.exit(f"team-up: {problem}; set LEVEL2_TEAM_PG_HOST/PORT/USER/PASSWORD")
    created = ensure_databases(team)
    names = ", ".join(team.database(p) for p in DATABASES)
    print(f"postgresql: {team.pg_host}:{team.pg_port} databases {names}", end="")
    print(f" ({len(created)} created)" if created else " (already there)")
    team.level2_state_dir.mkdir(parents=True, exist_ok=True)
    write_prometheus_config(team)
    keeper = team.processes
    servers = commands(team)
    for name, (command, health, env) in servers.items():
        # Workers and the watcher need the pool and the deployments: published before them.
        if name == "worker-1":
            create_work_pool(team)
            publish(team)
        keeper.start(name, command, health=health, env=env, cwd=CODE_ROOT)
    wait_for_workers(team)
    if "prometheus" not in servers:
        print(
            f"prometheus: not installed, nothing scrapes /metrics; to add it: {PROMETHEUS_INSTALL}"
        )
    print(f"team: up in {time.monotonic() - started:.1f} s")
    print(f"  MLflow:     {team.mlflow_url}")
    print(f"  Prefect:    http://127.0.0.1:{team.prefect_port}")
    print(f"  service:    {team.service_url}")
    if "prometheus" in servers:
        print(f"  Prometheus: {team.prometheus_url}")
    print(f"  drop a batch into {team.level2_state_dir / 'incoming'}, or `make team-run`")


def down(team: TeamSettings, *, drop: bool = False) -> None:
    keeper = team.processes
    # Every process started, whatever the settings say now; in the reverse of starting order.
    started = {path.stem for path in keeper.directory.glob("*.pid")}
    if not started:
        print("team: nothing running")
    order = [name for name in commands(team) if name in started]
    for name in [*reversed(order), *sorted(started - set(order))]:
        keeper.stop(name)
    if drop:
        problem = postgres_problem(team)
        if problem is not None:
            sys.exit(f"team-down: databases not dropped: {problem}")
        drop_databases(team)
        print(f"postgresql: databases {', '.join(team.database(p) for p in DATABASES)} dropped")


def champion(team: TeamSettings) -> str | None:
    """The version `champion` points at, asked of the tracking server's REST API."""
    response = httpx.get(
        f"{team.mlflow_url}/api/2.0/mlflow/registered-models/alias",
        params={"name": Settings().model_name, "alias": "champion"},
        timeout=10,
    )
    if response.status_code != 200:
        return None
    return response.json()["model_version"]["version"]


def served_version(team: TeamSettings) -> str | None:
    try:
        response = httpx.get(f"{team.service_url}/ready", timeout=2)
    except httpx.TransportError:
        return None
    return response.json().get("model_version") if response.status_code == 200 else None


def status(team: TeamSettings) -> None:
    keeper = team.processes
    for name in commands(team):
        pid = keeper.running(name)
        print(f"{name}: {f'running (pid {pid})' if pid else 'not running'}")
    if keeper.running("prefect"):
        workers = pool_workers(team)
        states = ", ".join(f"{w['name']} {w.get('status', '?').lower()}" for w in workers)
        print(f"pool {team.work_pool}: {states or 'no workers'}")
    if keeper.running("mlflow"):
        print(f"champion: version {champion(team) or 'none yet'}")
    if keeper.running("service"):
        print(f"service: serving version {served_version(team) or 'none (not ready)'}")
    names = ", ".join(team.database(p) for p in DATABASES)
    print(f"postgresql: {team.pg_user}@{team.pg_host}:{team.pg_port} databases {names}")


def run(team: TeamSettings) -> None:
    """Start the on-demand deployment, wait for the run a worker takes, then for the service to
    serve the champion it leaves: the path a team's runs take, timed step by step."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    started = time.monotonic()
    with temporary_settings({PREFECT_API_URL: team.prefect_api_url}):
        flow_run = run_deployment("penguins-training/on-demand", timeout=RUN_TIMEOUT_S)
    ran = time.monotonic() - started
    taken_by = worker_of(team, str(flow_run.id))
    print(
        f"run: flow run {flow_run.name} ({flow_run.id}) {flow_run.state.name} after {ran:.1f} s, "
        f"taken by {taken_by or 'no worker of this team'}"
    )
    if not flow_run.state.is_completed():
        sys.exit(f"run: {flow_run.state.message}")
    version = champion(team)
    deadline = time.monotonic() + 60
    while served_version(team) != version and time.monotonic() < deadline:
        time.sleep(0.2)
    served = served_version(team)
    print(
        f"service: serving version {served} (champion {version}) "
        f"{time.monotonic() - started - ran:.1f} s after the run ended"
    )
    if served != version:
        sys.exit("run: the service did not follow the champion within 60 s")


def worker_of(team: TeamSettings, flow_run_id: str) -> str | None:
    """Which of the team's workers ran the flow run (its log names every run it submits)."""
    for log in sorted(team.processes.directory.glob("worker-*.log")):
        if flow_run_id in log.read_text(errors="replace"):
            return log.stem
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description="Level 2 in team mode, on this machine.")
    parser.add_argument("action", choices=["up", "down", "status", "run"])
    parser.add_argument(
        "--drop-databases", action="store_true", help="down: also drop the team's databases"
    )
    args = parser.parse_args()
    team = TeamSettings()
    if args.action == "down":
        down(team, drop=args.drop_databases)
    else:
        {"up": up, "status": status, "run": run}[args.action](team)


if __name__ == "__main__":
    main()
