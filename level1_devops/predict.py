"""Prediction for serving: a fast numpy path for the recipe, the pipeline's own for any other.

`Pipeline.predict_proba` costs ~5 ms per call whatever the number of rows (pandas and
validation overhead), which caps a one-row-per-request service near 100 requests/s. The fitted
recipe is small arithmetic: impute, standardise, one-hot, a linear map, softmax. `Predictor`
copies the fitted numbers out of the pipeline once and repeats that arithmetic in microseconds.
It takes only exactly the recipe in `model.py`, and a test holds its probabilities to the
pipeline's within 1e-9 on held-out and simulated rows.

Any other pipeline (another estimator swapped in at `model.build_classifier`, another
preprocessing) is served by `PipelinePredictor`: the rows become the DataFrame training saw and
go through the pipeline's own `predict_proba`, correct for anything scikit-learn fits, at the
pipeline's speed. `serving_predictor` picks the path; each predictor names it in `path`.
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shared.contract import (
    CATEGORICAL_FEATURES,
    CATEGORIES,
    FEATURES,
    NUMERIC_FEATURES,
    RANGES,
    VALID_EXAMPLES,
)
from shared.data import DTYPES

ServingPath = Literal["numpy", "pipeline"]


def _is_missing(value: Any) -> bool:
    return value is None or value != value  # NaN is the one value not equal to itself


@dataclass(frozen=True)
class Predictor:
    """The fitted numbers of the recipe, and the arithmetic that turns rows into probabilities."""

    path: ClassVar[ServingPath] = "numpy"
    classes: tuple[str, ...]
    numeric_fill: np.ndarray  # per numeric feature: the training median
    mean: np.ndarray
    scale: np.ndarray
    categorical_fill: tuple[str, ...]  # per categorical feature: the most frequent category
    categories: tuple[tuple[str, ...], ...]
    coef: np.ndarray  # (classes, numeric + one-hot columns)
    intercept: np.ndarray

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline) -> "Predictor":
        """Copy the fitted numbers out of a pipeline built by `model.build_pipeline`."""
        try:
            preprocess, classifier = pipeline.named_steps.values()
            numeric = preprocess.named_transformers_["numeric"]
            categorical = preprocess.named_transformers_["categorical"]
            steps = (
                *numeric.named_steps.values(),
                *categorical.named_steps.values(),
                classifier,
            )
            num_impute, scale, cat_impute, onehot, _ = steps
            columns = {name: list(cols) for name, _, cols in preprocess.transformers_}
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not the recipe of model.build_pipeline: {error}") from error
        expected = (SimpleImputer, StandardScaler, SimpleImputer, OneHotEncoder, LogisticRegression)
        # Every setting the arithmetic below assumes: anything else goes to PipelinePredictor.
        if (
            not isinstance(preprocess, ColumnTransformer)
            or [type(s) for s in steps] != list(expected)
            or list(preprocess.feature_names_in_) != list(FEATURES)
            or columns.get("numeric") != list(NUMERIC_FEATURES)
            or columns.get("categorical") != list(CATEGORICAL_FEATURES)
            or num_impute.add_indicator
            or cat_impute.add_indicator
            or not (scale.with_mean and scale.with_std)
            or onehot.handle_unknown != "ignore"
            or onehot.drop is not None
            or onehot.min_frequency is not None
            or onehot.max_categories is not None
            or len(classifier.classes_) < 3  # two classes: a sigmoid, not this softmax
        ):
            raise ValueError("not the recipe of model.build_pipeline: steps or settings differ")
        return cls(
            classes=tuple(str(c) for c in classifier.classes_),
            numeric_fill=num_impute.statistics_.astype(float),
            mean=scale.mean_,
            scale=scale.scale_,
            categorical_fill=tuple(str(v) for v in cat_impute.statistics_),
            categories=tuple(tuple(str(c) for c in cats) for cats in onehot.categories_),
            coef=classifier.coef_,
            intercept=classifier.intercept_,
        )

    def predict_proba(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Probabilities per row (columns in `classes` order); a missing value is imputed."""
        numeric = np.array(
            [[row.get(f) for f in NUMERIC_FEATURES] for row in rows], dtype=float
        ).reshape(len(rows), len(NUMERIC_FEATURES))  # None becomes NaN
        numeric = np.where(np.isnan(numeric), self.numeric_fill, numeric)
        columns = [(numeric - self.mean) / self.scale]
        for feature, fill, categories in zip(
            CATEGORICAL_FEATURES, self.categorical_fill, self.categories, strict=True
        ):
            values = [fill if _is_missing(v := row.get(feature)) else v for row in rows]
            # An unknown category matches nothing: all zeros, as handle_unknown="ignore" does.
            columns.append(np.array([[v == c for c in categories] for v in values], dtype=float))
        logits = np.hstack(columns).reshape(len(rows), -1) @ self.coef.T + self.intercept
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def fingerprint(self) -> str:
        """SHA-256 of every fitted number: equal fingerprints mean equal predictions."""
        digest = hashlib.sha256()
        for array in (self.numeric_fill, self.mean, self.scale, self.coef, self.intercept):
            digest.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
        for text in (self.classes, self.categorical_fill, *self.categories):
            digest.update("\x1f".join(text).encode() + b"\x1e")
        return digest.hexdigest()


