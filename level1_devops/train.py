"""Train the model, seeded and reproducible, and write it with its model card.

    python -m level1_devops.train [--output-dir DIR] [--seed 42] [--new-batch CSV]

Writes `model.skops` and `card.json` to the artifacts folder. It does not touch the model the
service reads: putting a new model into service is the separate hand-off step.
"""

import argparse
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sklearn
import skops

from level1_devops.data import features_and_target, load_split
from level1_devops.evaluate import evaluate
from level1_devops.model import ModelCard, build_pipeline, write_artifact
from level1_devops.predict import Predictor
from level1_devops.settings import Settings
from shared.data import TEST_SIZE, data_checksum


def git_commit() -> str:
    """The commit the code came from, marked `-dirty` if files were changed; or `unknown`."""
    here = Path(__file__).parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def train(output_dir: Path, seed: int, new_batch: Path | None = None) -> ModelCard:
    """Fit the recipe on the training split (plus `new_batch`, unchecked: level 1 has no data
    validation), evaluate on the test split, write model + card."""
    train_rows, test_rows = load_split(seed)
    if new_batch is not None:
        train_rows = pd.concat([train_rows, pd.read_csv(new_batch)], ignore_index=True)
    pipeline = build_pipeline(seed).fit(*features_and_target(train_rows))
    metrics = evaluate(pipeline, test_rows)
    classifier = pipeline.named_steps["classifier"]

    return write_artifact(
        pipeline,
        output_dir,
        fingerprint=Predictor.from_pipeline(pipeline).fingerprint(),
        trained_at=datetime.now(UTC),
        git_commit=git_commit(),
        data_checksum=data_checksum(train_rows),  # exactly the rows fitted on, batch included
        parameters={
            "seed": seed,
            "test_size": TEST_SIZE,
            "train_rows": len(train_rows),
            "new_batch": str(new_batch) if new_batch else None,
            "test_rows": len(test_rows),
            "classifier": type(classifier).__name__,
            "C": classifier.C,
            "max_iter": classifier.max_iter,
        },
        metrics=metrics,
        library_versions={
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "skops": skops.__version__,
        },
    )


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description="Train the level 1 model and write its card.")
    parser.add_argument("--output-dir", type=Path, default=settings.artifacts_dir)
    parser.add_argument("--seed", type=int, default=settings.seed)
    parser.add_argument("--new-batch", type=Path, help="a CSV of new birds to train on as well")
    args = parser.parse_args()
    card = train(args.output_dir, args.seed, args.new_batch)
    print(f"level 1 train: model {card.version}, fingerprint {card.fingerprint[:12]}")
    print(
        f"level 1 train: accuracy {card.metrics['accuracy']:.3f}, "
        f"macro F1 {card.metrics['macro_f1']:.3f} on {card.parameters['test_rows']} held-out rows"
    )
    print(f"level 1 train: wrote {args.output_dir / 'model.skops'} and card.json")
    print("level 1 train: not yet served; hand it off with `make level1-handoff`")


if __name__ == "__main__":
    main()
