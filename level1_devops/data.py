"""Data preparation: the shared penguins, split the shared way, cut into features and target."""

import pandas as pd

from shared.contract import FEATURES, TARGET
from shared.data import data_checksum, load_penguins, split_train_test


def features_and_target(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The model's inputs in contract order, and the species."""
    return frame[list(FEATURES)], frame[TARGET]


def load_split(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Train and test frames, and the checksum of the full data they come from."""
    penguins = load_penguins()
    train, test = split_train_test(penguins, seed=seed)
    return train, test, data_checksum(penguins)
