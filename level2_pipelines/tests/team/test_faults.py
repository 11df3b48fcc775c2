"""Faults survived, against real servers: an MLflow server the test stops and starts, a
PostgreSQL cluster of its own it stops and starts, the real service in a process of its own.
`make test-team` runs it (minutes; `make test` leaves it out).

- the service started while MLflow is down listens, names MLflow on /ready, and serves the
  champion once MLflow is back, without a restart;
- MLflow stopped during a run: the run fails naming the server and the stage, the batch is not
  marked trained on, the decision lock is free, the service keeps serving; the same batch run
  again once MLflow is back is trained and decided once;
- the prediction log's PostgreSQL down at the service's start, then restarted under load: every
  request is answered, and every answer reaches the log once.
"""

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import mlflow
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from level2_pipelines import prediction_log, registry
from level2_pipelines.ops.processes import MLFLOW_SERVER_ENV, mlflow_server
from level2_pipelines.settings import Settings
from shared.contract import EXAMPLE_PAYLOAD
from shared.servers import free_port, server_process, stop_group

pytestmark = [pytest.mark.team, pytest.mark.timeout(900)]

TOKEN = "a-test-token-nobody-guesses"
WAIT_S = 90  # what a test waits for a server or a state at most: the machine is shared


def wait_until(condition, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        if value := condition():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.25)


