"""Data preparation: the model sees the contract's features, in order, and the species."""

from level1_devops.data import features_and_target, load_split
from shared.contract import FEATURES, TARGET


def test_features_and_target_follow_the_contract(test_rows):
    """Features come in contract order; the target is the species column."""
    features, target = features_and_target(test_rows)

    assert list(features.columns) == list(FEATURES)
    assert target.name == TARGET
    assert len(features) == len(target) == len(test_rows)


def test_load_split_is_the_shared_split():
    """Two calls give the same rows."""
    train_a, test_a = load_split(42)
    train_b, test_b = load_split(42)

    assert train_a.index.equals(train_b.index)
    assert test_a.index.equals(test_b.index)
