"""Evaluate: score a model on the held-out rows.

python -m level1_devops.evaluate            # the model the service reads (after hand-off)
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline

from level1_devops.data import features_and_target, held_out_rows
from level1_devops.model import ModelLoadError, load_artifact
from level1_devops.settings import Settings
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


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description="Evaluate a level 1 model on held-out rows.")
    parser.add_argument("--model-dir", type=Path, default=settings.serving_dir)
    args = parser.parse_args()
    try:
        pipeline, card = load_artifact(args.model_dir)
    except ModelLoadError as error:
        sys.exit(f"level 1 evaluate: {error}")
    held_out = held_out_rows(card.parameters["seed"])
    print(json.dumps({"version": card.version, **evaluate(pipeline, held_out)}, indent=2))


if __name__ == "__main__":
    main()
