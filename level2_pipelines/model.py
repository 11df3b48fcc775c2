"""The model recipe (the same as levels 0 and 1) and how it is stored: as an MLflow model.

Another estimator is a change in one place, `build_classifier` (and, if its file needs them,
`TRUSTED_TYPES` beside it); the rest of the level follows.

The file inside is skops, as at level 1, and no other format is ever loaded. A registry version
is served only if its MLmodel says skops with no types trusted beyond `TRUSTED_TYPES`, its file
has the SHA-256 recorded when it was registered, and the model has the recorded fingerprint.
The file is read with skops directly, trusting `TRUSTED_TYPES` whatever the metadata says;
MLflow's own loaders are switched off (`tracking.connect`), a second fence.
"""

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.artifacts
import skops.io as sio
from mlflow import MlflowClient
from mlflow.models import Model
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from level2_pipelines.predict import serving_predictor
from shared.contract import CATEGORICAL_FEATURES, NUMERIC_FEATURES

# --- Swap the estimator here: `build_classifier` is the one place to change. ------------------
# Any scikit-learn classifier with `predict_proba` then trains, is evaluated and recorded with
# its own parameters, and is served: the service keeps its fast numpy path for the recipe and
# answers with the pipeline's own `predict_proba` for anything else (see predict.py).
# Its skops file may hold types skops does not trust by default; saving it stops and names
# them. Add those, and only those, to TRUSTED_TYPES below. `skops.io.get_untrusted_types`
# (scikit-learn 1.9, skops 0.16) finds: RandomForestClassifier, ExtraTreesClassifier and
# GradientBoostingClassifier need "sklearn.tree._tree.Tree"; HistGradientBoostingClassifier
# needs "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor".


def build_classifier(seed: int) -> ClassifierMixin:
    """The estimator at the end of the pipeline, e.g. RandomForestClassifier(random_state=seed)."""
    return LogisticRegression(max_iter=1000, random_state=seed)


# skops trusts scikit-learn's own estimators by default; these are the remaining types the
# model file may hold (the recipe's holds only numpy.dtype). Anything else is refused.
TRUSTED_TYPES = ["numpy.dtype"]


def build_pipeline(seed: int) -> Pipeline:
    """Impute and scale the measurements, impute and one-hot the categories, then classify."""
    numeric = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
        ]
    )
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    preprocess = ColumnTransformer(
        [
            ("numeric", numeric, list(NUMERIC_FEATURES)),
            ("categorical", categorical, list(CATEGORICAL_FEATURES)),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("classifier", build_classifier(seed))])


def classifier_parameters(pipeline: Pipeline) -> dict[str, Any]:
    """The estimator's class and parameters, read from the estimator itself, named as
    `pipeline.get_params()` names them (`classifier__C`); a value that is not a plain scalar
    is written as its repr."""
    name, classifier = pipeline.steps[-1]
    parameters: dict[str, Any] = {name: type(classifier).__name__}
    for key, value in sorted(classifier.get_params(deep=False).items()):
        plain = value is None or isinstance(value, str | int | float | bool)
        parameters[f"{name}__{key}"] = value if plain else repr(value)
    return parameters


def fingerprint(pipeline: Pipeline) -> str:
    """What training records and loading checks: the SHA-256 of the fitted numbers for the
    recipe, of the probabilities on a fixed probe batch for any other pipeline (predict.py)."""
    return serving_predictor(pipeline).fingerprint()


def types_to_trust(pipeline: Pipeline) -> list[str]:
    """The types beyond scikit-learn's own that the pipeline's skops file holds, all of them in
    TRUSTED_TYPES; ValueError naming any that is not, and where to add it."""
    needed = sio.get_untrusted_types(data=sio.dumps(pipeline))
    missing = sorted(set(needed) - set(TRUSTED_TYPES))
    if missing:
        raise ValueError(
            f"the {type(pipeline.steps[-1][1]).__name__} model file holds types skops does not "
            f"trust by default: {missing}; if your estimator needs them, add them to "
            f"TRUSTED_TYPES in {__name__.replace('.', '/')}.py"
        )
    return sorted(needed)


