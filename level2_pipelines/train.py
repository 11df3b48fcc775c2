"""Train: fit the recipe on the reference rows plus the new batch, and record it in the
pipeline's MLflow run: parameters, held-out metrics, the model (with its signature), a confusion
matrix, and the lineage tags that let anyone trace a served model back to its code and data.

The pipeline's `train` stage (pipeline.py) runs these: training_rows -> fit -> evaluate ->
record_training.
"""

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.artifacts
import mlflow.sklearn
import pandas as pd
import sklearn
import skops
from matplotlib.figure import Figure
from mlflow.models import infer_signature
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.pipeline import Pipeline

from level2_pipelines.data import features_and_target
from level2_pipelines.model import (
    build_pipeline,
    classifier_parameters,
    fingerprint,
    read_skops_file,
    types_to_trust,
)
from level2_pipelines.tracking import log_to_run
from shared.contract import CLASSES
from shared.data import COLUMNS


@dataclass(frozen=True)
class Candidate:
    run_id: str
    model_uri: str
    pipeline: Pipeline
    training_checksum: str
    metrics: dict[str, float]  # on the held-out rows
    lineage: dict[str, str]  # the tags on the run: commit, data, batch, flow run


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


def training_rows(reference: pd.DataFrame, batch: pd.DataFrame) -> pd.DataFrame:
    """The reference rows and the (validated) batch, in the shared column order and dtypes."""
    return pd.concat([reference, batch[list(COLUMNS)].astype(reference.dtypes)], ignore_index=True)


def fit(training: pd.DataFrame, seed: int) -> Pipeline:
    return build_pipeline(seed).fit(*features_and_target(training))


def confusion_figure(pipeline: Pipeline, held_out: pd.DataFrame) -> Figure:
    # A bare Figure needs no pyplot backend and holds no global state: safe in a worker.
    features, target = features_and_target(held_out)
    figure = Figure(figsize=(5, 4))
    ax = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(
        target, pipeline.predict(features), labels=list(CLASSES), cmap="Blues", ax=ax
    )
    ax.set_title("Confusion matrix, held-out penguins")
    return figure


def record_training(
    run_id: str,
    pipeline: Pipeline,
    training: pd.DataFrame,
    held_out: pd.DataFrame,
    metrics: dict[str, float],
    seed: int,
    lineage: dict[str, str],
) -> Candidate:
    """Record parameters (the estimator's own included), metrics, figure, model and lineage
    tags in the pipeline's MLflow run. `lineage` must hold `data_checksum`, the checksum of
    `training`. The lineage returned adds the SHA-256 of the model file as logged and its
    fingerprint, which the loader checks before serving it."""
    features, _ = features_and_target(training)
    trusted = types_to_trust(pipeline)  # before the run: a model that cannot load is not logged
    with mlflow.start_run(run_id=run_id):
        # Before the model: logging it copies the run's parameters and step-0 metrics onto
        # the model's own entry in the store.
        log_to_run(
            mlflow.MlflowClient(),
            run_id,
            params={
                "seed": seed,
                "training_rows": len(training),
                "held_out_rows": len(held_out),
                **classifier_parameters(pipeline),
            },
            metrics=metrics,
        )
        mlflow.log_figure(confusion_figure(pipeline, held_out), "confusion_matrix.png")
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            serialization_format="skops",
            skops_trusted_types=trusted,
            # No input example: MLflow would validate it by loading the model with its own
            # loader, which level 2 switches off (the smoke test serves the candidate
            # instead). The signature stays: `mlflow models serve` checks requests with it.
            signature=infer_signature(features, pipeline.predict_proba(features)),
            # Pinned here rather than inferred: inference loads the model in a subprocess.
            pip_requirements=[
                f"scikit-learn=={sklearn.__version__}",
                f"skops=={skops.__version__}",
            ],
            pyfunc_predict_fn="predict_proba",  # `mlflow models serve` answers probabilities
        )
        lineage = lineage | {
            "artifact_sha256": logged_sha256(info.model_uri),
            "fingerprint": fingerprint(pipeline),
        }
        mlflow.set_tags(lineage)
    return Candidate(
        run_id=run_id,
        model_uri=info.model_uri,
        pipeline=pipeline,
        training_checksum=lineage["data_checksum"],
        metrics=metrics,
        lineage=lineage,
    )


def logged_sha256(model_uri: str) -> str:
    """The SHA-256 of the model file as the artifact store holds it, read back from there."""
    with tempfile.TemporaryDirectory(prefix="level2-logged-") as scratch:
        model_dir = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=scratch))
        return read_skops_file(model_dir, model_uri)[1]