# The behavioural fingerprint: probabilities on the probe rows, rounded to this many decimals
# (platform noise in the last bits stays out; any real change in behaviour shows).
FINGERPRINT_DIGITS = 9
PROBE_ROWS = 240


def probe_rows() -> list[dict[str, Any]]:
    """A fixed batch that exercises a model wherever the contract allows: the contract's
    examples, then rows spread evenly over every measurement's range (a Kronecker sequence)
    and every category, some with a missing value or an island never seen in training.

    Plain arithmetic, no random generator and no data file: the same rows on every machine and
    library version, so a fingerprint recorded at training is comparable at every load."""
    rows = [{f: example.get(f) for f in FEATURES} for example in VALID_EXAMPLES.values()]
    steps = [np.sqrt(p) % 1 for p in (2, 3, 5, 7)]  # irrational: the points never repeat
    islands, sexes = CATEGORIES["island"], (*CATEGORIES["sex"], None)
    for i in range(PROBE_ROWS):
        row: dict[str, Any] = {}
        for feature, step in zip(NUMERIC_FEATURES, steps, strict=True):
            low, high = RANGES[feature]
            row[feature] = round(float(low + (high - low) * ((0.5 + i * step) % 1)), 1)
        row["island"] = "Anvers" if i % 11 == 0 else islands[i % len(islands)]
        row["sex"] = sexes[(i // len(islands)) % len(sexes)]
        if i % 7 == 3:
            row[NUMERIC_FEATURES[(i // 7) % len(NUMERIC_FEATURES)]] = None
        rows.append(row)
    return rows


def rows_to_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows as training saw them: contract columns, the data's dtypes, None as missing."""
    frame = pd.DataFrame([{f: row.get(f) for f in FEATURES} for row in rows], columns=FEATURES)
    return frame.astype({f: DTYPES[f] for f in FEATURES})


@dataclass(frozen=True)
class PipelinePredictor:
    """Any fitted pipeline with `predict_proba`, called on the DataFrame training saw."""

    path: ClassVar[ServingPath] = "pipeline"
    classes: tuple[str, ...]
    pipeline: Pipeline

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline) -> "PipelinePredictor":
        if not hasattr(pipeline, "predict_proba"):
            raise ValueError(
                f"{type(pipeline).__name__} has no predict_proba: the service answers "
                "probabilities, so choose an estimator that has it"
            )
        return cls(classes=tuple(str(c) for c in pipeline.classes_), pipeline=pipeline)

    def predict_proba(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Probabilities per row (columns in `classes` order), exactly the pipeline's."""
        return self.pipeline.predict_proba(rows_to_frame(rows))

    def fingerprint(self) -> str:
        """SHA-256 of the classes and the probabilities on `probe_rows()`, rounded to
        FINGERPRINT_DIGITS decimals: a fingerprint of what the model does, since its fitted
        numbers are the estimator's own business. Equal fingerprints mean equal answers on the
        probe rows; the file's SHA-256, checked beside it, covers the rest."""
        probabilities = self.predict_proba(probe_rows())
        digest = hashlib.sha256(f"behaviour/{FINGERPRINT_DIGITS}\x1e".encode())
        digest.update("\x1f".join(self.classes).encode() + b"\x1e")
        digest.update(np.rint(probabilities * 10**FINGERPRINT_DIGITS).astype("<i8").tobytes())
        return digest.hexdigest()


def serving_predictor(pipeline: Pipeline) -> Predictor | PipelinePredictor:
    """The fast numpy path for the recipe; the pipeline's own `predict_proba` for any other.
    ValueError if the pipeline cannot answer probabilities at all."""
    try:
        return Predictor.from_pipeline(pipeline)
    except ValueError:
        return PipelinePredictor.from_pipeline(pipeline)
