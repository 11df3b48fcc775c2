"""The level 2 service's contract with a fixed model: level 1's endpoints plus lineage and a
protected admin with no usable default token; every error in the project's shape and in the
OpenAPI document."""

import stat

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from level2_pipelines.api import ServedModel, create_app
from level2_pipelines.settings import Settings
from level2_pipelines.tests.helpers import LINEAGE
from shared.contract import EXAMPLE_PAYLOAD, INVALID_EXAMPLES


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


def test_model_names_the_numpy_path_for_the_recipe(client):
    """GET /model says the recipe is served by the fast numpy path."""
    assert client.get("/model").json()["serving_path"] == "numpy"


def test_openapi_documents_the_serving_path(client):
    """The /model response schema documents `serving_path` and its two values."""
    schema = client.get("/openapi.json").json()["components"]["schemas"]["LineagePublic"]

    assert schema["properties"]["serving_path"]["enum"] == ["numpy", "pipeline"]
    assert "serving_path" in schema["required"]


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


@pytest.mark.parametrize("path", ["/admin/reload", "/admin/rollback"])
def test_admin_on_a_fixed_model_is_409(client, path):
    """With the right token, a service pinned to one model says it follows no registry."""
    response = client.post(path, headers={"Authorization": "Bearer s3cret"})

    assert response.status_code == 409
    assert response.json()["detail"] == "registry: this service serves a fixed model"


@pytest.mark.parametrize("token", ["change-me", "", "secret"])
def test_placeholder_token_is_refused_in_any_setting(token):
    """A placeholder admin token is a settings error naming the variable."""
    with pytest.raises(ValidationError, match="LEVEL2_ADMIN_TOKEN is a placeholder"):
        Settings(admin_token=token)


def test_reachable_host_without_a_token_is_refused():
    """Binding an address other machines reach needs a token of one's own."""
    with pytest.raises(ValidationError, match=r"LEVEL2_HOST=0\.0\.0\.0 is reachable"):
        Settings(host="0.0.0.0")


def test_serve_s_random_token_is_private_and_opens_admin(tmp_path):
    """With no token configured, `serve` writes a random one (mode 0600) and only it opens admin."""
    settings = Settings(state_dir=tmp_path)
    token = settings.admin_token_value(create=True)  # what `serve` does before it starts
    app = create_app(settings, ServedModel(lineage=LINEAGE, predictor=None))

    with TestClient(app) as http:
        refused = http.post("/admin/reload", headers={"Authorization": "Bearer change-me"})
        allowed = http.post("/admin/reload", headers={"Authorization": f"Bearer {token}"})

    assert stat.S_IMODE(settings.admin_token_file.stat().st_mode) == 0o600
    assert len(token) >= 32
    assert settings.admin_token_file.read_text() == token
    assert refused.status_code == 401
    assert allowed.status_code == 409  # past the token check: a fixed model follows nothing


def test_app_with_no_token_anywhere_has_admin_off(tmp_path):
    """An app made in-process with no token (e.g. the smoke test) refuses admin with a 403
    saying how to enable it, and writes nothing into the state folder."""
    app = create_app(Settings(state_dir=tmp_path), ServedModel(lineage=LINEAGE, predictor=None))

    with TestClient(app) as http:
        response = http.post("/admin/reload", headers={"Authorization": "Bearer anything"})

    assert response.status_code == 403
    assert "LEVEL2_ADMIN_TOKEN" in response.json()["detail"]
    assert list(tmp_path.iterdir()) == []


def test_undecodable_body_is_400_in_the_project_s_shape(client):
    """Bytes that are not UTF-8 get a 400 naming `body`, with the errors list."""
    response = client.post(
        "/predict", content=b"\xff\xfe\xfa", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["detail"].startswith("body:")
    assert response.json()["errors"][0]["field"] == "body"


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/predict", "post", {"400", "413", "422", "503"}),
        ("/predict/batch", "post", {"400", "413", "422", "503"}),
        ("/ready", "get", {"413", "503"}),
        ("/admin/reload", "post", {"401", "403", "409", "413", "503"}),
        ("/admin/rollback", "post", {"401", "403", "409", "413", "503"}),
        ("/model/card", "get", {"404", "413", "422", "503"}),
    ],
)
def test_openapi_documents_every_error_status(client, path, method, statuses):
    """Each endpoint's OpenAPI entry lists the error statuses it can answer."""
    documented = client.get("/openapi.json").json()["paths"][path][method]["responses"]

    assert statuses <= set(documented)


def test_ready_without_a_champion_is_503(tmp_path):
    """A service with no model yet is alive but not ready, and says why."""
    app = create_app(Settings(state_dir=tmp_path))  # lifespan not run: nothing loaded

    response = TestClient(app).get("/ready")

    assert response.status_code == 503
    assert response.json()["detail"].startswith("model:")
