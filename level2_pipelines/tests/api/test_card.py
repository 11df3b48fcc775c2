"""GET /model/card: the served version's card as logged with its run, plus what the service
has seen since it was served; Markdown by default, HTML for a browser."""

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from level2_pipelines.api import ServedModel, create_app
from level2_pipelines.data import make_batch, reference_and_new_rows
from level2_pipelines.evaluate import Verdict
from level2_pipelines.model import Lineage
from level2_pipelines.pipeline import register
from level2_pipelines.predict import serving_predictor
from shared.contract import VALID_EXAMPLES

ADMIN = {"Authorization": "Bearer a-test-token-nobody-guesses"}  # the `settings` fixture's


def served(candidate, version: str, run_id: str) -> ServedModel:
    lineage = Lineage(
        name="penguins-species",
        version=version,
        run_id=run_id,
        git_commit="test",
        data_checksum="d" * 64,
        batch_id="test-batch",
        flow_run_id="none",
        trained_at="2026-12-05T00:00:00+00:00",
        metrics=candidate.metrics,
    )
    return ServedModel(lineage=lineage, predictor=serving_predictor(candidate.pipeline))


@pytest.fixture
def service(settings, candidate, tmp_path):
    """The service over a registered version whose card was logged, with a prediction log and a
    monitor experiment of its own (no other test's answers or verdicts in them)."""
    reference, new_rows = reference_and_new_rows(settings.seed)
    batch = make_batch(new_rows, "2009 birds of the training split")
    version = register.fn(candidate, Verdict(passed=True), batch, reference, settings)
    # A log and a monitor experiment of its own: the session's store holds other tests' verdicts.
    own = {"prediction_log_uri": f"sqlite:///{tmp_path}/log.db", "experiment": settings.model_name}
    settings = settings.model_copy(update=own)
    app = create_app(settings, served(candidate, version, candidate.run_id), record=True)
    with TestClient(app) as client:
        yield client


def test_model_card_is_markdown_by_default(service):
    """curl's `*/*` gets the logged card as Markdown, with the service's own section."""
    answer = service.get("/model/card", headers={"Accept": "*/*"})

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/markdown")
    assert answer.text.startswith("# Model card: ")
    assert "### By species" in answer.text and "### By island" in answer.text
    assert "## Since it was served" in answer.text
    assert "Live accuracy: no confirmed birds yet" in answer.text
    assert "latest verdict: no verdict yet" in answer.text


@pytest.mark.parametrize(
    ("query", "accept"),
    [("", "text/html,application/xhtml+xml,*/*;q=0.8"), ("?format=html", "*/*")],
    ids=["browser", "format-html"],
)
def test_model_card_is_html_for_a_browser_or_when_asked(service, query, accept):
    """A browser's Accept header, or ?format=html, gets a page that runs nothing."""
    answer = service.get(f"/model/card{query}", headers={"Accept": accept})

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.text.startswith("<!doctype html>")
    assert "<h2>Since it was served</h2>" in answer.text and "<table>" in answer.text


def test_model_card_counts_confirmed_birds_since_served(service):
    """Live accuracy on the card comes from the prediction log at request time."""
    answer = service.post("/predict", json=VALID_EXAMPLES["gentoo"]).json()
    service.app.state.prediction_log.flush()
    given = service.post(
        "/feedback",
        json={"prediction_id": answer["prediction_id"], "species": "Gentoo"},
        headers=ADMIN,
    )

    card = service.get("/model/card").text

    assert given.status_code == 200
    assert "Live accuracy: 1.000 (1 of 1 confirmed birds right)" in card


def test_model_card_refuses_an_unknown_format(service):
    """A format it cannot give is a 422 naming the field."""
    answer = service.get("/model/card?format=pdf")

    assert answer.status_code == 422
    assert answer.json()["detail"] == "query.format: Input should be 'markdown' or 'html'"


def test_model_card_is_404_for_a_version_without_one(settings, candidate):
    """A version registered before cards were written: a 404 that says so, not a 5xx."""
    experiment = MlflowClient().get_experiment_by_name(settings.experiment).experiment_id
    run_id = MlflowClient().create_run(experiment).info.run_id
    app = create_app(settings, served(candidate, "3", run_id), record=False)

    with TestClient(app) as client:
        answer = client.get("/model/card")

    assert answer.status_code == 404
    assert "v3" in answer.json()["detail"] and "model_card.md" in answer.json()["detail"]


def test_model_card_is_503_without_a_model(settings):
    """A service following a registry with no champion yet answers 503, saying so."""
    settings = settings.model_copy(update={"startup_wait_s": 5.0, "prediction_log": False})

    with TestClient(create_app(settings)) as client:
        answer = client.get("/model/card")

    assert answer.status_code == 503
    assert "no champion yet" in answer.json()["detail"]
