"""Team mode's faults, on the real servers (`make test-team`): a flow run whose process is killed
mid-run is marked Crashed by its worker, and the watcher sends its batch again, which is then
trained on exactly once; a watcher killed is restarted, beats again and takes the next batch.

A team of its own (one worker, fresh databases, free ports), up once for the module."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from level2_pipelines.data import read_batch_file
from level2_pipelines.ops.team_postgres import connect, postgres_problem
from level2_pipelines.ops.team_settings import TeamSettings
from shared.data import data_checksum
from shared.servers import free_port
from shared.simulate import simulate_batch

pytestmark = [pytest.mark.team, pytest.mark.timeout(1200)]

TEAM_ENV = {
    "LEVEL2_TEAM_DB_PREFIX": f"test_{uuid.uuid4().hex[:8]}",
    "LEVEL2_TEAM_WORKERS": "1",
    "LEVEL2_MONITOR_EVERY_S": "3600",  # no monitor runs in the way of the worker
    "LEVEL2_INCOMING_RETRY_BACKOFF_S": "2",
}
RUN_S = 300  # a flow run in a fresh process on a busy 2-core machine, queued behind another


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.5)
    return found


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    env = os.environ | TEAM_ENV
    env["LEVEL2_TEAM_STATE_DIR"] = str(tmp_path_factory.mktemp("team-faults"))
    for name in ("PREFECT", "MLFLOW", "SERVICE", "PROMETHEUS"):
        env[f"LEVEL2_TEAM_{name}_PORT"] = str(free_port())
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("LEVEL2_TEAM_")})
    settings = TeamSettings()
    problem = postgres_problem(settings)
    if problem is not None:
        os.environ.clear()
        os.environ.update(saved)
        pytest.skip(f"team mode needs PostgreSQL: {problem}")
    command = [sys.executable, "-m", "level2_pipelines.ops.team"]
    try:
        up = subprocess.run([*command, "up"], env=env, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        # The watcher imports the pipeline before it watches: up does not wait for that.
        heartbeat = settings.level2_state_dir / "servers" / "watcher.json"
        wait_for(heartbeat.exists, 180, "the watcher watching")
        yield settings
    finally:
        subprocess.run([*command, "down", "--drop-databases"], env=env, timeout=180)
        os.environ.clear()
        os.environ.update(saved)


def sql(settings: TeamSettings, purpose: str, query: str, *args) -> list[tuple]:
    with connect(settings, settings.database(purpose)) as connection:
        return connection.execute(query, args).fetchall()


def runs_on(settings: TeamSettings, name: str) -> list[tuple[str, str | None]]:
    """(state, process id) of the on-new-data flow runs on the landed file `name`, oldest first."""
    return sql(
        settings,
        "prefect",
        "SELECT f.state_type, f.infrastructure_pid FROM flow_run f "
        "JOIN deployment d ON d.id = f.deployment_id WHERE d.name = 'on-new-data' "
        "AND f.parameters->>'incoming_name' = %s ORDER BY f.created",
        name,
    )


def land(settings: TeamSettings, name: str, seed: int) -> Path:
    """A batch written whole under a dot-name, then renamed, as the README says."""
    incoming = settings.level2_state_dir / "incoming"
    simulate_batch(240, seed=seed).to_csv(incoming / f".{name}", index=False)
    (incoming / f".{name}").rename(incoming / name)
    return incoming / name


def training_past_validation(team: TeamSettings, name: str, seed: int) -> tuple[str, int]:
    """Land batch `name` and wait until its run trains (validation kept the batch: it left
    incoming/); returns the batch's checksum and the run's process id."""
    path = land(team, name, seed=seed)
    checksum = data_checksum(read_batch_file(path))
    first = wait_for(
        lambda: (found := runs_on(team, name)) and found[0][1] and found[0],
        RUN_S,
        "the first run started in a process",
    )
    wait_for(lambda: not path.exists(), RUN_S, "the batch kept by validation")
    state_now = runs_on(team, name)[0][0]
    assert state_now == "RUNNING", f"the run ended before it could be killed ({state_now})"
    return checksum, int(first[1])


def assert_trained_once_on_a_retry(team: TeamSettings, name: str, checksum: str) -> None:
    """A second run on the batch completes, and one registry version holds its checksum."""
    retried = wait_for(
        lambda: [s for s, _ in runs_on(team, name)[1:] if s in {"COMPLETED", "FAILED"}],
        RUN_S,
        "a second run on the batch, ended",
    )
    assert retried == ["COMPLETED"]
    trained = sql(
        team,
        "mlflow",
        "SELECT count(*) FROM model_version_tags WHERE key = 'batch_checksum' AND value = %s",
        checksum,
    )
    assert trained == [(1,)]


def test_a_run_killed_mid_run_is_crashed_retried_and_trained_once(team):
    """SIGKILL on a flow run's process after validation kept its batch: the worker marks it
    Crashed, the watcher sends the batch again, and one registry version holds its checksum."""
    checksum, run_pid = training_past_validation(team, "killed.csv", seed=21)

    os.kill(run_pid, signal.SIGKILL)

    wait_for(lambda: runs_on(team, "killed.csv")[0][0] == "CRASHED", 60, "the run Crashed")
    assert_trained_once_on_a_retry(team, "killed.csv", checksum)


def test_a_worker_killed_with_its_run_is_crashed_by_missed_heartbeats_and_retried(team):
    """SIGKILL on the worker and its flow run together (a container or a machine lost): no
    process is left to report, so the run goes Crashed when its heartbeats stop (the automation
    `triggers --publish` makes); once a worker is back (`up` again), the batch is sent again
    and trained on exactly once."""
    checksum, run_pid = training_past_validation(team, "lost-worker.csv", seed=23)
    worker = team.processes.running("worker-1")

    for pid in (worker, run_pid):
        os.kill(pid, signal.SIGKILL)

    # Three beats of 30 s missed, then the triggers service's next evaluation.
    wait_for(lambda: runs_on(team, "lost-worker.csv")[0][0] == "CRASHED", 240, "the run Crashed")
    (said,) = sql(
        team,
        "prefect",
        "SELECT s.message FROM flow_run f JOIN flow_run_state s ON s.id = f.state_id "
        "WHERE f.infrastructure_pid = %s",
        str(run_pid),
    )
    assert said[0].startswith("no heartbeat for 90 s"), said  # the automation, no process
    command = [sys.executable, "-m", "level2_pipelines.ops.team", "up"]
    up = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    assert_trained_once_on_a_retry(team, "lost-worker.csv", checksum)


def test_a_killed_watcher_is_restarted_and_takes_the_next_batch(team):
    """SIGKILL on the watcher: it beats again within a bound, from a new process, and a batch
    landed afterwards is trained on."""
    heartbeat = team.level2_state_dir / "servers" / "watcher.json"
    killed = json.loads(heartbeat.read_text())["pid"]

    os.kill(killed, signal.SIGKILL)

    def beating_again() -> bool:
        beat = json.loads(heartbeat.read_text())
        return beat["pid"] != killed and time.time() - beat["beat"] < 5

    wait_for(beating_again, 120, "the watcher beating again")
    land(team, "after.csv", seed=22)
    ended = wait_for(
        lambda: [s for s, _ in runs_on(team, "after.csv") if s in {"COMPLETED", "FAILED"}],
        RUN_S,
        "a run on the batch landed after the restart",
    )
    assert ended == ["COMPLETED"]
