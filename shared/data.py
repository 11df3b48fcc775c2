"""The Palmer penguins rows, loaded with explicit dtypes and a checksum, and the two splits.

The CSV ships inside the `palmerpenguins` package, so nothing is downloaded. Its SHA-256 is
pinned here: if the file is missing or its bytes change (another package version, a hand edit),
loading stops with an error instead of quietly training every level on different data.
"""

import hashlib
from importlib.resources import files
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from shared.contract import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TARGET

PENGUINS_SHA256 = "f204db2c753b0937caac3cb35258562c14f073e4bbc76be24b4c51ce22767a93"
N_ROWS = 344

# pandas 3 reads text as "str" (NaN for missing): the same dtype a JSON payload turns into,
# so training and serving see identical columns.
DTYPES: dict[str, str] = {
    TARGET: "str",
    **dict.fromkeys(CATEGORICAL_FEATURES, "str"),
    **dict.fromkeys(NUMERIC_FEATURES, "float64"),
    "year": "int64",
}
COLUMNS = [TARGET, "island", *NUMERIC_FEATURES, "sex", "year"]

SEED = 42
TEST_SIZE = 0.2
TRAIN_YEARS = (2007, 2008)
NEW_YEAR = 2009


class DataError(RuntimeError):
    """The penguins data is missing, altered, or not shaped as the contract says."""


def default_csv_path() -> Path:
    """The CSV inside the installed palmerpenguins package."""
    return Path(str(files("palmerpenguins") / "data" / "penguins.csv"))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_penguins(path: Path | str | None = None) -> pd.DataFrame:
    """All 344 rows with explicit dtypes, after checking the file's SHA-256."""
    path = Path(path) if path is not None else default_csv_path()
    if not path.is_file():
        raise DataError(
            f"penguins data not found at {path}: install the pinned palmerpenguins "
            "(`make setup`) or pass the path of the original penguins.csv"
        )
    actual = file_sha256(path)
    if actual != PENGUINS_SHA256:
        raise DataError(
            f"penguins data at {path} was altered: SHA-256 is {actual}, expected "
            f"{PENGUINS_SHA256}; every level must train on the same bytes"
        )
    return pd.read_csv(path, dtype=DTYPES, na_values=["NA"], keep_default_na=False)[COLUMNS]


def data_checksum(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's content (values, columns, order): the lineage id of a training set."""
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    header = "\x1f".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items())
    return hashlib.sha256(header.encode() + row_hashes.tobytes()).hexdigest()


def split_train_test(
    frame: pd.DataFrame, test_size: float = TEST_SIZE, seed: int = SEED
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fixed, seeded split, stratified by species so each class keeps its share."""
    train, test = train_test_split(
        frame, test_size=test_size, random_state=seed, stratify=frame[TARGET]
    )
    return train, test


def split_by_year(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """2007-2008 for training, 2009 as the batch that 'arrives later'."""
    return frame[frame["year"].isin(TRAIN_YEARS)], frame[frame["year"] == NEW_YEAR]
