"""Watching the served model: every answer has an id and reaches the prediction log off the
request path, nothing is lost on a clean shutdown, the true species comes back through
`POST /feedback`, and `GET /metrics` shows it all in Prometheus's format."""

import re
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from level2_pipelines import prediction_log
from level2_pipelines.api import ServedModel, create_app
from level2_pipelines.data import features_and_target, reference_and_new_rows
from level2_pipelines.model import build_pipeline
from level2_pipelines.monitor_runs import experiment_name as monitor_experiment
from level2_pipelines.predict import serving_predictor
from level2_pipelines.settings import Settings
from level2_pipelines.tests.helpers import LINEAGE
from level2_pipelines.tracking import experiment_id, log_to_run
from shared.contract import EXAMPLE_PAYLOAD, VALID_EXAMPLES

TOKEN = {"Authorization": "Bearer s3cret"}


@pytest.fixture(scope="module")
def served_model() -> ServedModel:
    reference, _ = reference_and_new_rows(42)
    pipeline = build_pipeline(42).fit(*features_and_target(reference))
    return ServedModel(lineage=LINEAGE, predictor=serving_predictor(pipeline))


def make_settings(tmp_path, **overrides) -> Settings:
    values = {"flush_every_s": 0.05, "metrics_every_s": 0.05, "admin_token": "s3cret"}
    return Settings(state_dir=tmp_path, **(values | overrides))


def logged_rows(settings: Settings) -> list[dict]:
    engine = sa.create_engine(settings.resolved_prediction_log_uri)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(prediction_log.predictions)).mappings().all()
    engine.dispose()
    return [dict(row) for row in rows]


def wait_for(condition, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout_s} s")


def test_every_answer_has_its_own_prediction_id(tmp_path, served_model):
    """/predict and each answer of /predict/batch carry a distinct 32-hex prediction_id."""
    with TestClient(create_app(make_settings(tmp_path), served_model, record=True)) as client:
        one = client.post("/predict", json=EXAMPLE_PAYLOAD).json()
        batch = client.post("/predict/batch", json={"penguins": list(VALID_EXAMPLES.values())})

    ids = [one["prediction_id"]] + [p["prediction_id"] for p in batch.json()["predictions"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids) == 1 + len(VALID_EXAMPLES)


def test_answers_reach_the_log_in_the_background(tmp_path, served_model):
    """Written while the service runs (not at shutdown): id, time, version, inputs,
    probabilities and latency."""
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, served_model, record=True)) as client:
        started = time.time()
        answer = client.post("/predict", json=EXAMPLE_PAYLOAD).json()
        (row,) = wait_for(lambda: logged_rows(settings))

    assert row["prediction_id"] == answer["prediction_id"]
    assert row["model_version"] == "7"
    assert started - 1 <= row["served_at"] <= time.time()
    assert {k: row[k] for k in EXAMPLE_PAYLOAD} == EXAMPLE_PAYLOAD
    assert row["predicted"] == answer["species"]
    assert {k: row[f"p_{k}"] for k in answer["probabilities"]} == answer["probabilities"]
    assert 0 < row["latency_ms"] < 5000


def test_nothing_is_lost_on_a_clean_shutdown(tmp_path, served_model):
    """With no background write before it stops, every answer is written at shutdown."""
    settings = make_settings(tmp_path, flush_every_s=3600)
    with TestClient(create_app(settings, served_model, record=True)) as client:
        for _ in range(30):
            client.post("/predict", json=EXAMPLE_PAYLOAD)
        client.post("/predict/batch", json={"penguins": [EXAMPLE_PAYLOAD] * 20})
        assert logged_rows(settings) == []  # nothing written yet: it is all pending

    assert len(logged_rows(settings)) == 50


def test_feedback_records_the_true_species_and_live_accuracy(tmp_path, served_model):
    """A confirmed species is kept per prediction (the latest wins, saying what it replaced);
    live accuracy per model version counts it."""
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, served_model, record=True)) as client:
        adelie = client.post("/predict", json=VALID_EXAMPLES["adelie"]).json()["prediction_id"]
        gentoo = client.post("/predict", json=VALID_EXAMPLES["gentoo"]).json()["prediction_id"]

        first = client.post(
            "/feedback", json={"prediction_id": adelie, "species": "Chinstrap"}, headers=TOKEN
        )
        fixed = client.post(
            "/feedback", json={"prediction_id": adelie, "species": "Adelie"}, headers=TOKEN
        )
        wrong = client.post(
            "/feedback", json={"prediction_id": gentoo, "species": "Adelie"}, headers=TOKEN
        )

    assert first.status_code == 200 and first.json()["replaced"] is None
    assert fixed.json() == {"prediction_id": adelie, "species": "Adelie", "replaced": "Chinstrap"}
    assert wrong.status_code == 200
    engine = prediction_log.open_engine(settings.resolved_prediction_log_uri)
    (accuracy,) = prediction_log.live_accuracy(engine)
    labelled = prediction_log.labelled_rows(engine)
    engine.dispose()
    assert (accuracy.model_version, accuracy.labelled, accuracy.correct) == ("7", 2, 1)
    assert sorted(labelled["species"]) == ["Adelie", "Adelie"]
    assert list(labelled.columns) == [*prediction_log.FEATURE_COLUMNS, "species", "year"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "field"),
    [
        ({"prediction_id": "ab" * 16, "species": "Adelie"}, TOKEN, 404, "prediction_id"),
        ({"prediction_id": "not-an-id", "species": "Adelie"}, TOKEN, 422, "prediction_id"),
        ({"prediction_id": "{id}", "species": "Emperor"}, TOKEN, 422, "species"),
        ({"prediction_id": "{id}"}, TOKEN, 422, "species"),
        ({"prediction_id": "{id}", "species": "Adelie"}, {}, 401, "authorization"),
    ],
    ids=["unknown id", "malformed id", "unknown species", "no species", "no token"],
)
def test_bad_feedback_is_4xx_naming_the_field(tmp_path, served_model, body, headers, status, field):
    """Feedback changes what the next model learns: unknown ids, wrong species and callers
    without the admin token are refused, naming the field."""
    with TestClient(create_app(make_settings(tmp_path), served_model, record=True)) as client:
        known = client.post("/predict", json=EXAMPLE_PAYLOAD).json()["prediction_id"]
        body = {k: v.format(id=known) for k, v in body.items()}
        response = client.post("/feedback", json=body, headers=headers)

    assert response.status_code == status
    assert response.json()["detail"].startswith(f"{field}:")


