"""Safe rollout in the service: a challenger in shadow answers every request unseen (logged under
the request's prediction_id, counted as agreeing or not); a canary answers its share of callers,
the same caller always the same model, each answer naming its version; a challenger that fails
costs the caller nothing and its failure is logged for the judge. And the switch itself: the
registry's `challenger` alias and its tags, followed by the service."""

import dataclasses

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from level2_pipelines import prediction_log, registry, rollout
from level2_pipelines.api import ServedModel, create_app
from level2_pipelines.data import features_and_target, reference_and_new_rows
from level2_pipelines.follower import Challenger
from level2_pipelines.model import build_pipeline
from level2_pipelines.predict import serving_predictor
from level2_pipelines.settings import Settings
from level2_pipelines.tests.api.test_monitoring import logged_rows, make_settings, wait_for
from level2_pipelines.tests.helpers import LINEAGE, add_version
from shared.contract import EXAMPLE_PAYLOAD, VALID_EXAMPLES

TOKEN = {"Authorization": "Bearer s3cret"}


def model(version: str, shuffle: bool = False) -> ServedModel:
    reference, _ = reference_and_new_rows(42)
    features, target = features_and_target(reference)
    if shuffle:  # a model that learnt nothing: it disagrees with the champion often
        target = target.sample(frac=1, random_state=0).to_numpy()
    pipeline = build_pipeline(42).fit(features, target)
    lineage = dataclasses.replace(LINEAGE, version=version)
    return ServedModel(lineage=lineage, predictor=serving_predictor(pipeline))


class Broken:
    """A challenger whose every prediction raises, as a model that will not run might."""

    classes = ("Adelie", "Chinstrap", "Gentoo")

    def predict_proba(self, rows):
        raise RuntimeError("this model cannot predict")


@pytest.fixture(scope="module")
def champion() -> ServedModel:
    return model("7")


@pytest.fixture(scope="module")
def other() -> ServedModel:
    return model("8", shuffle=True)


def shadow_rows(settings: Settings) -> list[dict]:
    engine = sa.create_engine(settings.resolved_prediction_log_uri)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(prediction_log.shadow_answers)).mappings().all()
    engine.dispose()
    return [dict(row) for row in rows]


def samples(client: TestClient, name: str) -> dict[tuple, float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(name)
    }


def test_a_shadow_answers_every_request_unseen_and_is_logged_under_its_id(
    tmp_path, champion, other
):
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, champion, record=True)) as client:
        client.app.state.challenger = Challenger(other, "shadow", 1.0)
        answers = [client.post("/predict", json=p).json() for p in VALID_EXAMPLES.values()]
        batch = client.post("/predict/batch", json={"penguins": list(VALID_EXAMPLES.values())})
        answers += batch.json()["predictions"]
        shadows = wait_for(lambda: len(rows := shadow_rows(settings)) == len(answers) and rows)
        counted = samples(client, "penguins_shadow_answers_total")
        timed = samples(client, "penguins_model_duration_seconds_count")

    assert {a.get("model_version", "7") for a in answers} == {"7"}  # only the champion's seen
    assert batch.json()["model_version"] == "7"
    assert {r["prediction_id"] for r in shadows} == {a["prediction_id"] for a in answers}
    assert {r["model_version"] for r in shadows} == {"8"}
    assert all(r["predicted"] and r["error"] is None for r in shadows)
    assert {r["prediction_id"] for r in logged_rows(settings)} == {
        a["prediction_id"] for a in answers
    }  # the champion's answers logged as ever, once each
    assert sum(counted.values()) == len(answers)
    agreed = {dict(labels)["agreed"] for (_, labels) in counted}
    assert agreed <= {"yes", "no"}
    challenger = (("model_version", "8"), ("role", "challenger"))
    assert timed[("penguins_model_duration_seconds_count", challenger)] == 1 + len(VALID_EXAMPLES)


def test_a_canary_answers_its_share_of_callers_each_always_by_the_same_model(
    tmp_path, champion, other
):
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, champion, record=True)) as client:
        client.app.state.challenger = Challenger(other, "canary", 0.3)

        def version(caller: str) -> str:
            headers = {"X-Caller-Id": caller}
            return client.post("/predict", json=EXAMPLE_PAYLOAD, headers=headers).json()[
                "model_version"
            ]

        first = {f"caller-{n}": version(f"caller-{n}") for n in range(200)}
        again = {caller: version(caller) for caller in list(first)[:40]}
        anonymous = {
            client.post("/predict", json=EXAMPLE_PAYLOAD).json()["model_version"] for _ in range(5)
        }

    share = sum(v == "8" for v in first.values()) / len(first)
    assert set(first.values()) == {"7", "8"}
    assert 0.2 < share < 0.4  # the hash draws about the share asked for
    assert all(first[caller] == v for caller, v in again.items())  # sticky
    assert len(anonymous) == 1  # no header: the same request, the same model


@pytest.mark.parametrize("share, expected", [(0.0, {"7"}), (1.0, {"8"})])
def test_a_canary_share_of_none_or_all(tmp_path, champion, other, share, expected):
    with TestClient(create_app(make_settings(tmp_path), champion, record=True)) as client:
        client.app.state.challenger = Challenger(other, "canary", share)
        seen = {
            client.post("/predict", json=EXAMPLE_PAYLOAD, headers={"X-Caller-Id": str(n)}).json()[
                "model_version"
            ]
            for n in range(30)
        }
    assert seen == expected


