"""Request and response models: the shared contract, written as types FastAPI enforces."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from level1_devops.model import ModelCard
from level1_devops.predict import ServingPath
from shared.contract import CATEGORIES, CLASSES, RANGES, VALID_EXAMPLES

MAX_BATCH_SIZE = 1000  # stated in the OpenAPI schema; a larger batch is a 422 naming `penguins`

Island = Literal[CATEGORIES["island"]]
Sex = Literal[CATEGORIES["sex"]]
Species = Literal[CLASSES]


def _measurement(name: str, description: str) -> Any:
    low, high = RANGES[name]
    # strict: "39.1" (a string) or true is a type error, not silently a number.
    return Field(ge=low, le=high, strict=True, description=f"{description} ({low:g} to {high:g})")


class PenguinFeatures(BaseModel):
    """One penguin's measurements. Every field is required except `sex`, which is imputed."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [VALID_EXAMPLES["adelie"]]}
    )

    bill_length_mm: float = _measurement("bill_length_mm", "Bill (culmen) length in mm")
    bill_depth_mm: float = _measurement("bill_depth_mm", "Bill (culmen) depth in mm")
    flipper_length_mm: float = _measurement("flipper_length_mm", "Flipper length in mm")
    body_mass_g: float = _measurement("body_mass_g", "Body mass in grams")
    island: Island = Field(description="Island of the Palmer Archipelago where it was measured")
    sex: Sex | None = Field(default=None, description="Omit or null when unknown")


class BatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"penguins": list(VALID_EXAMPLES.values())}]},
    )

    penguins: list[PenguinFeatures] = Field(min_length=1, max_length=MAX_BATCH_SIZE)


class SpeciesPrediction(BaseModel):
    species: Species
    probabilities: dict[Species, float]


class PredictionPublic(SpeciesPrediction):
    model_version: str


class BatchPredictionPublic(BaseModel):
    predictions: list[SpeciesPrediction]
    model_version: str


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field; `body` for the whole body")
    message: str
    type: str


class ErrorPublic(BaseModel):
    detail: str = Field(description="One line a person can read, naming every offending field")
    errors: list[FieldError] = []


class HealthPublic(BaseModel):
    status: Literal["ok"]


class ReadyPublic(BaseModel):
    status: Literal["ready"]
    model_version: str


class ModelPublic(ModelCard):
    """The served model's card, and the path its predictions take."""

    serving_path: ServingPath = Field(
        description="`numpy`: the recipe's fast path; `pipeline`: the fitted pipeline's own "
        "predict_proba, for any other estimator"
    )
