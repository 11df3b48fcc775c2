"""The level 2 service's contract with a fixed model: level 1's endpoints plus lineage and a
protected admin; settings refuse a placeholder token outside development."""

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from level2_pipelines.api import ServedModel, create_app
from level2_pipelines.data import features_and_target, reference_and_new_rows
from level2_pipelines.model import Lineage, build_pipeline
from level2_pipelines.predict import Predictor
from level2_pipelines.settings import PLACEHOLDER_TOKEN, Settings
from shared.contract import EXAMPLE_PAYLOAD, INVALID_EXAMPLES

LINEAGE = Lineage(
    name="penguins-species",
    version="7",
    run_id="0123abcd",
    git_commit="f" * 40,
    data_checksum="d" * 64,
    batch_id="20261126T000000-deadbeef",
    flow_run_id="flow-run",
    trained_at="2026-11-26T00:00:00+00:00",
    metrics={"macro_f1": 1.0},
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    reference, _ = reference_and_new_rows(42)
    pipeline = build_pipeline(42).fit(*features_and_target(reference))
    model = ServedModel(lineage=LINEAGE, predictor=Predictor.from_pipeline(pipeline))
    settings = Settings(state_dir=tmp_path_factory.mktemp("api"), admin_token="s3cret")
    with TestClient(create_app(settings, model)) as test_client:
        yield test_client


def test_predict_answers_with_the_registry_version(client):
    """POST /predict names the registry version that answered."""
    body = client.post("/predict", json=EXAMPLE_PAYLOAD).json()

    assert body["species"] == "Adelie"
    assert body["model_version"] == "7"


@pytest.mark.parametrize("example", INVALID_EXAMPLES, ids=lambda e: e.name)
def test_invalid_example_is_4xx_naming_the_field(client, example):
    """Each invalid example is a 4xx whose message starts with its field, as at level 1."""
    response = client.post(
        "/predict", content=example.body, headers={"content-type": "application/json"}
    )

    assert 400 <= response.status_code < 500
    assert response.json()["detail"].startswith(f"{example.field}:")


def test_model_shows_the_lineage(client):
    """GET /model shows registry version, run, commit, data checksum, batch and flow run."""
    body = client.get("/model").json()

    assert body["version"] == "7"
    assert body["run_id"] == "0123abcd"
    assert body["git_commit"] == "f" * 40
    assert body["data_checksum"] == "d" * 64
    assert body["batch_id"] == "20261126T000000-deadbeef"
    assert body["flow_run_id"] == "flow-run"


@pytest.mark.parametrize("path", ["/admin/reload", "/admin/rollback"])
def test_admin_without_token_is_401(client, path):
    """Admin actions without a bearer token are refused."""
    response = client.post(path)

    assert response.status_code == 401
    assert response.json()["detail"].startswith("authorization:")


def test_admin_with_a_wrong_token_is_401(client):
    """A wrong token is refused like a missing one."""
    response = client.post("/admin/reload", headers={"Authorization": "Bearer guess"})

    assert response.status_code == 401


def test_admin_on_a_fixed_model_is_409(client):
    """With the right token, a service pinned to one model says it follows no registry."""
    response = client.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})

    assert response.status_code == 409


def test_placeholder_token_is_refused_outside_development():
    """In production the placeholder admin token is a settings error naming the variable."""
    with pytest.raises(ValidationError, match="LEVEL2_ADMIN_TOKEN"):
        Settings(environment="production", admin_token=PLACEHOLDER_TOKEN)


def test_placeholder_token_is_accepted_in_development():
    """The placeholder works for a workshop on one machine."""
    assert Settings(environment="development").admin_token.get_secret_value() == PLACEHOLDER_TOKEN


def test_ready_without_a_champion_is_503(tmp_path):
    """A service with no model yet is alive but not ready, and says why."""
    app = create_app(Settings(state_dir=tmp_path))  # lifespan not run: nothing loaded

    response = TestClient(app).get("/ready")

    assert response.status_code == 503
    assert response.json()["detail"].startswith("model:")
