"""The level 2 service: the contract's endpoints over the registry's `champion`.

It follows the champion without a restart: a background task asks the registry who is
champion every `poll_seconds` (and at once on `POST /admin/reload`); a new version is loaded
completely, off the event loop, and only then swapped in with one reference assignment. A
request holds the model it started with, so none fails or sees a half-loaded model during a
swap. Bad input is a 4xx whose message names the field, never a 5xx.
"""

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Annotated

from fastapi import Body, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from mlflow import MlflowClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from level2_pipelines import registry
from level2_pipelines.model import Lineage, ModelLoadError, load_version
from level2_pipelines.predict import Predictor
from level2_pipelines.schemas import (
    AdminActionPublic,
    BatchPredictionPublic,
    BatchRequest,
    ErrorPublic,
    HealthPublic,
    LineagePublic,
    PenguinFeatures,
    PredictionPublic,
    ReadyPublic,
    SpeciesPrediction,
)
from level2_pipelines.settings import Settings
from level2_pipelines.tracking import connect
from shared.contract import VALID_EXAMPLES

log = logging.getLogger("uvicorn.error")  # configured by uvicorn, printed with its lines


@dataclass(frozen=True)
class ServedModel:
    lineage: Lineage
    predictor: Predictor

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


def load_served_model(client: MlflowClient, name: str, version: str) -> ServedModel:
    """Load registry version `version`, ready for the fast prediction path."""
    pipeline, lineage = load_version(client, name, version)
    return ServedModel(lineage=lineage, predictor=Predictor.from_pipeline(pipeline))


