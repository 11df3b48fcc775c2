"""Serving's two prediction paths. The fast numpy path gives the recipe's probabilities within
1e-9 and takes nothing but the recipe; the pipeline path gives any other pipeline's own
probabilities, exactly, on the same rows."""

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from level1_devops.data import features_and_target, training_split
from level1_devops.model import build_pipeline
from level1_devops.predict import PipelinePredictor, Predictor, probe_rows, serving_predictor
from shared.contract import FEATURES
from shared.simulate import Corruption, Drift, simulate_batch

TOLERANCE = 1e-9


def another_estimator(classifier) -> Pipeline:
    """The recipe with its estimator swapped, fitted on the training split."""
    pipeline = build_pipeline(seed=42)
    pipeline.steps[-1] = ("classifier", classifier)
    return pipeline.fit(*features_and_target(training_split(42)))


@pytest.fixture(scope="module")
def forest() -> Pipeline:
    return another_estimator(RandomForestClassifier(n_estimators=20, random_state=0))


def corrupted_batch(seed: int):
    """Simulated penguins with nulls in every feature and, every 7th, an island never seen."""
    nulls = dict.fromkeys(FEATURES, 0.15)
    batch = simulate_batch(2000, seed=seed, corruption=Corruption(null_rate=nulls))
    batch.loc[batch.index[::7], "island"] = "Anvers"
    return batch


def assert_same_probabilities(predictor, pipeline, frame, tolerance=TOLERANCE):
    features = frame[list(FEATURES)]
    expected = pipeline.predict_proba(features)

    actual = predictor.predict_proba(features.to_dict("records"))

    assert np.abs(actual - expected).max() <= tolerance


def test_serving_predictor_takes_the_numpy_path_for_the_recipe(pipeline):
    """The recipe is served by the fast path."""
    assert serving_predictor(pipeline).path == "numpy"


def test_serving_predictor_takes_the_pipeline_path_for_another_estimator(forest):
    """A swapped estimator is served by the pipeline's own predict_proba, not refused."""
    assert serving_predictor(forest).path == "pipeline"


def test_predictor_matches_pipeline_on_held_out_rows(pipeline, held_out):
    """On every held-out penguin the probabilities equal the pipeline's within 1e-9."""
    assert_same_probabilities(Predictor.from_pipeline(pipeline), pipeline, held_out)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_predictor_matches_pipeline_on_drifted_batches(pipeline, seed):
    """On 2,000 simulated, drifted penguins per seed, the probabilities match within 1e-9."""
    drift = Drift(mean_shift={"bill_length_mm": 2.0 * seed}, island_mix={"Dream": 1, "Biscoe": 1})
    batch = simulate_batch(2000, seed=seed, drift=drift)

    assert_same_probabilities(Predictor.from_pipeline(pipeline), pipeline, batch)


def test_predictor_matches_pipeline_with_missing_and_unknown_values(pipeline):
    """Nulls in every feature and islands never seen are imputed/ignored exactly as sklearn does."""
    assert_same_probabilities(Predictor.from_pipeline(pipeline), pipeline, corrupted_batch(9))


def test_predictor_classes_are_the_pipelines(pipeline):
    """Columns of the probabilities are the classifier's classes, in its order."""
    assert Predictor.from_pipeline(pipeline).classes == tuple(pipeline.classes_)


def test_predictor_refuses_another_recipe(forest):
    """A pipeline with another classifier is refused by the fast path, not evaluated wrongly."""
    with pytest.raises(ValueError, match="not the recipe"):
        Predictor.from_pipeline(forest)


def test_predictor_refuses_a_bare_estimator():
    """Something that is not the recipe's two-step pipeline is refused with the same message."""
    with pytest.raises(ValueError, match="not the recipe"):
        Predictor.from_pipeline(Pipeline([("classifier", RandomForestClassifier())]))


def test_fingerprint_changes_when_the_model_changes(pipeline, held_out):
    """A model fitted on other rows has another fingerprint."""
    other = build_pipeline(seed=42).fit(*features_and_target(held_out))

    assert (
        Predictor.from_pipeline(other).fingerprint()
        != Predictor.from_pipeline(pipeline).fingerprint()
    )


def test_pipeline_predictor_equals_the_pipeline_on_held_out_rows(forest, held_out):
    """On every held-out penguin the pipeline path gives exactly the pipeline's probabilities."""
    assert_same_probabilities(PipelinePredictor.from_pipeline(forest), forest, held_out, 0.0)


@pytest.mark.parametrize("seed", [1, 2])
def test_pipeline_predictor_equals_the_pipeline_with_missing_and_unknown_values(forest, seed):
    """Nulls in every feature and islands never seen reach the pipeline as training had them."""
    predictor = PipelinePredictor.from_pipeline(forest)

    assert_same_probabilities(predictor, forest, corrupted_batch(seed), 0.0)


def test_pipeline_predictor_agrees_with_the_fast_path_on_the_recipe(pipeline, held_out):
    """On the recipe the two paths agree within 1e-9: either can serve it."""
    rows = held_out[list(FEATURES)].to_dict("records")

    fast = Predictor.from_pipeline(pipeline).predict_proba(rows)
    slow = PipelinePredictor.from_pipeline(pipeline).predict_proba(rows)

    assert np.abs(fast - slow).max() <= TOLERANCE


def test_pipeline_predictor_refuses_a_pipeline_without_probabilities():
    """An estimator with no predict_proba cannot answer the contract and is refused."""
    with pytest.raises(ValueError, match="no predict_proba"):
        serving_predictor(another_estimator(LinearSVC()))


def test_pipeline_fingerprint_survives_a_round_trip(forest):
    """The behavioural fingerprint of a model read back from its skops file is unchanged."""
    trusted = sio.get_untrusted_types(data=sio.dumps(forest))
    loaded = sio.loads(sio.dumps(forest), trusted=trusted)

    assert serving_predictor(loaded).fingerprint() == serving_predictor(forest).fingerprint()


def test_pipeline_fingerprint_changes_when_the_model_changes(forest):
    """Another forest (another seed) answers the probe rows otherwise: another fingerprint."""
    other = another_estimator(RandomForestClassifier(n_estimators=20, random_state=1))

    assert serving_predictor(other).fingerprint() != serving_predictor(forest).fingerprint()


def test_probe_rows_are_fixed_and_cover_missing_and_unknown_values():
    """The probe batch is the same on every call, with missing values and an unknown island."""
    rows = probe_rows()

    assert rows == probe_rows()
    assert any(value is None for row in rows for value in row.values())
    assert any(row["island"] == "Anvers" for row in rows)
