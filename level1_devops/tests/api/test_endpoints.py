"""Every endpoint of the contract, and every invalid example refused with its field named."""

import os
import subprocess
import sys

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from level1_devops.api import create_app
from level1_devops.model import MODEL_FILE, ModelLoadError
from level1_devops.schemas import MAX_BATCH_SIZE, ErrorPublic
from level1_devops.settings import Settings
from shared.contract import CLASSES, EXAMPLE_PAYLOAD, INVALID_EXAMPLES, VALID_EXAMPLES

JSON = {"content-type": "application/json"}


def test_predict_returns_species_probabilities_and_version(client, card):
    """POST /predict answers the species, a probability per class, and the model version."""
    response = client.post("/predict", json=EXAMPLE_PAYLOAD)

    body = response.json()
    assert response.status_code == 200
    assert body["species"] == "Adelie"
    assert set(body["probabilities"]) == set(CLASSES)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    assert body["model_version"] == card.version


def test_predict_equals_the_pipeline(client, pipeline):
    """The service's probabilities are the fitted pipeline's, within 1e-9."""
    expected = pipeline.predict_proba(pd.DataFrame([EXAMPLE_PAYLOAD]))[0]

    served = client.post("/predict", json=EXAMPLE_PAYLOAD).json()["probabilities"]

    assert [served[c] for c in pipeline.classes_] == pytest.approx(expected, abs=1e-9)


def test_predict_accepts_missing_or_null_sex(client):
    """`sex` may be left out or null; the model imputes it."""
    without = client.post("/predict", json=VALID_EXAMPLES["sex_missing"])
    null = client.post("/predict", json={**VALID_EXAMPLES["sex_missing"], "sex": None})

    assert without.status_code == null.status_code == 200
    assert without.json() == null.json()


@pytest.mark.parametrize("example", INVALID_EXAMPLES, ids=lambda e: e.name)
def test_predict_invalid_example_is_4xx_naming_the_field(client, example):
    """Each invalid example from the contract is a 4xx whose message names its field."""
    response = client.post("/predict", content=example.body, headers=JSON)

    assert 400 <= response.status_code < 500
    assert response.json()["detail"].startswith(f"{example.field}:")


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
@pytest.mark.parametrize(
    "body",
    [b"\xff", b'{"island": "Dream\xff"}', b"[" * 100_000],
    ids=["not-utf8", "not-utf8-inside", "nested-too-deep"],
)
def test_predict_undecodable_body_is_400_naming_body(client, path, body):
    """A body that cannot be decoded as JSON text is a 400 in the project's shape, naming `body`."""
    response = client.post(path, content=body, headers=JSON)

    error = ErrorPublic.model_validate(response.json())
    assert response.status_code == 400
    assert error.detail.startswith("body: ")
    assert [e.field for e in error.errors] == ["body"]


def test_predict_batch_answers_in_order(client):
    """POST /predict/batch answers one prediction per penguin, in the order sent."""
    names = ["gentoo", "adelie", "chinstrap"]

    response = client.post("/predict/batch", json={"penguins": [VALID_EXAMPLES[n] for n in names]})

    species = [p["species"] for p in response.json()["predictions"]]
    assert response.status_code == 200
    assert species == ["Gentoo", "Adelie", "Chinstrap"]


def test_predict_batch_over_the_limit_is_422_naming_penguins(client):
    """One penguin over MAX_BATCH_SIZE is refused, naming the `penguins` field."""
    penguins = [EXAMPLE_PAYLOAD] * (MAX_BATCH_SIZE + 1)

    response = client.post("/predict/batch", json={"penguins": penguins})

    assert response.status_code == 422
    assert response.json()["detail"].startswith("penguins:")


def test_predict_batch_at_the_limit_is_answered(client):
    """Exactly MAX_BATCH_SIZE penguins are answered."""
    response = client.post("/predict/batch", json={"penguins": [EXAMPLE_PAYLOAD] * MAX_BATCH_SIZE})

    assert response.status_code == 200
    assert len(response.json()["predictions"]) == MAX_BATCH_SIZE


