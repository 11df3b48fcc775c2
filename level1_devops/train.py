"""Train: fit the recipe on the training split (plus any new batch), and record it as the model
file and its card: parameters, held-out metrics, and the provenance that lets anyone trace the
model back to its code and data.

    python -m level1_devops.train [--output-dir DIR] [--seed 42] [--new-batch CSV]

Writes `model.skops` and `card.json` to the artifacts folder, and beside them the model card a
person reads (`model_card.md`, `model_card.html`; `model_card.py`). It does not touch the model
the service reads: putting a new model into service is the separate hand-off step.
"""

import argparse
import platform
import subprocess
from pathlib import Path

import pandas as pd
import sklearn
import skops
from sklearn.pipeline import Pipeline

from level1_devops.data import features_and_target, held_out_rows, training_split
from level1_devops.evaluate import evaluate
from level1_devops.model import (
    ModelCard,
    build_pipeline,
    classifier_parameters,
    fingerprint,
    write_artifact,
)
from level1_devops.model_card import training_card, write_card
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


def training_rows(seed: int, new_batch: Path | None = None) -> pd.DataFrame:
    """The training split, plus `new_batch` appended as it is: level 1 validates no data."""
    training = training_split(seed)
    if new_batch is None:
        return training
    return pd.concat([training, pd.read_csv(new_batch)], ignore_index=True)


def fit(training: pd.DataFrame, seed: int) -> Pipeline:
    return build_pipeline(seed).fit(*features_and_target(training))


def record_training(
    output_dir: Path,
    pipeline: Pipeline,
    training: pd.DataFrame,
    held_out: pd.DataFrame,
    metrics: dict[str, float],
    seed: int,
    lineage: dict[str, str | None],
) -> ModelCard:
    """Write the model file and its card: parameters (the estimator's own included), metrics
    and provenance. `lineage` must hold `data_checksum` (of `training`), `git_commit`,
    `trained_at` and `new_batch`. The card adds the SHA-256 of the model file as written and
    its fingerprint, which the loader checks before serving it."""
    return write_artifact(
        pipeline,
        output_dir,
        fingerprint=fingerprint(pipeline),
        trained_at=lineage["trained_at"],
        git_commit=lineage["git_commit"],
        data_checksum=lineage["data_checksum"],
        parameters={
            "seed": seed,
            "test_size": TEST_SIZE,
            "training_rows": len(training),
            "held_out_rows": len(held_out),
            "new_batch": lineage["new_batch"],
            **classifier_parameters(pipeline),
        },
        metrics=metrics,
        library_versions={
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "skops": skops.__version__,
        },
    )


def train(output_dir: Path, seed: int, new_batch: Path | None = None) -> ModelCard:
    """Fit on the training split (plus `new_batch`), evaluate on the held-out rows, record."""
    training = training_rows(seed, new_batch)
    pipeline = fit(training, seed)
    held_out = held_out_rows(seed)
    metrics = evaluate(pipeline, held_out)
    lineage = {
        "data_checksum": data_checksum(training),  # exactly the rows fitted on, batch included
        "git_commit": git_commit(),
        "new_batch": str(new_batch) if new_batch else None,
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    card = record_training(output_dir, pipeline, training, held_out, metrics, seed, lineage)
    write_card(output_dir, training_card(card, pipeline, training, held_out))  # for a person
    return card


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
        f"level 1 train: accuracy {card.metrics['accuracy']:.3f}, macro F1 "
        f"{card.metrics['macro_f1']:.3f} on {card.parameters['held_out_rows']} held-out rows"
    )
    print(f"level 1 train: wrote {args.output_dir / 'model.skops'} and card.json")
    print(f"level 1 train: model card {args.output_dir / 'model_card.md'} (and .html)")
    print("level 1 train: not yet served; hand it off with `make level1-handoff`")


if __name__ == "__main__":
    main()
