"""Evaluate: score a model on the held-out rows, and judge a candidate against the champion.

The gate has three parts, each with its reason when it fails: an absolute floor on macro F1, no
regression beyond a tolerance against the current champion, and a floor on accuracy within
each island (a model can be good on average and fail one colony).
"""

from dataclasses import dataclass, field

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline

from level2_pipelines.data import features_and_target
from shared.contract import CATEGORIES, CLASSES


def evaluate(pipeline: Pipeline, frame: pd.DataFrame) -> dict[str, float]:
    """Flat metrics, one number per name: accuracy, macro F1, F1 per species and accuracy per
    island."""
    features, target = features_and_target(frame)
    predicted = pd.Series(pipeline.predict(features), index=frame.index)
    per_class = f1_score(target, predicted, labels=list(CLASSES), average=None)
    metrics = {
        "accuracy": float(accuracy_score(target, predicted)),
        "macro_f1": float(f1_score(target, predicted, average="macro")),
        **{f"f1_{c}": float(f) for c, f in zip(CLASSES, per_class, strict=True)},
    }
    for island in CATEGORIES["island"]:
        rows = frame["island"] == island
        metrics[f"accuracy_{island}"] = float(accuracy_score(target[rows], predicted[rows]))
    return {name: round(value, 4) for name, value in metrics.items()}


@dataclass
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # why it failed; empty when it passed
    judged_against: str | None = None  # the champion's registry version, None if there was none


def judge(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    *,
    macro_f1_floor: float,
    regression_tolerance: float,
    island_accuracy_floor: float,
) -> Verdict:
    """Apply the gate to a candidate's metrics (and the champion's, if there is one)."""
    reasons = []
    if candidate["macro_f1"] < macro_f1_floor:
        reasons.append(f"macro F1 {candidate['macro_f1']:.3f} is below the floor {macro_f1_floor}")
    if champion is not None and candidate["macro_f1"] < champion["macro_f1"] - regression_tolerance:
        reasons.append(
            f"macro F1 {candidate['macro_f1']:.3f} regresses from the champion's "
            f"{champion['macro_f1']:.3f} by more than {regression_tolerance}"
        )
    for island in CATEGORIES["island"]:
        accuracy = candidate[f"accuracy_{island}"]
        if accuracy < island_accuracy_floor:
            reasons.append(
                f"accuracy on {island} {accuracy:.3f} is below the floor {island_accuracy_floor}"
            )
    return Verdict(passed=not reasons, reasons=reasons)
