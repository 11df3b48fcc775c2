"""Evaluate a model on the held-out rows: accuracy, macro F1 and F1 per species.

python -m level1_devops.evaluate            # the model the service reads (after hand-off)
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline

from level1_devops.data import features_and_target, load_split
from level1_devops.model import ModelLoadError, load_artifact
from level1_devops.settings import Settings
from shared.contract import CLASSES


def evaluate(pipeline: Pipeline, frame: pd.DataFrame) -> dict[str, float | dict[str, float]]:
    features, target = features_and_target(frame)
    predicted = pipeline.predict(features)
    per_class = f1_score(target, predicted, labels=list(CLASSES), average=None)
    return {
        "accuracy": round(float(accuracy_score(target, predicted)), 4),
        "macro_f1": round(float(f1_score(target, predicted, average="macro")), 4),
        "f1_per_class": {c: round(float(f), 4) for c, f in zip(CLASSES, per_class, strict=True)},
    }


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description="Evaluate a level 1 model on held-out rows.")
    parser.add_argument("--model-dir", type=Path, default=settings.serving_dir)
    args = parser.parse_args()
    try:
        pipeline, card = load_artifact(args.model_dir)
    except ModelLoadError as error:
        sys.exit(f"level 1 evaluate: {error}")
    _, test = load_split(card.parameters["seed"])
    print(json.dumps({"version": card.version, **evaluate(pipeline, test)}, indent=2))


if __name__ == "__main__":
    main()
