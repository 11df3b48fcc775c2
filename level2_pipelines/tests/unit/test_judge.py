"""The rollout's judge: the rule (wait, withdraw, promote), the evidence read from a real
prediction log (canary: each model on its own answers; shadow: both on the same requests), and
the verdict acted on in a real registry, with an MLflow run holding the evidence."""

import math

import pytest
from mlflow import MlflowClient

from level2_pipelines import judge, registry, rollout
from level2_pipelines.prediction_log import PredictionLog, add_feedback, open_engine
from level2_pipelines.settings import Settings
from level2_pipelines.tests.helpers import add_version, champion
from shared.contract import EXAMPLE_PAYLOAD

PROBABILITIES = {"Adelie": 0.8, "Chinstrap": 0.1, "Gentoo": 0.1}


def evidence(**changes) -> judge.Evidence:
    values = dict(
        mode="canary",
        champion="1",
        challenger="2",
        confirmed=40,
        challenger_correct=38,
        champion_confirmed=200,
        champion_correct=190,
        attempts=100,
        failures=0,
        challenger_p99_ms=3.0,
        champion_p99_ms=2.5,
    )
    return judge.Evidence(**(values | changes))


@pytest.mark.parametrize(
    "changes, action, said",
    [
        ({}, "promote", "live accuracy 0.950 on 40 confirmed birds against the champion's 0.950"),
        ({"confirmed": 12, "challenger_correct": 12}, "wait", "12 confirmed birds for v2"),
        ({"champion_confirmed": 5, "champion_correct": 5}, "wait", "5 for v1; 30 each"),
        ({"challenger_correct": 34}, "withdraw", "0.850 on 40 confirmed birds"),
        ({"failures": 5}, "withdraw", "5 of 100 attempts failed"),
        ({"challenger_p99_ms": 9.0}, "withdraw", "p99 9.00 ms against the champion's 2.50 ms"),
        # A little worse, within the tolerance (0.02): not a reason to withdraw.
        ({"challenger_correct": 37, "champion_correct": 188}, "promote", "0.925"),
    ],
)
def test_the_rule(changes, action, said):
    verdict = judge.decide(evidence(**changes), Settings())

    assert verdict.action == action
    assert said in verdict.reason


def test_errors_and_latency_wait_for_enough_attempts():
    few = evidence(attempts=10, failures=3, confirmed=0, challenger_correct=0)

    assert judge.decide(few, Settings()).action == "wait"
    assert math.isclose(few.error_rate, 0.3)


@pytest.fixture
def log(tmp_path, monkeypatch, settings) -> PredictionLog:
    uri = f"sqlite:///{tmp_path / 'predictions.db'}"
    monkeypatch.setenv("LEVEL2_PREDICTION_LOG_URI", uri)
    return PredictionLog(open_engine(uri))


def answered(log: PredictionLog, version: str, n: int, right: int, start: int = 0) -> list[str]:
    """`n` answers by `version` given feedback, `right` of them confirmed as predicted."""
    ids = [f"{version}x{start + i:030d}"[:32] for i in range(n)]
    for pid in ids:
        log.record(pid, version, EXAMPLE_PAYLOAD, "Adelie", PROBABILITIES, 2.0)
    log.flush()
    for i, pid in enumerate(ids):
        add_feedback(log.engine, pid, "Adelie" if i < right else "Gentoo")
    return ids


def rolled_out(settings: Settings, candidate, mode: str) -> tuple[str, str]:
    client = MlflowClient()
    first, second = add_version(settings, candidate), add_version(settings, candidate)
    registry.promote(client, settings.model_name, first, registry.CHAMPION, None)
    rollout.start(client, settings.model_name, second, mode, 0.5, first)
    return first, second


def test_a_canary_as_good_as_the_champion_is_promoted_with_its_evidence(settings, candidate, log):
    first, second = rolled_out(Settings(), candidate, "canary")
    answered(log, first, 60, 57)
    answered(log, second, 40, 39)

    verdict = judge.judge(Settings())

    client = MlflowClient()
    assert verdict.action == "promote"
    assert champion(settings) == second
    tags = client.get_model_version(settings.model_name, second).tags
    assert tags["previous_champion"] == first  # a rollback walks back to it
    assert tags["rollout_verdict"] == "promoted"
    assert registry.version_by_alias(client, settings.model_name, registry.CHALLENGER) is None
    (run,) = client.search_runs(
        [client.get_experiment_by_name(settings.experiment).experiment_id],
        f"tags.challenger = '{second}' and tags.rollout_verdict = 'promote'",
    )
    assert run.data.metrics["challenger_accuracy"] == pytest.approx(39 / 40)
    assert run.data.metrics["champion_accuracy"] == pytest.approx(57 / 60)


def test_a_worse_canary_is_withdrawn_and_the_champion_stays(settings, candidate, log):
    first, second = rolled_out(Settings(), candidate, "canary")
    answered(log, first, 60, 58)
    answered(log, second, 40, 30)

    verdict = judge.judge(Settings())

    tags = MlflowClient().get_model_version(settings.model_name, second).tags
    assert verdict.action == "withdraw"
    assert champion(settings) == first
    assert rollout.switch_of(MlflowClient(), settings.model_name) is None
    assert tags["rollout_verdict"] == "withdrawn"
    assert "0.750 on 40 confirmed birds" in tags["rollout_reason"]


def test_too_few_confirmed_birds_changes_nothing(settings, candidate, log):
    first, second = rolled_out(Settings(), candidate, "canary")
    answered(log, first, 60, 58)
    answered(log, second, 10, 10)

    verdict = judge.judge(Settings())

    assert verdict.action == "wait"
    assert champion(settings) == first
    assert rollout.switch_of(MlflowClient(), settings.model_name).version == second


def test_in_shadow_both_models_are_judged_on_the_same_confirmed_requests(settings, candidate, log):
    first, second = rolled_out(Settings(), candidate, "shadow")
    ids = answered(log, first, 40, 40)  # the champion right on all 40
    for i, pid in enumerate(ids):  # the challenger's unseen answers: wrong on 8
        log.record_shadow(pid, second, "Adelie" if i >= 8 else "Chinstrap", PROBABILITIES, 3, 2)
    log.record_shadow("f" * 32, second, None, None, 0.0, 2.0, "RuntimeError: boom")
    log.flush()

    found = judge.gather(MlflowClient(), Settings())

    assert found is not None
    e = found[2]
    assert (e.mode, e.confirmed, e.champion_confirmed) == ("shadow", 40, 40)
    assert (e.challenger_correct, e.champion_correct, e.disagreed) == (32, 40, 8)
    assert (e.attempts, e.failures) == (41, 1)
    assert judge.decide(e, Settings()).action == "withdraw"


def test_nothing_rolled_out_is_said(settings):
    assert judge.judge(Settings()).line() == (
        f"level 2 judge: {settings.model_name} has no challenger rolled out"
    )