def test_a_service_without_a_log_refuses_feedback(tmp_path, served_model):
    settings = make_settings(tmp_path, prediction_log=False)
    with TestClient(create_app(settings, served_model, record=True)) as client:
        answer = client.post("/predict", json=EXAMPLE_PAYLOAD).json()
        response = client.post(
            "/feedback",
            json={"prediction_id": answer["prediction_id"], "species": "Adelie"},
            headers=TOKEN,
        )

    assert response.status_code == 409
    assert "no prediction log" in response.json()["detail"]
    assert not (tmp_path / "predictions.db").exists()


def scrape(client: TestClient) -> dict[str, dict[tuple, float]]:
    """name -> {sorted label items: value}, parsed by prometheus-client's own parser."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def scrape_once_read(client) -> dict:
    """The samples once /metrics shows both what it reads in the background: live accuracy
    (from the log) and the drift verdict (from the tracking store, whose first read, opening
    the store, can outlast one bounded wait on a busy machine)."""
    return wait_for(
        lambda: (
            (s := scrape(client)).get("penguins_live_accuracy")
            and s.get("penguins_drift_detected") == {(): 1.0}
            and s
        ),
        timeout_s=60,
    )


def test_metrics_show_requests_predictions_accuracy_and_drift(tmp_path, served_model):
    """Requests by endpoint and status (unknown paths as one series), latency histograms,
    predictions by species and version, the served version, live accuracy, drift."""
    settings = make_settings(tmp_path)
    record_verdict(
        settings,
        at=1700000000.0,
        drifted="bill_length_mm",
        checks={"bill_length_mm": (1e-9, 0.41), "island": (0.55, 1.2)},
    )
    with TestClient(create_app(settings, served_model, record=True)) as client:
        ids = [client.post("/predict", json=EXAMPLE_PAYLOAD).json()["prediction_id"]]
        client.post("/predict", json={"island": "Atlantis"})
        client.get("/no/such/path/123")
        client.post("/feedback", json={"prediction_id": ids[0], "species": "Gentoo"}, headers=TOKEN)
        samples = scrape_once_read(client)

    requests = samples["http_requests_total"]
    assert requests[(("handler", "/predict"), ("method", "POST"), ("status", "200"))] == 1
    assert requests[(("handler", "/predict"), ("method", "POST"), ("status", "422"))] == 1
    assert requests[(("handler", "none"), ("method", "GET"), ("status", "404"))] == 1
    predict = (("handler", "/predict"), ("method", "POST"))
    assert samples["http_request_duration_seconds_count"][predict] == 2
    assert samples["penguins_ready"] == {(): 1.0}
    assert (
        samples["penguins_predictions_total"][(("model_version", "7"), ("species", "Adelie"))] == 1
    )
    assert samples["penguins_served_model_info"] == {(("version", "7"),): 1.0}
    assert samples["penguins_live_accuracy"] == {(("model_version", "7"),): 0.0}
    assert samples["penguins_feedback_labelled"] == {(("model_version", "7"),): 1.0}
    assert samples["penguins_drift_detected"] == {(): 1.0}
    assert samples["penguins_drift_p_value"][(("check", "bill_length_mm"),)] == 1e-9
    assert samples["penguins_drift_statistic"][(("check", "island"),)] == 1.2
    assert samples["penguins_drift_checked_timestamp_seconds"] == {(): 1700000000.0}


def record_verdict(settings: Settings, *, at: float, drifted: str, checks: dict) -> None:
    """A drift monitor's run as `monitor.record` leaves it, in the settings' tracking store."""
    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri)
    experiment = experiment_id(client, settings, monitor_experiment(settings.experiment))
    run = client.create_run(experiment, start_time=int(at * 1000))
    metrics = {f"p_{check}": p for check, (p, _) in checks.items()}
    metrics |= {f"statistic_{check}": statistic for check, (_, statistic) in checks.items()}
    log_to_run(client, run.info.run_id, metrics=metrics, tags={"drifted": drifted})
    client.set_terminated(run.info.run_id, "FINISHED")


def test_feedback_on_a_log_that_cannot_be_read_is_503_naming_it(tmp_path, served_model):
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, served_model, record=True)) as client:
        answer = client.post("/predict", json=EXAMPLE_PAYLOAD).json()
        log = client.app.state.prediction_log
        log.flush()
        log.engine = sa.create_engine(f"sqlite:///{tmp_path}/gone/predictions.db")
        response = client.post(
            "/feedback",
            json={"prediction_id": answer["prediction_id"], "species": "Adelie"},
            headers=TOKEN,
        )

    assert response.status_code == 503
    assert response.json()["detail"].startswith("prediction log: cannot be read")
