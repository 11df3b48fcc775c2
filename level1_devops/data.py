"""Data: the shared penguins, split the shared way, cut into features and target.

The shared test split is never trained on: every model is judged on those held-out rows.
"""

import pandas as pd

from shared.contract import FEATURES, TARGET
from shared.data import load_penguins, split_train_test


def training_split(seed: int) -> pd.DataFrame:
    """The shared training split: every row a model may learn from."""
    return split_train_test(load_penguins(), seed=seed)[0]


def held_out_rows(seed: int) -> pd.DataFrame:
    """The shared test split: never trained on, the rows every model is judged on."""
    return split_train_test(load_penguins(), seed=seed)[1]


def features_and_target(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The model's inputs in contract order, and the species."""
    return frame[list(FEATURES)], frame[TARGET]
