"""The recipe and its artifact: safe format, card checked against the file."""

import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.svm import LinearSVC

from level1_devops.model import (
    CARD_FILE,
    MODEL_FILE,
    ModelLoadError,
    build_pipeline,
    load_artifact,
    load_model,
    save_model,
    sha256_file,
    write_artifact,
)
from shared.contract import EXAMPLE_PAYLOAD, FEATURES, TARGET


@pytest.fixture
def model_copy(model_dir, tmp_path):
    """A private copy of the session's model pair, free to damage."""
    shutil.copytree(model_dir, tmp_path / "model")
    return tmp_path / "model"


def test_build_pipeline_is_unfitted_and_seeded():
    """The recipe comes unfitted, with the classifier's seed set."""
    pipeline = build_pipeline(seed=7)

    assert pipeline.named_steps["classifier"].random_state == 7
    assert not hasattr(pipeline.named_steps["classifier"], "coef_")


def test_pipeline_imputes_missing_values(pipeline):
    """A row with no measurements and no sex still gets probabilities summing to 1."""
    row = pd.DataFrame([dict.fromkeys(FEATURES, np.nan)]).astype({"island": "str", "sex": "str"})

    probabilities = pipeline.predict_proba(row)

    assert probabilities.sum() == pytest.approx(1.0)


def test_pipeline_ignores_unknown_island(pipeline):
    """An island never seen in training is encoded as all zeros, not an error."""
    row = pd.DataFrame([{**EXAMPLE_PAYLOAD, "island": "Anvers"}])

    assert pipeline.predict_proba(row).sum() == pytest.approx(1.0)


def test_save_and_load_model_round_trip(pipeline, tmp_path, held_out):
    """A skops round trip gives back a model with identical predictions."""
    save_model(pipeline, tmp_path / MODEL_FILE)

    loaded = load_model(tmp_path / MODEL_FILE)

    features = held_out[list(FEATURES)]
    np.testing.assert_array_equal(loaded.predict_proba(features), pipeline.predict_proba(features))


def test_load_model_refuses_untrusted_types(tmp_path):
    """A skops file holding a type outside the trusted list is refused, not built."""
    sio.dump({"payload": pd.Timestamp("2009-01-01")}, tmp_path / "foreign.skops")

    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        load_model(tmp_path / "foreign.skops")


def test_load_artifact_missing_model_names_the_path(model_copy):
    """No model file: the error names the path and how to make one."""
    (model_copy / MODEL_FILE).unlink()

    with pytest.raises(ModelLoadError, match=f"no model at .*{MODEL_FILE}.*make level1"):
        load_artifact(model_copy)


def test_load_artifact_missing_card_names_the_path(model_copy):
    """No card: the error names the card's path."""
    (model_copy / CARD_FILE).unlink()

    with pytest.raises(ModelLoadError, match=f"no model card at .*{CARD_FILE}"):
        load_artifact(model_copy)


def test_load_artifact_refuses_a_file_that_does_not_match_its_card(model_copy, pipeline):
    """A model file swapped without its card is refused, naming both hashes."""
    (model_copy / MODEL_FILE).write_bytes(pickle.dumps(pipeline))

    with pytest.raises(ModelLoadError, match=r"does not match its card .*SHA-256 is [0-9a-f]{64}"):
        load_artifact(model_copy)


def test_load_artifact_refuses_a_corrupt_file_even_with_matching_card(model_copy):
    """A damaged file whose card was updated to match still fails to load, with the reason."""
    (model_copy / MODEL_FILE).write_bytes(b"not a zip file")
    card = json.loads((model_copy / CARD_FILE).read_text())
    card["artifact_sha256"] = sha256_file(model_copy / MODEL_FILE)
    (model_copy / CARD_FILE).write_text(json.dumps(card))

    with pytest.raises(ModelLoadError, match=r"could not be loaded .*BadZipFile"):
        load_artifact(model_copy)


def test_load_artifact_refuses_an_invalid_card(model_copy):
    """A card that is not valid JSON for the card schema is refused, naming the card."""
    (model_copy / CARD_FILE).write_text('{"version": 3}')

    with pytest.raises(ModelLoadError, match="is not a valid card"):
        load_artifact(model_copy)


def test_load_artifact_refuses_a_card_with_another_fingerprint(model_copy, card):
    """A card with the file's SHA-256 but another model's fingerprint is refused, naming both."""
    fields = json.loads((model_copy / CARD_FILE).read_text())
    (model_copy / CARD_FILE).write_text(json.dumps({**fields, "fingerprint": "0" * 64}))

    with pytest.raises(ModelLoadError, match=f"fingerprint is {card.fingerprint}, the card says 0"):
        load_artifact(model_copy)


def test_load_artifact_refuses_a_pipeline_without_probabilities(card, tmp_path, held_out):
    """A loadable model that cannot answer probabilities is refused with one line naming it."""
    other = build_pipeline(seed=0)
    other.steps[-1] = ("classifier", LinearSVC())
    other.fit(held_out[list(FEATURES)], held_out[TARGET])
    write_artifact(
        other, tmp_path, **card.model_dump(exclude={"name", "version", "artifact_sha256"})
    )

    with pytest.raises(ModelLoadError, match=f"{MODEL_FILE} cannot be served: .*no predict_proba"):
        load_artifact(tmp_path)


def test_save_model_refuses_a_model_needing_untrusted_types(held_out, tmp_path):
    """A model whose file needs types beyond TRUSTED_TYPES is not written; the error names the
    types and where to add them."""
    forest = build_pipeline(seed=0)
    forest.steps[-1] = ("classifier", RandomForestClassifier(n_estimators=2, random_state=0))
    forest.fit(held_out[list(FEATURES)], held_out[TARGET])

    with pytest.raises(ValueError, match=r"\['sklearn.tree._tree.Tree'\].*TRUSTED_TYPES in"):
        save_model(forest, tmp_path / MODEL_FILE)

    assert not (tmp_path / MODEL_FILE).exists()
