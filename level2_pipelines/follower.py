"""What the service serves, and how it follows the registry's `champion` without a restart: a
background task asks the registry who is champion every `poll_seconds` (and at once on
`POST /admin/reload`); a new version is loaded completely, off the event loop, and only then
swapped in with one reference assignment. A request holds the model it started with, so none
fails or sees a half-loaded model during a swap. While the tracking server cannot be reached,
whatever is served goes on serving, `problem` names the server, and the next poll tries again.
"""

import asyncio
import logging
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, replace

from fastapi import FastAPI
from mlflow import MlflowClient

from level2_pipelines import registry, rollout
from level2_pipelines.model import Lineage, ModelLoadError, load_version
from level2_pipelines.predict import PipelinePredictor, Predictor, serving_predictor
from level2_pipelines.schemas import SpeciesPrediction
from level2_pipelines.tracking import unreachable, unreachable_message

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


@dataclass(frozen=True)
class Challenger:
    """The version rolled out beside the champion (`rollout.py`), loaded and verified the same
    way, and what it does: answer every request unseen (shadow) or a share of callers."""

    model: ServedModel
    mode: rollout.Mode
    share: float

    @property
    def version(self) -> str:
        return self.model.lineage.version


def load_served_model(client: MlflowClient, name: str, version: str) -> ServedModel:
    """Load and verify registry version `version`, on its prediction path (`serving_path`)."""
    pipeline, lineage = load_version(client, name, version)  # checks SHA-256 and fingerprint
    return ServedModel(lineage=lineage, predictor=serving_predictor(pipeline))


class ChampionFollower:
    """Keeps `app.state.model` on the registry's champion, swapping only complete models.

    A champion that cannot be loaded is reported once, retried with a growing delay (a reload
    retries at once), and named by `problem` (and so by `/ready`) while the previous model, if
    any, goes on serving. A registry that cannot be read is reported the same way, not taken
    for "no champion"; a tracking server that cannot be reached is named as such, and is not
    held against the champion (no backoff: it is loaded as soon as the server answers)."""

    def __init__(
        self, app: FastAPI, client: MlflowClient, name: str, every_s: float, *, store: str = ""
    ) -> None:
        self.app, self.client, self.name, self.every_s = app, client, name, every_s
        self.store = store  # the tracking URI, to name it when it cannot be reached
        self.problem: str | None = None  # why the champion is not what is served, if it is not
        self.tried = asyncio.Event()  # set once the first refresh has succeeded or failed
        self._lock = asyncio.Lock()  # one load at a time: the poller and admin calls meet here
        self._retry: dict[str, tuple[float, float]] = {}  # version -> (next attempt, delay)
        self._challenger_retry: dict[str, float] = {}  # version -> next attempt

    async def refresh(self, *, now: bool = False) -> ServedModel | None:
        """Serve the current champion if it is not served yet; return what is served."""
        async with self._lock:
            try:
                champion = await asyncio.to_thread(
                    registry.version_by_alias, self.client, self.name, registry.CHAMPION
                )
            except registry.RegistryError as error:
                self._report(self._named(error) or f"registry: {error}")
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
                if lost := self._named(error):
                    self._report(lost)
                    raise
                self._retry[version] = (time.monotonic() + delay, min(delay * 2, MAX_RETRY_S))
                self._report(f"model: champion {error}")
                raise
            self.app.state.model = loaded  # the swap: one assignment, the model already whole
            self.app.state.metrics.show_served(loaded.lineage)
            self._retry.clear()
            self._report(None)
            log.info("now serving %s v%s", self.name, loaded.lineage.version)
            return loaded

    async def refresh_challenger(self) -> Challenger | None:
        """Serve the challenger being rolled out beside the champion, or stop serving it once
        it is withdrawn or promoted. One that cannot be loaded is said once and tried again
        every MAX_RETRY_S; meanwhile the champion answers alone."""
        async with self._lock:
            try:
                switch = await asyncio.to_thread(rollout.switch_of, self.client, self.name)
            except registry.RegistryError:
                return getattr(self.app.state, "challenger", None)  # the champion's poll says
            current: Challenger | None = getattr(self.app.state, "challenger", None)
            if switch is None:
                if current is not None:
                    log.info("challenger v%s is no longer rolled out", current.version)
                self.app.state.challenger = None
                return None
            if current is not None and current.version == switch.version:
                if (current.mode, current.share) != (switch.mode, switch.share):
                    self.app.state.challenger = replace(
                        current, mode=switch.mode, share=switch.share
                    )
                return self.app.state.challenger
            if time.monotonic() < self._challenger_retry.get(switch.version, 0.0):
                return current
            try:
                loaded = await asyncio.to_thread(
                    load_served_model, self.client, self.name, switch.version
                )
            except ModelLoadError as error:
                self._challenger_retry[switch.version] = time.monotonic() + MAX_RETRY_S
                log.error("challenger v%s: %s (the champion answers alone)", switch.version, error)
                self.app.state.challenger = None
                return None
            self.app.state.challenger = Challenger(loaded, switch.mode, switch.share)
            log.info("challenger v%s rolled out (%s)", switch.version, switch.mode)
            return self.app.state.challenger

    def _named(self, error: Exception) -> str | None:
        """The tracking server, named, if `error` is that it cannot be reached."""
        reason = unreachable(error)
        return unreachable_message(self.store, reason) if reason is not None else None

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
        """Refresh at once, then every `every_s`."""
        while True:
            with suppress(ModelLoadError, registry.RegistryError):  # reported by refresh
                await self.refresh()
                await self.refresh_challenger()
            self.tried.set()
            await asyncio.sleep(self.every_s)
