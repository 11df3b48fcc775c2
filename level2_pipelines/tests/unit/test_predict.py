"""The fast prediction path gives the registered pipeline's probabilities (within 1e-9), and
knows only its recipe: what level 1 holds its Predictor to, level 2 holds its own to."""

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from level2_pipelines.data import held_out_rows
from level2_pipelines.model import build_pipeline
from level2_pipelines.predict import Predictor
from shared.contract import FEATURES, TARGET
from shared.simulate import Corruption, Drift, simulate_batch

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def pipeline(candidate):
    return candidate.pipeline


def assert_same_probabilities(pipeline, frame):
    features = frame[list(FEATURES)]
    expected = pipeline.predict_proba(features)

    actual = Predictor.from_pipeline(pipeline).predict_proba(features.to_dict("records"))

    assert np.abs(actual - expected).max() <= TOLERANCE


def test_predictor_matches_pipeline_on_held_out_rows(pipeline):
    """On every held-out penguin the probabilities equal the pipeline's within 1e-9."""
    assert_same_probabilities(pipeline, held_out_rows(42))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_predictor_matches_pipeline_on_drifted_batches(pipeline, seed):
    """On 2,000 simulated, drifted penguins per seed, the probabilities match within 1e-9."""
    drift = Drift(mean_shift={"bill_length_mm": 2.0 * seed}, island_mix={"Dream": 1, "Biscoe": 1})

    assert_same_probabilities(pipeline, simulate_batch(2000, seed=seed, drift=drift))


def test_predictor_matches_pipeline_with_missing_and_unknown_values(pipeline):
    """Nulls in every feature and islands never seen are imputed/ignored exactly as sklearn does."""
    batch = simulate_batch(
        2000, seed=9, corruption=Corruption(null_rate=dict.fromkeys(FEATURES, 0.15))
    )
    batch.loc[batch.index[::7], "island"] = "Anvers"

    assert_same_probabilities(pipeline, batch)


def test_predictor_refuses_another_recipe():
    """A pipeline with another classifier is refused rather than evaluated wrongly."""
    rows = held_out_rows(42)
    other = build_pipeline(seed=0)
    other.steps[-1] = ("classifier", RandomForestClassifier(n_estimators=3, random_state=0))
    other.fit(rows[list(FEATURES)], rows[TARGET])

    with pytest.raises(ValueError, match="not the recipe"):
        Predictor.from_pipeline(other)