class MlflowServer:
    """A real MLflow server on a fixed port, with its store in a folder: stopped and started
    again on the same port and store, as an outage and its end."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        store = [
            "--backend-store-uri",
            f"sqlite:///{self.folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.folder / "artifacts"),
        ]
        log = (self.folder / "server.log").open("ab")
        self.process = subprocess.Popen(
            mlflow_server(self.port, *store),
            env=os.environ | MLFLOW_SERVER_ENV,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: self.answers() or self.process.poll() is not None, "mlflow up")
        assert self.process.poll() is None, (self.folder / "server.log").read_text()[-3000:]

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.uri}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)
            self.process = None


@pytest.fixture
def mlflow_down(tmp_path):
    """An MLflow server that is not started yet (the test starts it); stopped at the end."""
    previous = mlflow.get_tracking_uri()
    (tmp_path / "mlflow").mkdir()
    server = MlflowServer(tmp_path / "mlflow")
    yield server
    server.stop()
    mlflow.set_tracking_uri(previous)
    mlflow.set_registry_uri(previous)


@pytest.fixture
def env(tmp_path, monkeypatch, request) -> dict[str, str]:
    """Level 2's settings for the test and for the service it starts (its state folder, its
    model, its service's port, an admin token), in this process's environment too."""
    values = {
        "LEVEL2_STATE_DIR": str(tmp_path / "level2"),
        "LEVEL2_MODEL_NAME": f"penguins-{request.node.name[:40]}",
        "LEVEL2_PORT": str(free_port()),
        "LEVEL2_ADMIN_TOKEN": TOKEN,
        "LEVEL2_POLL_SECONDS": "0.5",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def service(env: dict[str, str]):
    """The real service (`python -m level2_pipelines.serve`), once it listens."""
    return server_process("level2_pipelines.serve", env, int(env["LEVEL2_PORT"]), "/health")


def make_champion(settings: Settings) -> str:
    """A version logged and promoted as the pipeline would, without a flow run."""
    from level2_pipelines.tests.helpers import add_version, log_candidate
    from level2_pipelines.tracking import connect

    connect(settings)
    version = add_version(settings, log_candidate(settings))
    MlflowClient().set_registered_model_alias(settings.model_name, registry.CHAMPION, version)
    return version


def test_service_started_while_mlflow_is_down_serves_the_champion_once_it_is_back(
    mlflow_down, env, monkeypatch
):
    """It listens at once; /ready and /predict are 503 naming the tracking server; once MLflow
    is up and has a champion, the same process serves it."""
    monkeypatch.setenv("LEVEL2_TRACKING_URI", mlflow_down.uri)
    env = env | {"LEVEL2_TRACKING_URI": mlflow_down.uri}
    base = f"http://127.0.0.1:{env['LEVEL2_PORT']}"

    with service(env) as process:  # fails if it does not listen within 60 s
        health = httpx.get(f"{base}/health", timeout=5)
        ready = httpx.get(f"{base}/ready", timeout=5)
        refused = httpx.post(f"{base}/predict", json=EXAMPLE_PAYLOAD, timeout=5)
        mlflow_down.start()
        version = make_champion(Settings())
        wait_until(lambda: httpx.get(f"{base}/ready", timeout=5).status_code == 200, "ready")
        served = httpx.post(f"{base}/predict", json=EXAMPLE_PAYLOAD, timeout=5)
        still_the_first = process.poll() is None

    named = f"mlflow: the tracking server at {mlflow_down.uri} cannot be reached"
    assert health.status_code == 200
    assert ready.status_code == 503 and ready.json()["detail"].startswith(named)
    assert refused.status_code == 503 and refused.json()["detail"].startswith(named)
    assert served.status_code == 200 and served.json()["model_version"] == version
    assert still_the_first


def decision_is_free(settings: Settings, within_s: float = 10) -> bool:
    """Whether the decision lock can be taken within `within_s` (held elsewhere: it waits)."""
    taken = threading.Event()

    def take() -> None:
        with registry.decision(settings):
            taken.set()

    threading.Thread(target=take, daemon=True).start()
    return taken.wait(within_s)


def test_mlflow_stopped_during_a_run_decides_nothing_and_the_batch_is_trained_once_it_is_back(
    prefect_api, mlflow_down, env, monkeypatch
):
    """Lost between register and promote: a named failure, no version counted as trained on,
    the lock free, the old champion served throughout; the run left RUNNING is ended FAILED by
    the rerun, which trains and decides the batch once."""
    from level2_pipelines.pipeline import training_pipeline
    from level2_pipelines.run_outage import TrackingUnreachable

    monkeypatch.setenv("LEVEL2_TRACKING_URI", mlflow_down.uri)
    env = env | {"LEVEL2_TRACKING_URI": mlflow_down.uri}
    base = f"http://127.0.0.1:{env['LEVEL2_PORT']}"
    mlflow_down.start()
    settings = Settings()
    first = training_pipeline()
    real_promote = registry.promote

    def server_lost_then_promote(*args, **kwargs):
        mlflow_down.stop()  # the fault, at the worst moment: a version registered, undecided
        return real_promote(*args, **kwargs)

    with service(env):
        wait_until(lambda: httpx.get(f"{base}/ready", timeout=5).status_code == 200, "ready")
        monkeypatch.setattr(registry, "promote", server_lost_then_promote)
        with pytest.raises(TrackingUnreachable) as failure:
            training_pipeline(simulate_rows=240)
        monkeypatch.setattr(registry, "promote", real_promote)
        during = [httpx.post(f"{base}/predict", json=EXAMPLE_PAYLOAD, timeout=5) for _ in range(5)]
        lock_free = decision_is_free(settings)
        mlflow_down.start()
        client = MlflowClient()
        cut_short = client.search_model_versions(f"name = '{settings.model_name}'")
        left = [v for v in cut_short if v.version != first.version]
        left_run = client.get_run(left[0].run_id)
        again = training_pipeline(simulate_rows=240)
        ended = client.get_run(left[0].run_id)
        once_more = training_pipeline(simulate_rows=240)
        after = httpx.post(f"{base}/predict", json=EXAMPLE_PAYLOAD, timeout=5)

    message = str(failure.value)
    assert f"the tracking server at {mlflow_down.uri} cannot be reached" in message
    assert "in the promote stage" in message and "not marked as trained on" in message
    assert [(a.status_code, a.json()["model_version"]) for a in during] == [
        (200, first.version)
    ] * 5
    assert lock_free
    assert len(left) == 1 and "batch_checksum" not in left[0].tags
    assert left_run.info.status == "RUNNING"
    assert not again.skipped and again.version not in (first.version, left[0].version)
    assert ended.info.status == "FAILED" and "found unfinished" in ended.data.tags["ended_by"]
    assert once_more.skipped and f"v{again.version}" in once_more.skipped
    expected = again.version if again.promoted_to == registry.CHAMPION else first.version
    assert after.status_code == 200 and after.json()["model_version"] == expected


# --- The prediction log's PostgreSQL ----------------------------------------------------------

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


class Postgres:
    """A PostgreSQL cluster of the test's own, in a temporary folder on a free port, that it
    stops and starts (never the machine's shared server). As root, its binaries run as the
    `postgres` user, which owns the folder."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="level2-faults-pg-"))
        self.port = free_port()
        self.uri = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.folder / "data"), "-A", "trust", "-U", "postgres")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_owner, str(PG_BIN / tool), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        data, log = str(self.folder / "data"), str(self.folder / "server.log")
        self._run("pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "-t", "60", "start")

    def stop(self) -> None:
        data = str(self.folder / "data")
        self._run("pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        with_data = self.folder / "data" / "postmaster.pid"
        if with_data.exists():
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def postgres():
    if PG_BIN is None or not (PG_BIN / "initdb").exists():
        pytest.skip("needs PostgreSQL's server binaries (/usr/lib/postgresql/*/bin/initdb)")
    cluster = Postgres()
    yield cluster
    cluster.remove()


class Load:
    """Requests to /predict, one after another, from a thread, until stopped."""

    def __init__(self, base: str) -> None:
        self.base, self.answers = base, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as http:
            while not self._stop.is_set():
                try:
                    answer = http.post("/predict", json=EXAMPLE_PAYLOAD)
                    self.answers.append((answer.status_code, answer.json().get("prediction_id")))
                except httpx.HTTPError as error:
                    self.answers.append((type(error).__name__, None))

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(30)


def logged_ids(uri: str) -> list[str]:
    engine = sa.create_engine(uri)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(prediction_log.predictions.c.prediction_id))
            return [row[0] for row in rows]
    except sa.exc.SQLAlchemyError:
        return []
    finally:
        engine.dispose()


def test_prediction_log_postgres_down_at_start_and_restarted_under_load_loses_nothing(
    postgres, env
):
    """Down when the service starts: it listens and answers. Then up, then restarted while a
    client keeps asking: every request is answered 200, and every answer is in the log once."""
    settings = Settings()
    version = make_champion(settings)  # on the embedded store in the test's state folder
    env = env | {"LEVEL2_PREDICTION_LOG_URI": postgres.uri}
    base = f"http://127.0.0.1:{env['LEVEL2_PORT']}"

    with service(env), Load(base) as load:
        wait_until(lambda: len(load.answers) >= 20, "answers while the log is down")
        # /ready names the log once a flush has failed: the first comes a flush interval in.
        ready_while_down = wait_until(
            lambda: (ready := httpx.get(f"{base}/ready", timeout=5).json())["problem"] and ready,
            "/ready naming the prediction log",
        )
        postgres.start()
        wait_until(lambda: len(logged_ids(postgres.uri)) >= 20, "the backlog written")
        postgres.stop()
        time.sleep(3)  # answers pile up while it is away
        postgres.start()
        time.sleep(3)
        load.__exit__()
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        answered = [pid for status, pid in load.answers if status == 200]
        wait_until(lambda: len(logged_ids(postgres.uri)) >= len(answered), "every answer written")
        logged = logged_ids(postgres.uri)

    assert ready_while_down["model_version"] == version
    assert ready_while_down["problem"].startswith("prediction log: cannot write")
    assert {status for status, _ in load.answers} == {200}
    assert len(answered) > 40
    assert sorted(logged) == sorted(answered)  # each once: none lost, none twice
    assert "penguins_prediction_log_dropped_rows 0.0" in metrics
