"""The loader and the two splits: the data every level trains on."""

import pandas as pd
import pytest

from shared.contract import CLASSES, TARGET
from shared.data import (
    N_ROWS,
    DataError,
    data_checksum,
    default_csv_path,
    load_penguins,
    split_by_year,
    split_train_test,
)


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return load_penguins()


def test_load_penguins_has_all_rows_and_explicit_dtypes(penguins):
    """The loader returns the 344 real rows with the dtypes it declares."""
    expected = {
        "species": "str",
        "island": "str",
        "bill_length_mm": "float64",
        "bill_depth_mm": "float64",
        "flipper_length_mm": "float64",
        "body_mass_g": "float64",
        "sex": "str",
        "year": "int64",
    }

    dtypes = penguins.dtypes.astype(str).to_dict()

    assert len(penguins) == N_ROWS
    assert dtypes == expected


def test_load_penguins_keeps_real_missing_values(penguins):
    """Missing values stay missing (two unmeasured birds, eleven without sex), not dropped."""
    missing = penguins.isna().sum()

    assert missing["bill_length_mm"] == 2
    assert missing["sex"] == 11
    assert set(penguins[TARGET]) == set(CLASSES)


def test_load_penguins_missing_file_names_the_path(tmp_path):
    """A missing file is a DataError naming the path, not a pandas traceback."""
    path = tmp_path / "nowhere.csv"

    with pytest.raises(DataError, match=r"not found at .*nowhere\.csv"):
        load_penguins(path)


def test_load_penguins_tampered_file_is_refused(tmp_path):
    """Changing one value in the CSV fails the checksum with expected and actual hashes."""
    original = default_csv_path().read_text()
    tampered = tmp_path / "penguins.csv"
    tampered.write_text(original.replace("39.1,18.7,181,3750", "39.1,18.7,181,3751", 1))

    with pytest.raises(DataError, match=r"was altered: SHA-256 is [0-9a-f]{64}, expected"):
        load_penguins(tampered)


def test_load_penguins_untouched_copy_loads(tmp_path):
    """A byte-identical copy elsewhere loads: the check is on content, not location."""
    copy = tmp_path / "penguins.csv"
    copy.write_bytes(default_csv_path().read_bytes())

    assert len(load_penguins(copy)) == N_ROWS


def test_data_checksum_changes_with_one_value(penguins):
    """The frame checksum used for lineage changes when a single value changes."""
    changed = penguins.copy()
    changed.loc[changed.index[0], "body_mass_g"] += 1

    assert data_checksum(penguins) == data_checksum(penguins.copy())
    assert data_checksum(penguins) != data_checksum(changed)


def test_split_train_test_is_deterministic(penguins):
    """The same seed gives the same rows on every call."""
    train_a, test_a = split_train_test(penguins)
    train_b, test_b = split_train_test(penguins)

    assert train_a.index.equals(train_b.index)
    assert test_a.index.equals(test_b.index)


def test_split_train_test_is_disjoint_and_complete(penguins):
    """Every row lands in exactly one side."""
    train, test = split_train_test(penguins)

    assert not set(train.index) & set(test.index)
    assert len(train) + len(test) == N_ROWS


def test_split_train_test_is_stratified(penguins):
    """Each species keeps its share of the data on both sides, within one row."""
    train, test = split_train_test(penguins)
    overall = penguins[TARGET].value_counts(normalize=True)

    for side in (train, test):
        counts = side[TARGET].value_counts()
        assert (counts - overall * len(side)).abs().max() <= 1.0


def test_split_train_test_other_seed_differs(penguins):
    """A different seed draws a different test set (the seed is really used)."""
    _, test_a = split_train_test(penguins, seed=42)
    _, test_b = split_train_test(penguins, seed=7)

    assert not test_a.index.equals(test_b.index)


def test_split_by_year_puts_2009_aside(penguins):
    """Training years are 2007-2008; the 2009 birds are the batch that arrives later."""
    old, new = split_by_year(penguins)

    assert set(old["year"]) == {2007, 2008}
    assert set(new["year"]) == {2009}
    assert len(old) + len(new) == N_ROWS
