"""Workers share what they must (issue 21): each "worker" here has a state folder of its own,
as a container or a restarted worker does, and they meet only at a real MLflow tracking server
(and the prediction log). The reference a drift-trained champion is watched against, the
monitor's cooldown and its verdict must all be reachable from any of them."""

import socket
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from level2_pipelines import registry
from level2_pipelines.data import (
    REFERENCE_RUN_TAG,
    REFERENCE_TAG,
    Reference,
    ReferenceUnavailable,
    watched_reference,
)
from level2_pipelines.settings import Settings
from level2_pipelines.tests.flows.test_monitor import bill_shift, serve
from level2_pipelines.tests.helpers import champion, mlflow_server_running, write_batch

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """A real MLflow server (SQLite behind it, artifacts proxied into a folder of its own)."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_server_running(f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts") as url:
        yield url


@pytest.fixture(scope="module")
def team(tracking_server, tmp_path_factory):
    """What the workers share: the tracking server, a prediction log, one registered model."""
    return {
        "LEVEL2_TRACKING_URI": tracking_server,
        "LEVEL2_PREDICTION_LOG_URI": f"sqlite:///{tmp_path_factory.mktemp('log')}/predictions.db",
        "LEVEL2_MODEL_NAME": f"penguins-shared-{uuid.uuid4().hex[:6]}",
        "LEVEL2_PORT": "1",  # no service: deploy reports "not running"
        "LEVEL2_ADMIN_TOKEN": "a-test-token-nobody-guesses",
    }


def worker(monkeypatch, team, state_dir) -> Settings:
    """Settings (and environment, which the flows read) of a worker with its own state folder."""
    for name, value in (team | {"LEVEL2_STATE_DIR": str(state_dir)}).items():
        monkeypatch.setenv(name, value)
    from level2_pipelines.tracking import connect

    settings = Settings()
    connect(settings)
    return settings


@pytest.fixture(scope="module")
def drifted(tracking_server, team, tmp_path_factory):
    """Worker A trains a champion, serves drifted birds, and its monitor asks for a retraining;
    returns (worker A's state folder, the monitor's outcome)."""
    from level2_pipelines.monitor import drift_monitor
    from level2_pipelines.pipeline import training_pipeline

    a = tmp_path_factory.mktemp("worker-a")
    with pytest.MonkeyPatch.context() as monkeypatch:
        settings = worker(monkeypatch, team, a)
        assert training_pipeline().promoted_to == registry.CHAMPION
        serve(settings, bill_shift(seed=21), labelled=120)
        found = drift_monitor()
    assert found.status == "asked", found.detail
    return a, found


def test_the_cooldown_holds_for_a_monitor_in_another_state_folder(
    drifted, team, monkeypatch, tmp_path
):
    """A second worker's monitor sees the same drift and does not ask for a second retraining:
    the first one's ask is on the champion's registry version, not in a worker's folder."""
    from level2_pipelines.monitor import drift_monitor

    worker(monkeypatch, team, tmp_path / "worker-b")

    again = drift_monitor()

    assert again.status == "drift", again.detail
    assert "a retraining was asked for at" in again.detail


def test_the_service_in_another_state_folder_shows_the_monitors_verdict(
    drifted, team, monkeypatch, tmp_path
):
    """The service, with a state folder of its own, shows the verdict the monitor of worker A
    recorded: /metrics reads it from the tracking server."""
    from level2_pipelines.api import ServedModel, create_app
    from level2_pipelines.data import features_and_target, reference_and_new_rows
    from level2_pipelines.model import build_pipeline
    from level2_pipelines.predict import serving_predictor
    from level2_pipelines.tests.api.test_monitoring import scrape, wait_for
    from level2_pipelines.tests.helpers import LINEAGE

    _, found = drifted
    settings = worker(monkeypatch, team, tmp_path / "service")
    settings = settings.model_copy(update={"metrics_every_s": 0.05, "flush_every_s": 0.05})
    recorded = MlflowClient().get_run(found.mlflow_run_id).data.metrics
    pipeline = build_pipeline(42).fit(*features_and_target(reference_and_new_rows(42)[0]))
    model = ServedModel(lineage=LINEAGE, predictor=serving_predictor(pipeline))

    with TestClient(create_app(settings, model, record=True)) as client:
        checked = "penguins_drift_checked_timestamp_seconds"  # 0 until a verdict is shown
        samples = wait_for(lambda: (s := scrape(client))[checked][()] and s, timeout_s=20)

    assert samples["penguins_drift_detected"] == {(): 1.0}
    assert samples["penguins_drift_verdict_stale"] == {(): 0.0}
    shown = samples["penguins_drift_p_value"][(("check", "bill_length_mm"),)]
    assert shown == recorded["p_bill_length_mm"]