class ModelLoadError(RuntimeError):
    """A registry version cannot be served: the message names it and the problem."""


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Lineage:
    """Where a registered model came from: enough to trace it back to code and data."""

    name: str
    version: str
    run_id: str
    git_commit: str
    data_checksum: str
    batch_id: str
    flow_run_id: str
    trained_at: str
    metrics: dict[str, float]


def read_skops_file(model_dir: Path, label: str) -> tuple[Path, str]:
    """The model file in a downloaded MLflow model folder, and its SHA-256, if it is a skops
    file trusting no more than TRUSTED_TYPES; ModelLoadError naming `label` otherwise."""
    if not (model_dir / "MLmodel").is_file():
        raise ModelLoadError(f"{label}: no MLmodel file; not an MLflow model")
    flavor = Model.load(model_dir / "MLmodel").flavors.get("sklearn")
    if flavor is None:
        raise ModelLoadError(f"{label}: not a scikit-learn model; only skops files are loaded")
    form = flavor.get("serialization_format", "pickle")
    if form != "skops":
        raise ModelLoadError(
            f"{label}: saved with {form}, which runs code when loaded; only skops files are loaded"
        )
    declared = set(flavor.get("skops_trusted_types") or [])
    if not declared <= set(TRUSTED_TYPES):
        raise ModelLoadError(
            f"{label}: asks to trust {sorted(declared - set(TRUSTED_TYPES))}; "
            f"this service trusts only {TRUSTED_TYPES}"
        )
    path = (model_dir / flavor["pickled_model"]).resolve()
    if path.parent != model_dir.resolve() or not path.is_file():
        raise ModelLoadError(f"{label}: its model file {flavor['pickled_model']!r} is missing")
    return path, sha256_file(path)


def load_version(client: MlflowClient, name: str, version: str) -> tuple[Pipeline, Lineage]:
    """Load registry version `name`/`version` with its lineage, refusing any file that is not
    skops, not the one registered (SHA-256) or not the model registered (fingerprint)."""
    label = f"{name} v{version}"
    try:
        model_version = client.get_model_version(name, version)
        tags = model_version.tags
        with tempfile.TemporaryDirectory(prefix="level2-model-") as scratch:
            model_dir = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{version}", dst_path=scratch
                )
            )
            path, digest = read_skops_file(model_dir, label)
            if digest != tags.get("artifact_sha256"):
                raise ModelLoadError(
                    f"{label}: its file's SHA-256 is {digest}, the registry recorded "
                    f"{tags.get('artifact_sha256', 'none')}; the file was changed or replaced"
                )
            pipeline = sio.load(path, trusted=TRUSTED_TYPES)
        run = client.get_run(model_version.run_id)
    except ModelLoadError:
        raise
    except Exception as error:  # the registry, the store or the file: all mean "cannot serve"
        raise ModelLoadError(
            f"{label} could not be loaded ({type(error).__name__}: {error})"
        ) from None
    try:
        actual = fingerprint(pipeline)
    except ValueError as error:
        raise ModelLoadError(f"{label} cannot be served: {error}") from None
    if actual != tags.get("fingerprint"):
        raise ModelLoadError(
            f"{label} is not the model the registry recorded: its fingerprint is {actual}, "
            f"the registry recorded {tags.get('fingerprint', 'none')}"
        )
    return pipeline, Lineage(
        name=name,
        version=str(version),
        run_id=model_version.run_id,
        git_commit=tags.get("git_commit", "unknown"),
        data_checksum=tags.get("data_checksum", "unknown"),
        batch_id=tags.get("batch_id", "unknown"),
        flow_run_id=tags.get("flow_run_id", "unknown"),
        trained_at=tags.get("trained_at", "unknown"),
        metrics={k: v for k, v in run.data.metrics.items() if not k.startswith("champion_")},
    )
