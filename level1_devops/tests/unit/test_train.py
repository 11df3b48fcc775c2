"""Training is reproducible and leaves a card that describes the model and its data."""

import re

from level1_devops.data import held_out_rows, training_split
from level1_devops.model import MODEL_FILE, fingerprint, sha256_file
from level1_devops.train import train
from shared.data import data_checksum, load_penguins
from shared.simulate import Corruption, simulate_batch


def test_card_describes_the_artifact(model_dir, card):
    """The card's version and hash are the artifact's."""
    assert card.artifact_sha256 == sha256_file(model_dir / MODEL_FILE)
    assert card.version == card.artifact_sha256[:12]


def test_card_data_checksum_is_the_training_rows(card):
    """The card's data checksum is the checksum of exactly the rows trained on."""
    assert card.data_checksum == data_checksum(training_split(42))


def test_card_data_checksum_ignores_the_held_out_rows(card, tmp_path, monkeypatch):
    """Changing only held-out rows leaves the data checksum as it was: they are not trained on."""
    penguins = load_penguins()
    penguins.loc[held_out_rows(42).index, "body_mass_g"] += 1.0
    monkeypatch.setattr("level1_devops.data.load_penguins", lambda: penguins)

    again = train(tmp_path, seed=42)

    assert again.data_checksum == card.data_checksum


def test_card_data_checksum_changes_with_a_new_batch(card, tmp_path):
    """Two models trained on different rows (with and without a new batch) carry other checksums."""
    simulate_batch(50, seed=1).to_csv(tmp_path / "batch.csv", index=False)

    with_batch = train(tmp_path / "model", seed=42, new_batch=tmp_path / "batch.csv")

    assert with_batch.data_checksum != card.data_checksum


def test_card_records_provenance_and_metrics(card):
    """The card holds the commit, parameters and held-out metrics."""
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", card.git_commit)
    assert card.parameters["seed"] == 42
    assert card.parameters["held_out_rows"] == 69
    assert 0.0 <= card.metrics["macro_f1"] <= 1.0
    assert {"f1_Adelie", "f1_Chinstrap", "f1_Gentoo"} <= set(card.metrics)


def test_card_records_the_estimator_s_own_parameters(pipeline, card):
    """The card's classifier parameters are read from the fitted estimator, not written by hand."""
    classifier = pipeline.named_steps["classifier"]

    assert card.parameters["classifier"] == type(classifier).__name__
    assert card.parameters["classifier__C"] == classifier.C
    assert card.parameters["classifier__max_iter"] == classifier.max_iter


def test_train_twice_gives_the_same_model(card, tmp_path):
    """A second training run with the same seed fits identical numbers (same fingerprint)."""
    again = train(tmp_path, seed=42)

    assert again.fingerprint == card.fingerprint
    assert again.metrics == card.metrics


def test_card_fingerprint_is_the_models(pipeline, card):
    """The fingerprint on the card is the one computed from the fitted model."""
    assert fingerprint(pipeline) == card.fingerprint


def test_train_with_a_new_batch_trains_on_it_unchecked(tmp_path):
    """A new batch is appended to the training rows as it is: level 1 validates nothing."""
    batch = simulate_batch(50, seed=1, corruption=Corruption(out_of_range_rate={"body_mass_g": 1}))
    batch.to_csv(tmp_path / "batch.csv", index=False)

    card = train(tmp_path / "model", seed=42, new_batch=tmp_path / "batch.csv")

    assert card.parameters["training_rows"] == 275 + 50
    assert card.parameters["new_batch"] == str(tmp_path / "batch.csv")
