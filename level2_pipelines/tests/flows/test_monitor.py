"""The drift monitor closes the loop: drifted, labelled traffic -> drift detected and recorded
-> a training run on the labelled rows that validation accepts -> a new champion watched
against the new world; too few labels -> it waits and says so; clean traffic -> no alarm."""

import json
import uuid

import pytest
from mlflow import MlflowClient

from level2_pipelines import prediction_log, registry, rollout
from level2_pipelines.data import REFERENCE_TAG, reference_and_new_rows
from level2_pipelines.model import load_version
from level2_pipelines.monitor import drift_monitor
from level2_pipelines.pipeline import training_pipeline
from level2_pipelines.tests.helpers import add_version, champion
from shared.contract import FEATURES, TARGET
from shared.simulate import Drift, simulate_batch

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def watched(settings, candidate, tmp_path, monkeypatch):
    """A champion, and an empty prediction log of this test's own."""
    monkeypatch.setenv("LEVEL2_PREDICTION_LOG_URI", f"sqlite:///{tmp_path / 'predictions.db'}")
    settings = type(settings)()
    version = add_version(settings, candidate)
    registry.promote(MlflowClient(), settings.model_name, version, registry.CHAMPION, None)
    return settings


def serve(settings, frame, *, labelled: int) -> None:
    """Record `frame` as answers of the champion, and the true species of the first
    `labelled` of them as feedback."""
    client = MlflowClient()
    version = champion(settings)
    pipeline, _ = load_version(client, settings.model_name, version)
    probabilities = pipeline.predict_proba(frame[list(FEATURES)])
    engine = prediction_log.open_engine(settings.resolved_prediction_log_uri)
    log = prediction_log.PredictionLog(engine)
    ids = [uuid.uuid4().hex for _ in range(len(frame))]
    for i, row, p in zip(ids, frame.to_dict("records"), probabilities, strict=True):
        features = {k: (None if row[k] != row[k] else row[k]) for k in FEATURES}  # NaN: None
        species = dict(zip(pipeline.classes_, p.tolist(), strict=True))
        log.record(i, version, features, max(species, key=species.get), species, 1.0)
    log.flush()
    for i, truth in zip(ids[:labelled], frame[TARGET], strict=False):
        prediction_log.add_feedback(engine, i, truth)
    engine.dispose()


def bill_shift(seed: int, rows: int = 200):
    sd = reference_and_new_rows(42)[0]["bill_length_mm"].std()
    return simulate_batch(rows, seed=seed, drift=Drift(mean_shift={"bill_length_mm": sd}))


def test_drift_is_detected_retrained_on_and_the_reference_moves(watched):
    settings = watched
    before = champion(settings)
    serve(settings, bill_shift(seed=11), labelled=120)

    found = drift_monitor()

    assert found.status == "asked", found.detail
    assert "bill_length_mm" in found.drifted
    assert found.report.exists() and "<img" in found.report.read_text()
    latest = json.loads((settings.monitor_dir / "latest.json").read_text())
    assert latest["mlflow_run_id"] == found.mlflow_run_id and latest["status"] == "drift"
    monitor_run = MlflowClient().get_run(found.mlflow_run_id)
    assert monitor_run.data.tags["verdict"] == "drift"
    assert monitor_run.data.metrics["p_bill_length_mm"] < latest["threshold"]

    # What the on-drift deployment runs when the event arrives: validation accepts the
    # drifted, labelled rows (their bill bounds defer to the verdict) and the gate decides.
    outcome = training_pipeline(drift_run_id=found.mlflow_run_id)

    assert outcome.promoted_to == registry.CHAMPION, outcome.reasons
    run = MlflowClient().get_run(outcome.run_id)
    assert run.data.tags["drift_verdict"] == found.mlflow_run_id
    assert "bill_length_mm" in run.data.tags["validation_deferred"]
    new = MlflowClient().get_model_version(settings.model_name, outcome.version)
    assert new.version != before and new.tags[REFERENCE_TAG] == outcome.batch_id

    # The new champion is watched against the world it was trained for: no alarm any more.
    again = drift_monitor()
    assert again.status == "clean", again.detail


@pytest.mark.parametrize("labelled", [0, 5])
def test_too_few_labels_waits_and_says_for_what(watched, labelled):
    """Drift with no confirmed species yet, or too few: no retraining, and it says why."""
    settings = watched
    serve(settings, bill_shift(seed=12), labelled=labelled)

    found = drift_monitor()

    assert found.status == "waiting-for-labels"
    assert f"{labelled} of {settings.min_batch_rows} labelled rows" in found.detail


def test_clean_traffic_and_a_short_window_raise_no_alarm(watched):
    settings = watched
    serve(settings, simulate_batch(150, seed=13), labelled=0)

    assert drift_monitor().status == "waiting-for-traffic"

    serve(settings, simulate_batch(200, seed=14), labelled=0)
    found = drift_monitor()

    assert found.status == "clean", found.detail


def test_a_challenger_on_trial_is_in_the_monitors_report_and_run(watched, candidate):
    """With a canary rolled out, the monitor's verdict carries the trial's evidence so far:
    both models' live accuracy on confirmed birds, its failures, what the judge would say."""
    settings = watched
    client = MlflowClient()
    challenger = add_version(settings, candidate)
    rollout.start(client, settings.model_name, challenger, "canary", 0.5, champion(settings))
    serve(settings, simulate_batch(200, seed=15), labelled=50)

    found = drift_monitor()

    latest = json.loads((settings.monitor_dir / "latest.json").read_text())
    run = client.get_run(found.mlflow_run_id)
    assert found.rollout == latest["rollout"]
    assert latest["rollout"]["challenger"] == challenger
    assert latest["rollout"]["mode"] == "canary"
    assert latest["rollout"]["confirmed"] == 0  # every answer here was the champion's
    assert latest["rollout"]["champion_accuracy"] > 0.9
    assert latest["rollout"]["challenger_accuracy"] is None
    assert latest["rollout"]["verdict_so_far"] == "wait"
    assert run.data.metrics["rollout_champion_accuracy"] == latest["rollout"]["champion_accuracy"]
