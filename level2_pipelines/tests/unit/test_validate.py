"""The data contract in GX: real new data passes; each kind of damage is caught and named."""

import pytest

from level2_pipelines.data import reference_and_new_rows
from level2_pipelines.validate import validate_frame
from shared.simulate import Corruption, Drift, simulate_batch


@pytest.fixture(scope="module")
def reference():
    return reference_and_new_rows(42)[0]


def run(frame, reference, tmp_path):
    return validate_frame(frame, reference, 20, tmp_path / "docs", "test-batch")


def test_the_2009_birds_pass(reference, tmp_path):
    """The real 2009 birds meet every expectation, and the data docs are written."""
    new_rows = reference_and_new_rows(42)[1]

    report = run(new_rows, reference, tmp_path)

    assert report.success, report.failed
    assert report.evaluated >= 25
    assert report.docs_index is not None and report.docs_index.exists()


def test_a_simulated_clean_batch_passes(reference, tmp_path):
    """500 simulated birds without drift or corruption pass."""
    assert run(simulate_batch(500, seed=1), reference, tmp_path).success


@pytest.mark.parametrize(
    ("corruption", "expected"),
    [
        (Corruption(rename={"island": "Island"}), "expect_table_columns_to_match_set"),
        (Corruption(drop=("sex",)), "expect_table_columns_to_match_set"),
        (Corruption(null_rate={"bill_depth_mm": 0.3}), "not_be_null on bill_depth_mm"),
        (Corruption(wrong_type_rate={"body_mass_g": 0.05}), "in_type_list on body_mass_g"),
        (Corruption(out_of_range_rate={"flipper_length_mm": 0.02}), "between on flipper_length_mm"),
    ],
    ids=["renamed", "missing", "nulls", "wrong_type", "out_of_range"],
)
def test_corruption_is_caught_and_named(reference, tmp_path, corruption, expected):
    """Each corruption the simulator makes fails validation, naming the expectation it broke."""
    batch = simulate_batch(500, seed=2, corruption=corruption)

    report = run(batch, reference, tmp_path)

    assert not report.success
    assert any(expected in line for line in report.failed), report.failed


def test_drift_in_mass_is_caught(reference, tmp_path):
    """Birds 500 g heavier than the reference fail the mean and median checks on body mass."""
    batch = simulate_batch(500, seed=3, drift=Drift(mean_shift={"body_mass_g": 500.0}))

    report = run(batch, reference, tmp_path)

    failed = "\n".join(report.failed)
    assert "mean_to_be_between on body_mass_g" in failed
    assert "median_to_be_between on body_mass_g" in failed


def test_a_tiny_batch_is_refused(reference, tmp_path):
    """Five birds are too few to train on: the row count expectation fails."""
    report = run(simulate_batch(5, seed=4), reference, tmp_path)

    assert any("row_count" in line for line in report.failed)


def test_an_unknown_island_is_refused(reference, tmp_path):
    """A colony never surveyed is a category the model has not seen: refused, named."""
    batch = simulate_batch(200, seed=5)
    batch.loc[batch.index[:10], "island"] = "Anvers"

    report = run(batch, reference, tmp_path)

    assert any("in_set on island" in line for line in report.failed)


def test_a_drift_the_monitor_confirmed_is_learnable(reference, tmp_path):
    """The same heavier birds pass once the monitor confirmed the drift in body mass: the
    drift bounds of that column defer to its verdict."""
    batch = simulate_batch(500, seed=3, drift=Drift(mean_shift={"body_mass_g": 500.0}))

    report = validate_frame(batch, reference, 20, tmp_path, "drifted", deferred={"body_mass_g"})

    assert report.success, report.failed


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda f: f.assign(body_mass_g=f["body_mass_g"] / 1000), "between on body_mass_g"),
        (lambda f: f.assign(island=f["island"].str.lower()), "in_set on island"),
        (
            lambda f: f.assign(body_mass_g=f["body_mass_g"].mask(f.index % 3 == 0)),
            "not_be_null on body_mass_g",
        ),
    ],
    ids=["kilograms", "lowercase islands", "a third missing"],
)
def test_a_broken_export_is_refused_even_where_drift_is_deferred(
    reference, tmp_path, damage, expected
):
    """Deferring a column's drift bounds keeps every contract check: grams written as
    kilograms, lowercase islands or a third of the column missing are still refused."""
    batch = damage(simulate_batch(500, seed=3, drift=Drift(mean_shift={"body_mass_g": 500.0})))

    report = validate_frame(
        batch, reference, 20, tmp_path, "broken", deferred={"body_mass_g", "island"}
    )

    assert not report.success
    assert expected in "\n".join(report.failed)