class ChampionFollower:
    """Keeps `app.state.model` on the registry's champion, swapping only complete models."""

    def __init__(self, app: FastAPI, client: MlflowClient, name: str) -> None:
        self.app, self.client, self.name = app, client, name
        self._lock = asyncio.Lock()  # one load at a time: the poller and admin calls meet here

    async def refresh(self) -> ServedModel | None:
        """Serve the current champion if it is not served yet; return what is served."""
        async with self._lock:
            champion = await asyncio.to_thread(
                registry.version_by_alias, self.client, self.name, registry.CHAMPION
            )
            current = getattr(self.app.state, "model", None)
            version = str(champion.version) if champion is not None else None
            if version is None or (current and current.lineage.version == version):
                return current
            loaded = await asyncio.to_thread(load_served_model, self.client, self.name, version)
            self.app.state.model = loaded  # the swap: one assignment, the model already whole
            log.info("now serving %s v%s", self.name, loaded.lineage.version)
            return loaded

    async def follow(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.refresh()
            except Exception as error:  # keep serving the current model, say why, try again
                log.error("keeping the current model: %s", error)


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
            response = JSONResponse({"detail": too_large.detail}, status_code=413)
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


async def validation_error_handler(_: Request, error: RequestValidationError) -> JSONResponse:
    errors = [
        {"field": _field_name(tuple(e["loc"])), "message": e["msg"], "type": e["type"]}
        for e in error.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse(ErrorPublic(detail=detail, errors=errors).model_dump(), status_code=422)


async def get_model(request: Request) -> ServedModel:
    # async: a plain `def` dependency would hop to the thread pool on every request.
    model = getattr(request.app.state, "model", None)
    if model is None:
        raise HTTPException(status_code=503, detail="model: no champion yet; run `make level2`")
    return model


ModelDep = Annotated[ServedModel, Depends(get_model)]
EXAMPLES = {n: {"summary": n.replace("_", " "), "value": v} for n, v in VALID_EXAMPLES.items()}
ERRORS = {422: {"model": ErrorPublic, "description": "Invalid input; the message names the field"}}
bearer = HTTPBearer(auto_error=False)


def create_app(settings: Settings | None = None, model: ServedModel | None = None) -> FastAPI:
    """The service. With `model`, it serves that one model and does not follow the registry
    (the pipeline's smoke test uses this); otherwise it follows the champion."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if model is not None:
            yield
            return
        follower = ChampionFollower(
            app, await asyncio.to_thread(connect, settings), settings.model_name
        )
        app.state.follower = follower
        try:
            await follower.refresh()
        except ModelLoadError as error:
            # Stay up but not ready (/ready is 503) and keep following: a fixed champion, or
            # a rollback, is picked up without a restart.
            log.error("no model served yet: %s", error)
        task = asyncio.create_task(follower.follow(settings.poll_seconds))
        yield
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    app = FastAPI(
        title="Penguin species service (level 2)",
        description="Predicts a penguin's species from its measurements with the registry's "
        "champion, followed without restarts; `GET /model` shows its lineage.",
        version="2",
        lifespan=lifespan,
    )
    app.state.model = model
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, validation_error_handler)

    def require_admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        expected = settings.admin_token.get_secret_value().encode()
        given = (credentials.credentials if credentials else "").encode()
        if not secrets.compare_digest(given, expected):
            raise HTTPException(
                status_code=401,
                detail="authorization: a valid admin bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    AdminDep = Annotated[None, Depends(require_admin)]

    # CPU-cheap handlers are `async def`: they run on the event loop, not in threads that
    # would fight over the GIL (measured 1.8x faster here).
    @app.post("/predict", responses=ERRORS)
    async def predict(
        penguin: Annotated[PenguinFeatures, Body(openapi_examples=EXAMPLES)], served: ModelDep
    ) -> PredictionPublic:
        """Predict one penguin's species, with the probability of each."""
        (prediction,) = served.predict([penguin])
        return PredictionPublic(**prediction.model_dump(), model_version=served.lineage.version)

    @app.post("/predict/batch", responses=ERRORS)
    async def predict_batch(batch: BatchRequest, served: ModelDep) -> BatchPredictionPublic:
        """Predict up to MAX_BATCH_SIZE penguins in one call, in the order given."""
        return BatchPredictionPublic(
            predictions=served.predict(batch.penguins), model_version=served.lineage.version
        )

    @app.get("/health")
    async def health() -> HealthPublic:
        """Liveness: the process answers."""
        return HealthPublic(status="ok")

    @app.get("/ready", responses={503: {"model": ErrorPublic}})
    async def ready(served: ModelDep) -> ReadyPublic:
        """Readiness: a champion is loaded and served."""
        return ReadyPublic(status="ready", model_version=served.lineage.version)

    @app.get("/model", responses={503: {"model": ErrorPublic}})
    async def model_lineage(served: ModelDep) -> LineagePublic:
        """The served model's registry version and lineage: run, commit, data, batch, flow run."""
        return LineagePublic(**vars(served.lineage))

    @app.post("/admin/reload", responses={401: {"model": ErrorPublic}})
    async def reload(request: Request, _: AdminDep) -> AdminActionPublic:
        """Ask the registry who is champion now, and serve it."""
        served = await _refresh(request)
        version = served.lineage.version if served else None
        return AdminActionPublic(action="reload", model_version=version, detail="serving champion")

    @app.post(
        "/admin/rollback", responses={401: {"model": ErrorPublic}, 409: {"model": ErrorPublic}}
    )
    async def rollback(request: Request, _: AdminDep) -> AdminActionPublic:
        """Move `champion` back to the version it replaced, and serve that."""
        follower: ChampionFollower = request.app.state.follower
        try:
            old, new = await asyncio.to_thread(
                registry.rollback, follower.client, settings.model_name
            )
        except registry.RegistryError as error:
            raise HTTPException(status_code=409, detail=f"champion: {error}") from None
        served = await _refresh(request)
        return AdminActionPublic(
            action="rollback",
            model_version=served.lineage.version if served else None,
            detail=f"champion moved from v{old} back to v{new}",
        )

    async def _refresh(request: Request) -> ServedModel | None:
        follower = getattr(request.app.state, "follower", None)
        if follower is None:
            raise HTTPException(
                status_code=409, detail="registry: this service serves a fixed model"
            )
        try:
            return await follower.refresh()
        except ModelLoadError as error:
            raise HTTPException(status_code=409, detail=f"champion: {error}") from None

    return app
