"""The model recipe (the same as level 0's notebook cell), its safe format and its card.

Another estimator is a change in one place, `build_classifier` (and, if its file needs them,
`TRUSTED_TYPES` beside it); the rest of the level follows.

The artifact is written with skops, not pickle: loading a skops file only builds the types it
is told to trust, so a tampered or foreign file cannot run code on the server.
"""

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

import skops.io as sio
from pydantic import BaseModel, Field, ValidationError
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from level1_devops.predict import serving_predictor
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
    """The model cannot be served: the message names it and the problem."""


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_model(pipeline: Pipeline, path: Path) -> None:
    """Write the skops file, refusing a model that could not be loaded back (`types_to_trust`)."""
    types_to_trust(pipeline)
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(pipeline, path)


def load_model(path: Path) -> Pipeline:
    """Load a skops artifact, building only scikit-learn types and `TRUSTED_TYPES`."""
    return sio.load(path, trusted=TRUSTED_TYPES)


# --- The artifact on disk: the model file and its card, checked against each other on load ---

MODEL_FILE = "model.skops"
CARD_FILE = "card.json"


class ModelCard(BaseModel):
    """What the service knows about its model: identity, provenance and quality."""

    name: str = "penguins-species"
    version: str = Field(description="First 12 hex digits of the artifact's SHA-256.")
    artifact_sha256: str
    fingerprint: str = Field(
        description="SHA-256 of the fitted numbers (numpy path), or of the probabilities on a "
        "fixed probe batch (pipeline path): same value, same model."
    )
    trained_at: datetime
    git_commit: str
    data_checksum: str = Field(
        description="SHA-256 of the rows trained on: the training split plus any new batch."
    )
    parameters: dict[str, Any]
    metrics: dict[str, Any]
    library_versions: dict[str, str]


def write_artifact(pipeline: Pipeline, directory: Path, **card_fields: Any) -> ModelCard:
    """Write the model file, then its card, versioned by the SHA-256 of the bytes just written."""
    save_model(pipeline, directory / MODEL_FILE)
    artifact_sha256 = sha256_file(directory / MODEL_FILE)
    card = ModelCard(version=artifact_sha256[:12], artifact_sha256=artifact_sha256, **card_fields)
    (directory / CARD_FILE).write_text(card.model_dump_json(indent=2) + "\n")
    return card


def load_artifact(directory: Path) -> tuple[Pipeline, ModelCard]:
    """Load the model and its card, refusing a missing, corrupt or mismatched pair.

    Mismatched means either check fails: the file's SHA-256 against the card (the bytes), and
    its `fingerprint` against the card (the model). The service, the hand-off and `evaluate`
    all load through here, so they all refuse the same pairs.
    """
    model_path, card_path = directory / MODEL_FILE, directory / CARD_FILE
    for path, what in ((model_path, "model"), (card_path, "model card")):
        if not path.is_file():
            raise ModelLoadError(
                f"no {what} at {path}: train with `make level1` (train, then hand-off)"
            )
    try:
        card = ModelCard.model_validate_json(card_path.read_bytes())
    except ValidationError as error:
        raise ModelLoadError(f"model card {card_path} is not a valid card: {error}") from None
    digest = sha256_file(model_path)
    if digest != card.artifact_sha256:
        raise ModelLoadError(
            f"model {model_path} does not match its card {card_path}: the file's SHA-256 is "
            f"{digest}, the card says {card.artifact_sha256}; hand off the pair together"
        )
    try:
        pipeline = load_model(model_path)
    except Exception as error:  # skops raises many kinds for a damaged or foreign file
        raise ModelLoadError(
            f"model {model_path} could not be loaded ({type(error).__name__}: {error})"
        ) from None
    try:
        actual = fingerprint(pipeline)
    except ValueError as error:
        raise ModelLoadError(f"model {model_path} cannot be served: {error}") from None
    if actual != card.fingerprint:
        raise ModelLoadError(
            f"model {model_path} is not the model its card {card_path} describes: its "
            f"fingerprint is {actual}, the card says {card.fingerprint}"
        )
    return pipeline, card