def test_a_fresh_worker_reads_the_drift_trained_champions_reference(
    drifted, team, monkeypatch, tmp_path
):
    """After the retraining worker A was asked for, the new champion is watched against rows
    only A kept on disk; a fresh worker (B, its own state folder) reads them from the tracking
    server: its monitor runs, and so does its training run, whose validation needs them."""
    from level2_pipelines.monitor import drift_monitor
    from level2_pipelines.pipeline import training_pipeline

    a, found = drifted
    worker(monkeypatch, team, a)
    retrained = training_pipeline(drift_run_id=found.mlflow_run_id)
    assert retrained.promoted_to == registry.CHAMPION, retrained.reasons
    settings = worker(monkeypatch, team, tmp_path / "worker-b")
    tags = MlflowClient().get_model_version(settings.model_name, champion(settings)).tags
    assert tags[REFERENCE_TAG] == retrained.batch_id
    assert tags[REFERENCE_RUN_TAG] == retrained.run_id

    like_the_reference = write_batch(bill_shift(seed=22, rows=120), tmp_path / "new")

    watched = drift_monitor()
    trained = training_pipeline(batch_path=like_the_reference)

    assert watched.status == "clean", watched.detail
    assert retrained.batch_id in watched.detail  # against the rows A's run kept
    assert trained.run_id is not None and not trained.skipped
    cached = settings.references_dir / retrained.run_id
    assert [p.suffix for p in cached.iterdir()] == [".csv"]


def test_an_old_reference_tag_is_read_where_its_batch_is_and_named_where_it_is_not(
    tmp_path, settings
):
    """A version tagged before references went to the tracking server names a batch folder:
    the worker holding it still reads it; any other says which batch is missing, and where."""
    from level2_pipelines.data import reference_and_new_rows

    rows = reference_and_new_rows(42)[1]
    here = settings.model_copy(update={"state_dir": tmp_path / "here"})
    (here.batches_dir / "20261201T000000-cafe").mkdir(parents=True)
    rows.to_csv(here.batches_dir / "20261201T000000-cafe" / "landed.csv", index=False)
    elsewhere = settings.model_copy(update={"state_dir": tmp_path / "elsewhere"})
    old_tags = {REFERENCE_TAG: "20261201T000000-cafe"}

    frame, reference = watched_reference(MlflowClient(), old_tags, here)
    with pytest.raises(ReferenceUnavailable, match=r"20261201T000000-cafe.*not in .*elsewhere"):
        watched_reference(MlflowClient(), old_tags, elsewhere)

    assert reference == Reference("20261201T000000-cafe") and len(frame) == len(rows)


def test_a_verdict_that_cannot_be_read_leaves_the_last_one_shown_and_says_so(drifted, team):
    """A tracking server that stops answering neither fails /metrics' refresh nor holds it up
    past its bound: the last verdict read stays, marked stale, and comes back when it does."""
    from level2_pipelines.monitor_runs import LatestVerdict

    reader = LatestVerdict(team["LEVEL2_TRACKING_URI"], Settings().experiment, timeout_s=1.0)
    shown = reader.refresh()
    assert shown is not None and reader.problem is None
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        reader.tracking_uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()

        kept = reader.refresh()

        waited = time.monotonic() - started
    assert kept == shown and waited < 3
    assert "did not answer within 1 s" in reader.problem
