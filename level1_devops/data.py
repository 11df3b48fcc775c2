"""Data preparation: the shared penguins, split the shared way, cut into features and target."""

import pandas as pd

from shared.contract import FEATURES, TARGET
from shared.data import load_penguins, split_train_test


def features_and_target(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The model's inputs in contract order, and the species."""
    return frame[list(FEATURES)], frame[TARGET]


def load_split(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shared split: train and test frames."""
    return split_train_test(load_penguins(), seed=seed)
