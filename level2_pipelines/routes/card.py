"""The model card of the version being served (`model_card.py`): Markdown, or HTML when the
client asks for it (`Accept: text/html`, as a browser does, or `?format=html`).

The card is the one logged with the version's MLflow run at registration, read once per run
and kept; the service adds what only it knows, computed at request time: live accuracy of the
served version on confirmed birds (the prediction log) and the drift monitor's latest verdict
(its newest MLflow run). Every read is off the event loop and bounded: a tracking server or
a log that does not answer makes the card say so, or (the card itself) a 503 naming it.
"""

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from mlflow import MlflowClient
from sqlalchemy.exc import SQLAlchemyError

from level2_pipelines import prediction_log
from level2_pipelines.model_card import CARD_MD, since_served, to_html
from level2_pipelines.monitor_runs import LatestVerdict
from level2_pipelines.routes.deps import WHY, ModelDep, PredictionLogDep, SettingsDep
from level2_pipelines.settings import Settings
from level2_pipelines.tracking import unreachable, unreachable_message

router = APIRouter()
MARKDOWN = "text/markdown; charset=utf-8"
# The page runs nothing and loads nothing: a string that slipped through as markup stays inert.
HTML_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}


def json_errors(why: dict[int, str]) -> dict[int | str, dict]:
    """Error answers in the ErrorPublic shape, named under application/json: FastAPI would
    document a `model` under this route's own media type, which is not JSON."""
    schema = {"$ref": "#/components/schemas/ErrorPublic"}
    return {
        status: {"description": text, "content": {"application/json": {"schema": schema}}}
        for status, text in why.items()
    }


class NoCard(LookupError):
    """The served version's run holds no model card."""


class CardBook:
    """What the card route keeps between requests: each run's card (read once), the read in
    flight per run (one at a time, however many requests wait), the drift verdict's reader."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cards: dict[str, str] = {}
        self.reading: dict[str, asyncio.Task] = {}
        self.drift = LatestVerdict(
            settings.resolved_tracking_uri, settings.experiment, settings.drift_verdict_timeout_s
        )
        self.drift_lock = asyncio.Lock()  # LatestVerdict is read by one thread at a time

    async def card(self, run_id: str) -> str:
        if run_id in self.cards:
            return self.cards[run_id]
        task = self.reading.get(run_id)
        if task is None:
            task = asyncio.create_task(asyncio.to_thread(self._download, run_id))
            self.reading[run_id] = task
            task.add_done_callback(lambda _: self.reading.pop(run_id, None))
        # Shielded: a request that gives up leaves the read to finish for the next one.
        self.cards[run_id] = await asyncio.wait_for(
            asyncio.shield(task), self.settings.mlflow_timeout_s
        )
        return self.cards[run_id]

    def _download(self, run_id: str) -> str:
        client = MlflowClient(tracking_uri=self.settings.resolved_tracking_uri)
        with tempfile.TemporaryDirectory(prefix="level2-card-") as scratch:
            try:
                path = client.download_artifacts(run_id, CARD_MD, scratch)
            except Exception as error:
                if unreachable(error) is not None:
                    raise
                raise NoCard(str(error).splitlines()[0][:200] if str(error) else "") from None
            return Path(path).read_text(encoding="utf-8")


def book(request: Request, settings: Settings) -> CardBook:
    found = getattr(request.app.state, "card_book", None)
    if found is None:
        found = request.app.state.card_book = CardBook(settings)
    return found


@router.get(
    "/model/card",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/markdown": {}, "text/html": {}}}}
    | json_errors({404: "The served version has no model card; the message says why"})
    | json_errors({s: WHY[s] for s in (413, 422, 503)}),
)
async def model_card(
    served: ModelDep,
    settings: SettingsDep,
    log: PredictionLogDep,
    request: Request,
    output: Annotated[Literal["markdown", "html"] | None, Query(alias="format")] = None,
):
    """The served version's model card: training data, held-out metrics by species and
    island, the gate's verdict, lineage, known limits, and since it was served its live
    accuracy and the drift monitor's latest verdict. Markdown, or HTML for `Accept: text/html`
    or `?format=html`."""
    lineage, cards = served.lineage, book(request, settings)
    try:
        markdown = await cards.card(lineage.run_id)
    except NoCard as error:
        raise HTTPException(
            status_code=404,
            detail=f"model card: v{lineage.version} (MLflow run {lineage.run_id}) has no "
            f"{CARD_MD}: it was registered before cards were written; train a new version "
            f"(`make level2 FORCE=1`) ({error})",
        ) from None
    except TimeoutError:
        raise HTTPException(
            status_code=503,
            detail=f"model card: the tracking server at {settings.resolved_tracking_uri} did "
            f"not answer within {settings.mlflow_timeout_s} s",
        ) from None
    except Exception as error:  # a tracking server that cannot be reached
        reason = unreachable(error) or type(error).__name__
        raise HTTPException(
            status_code=503,
            detail="model card: " + unreachable_message(settings.resolved_tracking_uri, reason),
        ) from None
    markdown += await since_served_now(lineage.version, log, cards, settings)
    if output == "html" or (output is None and wants_html(request.headers.get("accept", ""))):
        return HTMLResponse(to_html(markdown), headers=HTML_HEADERS | {"Vary": "Accept"})
    return PlainTextResponse(markdown, media_type=MARKDOWN, headers={"Vary": "Accept"})


async def since_served_now(
    version: str, log: prediction_log.PredictionLog | None, cards: CardBook, settings: Settings
) -> str:
    """Live accuracy of `version` and the latest drift verdict, each read within its bound."""
    if log is None:
        live = "this service keeps no prediction log"
    else:
        try:
            rows = await asyncio.wait_for(
                asyncio.to_thread(prediction_log.live_accuracy, log.engine),
                settings.prediction_log_timeout_s,
            )
            live = next((row for row in rows if row.model_version == version), None)
        except TimeoutError:
            live = f"the prediction log did not answer within {settings.prediction_log_timeout_s} s"
        except SQLAlchemyError as error:
            live = f"the prediction log cannot be read ({str(error).splitlines()[0][:200]})"
    async with cards.drift_lock:  # bounded by drift_verdict_timeout_s, off the loop
        verdict = await asyncio.to_thread(cards.drift.refresh)
    return since_served(version, live, verdict, cards.drift.problem)


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
