"""A starter's first change: another estimator, swapped in at `model.build_classifier` (with
the types its file needs added to `TRUSTED_TYPES` beside it), trains, is recorded with its own
parameters, and is served on the pipeline path; a tampered version is still refused."""

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sklearn.ensemble import RandomForestClassifier

from level2_pipelines import model
from level2_pipelines.api import create_app
from level2_pipelines.follower import load_served_model
from level2_pipelines.model import ModelLoadError, load_version
from level2_pipelines.predict import serving_predictor
from level2_pipelines.settings import Settings
from level2_pipelines.tests.helpers import add_version, log_candidate
from level2_pipelines.tracking import connect
from shared.contract import EXAMPLE_PAYLOAD

SEED = 42
FOREST_TYPES = ["sklearn.tree._tree.Tree"]  # what `skops.io.get_untrusted_types` lists


def forest(seed: int) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=20, random_state=seed)


@pytest.fixture(scope="module", autouse=True)
def swapped():
    """The change a user makes in model.py, for every test in this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model, "build_classifier", forest)
        patch.setattr(model, "TRUSTED_TYPES", [*model.TRUSTED_TYPES, *FOREST_TYPES])
        yield


@pytest.fixture(scope="module")
def forest_candidate(state_dir):
    """The forest fitted and logged as the pipeline's train stage does it."""
    settings = Settings()
    connect(settings)
    return log_candidate(settings)


def test_another_estimator_is_logged_with_its_own_parameters(forest_candidate):
    """The MLflow run names the forest and the parameters it was fitted with."""
    params = MlflowClient().get_run(forest_candidate.run_id).data.params

    assert params["classifier"] == "RandomForestClassifier"
    assert params["classifier__n_estimators"] == "20"
    assert params["classifier__random_state"] == str(SEED)
    assert forest_candidate.metrics["macro_f1"] >= 0.9


def test_another_estimator_loads_from_the_registry_on_the_pipeline_path(settings, forest_candidate):
    """A registered forest loads through load_version, with the fingerprint recorded."""
    version = add_version(settings, forest_candidate)

    pipeline, lineage = load_version(MlflowClient(), settings.model_name, version)

    predictor = serving_predictor(pipeline)
    assert predictor.path == "pipeline"
    assert predictor.fingerprint() == forest_candidate.lineage["fingerprint"]
    assert lineage.version == version


def test_another_estimator_is_served_on_the_pipeline_path(settings, forest_candidate, tmp_path):
    """The service answers /predict with probabilities, and /model names the pipeline path."""
    version = add_version(settings, forest_candidate)
    served = load_served_model(MlflowClient(), settings.model_name, version)
    app = create_app(Settings(state_dir=tmp_path, admin_token="s3cret"), served)

    with TestClient(app) as http:
        prediction = http.post("/predict", json=EXAMPLE_PAYLOAD)
        lineage = http.get("/model").json()

    assert prediction.status_code == 200
    assert prediction.json()["species"] == "Adelie"
    assert sum(prediction.json()["probabilities"].values()) == pytest.approx(1.0)
    assert lineage["serving_path"] == "pipeline"
    assert lineage["version"] == version


def test_a_tampered_forest_is_refused_by_its_fingerprint(settings, forest_candidate):
    """A forest version whose recorded fingerprint is not its own is refused, naming both."""
    version = add_version(settings, forest_candidate, fingerprint="0" * 64)

    with pytest.raises(ModelLoadError, match=f"v{version} is not the model .*recorded 0{{64}}"):
        load_version(MlflowClient(), settings.model_name, version)


def test_a_forest_is_refused_without_its_trusted_types(settings, forest_candidate, monkeypatch):
    """Undo the TRUSTED_TYPES half of the change: the version asks to trust more, and is
    refused naming the type."""
    version = add_version(settings, forest_candidate)
    monkeypatch.setattr(model, "TRUSTED_TYPES", ["numpy.dtype"])

    with pytest.raises(ModelLoadError, match=r"asks to trust \['sklearn\.tree\._tree\.Tree'\]"):
        load_version(MlflowClient(), settings.model_name, version)
