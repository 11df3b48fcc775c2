"""A starter's first change: another estimator, swapped in at `model.build_classifier` (with
the types its file needs added to `TRUSTED_TYPES` beside it), trains, is recorded with its own
parameters, and is served on the pipeline path; a tampered copy is still refused."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.ensemble import RandomForestClassifier

from level1_devops import model
from level1_devops.api import create_app, load_served_model
from level1_devops.data import features_and_target, training_split
from level1_devops.model import CARD_FILE, MODEL_FILE, ModelLoadError, load_artifact, sha256_file
from level1_devops.settings import Settings
from level1_devops.train import train
from shared.contract import EXAMPLE_PAYLOAD, FEATURES, VALID_EXAMPLES

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
def forest_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("level1-forest")
    train(directory, SEED)
    return directory


@pytest.fixture(scope="module")
def forest_client(forest_dir, tmp_path_factory):
    settings = Settings(state_dir=tmp_path_factory.mktemp("level1-forest-state"))
    with TestClient(create_app(settings, load_served_model(forest_dir))) as test_client:
        yield test_client


def test_another_estimator_is_carded_with_its_own_parameters(forest_dir):
    """The card names the forest and the parameters it was fitted with, and its metrics."""
    card = load_artifact(forest_dir)[1]

    assert card.parameters["classifier"] == "RandomForestClassifier"
    assert card.parameters["classifier__n_estimators"] == 20
    assert card.parameters["classifier__random_state"] == SEED
    assert card.metrics["macro_f1"] >= 0.9


def test_another_estimator_is_served_on_the_pipeline_path(forest_client):
    """The service answers /predict with probabilities, and /model names the pipeline path."""
    prediction = forest_client.post("/predict", json=EXAMPLE_PAYLOAD)
    card = forest_client.get("/model").json()

    assert prediction.status_code == 200
    assert prediction.json()["species"] == "Adelie"
    assert sum(prediction.json()["probabilities"].values()) == pytest.approx(1.0)
    assert card["serving_path"] == "pipeline"
    assert card["parameters"]["classifier"] == "RandomForestClassifier"


def test_another_estimator_answers_what_its_pipeline_answers(forest_dir, forest_client):
    """/predict/batch gives exactly the loaded pipeline's probabilities, row by row."""
    pipeline = load_artifact(forest_dir)[0]
    rows = [{f: example.get(f) for f in FEATURES} for example in VALID_EXAMPLES.values()]

    body = forest_client.post("/predict/batch", json={"penguins": rows}).json()

    answered = [[p["probabilities"][c] for c in pipeline.classes_] for p in body["predictions"]]
    np.testing.assert_array_equal(answered, pipeline.predict_proba(pd.DataFrame(rows)))


def test_a_tampered_forest_is_refused_by_its_fingerprint(forest_dir, tmp_path):
    """Another forest under a card whose SHA-256 was edited to match keeps the original
    fingerprint on the card, and is refused naming both fingerprints."""
    tampered = tmp_path / "tampered"
    shutil.copytree(forest_dir, tampered)
    other = model.build_pipeline(seed=7).fit(*features_and_target(training_split(SEED)))
    model.save_model(other, tampered / MODEL_FILE)
    fields = json.loads((tampered / CARD_FILE).read_text())
    fields["artifact_sha256"] = sha256_file(tampered / MODEL_FILE)
    (tampered / CARD_FILE).write_text(json.dumps(fields))

    with pytest.raises(ModelLoadError, match=r"its fingerprint is [0-9a-f]{64}, the card says"):
        load_artifact(tampered)


def test_a_forest_is_refused_without_its_trusted_types(forest_dir, monkeypatch):
    """Undo the TRUSTED_TYPES half of the change: the file is refused, naming the type."""
    monkeypatch.setattr(model, "TRUSTED_TYPES", ["numpy.dtype"])

    with pytest.raises(ModelLoadError, match=r"could not be loaded .*sklearn\.tree\._tree\.Tree"):
        load_artifact(forest_dir)
