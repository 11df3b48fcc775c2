"""The rollout's judge: promote the challenger, withdraw it, or wait, on live evidence.

The evidence is what the service logged since the challenger was rolled out (`challenger_since`)
and the true species that came back (`POST /feedback`):

- canary: each model's accuracy on its own confirmed answers, and its answers' latency;
- shadow: both models on the same confirmed requests (the challenger's unseen answer and the
  champion's), paired, and both models' time on the same requests.

The rule, in order: too many failed attempts, or a p99 too slow against the champion's, and it
is withdrawn at once; fewer confirmed birds than `rollout_min_confirmed` (for either model), and
it waits; accuracy below the champion's beyond `rollout_tolerance`, withdrawn; else promoted.
Each verdict but "wait" is an MLflow run (the evidence as metrics) and tags on the version,
decided under the registry's decision lock. The flow `penguins-rollout` (deployment
`every-five-minutes`, LEVEL2_ROLLOUT_JUDGE_EVERY_S) judges on its own; its runs say each
verdict in the Prefect UI.
"""

import math
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from mlflow import MlflowClient
from prefect import flow, get_run_logger

from level2_pipelines import registry, rollout
from level2_pipelines.prediction_log import feedback, make_engine, predictions, shadow_answers
from level2_pipelines.settings import Settings
from level2_pipelines.tracking import connect, tracked_run

MIN_ATTEMPTS = 20  # errors and latency are judged on at least this many of the challenger's


