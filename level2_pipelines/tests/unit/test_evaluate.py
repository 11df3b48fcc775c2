"""The promotion gate: a floor, no regression against the champion, every island served."""

from level2_pipelines.evaluate import judge

GOOD = {
    "macro_f1": 0.98,
    "accuracy_Biscoe": 0.97,
    "accuracy_Dream": 0.98,
    "accuracy_Torgersen": 1.0,
}
GATE = {"macro_f1_floor": 0.9, "regression_tolerance": 0.02, "island_accuracy_floor": 0.85}


def test_judge_passes_a_good_first_model():
    """With no champion yet, a model above every floor passes with no reasons."""
    verdict = judge(GOOD, None, **GATE)

    assert verdict.passed
    assert verdict.reasons == []


def test_judge_rejects_below_the_floor():
    """Macro F1 below the floor is rejected, saying so."""
    verdict = judge({**GOOD, "macro_f1": 0.8}, None, **GATE)

    assert not verdict.passed
    assert "below the floor" in verdict.reasons[0]


def test_judge_rejects_a_regression_beyond_tolerance():
    """0.05 below the champion is a regression, even above the floor."""
    verdict = judge({**GOOD, "macro_f1": 0.93}, {**GOOD, "macro_f1": 0.98}, **GATE)

    assert not verdict.passed
    assert "regresses" in verdict.reasons[0]


def test_judge_tolerates_a_small_dip():
    """0.01 below the champion is within tolerance."""
    assert judge({**GOOD, "macro_f1": 0.97}, GOOD, **GATE).passed


def test_judge_rejects_one_failing_island():
    """Good on average but poor on Dream is rejected, naming Dream."""
    verdict = judge({**GOOD, "accuracy_Dream": 0.7}, None, **GATE)

    assert not verdict.passed
    assert "Dream" in verdict.reasons[0]
