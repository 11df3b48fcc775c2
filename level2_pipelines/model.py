"""The model recipe (the same as levels 0 and 1) and how it is stored: as an MLflow model.

The file inside is skops, as at level 1. MLflow records the trusted types in the model's
metadata; `load_version` checks they are no more than this module trusts before loading.
"""

from dataclasses import dataclass

import mlflow.sklearn
from mlflow import MlflowClient
from mlflow.models import get_model_info
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shared.contract import CATEGORICAL_FEATURES, NUMERIC_FEATURES

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
    return Pipeline(
        [
            ("preprocess", preprocess),
            ("classifier", LogisticRegression(max_iter=1000, random_state=seed)),
        ]
    )


class ModelLoadError(RuntimeError):
    """A registry version cannot be served: the message names it and the problem."""


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


def load_version(client: MlflowClient, name: str, version: str) -> tuple[Pipeline, Lineage]:
    """Load registry version `name`/`version` with its lineage, trusting only TRUSTED_TYPES."""
    uri = f"models:/{name}/{version}"
    try:
        model_version = client.get_model_version(name, version)
        declared = get_model_info(uri).flavors["sklearn"].get("skops_trusted_types") or []
        if not set(declared) <= set(TRUSTED_TYPES):
            raise ModelLoadError(
                f"{uri} asks to trust {sorted(set(declared) - set(TRUSTED_TYPES))}; "
                f"this service trusts only {TRUSTED_TYPES}"
            )
        pipeline = mlflow.sklearn.load_model(uri)
        run = client.get_run(model_version.run_id)
    except ModelLoadError:
        raise
    except Exception as error:  # the registry, the store or the file: all mean "cannot serve"
        raise ModelLoadError(
            f"{uri} could not be loaded ({type(error).__name__}: {error})"
        ) from None
    tags = model_version.tags
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