@dataclass(frozen=True)
class Evidence:
    mode: str
    champion: str
    challenger: str
    confirmed: int  # the challenger's answers with a confirmed species
    challenger_correct: int
    champion_confirmed: int
    champion_correct: int
    attempts: int  # the challenger's answers and failures
    failures: int
    challenger_p99_ms: float
    champion_p99_ms: float
    disagreed: int = 0  # shadow: answers unlike the champion's

    @property
    def challenger_accuracy(self) -> float:
        return self.challenger_correct / self.confirmed if self.confirmed else math.nan

    @property
    def champion_accuracy(self) -> float:
        return (
            self.champion_correct / self.champion_confirmed if self.champion_confirmed else math.nan
        )

    @property
    def error_rate(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0

    @property
    def latency_ratio(self) -> float:
        if not self.champion_p99_ms or math.isnan(self.challenger_p99_ms):
            return math.nan
        return self.challenger_p99_ms / self.champion_p99_ms


@dataclass(frozen=True)
class Verdict:
    action: str  # "promote", "withdraw", "wait", or "none" (nothing rolled out)
    reason: str
    evidence: Evidence | None = None

    def line(self) -> str:
        if self.evidence is None:
            return f"level 2 judge: {self.reason}"
        e = self.evidence
        return f"level 2 judge: {self.action} v{e.challenger} ({e.mode}): {self.reason}"


def decide(e: Evidence, settings: Settings) -> Verdict:
    def verdict(action: str, reason: str) -> Verdict:
        return Verdict(action, reason, e)

    if e.attempts >= MIN_ATTEMPTS and e.error_rate > settings.rollout_max_error_rate:
        return verdict(
            "withdraw",
            f"{e.failures} of {e.attempts} attempts failed "
            f"(more than {settings.rollout_max_error_rate:.0%})",
        )
    if e.attempts >= MIN_ATTEMPTS and e.latency_ratio > settings.rollout_max_latency_ratio:
        return verdict(
            "withdraw",
            f"p99 {e.challenger_p99_ms:.2f} ms against the champion's {e.champion_p99_ms:.2f} ms "
            f"(more than {settings.rollout_max_latency_ratio:g}x)",
        )
    floor = settings.rollout_min_confirmed
    if min(e.confirmed, e.champion_confirmed) < floor:
        return verdict(
            "wait",
            f"{e.confirmed} confirmed birds for v{e.challenger}, {e.champion_confirmed} for "
            f"v{e.champion}; {floor} each are needed",
        )
    compared = (
        f"live accuracy {e.challenger_accuracy:.3f} on {e.confirmed} confirmed birds against "
        f"the champion's {e.champion_accuracy:.3f} on {e.champion_confirmed}"
    )
    if e.challenger_accuracy < e.champion_accuracy - settings.rollout_tolerance:
        return verdict("withdraw", f"{compared} (worse by more than {settings.rollout_tolerance})")
    return verdict("promote", compared)


def evidence(engine: sa.Engine, switch: rollout.Switch, champion: str, since: float) -> Evidence:
    """What the log holds on both models since `since` (seconds since the epoch)."""
    with engine.connect() as connection:
        shadows = pd.read_sql(
            sa.select(shadow_answers, feedback.c.species)
            .outerjoin(feedback, feedback.c.prediction_id == shadow_answers.c.prediction_id)
            .where(shadow_answers.c.model_version == switch.version)
            .where(shadow_answers.c.served_at > since),
            connection,
        )
        answers = pd.read_sql(
            sa.select(
                predictions.c.prediction_id,
                predictions.c.model_version,
                predictions.c.predicted,
                predictions.c.latency_ms,
                feedback.c.species,
            )
            .outerjoin(feedback, feedback.c.prediction_id == predictions.c.prediction_id)
            .where(predictions.c.model_version.in_([switch.version, champion]))
            .where(predictions.c.served_at > since),
            connection,
        )
    failures = int(shadows["predicted"].isna().sum())
    if switch.mode == "shadow":
        done = shadows.dropna(subset=["predicted"])
        paired = done.merge(
            answers[answers.model_version == champion][["prediction_id", "predicted"]],
            on="prediction_id",
            suffixes=("", "_champion"),
        )
        confirmed = paired.dropna(subset=["species"])
        return Evidence(
            mode="shadow",
            champion=champion,
            challenger=switch.version,
            confirmed=len(confirmed),
            challenger_correct=int((confirmed.predicted == confirmed.species).sum()),
            champion_confirmed=len(confirmed),
            champion_correct=int((confirmed.predicted_champion == confirmed.species).sum()),
            attempts=len(shadows),
            failures=failures,
            challenger_p99_ms=_p99(done.latency_ms),
            champion_p99_ms=_p99(done.champion_latency_ms),
            disagreed=int((paired.predicted != paired.predicted_champion).sum()),
        )
    mine = answers[answers.model_version == switch.version]
    theirs = answers[answers.model_version == champion]
    mine_confirmed, theirs_confirmed = (
        mine.dropna(subset=["species"]),
        theirs.dropna(subset=["species"]),
    )
    return Evidence(
        mode="canary",
        champion=champion,
        challenger=switch.version,
        confirmed=len(mine_confirmed),
        challenger_correct=int((mine_confirmed.predicted == mine_confirmed.species).sum()),
        champion_confirmed=len(theirs_confirmed),
        champion_correct=int((theirs_confirmed.predicted == theirs_confirmed.species).sum()),
        attempts=len(mine) + failures,
        failures=failures,
        challenger_p99_ms=_p99(mine.latency_ms),
        champion_p99_ms=_p99(theirs.latency_ms),
    )


def _p99(values: pd.Series) -> float:
    return float(values.quantile(0.99)) if len(values) else math.nan


def gather(client: MlflowClient, settings: Settings) -> tuple[rollout.Switch, str, Evidence] | None:
    """The challenger rolled out, the champion, and the evidence; None if nothing is rolled out."""
    name = settings.model_name
    switch = rollout.switch_of(client, name)
    if switch is None:
        return None
    champion = registry.version_by_alias(client, name, registry.CHAMPION)
    if champion is None:
        raise registry.RegistryError(f"{name} has a challenger but no champion to judge it against")
    since = datetime.fromisoformat(
        client.get_model_version(name, switch.version).tags["challenger_since"]
    ).timestamp()
    engine = make_engine(settings.resolved_prediction_log_uri, settings.prediction_log_timeout_s)
    try:
        return switch, str(champion.version), evidence(engine, switch, str(champion.version), since)
    finally:
        engine.dispose()


def judge(settings: Settings) -> Verdict:
    """Decide on the challenger under the decision lock, and act: promote or withdraw it."""
    client = connect(settings)
    name = settings.model_name
    with registry.decision(settings):
        found = gather(client, settings)
        if found is None:
            return Verdict("none", f"{name} has no challenger rolled out")
        switch, champion, e = found
        verdict = decide(e, settings)
        if verdict.action == "wait":
            return verdict
        with tracked_run(
            client,
            settings.experiment,
            f"rollout v{switch.version}",
            {"rollout_verdict": verdict.action, "challenger": switch.version, "champion": champion},
        ) as run:
            for key, value in _metrics(e).items():
                client.log_metric(run.run_id, key, value)
            client.set_tag(run.run_id, "rollout_reason", verdict.reason)
            if verdict.action == "withdraw":
                rollout.withdraw(client, name, verdict.reason)
            else:
                registry.promote(client, name, switch.version, registry.CHAMPION, champion)
                client.set_model_version_tag(name, switch.version, "rollout_verdict", "promoted")
                client.set_model_version_tag(name, switch.version, "rollout_reason", verdict.reason)
    return verdict


@flow(name="penguins-rollout")
def rollout_judge() -> str:
    """Judge the challenger rolled out, if any: promote it, withdraw it, or say why it waits."""
    line = judge(Settings()).line()
    get_run_logger().info(line)
    return line


def _metrics(e: Evidence) -> dict[str, float]:
    values = {
        "confirmed": e.confirmed,
        "challenger_accuracy": e.challenger_accuracy,
        "champion_accuracy": e.champion_accuracy,
        "attempts": e.attempts,
        "error_rate": e.error_rate,
        "latency_ratio": e.latency_ratio,
        "disagreed": e.disagreed,
    }
    return {k: float(v) for k, v in values.items() if not math.isnan(float(v))}


def show(settings: Settings) -> str:
    """The challenger, and what the judge would say now (without acting)."""
    found = gather(connect(settings), settings)
    if found is None:
        return f"level 2 rollout: {settings.model_name} has no challenger rolled out"
    switch, champion, e = found
    share = f", {switch.share:.0%} of callers" if switch.mode == "canary" else ""
    return "\n".join(
        [
            f"level 2 rollout: v{switch.version} beside v{champion} ({switch.mode}{share})",
            decide(e, settings).line().replace("level 2 judge:", "level 2 judge would"),
        ]
    )
