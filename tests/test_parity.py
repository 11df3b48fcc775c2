"""Same model at every level: the comparison between levels is only fair if this holds."""

import pickle

import numpy as np
import pytest

from level1_devops.model import fingerprint, load_artifact
from level1_devops.predict import serving_predictor
from level2_pipelines import registry
from level2_pipelines.model import load_version
from level2_pipelines.settings import Settings as Level2Settings
from level2_pipelines.tests.helpers import log_candidate
from level2_pipelines.tracking import connect
from shared.contract import FEATURES
from shared.data import load_penguins, split_train_test
from shared.simulate import simulate_batch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def level0_model(level0_output):
    with open(level0_output / "model.pkl", "rb") as f:
        return pickle.load(f)  # our own file, written by the notebook this session


@pytest.fixture(scope="module")
def level1_model(level1_model_dir):
    return load_artifact(level1_model_dir)[0]


@pytest.fixture(scope="module")
def level2_model(tmp_path_factory):
    """Level 2's model as its service loads it: trained on the whole training split (the
    reference years and the 2009 birds), logged, registered and read back from the registry."""
    settings = Level2Settings(state_dir=tmp_path_factory.mktemp("level2"))
    client = connect(settings)
    candidate = log_candidate(settings)
    version = registry.register(
        client, settings.model_name, candidate.model_uri, candidate.run_id, candidate.lineage
    )
    return load_version(client, settings.model_name, version)[0]


def test_all_three_levels_agree_on_held_out_rows(level0_model, level1_model, level2_model):
    """Levels 0, 1 and 2 give the same species and probabilities (1e-9) on the held-out birds."""
    _, test = split_train_test(load_penguins())
    features = test[list(FEATURES)]

    probabilities = [m.predict_proba(features) for m in (level0_model, level1_model, level2_model)]

    np.testing.assert_array_equal(level2_model.predict(features), level1_model.predict(features))
    assert np.abs(probabilities[0] - probabilities[1]).max() <= 1e-9
    assert np.abs(probabilities[2] - probabilities[1]).max() <= 1e-9


def test_level0_and_level1_agree_on_held_out_rows(level0_model, level1_model):
    """The notebook's model and level 1's give the same species and probabilities (1e-9)."""
    _, test = split_train_test(load_penguins())
    features = test[list(FEATURES)]

    level0 = level0_model.predict_proba(features)
    level1 = level1_model.predict_proba(features)

    np.testing.assert_array_equal(level0_model.predict(features), level1_model.predict(features))
    assert np.abs(level0 - level1).max() <= 1e-9


def test_level0_and_level1_agree_on_simulated_penguins(level0_model, level1_model):
    """On 5,000 simulated penguins the two levels' probabilities agree within 1e-9."""
    features = simulate_batch(5000, seed=2026)[list(FEATURES)]

    difference = level0_model.predict_proba(features) - level1_model.predict_proba(features)

    assert np.abs(difference).max() <= 1e-9


def test_level0_and_level1_fitted_the_same_numbers(level0_model, level1_model_dir):
    """Level 0's pickle has the fingerprint written on level 1's card: the same fitted model."""
    card = load_artifact(level1_model_dir)[1]

    assert fingerprint(level0_model) == card.fingerprint


def test_level0_model_is_the_recipe_level1_serves_fast(level0_model):
    """Level 0's pickle is the recipe exactly: level 1 would serve it on its numpy path."""
    assert serving_predictor(level0_model).path == "numpy"