def test_predict_batch_names_the_bad_penguin(client):
    """A bad field inside a batch is named with its position."""
    penguins = [EXAMPLE_PAYLOAD, {**EXAMPLE_PAYLOAD, "island": "Atlantis"}]

    response = client.post("/predict/batch", json={"penguins": penguins})

    assert response.status_code == 422
    assert response.json()["detail"].startswith("penguins[1].island:")


def test_predict_batch_empty_is_422(client):
    """An empty batch is a client error, not an empty answer."""
    response = client.post("/predict/batch", json={"penguins": []})

    assert response.status_code == 422


def test_health_is_ok(client):
    """GET /health answers while the process lives."""
    assert client.get("/health").json() == {"status": "ok"}


def test_ready_names_the_loaded_model(client, card):
    """GET /ready is 200 with the version once a verified model is loaded."""
    response = client.get("/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "model_version": card.version}


def test_ready_without_a_model_is_503(tmp_path):
    """A service with no model loaded is alive but not ready, and says why."""
    app = create_app(Settings(state_dir=tmp_path))  # lifespan not run: nothing loaded

    response = TestClient(app).get("/ready")

    assert response.status_code == 503
    assert response.json()["detail"].startswith("model:")


def test_model_returns_the_card(client, card):
    """GET /model returns the model card, provenance and metrics included."""
    body = client.get("/model").json()

    assert body["version"] == card.version
    assert body["data_checksum"] == card.data_checksum
    assert body["metrics"] == card.metrics


def test_model_names_the_numpy_path_for_the_recipe(client):
    """GET /model says the recipe is served by the fast numpy path."""
    assert client.get("/model").json()["serving_path"] == "numpy"


def test_openapi_documents_the_serving_path(client):
    """The /model response schema documents `serving_path` and its two values."""
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ModelPublic"]

    assert schema["properties"]["serving_path"]["enum"] == ["numpy", "pipeline"]
    assert "serving_path" in schema["required"]


def test_openapi_docs_carry_the_examples(client):
    """The OpenAPI document shows the contract's example payloads and the batch limit."""
    spec = client.get("/openapi.json").json()

    examples = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    batch = spec["components"]["schemas"]["BatchRequest"]["properties"]["penguins"]
    assert examples["adelie"]["value"] == VALID_EXAMPLES["adelie"]
    assert batch["maxItems"] == MAX_BATCH_SIZE
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("post", "/predict", {"400", "413", "422", "503"}),
        ("post", "/predict/batch", {"400", "413", "422", "503"}),
        ("get", "/health", {"413"}),
        ("get", "/ready", {"413", "503"}),
        ("get", "/model", {"413", "503"}),
        ("get", "/model/card", {"404", "413", "422", "503"}),
    ],
)
def test_openapi_documents_every_error_status(client, method, path, statuses):
    """Every error status an endpoint can answer is in its OpenAPI responses, as ErrorPublic."""
    operation = client.get("/openapi.json").json()["paths"][path][method]

    documented = {
        status: response["content"]["application/json"]["schema"]["$ref"]
        for status, response in operation["responses"].items()
        if status in statuses
    }

    assert documented == dict.fromkeys(statuses, "#/components/schemas/ErrorPublic")


def test_app_refuses_to_start_without_a_model(tmp_path):
    """With no model in the serving folder, startup fails with the path in the message."""
    app = create_app(Settings(state_dir=tmp_path))

    with pytest.raises(ModelLoadError, match=f"no model at .*{MODEL_FILE}"), TestClient(app):
        pass


def test_serve_exits_with_one_clear_line_when_the_model_is_corrupt(model_dir, tmp_path):
    """`python -m level1_devops.serve` on a corrupt model exits non-zero, without a traceback."""
    serving = tmp_path / "serving"
    serving.mkdir()
    for name in ("card.json", MODEL_FILE):
        (serving / name).write_bytes((model_dir / name).read_bytes())
    (serving / MODEL_FILE).write_bytes(b"corrupt")
    env = {**os.environ, "LEVEL1_STATE_DIR": str(tmp_path)}

    done = subprocess.run(
        [sys.executable, "-m", "level1_devops.serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode != 0
    assert "cannot start" in done.stderr and str(serving / MODEL_FILE) in done.stderr
    assert "Traceback" not in done.stderr
