"""The level 2 service: the contract's endpoints over the registry's `champion`, watched.

It follows the champion without a restart: a background task asks the registry who is
champion every `poll_seconds` (and at once on `POST /admin/reload`); a new version is loaded
completely, off the event loop, and only then swapped in with one reference assignment. A
request holds the model it started with, so none fails or sees a half-loaded model during a
swap. Bad input is a 4xx whose message names the field, never a 5xx.

Every answer gets a `prediction_id` and is recorded in the prediction log off the request path
(`prediction_log.py`); `POST /feedback` brings the true species back to it, and `GET /metrics`
shows requests, latencies, predictions, the served version, live accuracy and the drift
monitor's latest statistics (`metrics.py`).
"""

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Annotated

from fastapi import Body, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from level2_pipelines import prediction_log, registry
from level2_pipelines.metrics import RequestMetrics, ServiceMetrics
from level2_pipelines.model import Lineage, ModelLoadError, load_version
from level2_pipelines.predict import PipelinePredictor, Predictor, serving_predictor
from level2_pipelines.schemas import (
    AdminActionPublic,
    BatchPredictionPublic,
    BatchRequest,
    ErrorPublic,
    FeedbackPublic,
    FeedbackRequest,
    FieldError,
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
MAX_RETRY_S = 60.0  # the longest wait between two attempts at a champion that failed to load


@dataclass(frozen=True)
class ServedModel:
    lineage: Lineage
    predictor: Predictor | PipelinePredictor

    def predict(self, rows: list[dict]) -> list[SpeciesPrediction]:
        """One answer per row (a penguin's features as a dict), each with its own id."""
        probabilities = self.predictor.predict_proba(rows)
        classes = self.predictor.classes
        return [
            SpeciesPrediction(
                prediction_id=uuid.uuid4().hex,
                species=classes[row.argmax()],
                probabilities=dict(zip(classes, row.tolist(), strict=True)),
            )
            for row in probabilities
        ]


def load_served_model(client: MlflowClient, name: str, version: str) -> ServedModel:
    """Load and verify registry version `version`, on its prediction path (`serving_path`)."""
    pipeline, lineage = load_version(client, name, version)  # checks SHA-256 and fingerprint
    return ServedModel(lineage=lineage, predictor=serving_predictor(pipeline))


class ChampionFollower:
    """Keeps `app.state.model` on the registry's champion, swapping only complete models.

    A champion that cannot be loaded is reported once, retried with a growing delay (a reload
    retries at once), and named by `problem` (and so by `/ready`) while the previous model, if
    any, goes on serving. A registry that cannot be read is reported the same way, not taken
    for "no champion"."""

    def __init__(self, app: FastAPI, client: MlflowClient, name: str, every_s: float) -> None:
        self.app, self.client, self.name, self.every_s = app, client, name, every_s
        self.problem: str | None = None  # why the champion is not what is served, if it is not
        self._lock = asyncio.Lock()  # one load at a time: the poller and admin calls meet here
        self._retry: dict[str, tuple[float, float]] = {}  # version -> (next attempt, delay)

    async def refresh(self, *, now: bool = False) -> ServedModel | None:
        """Serve the current champion if it is not served yet; return what is served."""
        async with self._lock:
            try:
                champion = await asyncio.to_thread(
                    registry.version_by_alias, self.client, self.name, registry.CHAMPION
                )
            except registry.RegistryError as error:
                self._report(f"registry: {error}")
                raise
            current = getattr(self.app.state, "model", None)
            version = str(champion.version) if champion is not None else None
            if version is None or (current and current.lineage.version == version):
                self._report(None)
                return current
            attempt_at, delay = self._retry.get(version, (0.0, self.every_s))
            if not now and time.monotonic() < attempt_at:
                return current
            try:
                loaded = await asyncio.to_thread(load_served_model, self.client, self.name, version)
            except ModelLoadError as error:
                self._retry[version] = (time.monotonic() + delay, min(delay * 2, MAX_RETRY_S))
                self._report(f"model: champion {error}")
                raise
            self.app.state.model = loaded  # the swap: one assignment, the model already whole
            self.app.state.metrics.show_served(loaded.lineage.version)
            self._retry.clear()
            self._report(None)
            log.info("now serving %s v%s", self.name, loaded.lineage.version)
            return loaded

    def _report(self, problem: str | None) -> None:
        """Log a problem when it appears or changes, not on every poll."""
        if problem is not None and problem != self.problem:
            served = getattr(self.app.state, "model", None)
            keeping = f"serving v{served.lineage.version}" if served else "serving nothing"
            log.error("%s (%s; retrying with backoff)", problem, keeping)
        elif problem is None and self.problem is not None:
            log.info("recovered: %s", self.problem)
        self.problem = problem

    async def follow(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            with suppress(ModelLoadError, registry.RegistryError):  # reported by refresh
                await self.refresh()


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
        follower = getattr(request.app.state, "follower", None)
        problem = follower.problem if follower is not None else None
        raise HTTPException(
            status_code=503, detail=problem or "model: no champion yet; run `make level2`"
        )
    return model


ModelDep = Annotated[ServedModel, Depends(get_model)]
EXAMPLES = {
    name: {"summary": name.replace("_", " "), "value": example}
    for name, example in VALID_EXAMPLES.items()
}
WHY = {
    400: "The body could not be read (not UTF-8 JSON text)",
    401: "No admin bearer token, or the wrong one",
    403: "Admin is off: this service has no token",
    404: "No such prediction was served here; the message names the field",
    409: "The registry refuses the action, or this service keeps no prediction log; the "
    "message says why",
    413: "The body is larger than the service accepts",
    422: "Invalid input; the message names the field",
    503: "No model to serve, or the registry or the prediction log cannot be read; the "
    "message says which",
}


def documented(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` for these error statuses, all in the ErrorPublic shape."""
    return {status: {"model": ErrorPublic, "description": WHY[status]} for status in statuses}


bearer = HTTPBearer(auto_error=False)


async def keep_books(log: prediction_log.PredictionLog, settings: Settings, metrics) -> None:
    """Write recorded answers every `flush_every_s`; refresh the gauges read from the log and
    from the drift monitor's report every `metrics_every_s`."""
    refreshed = 0.0
    while True:
        await asyncio.sleep(settings.flush_every_s)
        await asyncio.to_thread(log.flush)
        metrics.log_pending.set(log.pending)
        metrics.log_dropped.set(log.dropped)
        if time.monotonic() - refreshed >= settings.metrics_every_s:
            refreshed = time.monotonic()
            since = time.time() - settings.live_accuracy_window_s
            with suppress(SQLAlchemyError):  # shown again next time
                rows = await asyncio.to_thread(
                    prediction_log.live_accuracy, log.engine, since=since
                )
                metrics.show_live_accuracy(rows)
            metrics.show_drift(settings.monitor_dir / "latest.json")


def create_app(
    settings: Settings | None = None,
    model: ServedModel | None = None,
    *,
    record: bool | None = None,
) -> FastAPI:
    """The service. With `model`, it serves that one model and does not follow the registry
    (the pipeline's smoke test uses this); otherwise it follows the champion. It records its
    answers in the prediction log if the settings say so and `record` (default: when it
    follows the champion; a smoke test's answers must not reach the monitor)."""
    settings = settings or Settings()
    record = model is None if record is None else record
    metrics = ServiceMetrics()
    metrics.show_served(model.lineage.version if model else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.callback(metrics.close)  # last out: this worker serves nothing any more
            if record and settings.prediction_log:
                log = await asyncio.to_thread(open_log, settings)
                app.state.prediction_log = log
                # Last out: what is still pending is written after the last request.
                stack.push_async_callback(asyncio.to_thread, log.engine.dispose)
                stack.push_async_callback(asyncio.to_thread, log.flush)
                stack.push_async_callback(
                    stop, asyncio.create_task(keep_books(log, settings, metrics))
                )
            if model is None:
                follower = ChampionFollower(
                    app,
                    await asyncio.to_thread(connect, settings),
                    settings.model_name,
                    settings.poll_seconds,
                )
                app.state.follower = follower
                # Stay up even if nothing can be served yet (/ready is 503 and says why) and
                # keep following: a fixed champion, or a rollback, is picked up without a
                # restart.
                with suppress(ModelLoadError, registry.RegistryError):  # reported by refresh
                    await follower.refresh()
                stack.push_async_callback(stop, asyncio.create_task(follower.follow()))
            yield

    app = FastAPI(
        title="Penguin species service (level 2)",
        description="Predicts a penguin's species from its measurements with the registry's "
        "champion, followed without restarts; `GET /model` shows its lineage.",
        version="2",
        lifespan=lifespan,
        # The body limit guards every path, whatever its method, so every path documents it.
        responses=documented(413),
    )
    app.state.model = model
    app.state.metrics = metrics
    app.state.prediction_log = None
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: it sees every answer
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    # The configured token, or the random one `serve` keeps in the state folder. None: the
    # admin endpoints are off (an app made in-process, such as the pipeline's smoke test).
    expected = settings.admin_token_value()

    def require_admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if expected is None:
            raise HTTPException(
                status_code=403,
                detail="authorization: admin is off: no token configured; set LEVEL2_ADMIN_TOKEN "
                "or start the service with `make level2-serve`, which makes one",
            )
        given = (credentials.credentials if credentials else "").encode()
        if not secrets.compare_digest(given, expected.encode()):
            raise HTTPException(
                status_code=401,
                detail="authorization: a valid admin bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    AdminDep = Annotated[None, Depends(require_admin)]

    # CPU-cheap handlers are `async def`: they run on the event loop, not in threads that
    # would fight over the GIL (measured 1.8x faster here).
    @app.post("/predict", responses=documented(400, 422, 503))
    async def predict(
        penguin: Annotated[PenguinFeatures, Body(openapi_examples=EXAMPLES)],
        served: ModelDep,
        request: Request,
    ) -> PredictionPublic:
        """Predict one penguin's species, with the probability of each."""
        (prediction,) = answer(request, served, [penguin])
        return PredictionPublic(**prediction.model_dump(), model_version=served.lineage.version)

    @app.post("/predict/batch", responses=documented(400, 422, 503))
    async def predict_batch(
        batch: BatchRequest, served: ModelDep, request: Request
    ) -> BatchPredictionPublic:
        """Predict up to MAX_BATCH_SIZE penguins in one call, in the order given."""
        predictions = answer(request, served, batch.penguins)
        return BatchPredictionPublic(predictions=predictions, model_version=served.lineage.version)

    @app.post("/feedback", responses=documented(400, 401, 403, 404, 409, 422, 503))
    async def give_feedback(body: FeedbackRequest, request: Request, _: AdminDep) -> FeedbackPublic:
        """The true species of a bird this service answered for, confirmed later; the drift
        monitor computes live accuracy from it, and a retraining learns from these rows. It
        changes what the next model learns, so it takes the admin token."""
        log: prediction_log.PredictionLog | None = request.app.state.prediction_log
        if log is None:
            raise HTTPException(
                status_code=409, detail="prediction_id: this service keeps no prediction log"
            )
        try:
            known = await asyncio.to_thread(log.knows, body.prediction_id)
            if not known:
                raise HTTPException(
                    status_code=404,
                    detail=f"prediction_id: {body.prediction_id} is not an answer of this service",
                )
            kept = await asyncio.to_thread(
                prediction_log.add_feedback, log.engine, body.prediction_id, body.species
            )
        except SQLAlchemyError as error:
            log_error = str(error).splitlines()[0][:200]
            raise HTTPException(
                status_code=503, detail=f"prediction log: cannot be read ({log_error})"
            ) from None
        return FeedbackPublic(
            prediction_id=kept.prediction_id, species=kept.species, replaced=kept.previous
        )

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    async def prometheus_metrics() -> PlainTextResponse:
        """Prometheus text format: requests by endpoint and status, latency histograms,
        predictions by species and model version, the served version, live accuracy and the
        drift monitor's latest statistics."""
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> HealthPublic:
        """Liveness: the process answers."""
        return HealthPublic(status="ok")

    @app.get("/ready", responses=documented(503))
    async def ready(request: Request, served: ModelDep) -> ReadyPublic:
        """Readiness: a model is loaded and served; `problem` names a newer champion that
        could not be loaded, or a registry that cannot be read, while this one serves."""
        follower = getattr(request.app.state, "follower", None)
        return ReadyPublic(
            status="ready",
            model_version=served.lineage.version,
            problem=follower.problem if follower is not None else None,
        )

    @app.get("/model", responses=documented(503))
    async def model_lineage(served: ModelDep) -> LineagePublic:
        """The served model's registry version and lineage (run, commit, data, batch, flow run)
        and the path its predictions take: `numpy` for the recipe, `pipeline` for any other
        estimator."""
        return LineagePublic(**vars(served.lineage), serving_path=served.predictor.path)

    @app.post("/admin/reload", responses=documented(401, 403, 409, 503))
    async def reload(request: Request, _: AdminDep) -> AdminActionPublic:
        """Ask the registry who is champion now, and serve it."""
        served = await _refresh(_follower(request))
        version = served.lineage.version if served else None
        return AdminActionPublic(action="reload", model_version=version, detail="serving champion")

    @app.post("/admin/rollback", responses=documented(401, 403, 409, 503))
    async def rollback(request: Request, _: AdminDep) -> AdminActionPublic:
        """Move `champion` back to the version it replaced, and serve that."""
        follower = _follower(request)

        def move_back() -> tuple[str, str]:
            with registry.decision(settings):  # not while a run decides or promotes
                return registry.rollback(follower.client, settings.model_name)

        with registry_errors():
            old, new = await asyncio.to_thread(move_back)
        served = await _refresh(follower)
        return AdminActionPublic(
            action="rollback",
            model_version=served.lineage.version if served else None,
            detail=f"champion moved from v{old} back to v{new}",
        )

    return app


def app_from_env() -> FastAPI:
    """The service following the champion, with settings from the environment: what
    `serve` has uvicorn start in each worker process."""
    return create_app(Settings())


def open_log(settings: Settings) -> prediction_log.PredictionLog:
    uri = settings.resolved_prediction_log_uri
    try:
        engine = prediction_log.open_engine(uri)
    except SQLAlchemyError:
        # Workers starting together race to create the tables: the one that loses finds them
        # made on a second look. Any other failure fails again, and is raised.
        engine = prediction_log.open_engine(uri)
    return prediction_log.PredictionLog(engine)


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


def answer(
    request: Request, served: ServedModel, penguins: list[PenguinFeatures]
) -> list[SpeciesPrediction]:
    """Predict; count the answers and record them in the prediction log (in memory; written
    later). The model and the log read the same dicts, made once."""
    rows = [penguin.model_dump() for penguin in penguins]
    predictions = served.predict(rows)
    version = served.lineage.version
    counter = request.app.state.metrics.predictions
    log: prediction_log.PredictionLog | None = request.app.state.prediction_log
    latency_ms = (time.perf_counter() - request.state.started) * 1000
    for row, prediction in zip(rows, predictions, strict=True):
        counter.labels(prediction.species, version).inc()
        if log is not None:
            log.record(
                prediction.prediction_id,
                version,
                row,
                prediction.species,
                prediction.probabilities,
                latency_ms,
            )
    return predictions


def _follower(request: Request) -> ChampionFollower:
    follower = getattr(request.app.state, "follower", None)
    if follower is None:
        raise HTTPException(status_code=409, detail="registry: this service serves a fixed model")
    return follower


async def _refresh(follower: ChampionFollower) -> ServedModel | None:
    with registry_errors():
        return await follower.refresh(now=True)


@contextmanager
def registry_errors() -> Iterator[None]:
    """A registry that cannot be read is 503; an action it refuses, or a champion that cannot
    be loaded, is 409; both name the cause."""
    try:
        yield
    except (registry.RegistryUnavailable, MlflowException) as error:
        raise HTTPException(status_code=503, detail=f"registry: {error}") from None
    except (registry.RegistryError, ModelLoadError) as error:
        raise HTTPException(status_code=409, detail=f"champion: {error}") from None
