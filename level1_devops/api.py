"""The level 1 service: the contract's endpoints over the model the hand-off put in place.

The model is loaded once, in the lifespan, and refused (the service does not start) when it is
missing, corrupt or does not match its card. Bad input is a 4xx whose message names the field,
never a 5xx.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from level1_devops.model import ModelCard, load_artifact
from level1_devops.model_card import read_card, to_html
from level1_devops.predict import PipelinePredictor, Predictor, serving_predictor
from level1_devops.schemas import (
    BatchPredictionPublic,
    BatchRequest,
    ErrorPublic,
    FieldError,
    HealthPublic,
    ModelPublic,
    PenguinFeatures,
    PredictionPublic,
    ReadyPublic,
    SpeciesPrediction,
)
from level1_devops.settings import Settings
from shared.contract import VALID_EXAMPLES


@dataclass(frozen=True)
class ServedModel:
    card: ModelCard
    predictor: Predictor | PipelinePredictor
    # The model card a person reads (Markdown), or why there is none (`GET /model/card`).
    readable_card: str | None = None
    readable_card_problem: str = "model card: none was loaded with this model"

    def predict(self, penguins: list[PenguinFeatures]) -> list[SpeciesPrediction]:
        probabilities = self.predictor.predict_proba([p.model_dump() for p in penguins])
        classes = self.predictor.classes
        return [
            SpeciesPrediction(
                species=classes[row.argmax()],
                probabilities=dict(zip(classes, row.tolist(), strict=True)),
            )
            for row in probabilities
        ]


def load_served_model(directory: Path) -> ServedModel:
    """Load and verify the model pair in `directory`, on its prediction path (`serving_path`)."""
    pipeline, card = load_artifact(directory)  # checks SHA-256 and fingerprint against the card
    served = ServedModel(card=card, predictor=serving_predictor(pipeline))
    try:
        return replace(served, readable_card=read_card(directory, card))
    except LookupError as error:  # the model serves; only its readable card is missing
        return replace(served, readable_card_problem=str(error))


class BodySizeLimit:
    """Refuse a request body over `max_bytes` with a 413, before reading it all."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = HTTPException(
            status_code=413, detail=f"body: request body is larger than {self.max_bytes} bytes"
        )
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse(ErrorPublic(detail=too_large.detail).model_dump(), 413)
            return await response(scope, receive, send)
        received = 0

        async def counting_receive() -> Message:
            # A chunked body declares no length: count it as it arrives. FastAPI turns the
            # HTTPException raised while it reads the body into the 413 response.
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise too_large
            return message

        await self.app(scope, counting_receive, send)


def _field_name(loc: tuple[int | str, ...]) -> str:
    """("body", "penguins", 3, "island") -> "penguins[3].island"; the whole body -> "body"."""
    parts = [p for p in loc if p != "body"]
    if not parts or (len(parts) == 1 and isinstance(parts[0], int)):
        return "body"  # malformed JSON reports a character offset, not a field
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name.lstrip(".")