@pytest.mark.parametrize("mode", ["canary", "shadow"])
def test_a_failing_challenger_costs_the_caller_nothing_and_is_logged(tmp_path, champion, mode):
    settings = make_settings(tmp_path)
    broken = ServedModel(lineage=dataclasses.replace(LINEAGE, version="9"), predictor=Broken())
    with TestClient(create_app(settings, champion, record=True)) as client:
        client.app.state.challenger = Challenger(broken, mode, 1.0)
        answers = [client.post("/predict", json=EXAMPLE_PAYLOAD) for _ in range(3)]
        failures = wait_for(lambda: len(rows := shadow_rows(settings)) == 3 and rows)
        errors = samples(client, "penguins_challenger_errors_total")

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert {a.json()["model_version"] for a in answers} == {"7"}
    assert {r["prediction_id"] for r in failures} == {a.json()["prediction_id"] for a in answers}
    assert all(r["predicted"] is None and "cannot predict" in r["error"] for r in failures)
    assert errors == {("penguins_challenger_errors_total", (("model_version", "9"),)): 3.0}


def test_the_switch_is_the_registrys_challenger_alias_and_its_tags(settings, candidate):
    client = MlflowClient()
    name = settings.model_name
    first = add_version(settings, candidate)
    second = add_version(settings, candidate)
    registry.promote(client, name, first, registry.CHAMPION, None)

    rollout.start(client, name, second, "canary", 0.25, first)
    switch = rollout.switch_of(client, name)
    withdrawn = rollout.withdraw(client, name, "a person said so")

    assert switch == rollout.Switch(second, "canary", 0.25)
    assert withdrawn == second
    assert rollout.switch_of(client, name) is None
    tags = client.get_model_version(name, second).tags
    assert tags["rollout_verdict"] == "withdrawn"
    assert tags["rollout_reason"] == "a person said so"
    assert str(registry.version_by_alias(client, name, registry.CHAMPION).version) == first


def test_a_challenger_waiting_for_a_person_is_not_rolled_out(settings, candidate):
    client = MlflowClient()
    name = settings.model_name
    first, second = add_version(settings, candidate), add_version(settings, candidate)
    registry.promote(client, name, first, registry.CHAMPION, None)
    registry.promote(client, name, second, registry.CHALLENGER, first)  # --approval manual

    assert rollout.switch_of(client, name) is None


def test_a_share_outside_0_to_1_is_refused_naming_it(settings, candidate):
    client = MlflowClient()
    version = add_version(settings, candidate)

    with pytest.raises(registry.RegistryError, match=r"canary_share: 1\.5 is outside 0-1"):
        rollout.start(client, settings.model_name, version, "canary", 1.5, None)
    with pytest.raises(ValidationError, match="canary_share"):
        Settings(canary_share=-0.1)
    assert registry.version_by_alias(client, settings.model_name, registry.CHALLENGER) is None


def test_the_service_follows_the_challenger_and_drops_it_when_withdrawn(settings, candidate):
    client = MlflowClient()
    name = settings.model_name
    first, second = add_version(settings, candidate), add_version(settings, candidate)
    registry.promote(client, name, first, registry.CHAMPION, None)
    rollout.start(client, name, second, "canary", 1.0, first)
    served = Settings(poll_seconds=60, prediction_log=False, admin_token="s3cret")

    with TestClient(create_app(served)) as service:
        service.post("/admin/reload", headers=TOKEN)
        rolled_out = service.app.state.challenger
        answered_by = service.post("/predict", json=EXAMPLE_PAYLOAD).json()["model_version"]
        rollout.withdraw(client, name, "enough")
        service.post("/admin/reload", headers=TOKEN)
        after = service.app.state.challenger
        answered_after = service.post("/predict", json=EXAMPLE_PAYLOAD).json()["model_version"]

    assert (rolled_out.version, rolled_out.mode, rolled_out.share) == (second, "canary", 1.0)
    assert answered_by == second
    assert after is None
    assert answered_after == first


def test_the_canary_hash_is_uniform_enough():
    """Over many callers the share answered is the share asked, for any version."""
    keys = [f"caller-{n}".encode() for n in range(5000)]
    for version, share in [("2", 0.1), ("3", 0.5), ("11", 0.9)]:
        drawn = np.mean([rollout.answers_caller(version, share, key) for key in keys])
        assert abs(drawn - share) < 0.03


def test_in_shadow_the_feedback_on_an_answer_judges_both_models_on_metrics(
    tmp_path, champion, other
):
    """The true species given for the champion's answer is held against the challenger's
    unseen answer to the same request: both live accuracies on /metrics."""
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, champion, record=True)) as client:
        client.app.state.challenger = Challenger(other, "shadow", 1.0)
        answers = [client.post("/predict", json=p).json() for p in VALID_EXAMPLES.values()]
        shadows = wait_for(lambda: len(rows := shadow_rows(settings)) == len(answers) and rows)
        for answer in answers:  # the champion was right on every one (say the biologists)
            confirmed = {"prediction_id": answer["prediction_id"], "species": answer["species"]}
            assert client.post("/feedback", json=confirmed, headers=TOKEN).status_code == 200
        labelled = ("penguins_shadow_feedback_labelled", (("model_version", "8"),))
        # /metrics re-reads the log every few seconds: wait until it has counted every answer.
        everyone = len(answers)
        shown = wait_for(
            lambda: (s := samples(client, "penguins_")).get(labelled) == everyone and s
        )

    said = {a["prediction_id"]: a["species"] for a in answers}
    agreed = sum(r["predicted"] == said[r["prediction_id"]] for r in shadows)
    assert shown[labelled] == len(answers)
    assert shown[("penguins_shadow_live_accuracy", (("model_version", "8"),))] == pytest.approx(
        agreed / len(answers)
    )
    assert shown[("penguins_live_accuracy", (("model_version", "7"),))] == 1.0
