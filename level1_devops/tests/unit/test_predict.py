"""The fast prediction path gives the pipeline's probabilities, and knows only its recipe."""

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from level1_devops.model import build_pipeline
from level1_devops.predict import Predictor
from shared.contract import FEATURES, TARGET
from shared.simulate import Corruption, Drift, simulate_batch

TOLERANCE = 1e-9


def assert_same_probabilities(pipeline, frame):
    features = frame[list(FEATURES)]
    expected = pipeline.predict_proba(features)

    actual = Predictor.from_pipeline(pipeline).predict_proba(features.to_dict("records"))

    assert np.abs(actual - expected).max() <= TOLERANCE


def test_predictor_matches_pipeline_on_held_out_rows(pipeline, test_rows):
    """On every held-out penguin the probabilities equal the pipeline's within 1e-9."""
    assert_same_probabilities(pipeline, test_rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_predictor_matches_pipeline_on_simulated_batches(pipeline, seed):
    """On 2,000 simulated penguins per seed, drifted, the probabilities match within 1e-9."""
    drift = Drift(mean_shift={"bill_length_mm": 2.0 * seed}, island_mix={"Dream": 1, "Biscoe": 1})

    assert_same_probabilities(pipeline, simulate_batch(2000, seed=seed, drift=drift))


def test_predictor_matches_pipeline_with_missing_and_unknown_values(pipeline):
    """Nulls in every feature and islands never seen are imputed/ignored exactly as sklearn does."""
    nulls = dict.fromkeys(FEATURES, 0.15)
    batch = simulate_batch(2000, seed=9, corruption=Corruption(null_rate=nulls))
    batch.loc[batch.index[::7], "island"] = "Anvers"

    assert_same_probabilities(pipeline, batch)


def test_predictor_classes_are_the_pipelines(pipeline):
    """Columns of the probabilities are the classifier's classes, in its order."""
    assert Predictor.from_pipeline(pipeline).classes == tuple(pipeline.classes_)


def test_predictor_refuses_another_recipe(test_rows):
    """A pipeline with another classifier is refused rather than evaluated wrongly."""
    other = build_pipeline(seed=0)
    other.steps[-1] = ("classifier", RandomForestClassifier(n_estimators=3, random_state=0))
    other.fit(test_rows[list(FEATURES)], test_rows[TARGET])

    with pytest.raises(ValueError, match="not the recipe"):
        Predictor.from_pipeline(other)


def test_predictor_refuses_a_bare_estimator():
    """Something that is not the recipe's two-step pipeline is refused with the same message."""
    with pytest.raises(ValueError, match="not the recipe"):
        Predictor.from_pipeline(Pipeline([("classifier", RandomForestClassifier())]))


def test_fingerprint_changes_when_the_model_changes(pipeline, test_rows):
    """A model fitted on other rows has another fingerprint."""
    other = build_pipeline(seed=42).fit(test_rows[list(FEATURES)], test_rows[TARGET])

    assert (
        Predictor.from_pipeline(other).fingerprint()
        != Predictor.from_pipeline(pipeline).fingerprint()
    )