def error_response(
    status_code: int,
    errors: list[FieldError],
    detail: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The project's error shape: one line naming every field (or `detail`), and the errors."""
    detail = detail or "; ".join(f"{e.field}: {e.message}" for e in errors)
    body = ErrorPublic(detail=detail, errors=errors).model_dump()
    return JSONResponse(body, status_code=status_code, headers=headers)


async def validation_error_handler(_: Request, error: RequestValidationError) -> JSONResponse:
    errors = [
        FieldError(field=_field_name(tuple(e["loc"])), message=e["msg"], type=e["type"])
        for e in error.errors()
    ]
    return error_response(422, errors)


async def http_error_handler(_: Request, error: StarletteHTTPException) -> JSONResponse:
    """Every error in the project's shape (`detail` naming the field first, and `errors`)."""
    # FastAPI answers a body that is not UTF-8, or nested too deeply for Python's JSON parser,
    # with a 400 "There was an error parsing the body" raised from the decoding error.
    if error.status_code == 400 and error.__cause__ is not None:
        message = f"cannot be read as UTF-8 JSON ({error.__cause__})"
        return error_response(400, [FieldError(field="body", message=message, type="json_invalid")])
    return error_response(error.status_code, [], str(error.detail), error.headers)


async def get_model(request: Request) -> ServedModel:
    # async: a plain `def` dependency would hop to the thread pool on every request.
    model = getattr(request.app.state, "model", None)
    if model is None:
        raise HTTPException(status_code=503, detail="model: not loaded")
    return model


ModelDep = Annotated[ServedModel, Depends(get_model)]
EXAMPLES = {
    name: {"summary": name.replace("_", " "), "value": example}
    for name, example in VALID_EXAMPLES.items()
}
WHY = {
    400: "The body could not be read (not UTF-8 JSON text)",
    404: "The served model has no model card (trained before cards); the message says why",
    413: "The body is larger than the service accepts",
    422: "Invalid input; the message names the field",
    503: "No model loaded",
}


def documented(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` for these error statuses, all in the ErrorPublic shape."""
    return {status: {"model": ErrorPublic, "description": WHY[status]} for status in statuses}


def json_errors(*statuses: int) -> dict[int | str, dict]:
    """The same, for a route whose own answer is not JSON (FastAPI would give a `model` its
    media type): the ErrorPublic schema named under application/json."""
    schema = {"$ref": "#/components/schemas/ErrorPublic"}
    return {
        status: {"description": WHY[status], "content": {"application/json": {"schema": schema}}}
        for status in statuses
    }


def create_app(settings: Settings | None = None, model: ServedModel | None = None) -> FastAPI:
    """The service. Pass `model` to serve one already loaded; otherwise the lifespan loads it
    and the service does not start if it cannot."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if model is None:
            app.state.model = load_served_model(settings.serving_dir)
        yield

    app = FastAPI(
        title="Penguin species service (level 1)",
        description="Predicts a penguin's species from its measurements. "
        "The model is handed over by hand; `GET /model` shows its card.",
        version="1",
        lifespan=lifespan,
        # The body limit guards every path, whatever its method, so every path documents it.
        responses=documented(413),
    )
    app.state.model = model
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)

    # CPU-cheap handlers are `async def`: they run on the event loop, not in threads that
    # would fight over the GIL (measured 1.8x faster here).
    @app.post("/predict", responses=documented(400, 422, 503))
    async def predict(
        penguin: Annotated[PenguinFeatures, Body(openapi_examples=EXAMPLES)], served: ModelDep
    ) -> PredictionPublic:
        """Predict one penguin's species, with the probability of each."""
        (prediction,) = served.predict([penguin])
        return PredictionPublic(**prediction.model_dump(), model_version=served.card.version)

    @app.post("/predict/batch", responses=documented(400, 422, 503))
    async def predict_batch(batch: BatchRequest, served: ModelDep) -> BatchPredictionPublic:
        """Predict up to MAX_BATCH_SIZE penguins in one call, in the order given."""
        return BatchPredictionPublic(
            predictions=served.predict(batch.penguins), model_version=served.card.version
        )

    @app.get("/health")
    async def health() -> HealthPublic:
        """Liveness: the process answers."""
        return HealthPublic(status="ok")

    @app.get("/ready", responses=documented(503))
    async def ready(served: ModelDep) -> ReadyPublic:
        """Readiness: a verified model is loaded and served."""
        return ReadyPublic(status="ready", model_version=served.card.version)

    @app.get("/model", responses=documented(503))
    async def model_card(served: ModelDep) -> ModelPublic:
        """The served model's card (version, provenance, parameters, metrics) and the path its
        predictions take: `numpy` for the recipe, `pipeline` for any other estimator."""
        return ModelPublic(**served.card.model_dump(), serving_path=served.predictor.path)

    @app.get(
        "/model/card",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/markdown": {}, "text/html": {}}}}
        | json_errors(404, 413, 422, 503),
    )
    async def readable_card(
        served: ModelDep,
        request: Request,
        output: Annotated[Literal["markdown", "html"] | None, Query(alias="format")] = None,
    ) -> Response:
        """The served model's card for a person: training data, held-out metrics by species
        and island, lineage, known limits. Markdown, or HTML for `Accept: text/html` (a
        browser) or `?format=html`. Written at training: level 1 has no live facts."""
        if served.readable_card is None:
            raise HTTPException(status_code=404, detail=served.readable_card_problem)
        if output == "html" or (output is None and wants_html(request.headers.get("accept", ""))):
            return HTMLResponse(to_html(served.readable_card), headers=HTML_HEADERS)
        return PlainTextResponse(served.readable_card, media_type=MARKDOWN, headers=VARY)

    return app


MARKDOWN, VARY = "text/markdown; charset=utf-8", {"Vary": "Accept"}
# The page runs nothing and loads nothing: a string that slipped through as markup stays inert.
HTML_HEADERS = VARY | {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}


def wants_html(accept: str) -> bool:
    """Whether the Accept header prefers text/html to Markdown (a browser's does; curl's
    `*/*` does not, and gets Markdown)."""
    weights: dict[str, float] = {}
    for part in accept.lower().split(","):
        media, *parameters = (p.strip() for p in part.split(";"))
        weight = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[media] = weight
    fallback = weights.get("text/*", weights.get("*/*", 0.0))
    return weights.get("text/html", fallback) > weights.get("text/markdown", fallback)
