"""Data preparation: the model sees the contract's features, in order, and the species."""

from level1_devops.data import features_and_target, held_out_rows, training_split
from shared.contract import FEATURES, TARGET


def test_features_and_target_follow_the_contract(held_out):
    """Features come in contract order; the target is the species column."""
    features, target = features_and_target(held_out)

    assert list(features.columns) == list(FEATURES)
    assert target.name == TARGET
    assert len(features) == len(target) == len(held_out)


def test_training_split_and_held_out_rows_are_the_shared_split():
    """Two calls give the same rows, and no row is both trained on and held out."""
    training, held_out = training_split(42), held_out_rows(42)

    assert training.index.equals(training_split(42).index)
    assert held_out.index.equals(held_out_rows(42).index)
    assert training.index.intersection(held_out.index).empty
