"""The batch simulator: deterministic, faithful to the real data, and its knobs do what they say."""

import numpy as np
import pandas as pd
import pytest

from shared.contract import CATEGORIES, CLASSES, NUMERIC_FEATURES, RANGES, TARGET
from shared.data import load_penguins
from shared.simulate import WRONG_TYPE_TOKEN, Corruption, Drift, simulate_batch

N = 20_000


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    return simulate_batch(N, seed=3)


def test_simulate_batch_same_seed_same_rows():
    """Two batches with the same seed are identical, value for value."""
    first = simulate_batch(500, seed=11)
    second = simulate_batch(500, seed=11)

    pd.testing.assert_frame_equal(first, second)


def test_simulate_batch_other_seed_other_rows():
    """A different seed gives different birds."""
    first = simulate_batch(500, seed=11)
    second = simulate_batch(500, seed=12)

    assert not first.equals(second)


def test_simulate_batch_matches_real_columns_and_dtypes(batch):
    """A simulated batch has the real data's columns and dtypes, so it can stand in for it."""
    real = load_penguins()

    assert list(batch.columns) == list(real.columns)
    assert batch.dtypes.astype(str).equals(real.dtypes.astype(str))


def test_simulate_batch_follows_species_means(batch):
    """Per-species means of the simulated rows are within 2% of the real ones."""
    real = load_penguins()

    for species in CLASSES:
        simulated = batch.loc[batch[TARGET] == species, list(NUMERIC_FEATURES)].mean()
        measured = real.loc[real[TARGET] == species, list(NUMERIC_FEATURES)].mean()
        assert ((simulated - measured).abs() / measured).max() < 0.02, species


def test_simulate_batch_keeps_islands_of_each_species(batch):
    """Without drift, Gentoos stay on Biscoe and Chinstraps on Dream, as in the survey."""
    assert set(batch.loc[batch[TARGET] == "Gentoo", "island"]) == {"Biscoe"}
    assert set(batch.loc[batch[TARGET] == "Chinstrap", "island"]) == {"Dream"}


def test_drift_mean_shift_moves_only_the_named_mean_by_the_amount(batch):
    """Shifting body mass by 400 g moves its mean by 400 g and leaves other columns untouched."""
    drifted = simulate_batch(N, seed=3, drift=Drift(mean_shift={"body_mass_g": 400.0}))

    shift = drifted["body_mass_g"].mean() - batch["body_mass_g"].mean()

    assert shift == pytest.approx(400.0, abs=0.5)
    others = [c for c in batch.columns if c != "body_mass_g"]
    pd.testing.assert_frame_equal(drifted[others], batch[others])


def test_drift_negative_shift_on_bill_moves_it_down(batch):
    """A shift of -3 mm on bill length lowers the mean by 3 mm (within rounding to 0.1 mm)."""
    drifted = simulate_batch(N, seed=3, drift=Drift(mean_shift={"bill_length_mm": -3.0}))

    shift = drifted["bill_length_mm"].mean() - batch["bill_length_mm"].mean()

    assert shift == pytest.approx(-3.0, abs=0.05)


def test_drift_island_mix_sets_island_shares():
    """An island mix of 70% Torgersen, 30% Dream yields those shares and no Biscoe."""
    mix = {"Torgersen": 0.7, "Dream": 0.3}

    shares = simulate_batch(N, seed=5, drift=Drift(island_mix=mix))["island"].value_counts(
        normalize=True
    )

    assert shares["Torgersen"] == pytest.approx(0.7, abs=0.02)
    assert shares["Dream"] == pytest.approx(0.3, abs=0.02)
    assert "Biscoe" not in shares


def test_drift_species_mix_sets_species_shares():
    """A species mix of only Chinstraps yields only Chinstraps."""
    drifted = simulate_batch(1000, seed=5, drift=Drift(species_mix={"Chinstrap": 1.0}))

    assert set(drifted[TARGET]) == {"Chinstrap"}


def test_corruption_null_rate_nulls_that_share_of_the_column(batch):
    """A 10% null rate on flipper length empties about 10% of it and no other column."""
    corrupted = simulate_batch(
        N, seed=3, corruption=Corruption(null_rate={"flipper_length_mm": 0.1})
    )

    assert corrupted["flipper_length_mm"].isna().mean() == pytest.approx(0.1, abs=0.01)
    others = [c for c in batch.columns if c != "flipper_length_mm"]
    pd.testing.assert_frame_equal(corrupted[others], batch[others])


def test_corruption_out_of_range_puts_values_outside_the_contract():
    """A 5% out-of-range rate puts about 5% of body masses outside the plausible range."""
    low, high = RANGES["body_mass_g"]
    corrupted = simulate_batch(
        N, seed=3, corruption=Corruption(out_of_range_rate={"body_mass_g": 0.05})
    )

    outside = ~corrupted["body_mass_g"].between(low, high)

    assert outside.mean() == pytest.approx(0.05, abs=0.01)


def test_corruption_wrong_type_turns_numbers_into_text():
    """A 20% wrong-type rate makes the column text, with that share not parseable as numbers."""
    corrupted = simulate_batch(
        N, seed=3, corruption=Corruption(wrong_type_rate={"bill_depth_mm": 0.2})
    )

    column = corrupted["bill_depth_mm"]
    unparseable = pd.to_numeric(column, errors="coerce").isna()

    assert not pd.api.types.is_numeric_dtype(column)
    assert (column == WRONG_TYPE_TOKEN).mean() == pytest.approx(0.2, abs=0.01)
    assert unparseable.mean() == pytest.approx(0.2, abs=0.01)


def test_corruption_rename_and_drop_change_the_columns():
    """A renamed column appears under its new name only; a dropped one is gone."""
    corrupted = simulate_batch(
        100, seed=3, corruption=Corruption(rename={"island": "Island"}, drop=("sex",))
    )

    assert "Island" in corrupted.columns
    assert "island" not in corrupted.columns
    assert "sex" not in corrupted.columns


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drift": Drift(mean_shift={"wingspan": 1.0})}, "wingspan"),
        ({"drift": Drift(island_mix={"Atlantis": 1.0})}, "Atlantis"),
        ({"corruption": Corruption(null_rate={"bill_length_mm": 1.5})}, "within \\[0, 1\\]"),
        ({"corruption": Corruption(drop=("colour",))}, "colour"),
    ],
)
def test_simulate_batch_bad_knob_names_the_problem(kwargs, message):
    """A knob naming an unknown column or an impossible rate is refused, saying which."""
    with pytest.raises(ValueError, match=message):
        simulate_batch(10, seed=0, **kwargs)


def test_simulate_batch_categories_stay_in_contract(batch):
    """Without corruption every category is one the contract allows (or a missing sex)."""
    assert set(batch["island"]) <= set(CATEGORIES["island"])
    assert set(batch["sex"].dropna()) <= set(CATEGORIES["sex"])
    assert np.isfinite(batch[list(NUMERIC_FEATURES)].to_numpy()).all()
