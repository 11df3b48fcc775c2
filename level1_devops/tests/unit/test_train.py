"""Training is reproducible and leaves a card that describes the model and its data."""

import re

from level1_devops.data import load_split
from level1_devops.model import MODEL_FILE, sha256_file
from level1_devops.predict import Predictor
from level1_devops.train import train
from shared.data import data_checksum, load_penguins
from shared.simulate import Corruption, simulate_batch


def test_card_describes_the_artifact(model_dir, card):
    """The card's version and hash are the artifact's."""
    assert card.artifact_sha256 == sha256_file(model_dir / MODEL_FILE)
    assert card.version == card.artifact_sha256[:12]


def test_card_data_checksum_is_the_training_rows(card):
    """The card's data checksum is the checksum of exactly the rows trained on."""
    train_rows = load_split(42)[0]

    assert card.data_checksum == data_checksum(train_rows)


def test_card_data_checksum_ignores_the_test_rows(card, tmp_path, monkeypatch):
    """Changing only held-out rows leaves the data checksum as it was: they are not trained on."""
    penguins = load_penguins()
    penguins.loc[load_split(42)[1].index, "body_mass_g"] += 1.0
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


def test_train_with_a_new_batch_trains_on_it_unchecked(tmp_path):
    """A new batch is appended to the training rows as it is: level 1 validates nothing."""
    batch = simulate_batch(50, seed=1, corruption=Corruption(out_of_range_rate={"body_mass_g": 1}))
    batch.to_csv(tmp_path / "batch.csv", index=False)

    card = train(tmp_path / "model", seed=42, new_batch=tmp_path / "batch.csv")

    assert card.parameters["train_rows"] == 275 + 50
    assert card.parameters["new_batch"] == str(tmp_path / "batch.csv")
