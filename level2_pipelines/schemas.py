"""Request and response models: the shared contract, written as types FastAPI enforces."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from level2_pipelines.predict import ServingPath
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


PREDICTION_ID = r"^[0-9a-f]{32}$"


class SpeciesPrediction(BaseModel):
    prediction_id: str = Field(
        pattern=PREDICTION_ID,
        description="This answer's id in the prediction log; give it back with the true "
        "species to `POST /feedback`",
    )
    species: Species
    probabilities: dict[Species, float]


class PredictionPublic(SpeciesPrediction):
    model_version: str


class BatchPredictionPublic(BaseModel):
    predictions: list[SpeciesPrediction]
    model_version: str


class FeedbackRequest(BaseModel):
    """The true species of a bird the service answered for, once a biologist confirmed it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"prediction_id": "0f" * 16, "species": "Adelie"}],
        },
    )

    prediction_id: str = Field(
        pattern=PREDICTION_ID, description="The `prediction_id` of an answer of this service"
    )
    species: Species


class FeedbackPublic(BaseModel):
    prediction_id: str
    species: Species
    replaced: Species | None = Field(
        description="The species confirmed before for this prediction, if any: the latest "
        "confirmation is the one kept"
    )


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
    problem: str | None = Field(
        default=None, description="What keeps the registry's champion from being served, if any"
    )


class LineagePublic(BaseModel):
    """The served model's place in the registry and where it came from."""

    name: str
    version: str = Field(description="Registry version of the model being served")
    run_id: str = Field(description="The MLflow run that trained it")
    git_commit: str
    data_checksum: str = Field(description="SHA-256 of the training data (reference + batch)")
    batch_id: str = Field(description="The batch whose arrival trained it")
    flow_run_id: str = Field(description="The Prefect flow run that trained and promoted it")
    trained_at: str
    metrics: dict[str, float]
    serving_path: ServingPath = Field(
        description="`numpy`: the recipe's fast path; `pipeline`: the fitted pipeline's own "
        "predict_proba, for any other estimator"
    )


class AdminActionPublic(BaseModel):
    action: Literal["reload", "rollback"]
    model_version: str | None
    detail: str
