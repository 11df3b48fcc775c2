"""Training is reproducible and leaves a card that describes the model; hand-off checks it."""

import re

import pytest

from level1_devops.handoff import hand_off
from level1_devops.model import CARD_FILE, MODEL_FILE, ModelLoadError, load_artifact, sha256_file
from level1_devops.predict import Predictor
from level1_devops.train import train
from shared.data import data_checksum, load_penguins
from shared.simulate import Corruption, simulate_batch


def test_card_describes_the_artifact(model_dir, card):
    """The card's version and hash are the artifact's, and its data checksum the data's."""
    assert card.artifact_sha256 == sha256_file(model_dir / MODEL_FILE)
    assert card.version == card.artifact_sha256[:12]
    assert card.data_checksum == data_checksum(load_penguins())


def test_card_records_provenance_and_metrics(card):
    """The card holds the commit, parameters and held-out metrics."""
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", card.git_commit)
    assert card.parameters["seed"] == 42
    assert card.parameters["test_rows"] == 69
    assert 0.0 <= card.metrics["macro_f1"] <= 1.0
    assert set(card.metrics["f1_per_class"]) == {"Adelie", "Chinstrap", "Gentoo"}


def test_train_twice_gives_the_same_model(card, tmp_path):
    """A second training run with the same seed fits identical numbers (same fingerprint)."""
    again = train(tmp_path, seed=42)

    assert again.fingerprint == card.fingerprint
    assert again.metrics == card.metrics


def test_card_fingerprint_is_the_models(pipeline, card):
    """The fingerprint on the card is the one computed from the fitted model."""
    assert Predictor.from_pipeline(pipeline).fingerprint() == card.fingerprint


def test_hand_off_copies_the_pair(model_dir, card, tmp_path):
    """The hand-off puts both files in the serving folder, loadable and unchanged."""
    hand_off(model_dir, tmp_path / "serving")

    _, served_card = load_artifact(tmp_path / "serving")

    assert served_card == card


def test_hand_off_refuses_a_bad_pair_and_keeps_the_served_one(model_dir, card, tmp_path):
    """A mismatched pair is not handed off; the model already in service stays."""
    hand_off(model_dir, tmp_path / "serving")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MODEL_FILE).write_bytes(b"junk")
    (broken / CARD_FILE).write_text((model_dir / CARD_FILE).read_text())

    with pytest.raises(ModelLoadError, match="does not match its card"):
        hand_off(broken, tmp_path / "serving")

    assert load_artifact(tmp_path / "serving")[1] == card


def test_train_with_a_new_batch_trains_on_it_unchecked(tmp_path):
    """A new batch is appended to the training rows as it is: level 1 validates nothing."""
    batch = simulate_batch(50, seed=1, corruption=Corruption(out_of_range_rate={"body_mass_g": 1}))
    batch.to_csv(tmp_path / "batch.csv", index=False)

    card = train(tmp_path / "model", seed=42, new_batch=tmp_path / "batch.csv")

    assert card.parameters["train_rows"] == 275 + 50
    assert card.parameters["new_batch"] == str(tmp_path / "batch.csv")
