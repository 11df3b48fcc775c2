"""The alert rules and the dashboard watch series the service really shows: every metric name
in their PromQL is on the running app's `GET /metrics`. promtool checks the rules' logic
(`make test-alerts`); these checks need nothing but the app."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from level2_pipelines.api import ServedModel, create_app
from level2_pipelines.data import features_and_target, reference_and_new_rows
from level2_pipelines.metrics import ServiceMetrics
from level2_pipelines.model import build_pipeline
from level2_pipelines.predict import serving_predictor
from level2_pipelines.tests.api.test_monitoring import (
    TOKEN,
    make_settings,
    record_verdict,
    scrape_once_read,
)
from level2_pipelines.tests.helpers import LINEAGE
from shared.contract import EXAMPLE_PAYLOAD

INFRA = Path(__file__).resolve().parents[2] / "infra"
RULES = INFRA / "prometheus" / "alerts.yml"
RULE_TESTS = INFRA / "prometheus" / "alerts.test.yml"
DASHBOARD = INFRA / "grafana" / "penguins.json"
# Made by Prometheus itself for each scrape, not by the service.
PROMETHEUS_OWN = {"up"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: its identifiers once strings, label
    matchers, ranges, groupings, Grafana's variables and function calls are set aside."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\b(?:group_left|group_right)\b", " ", expr)
    names = re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {name for name in names if name.lower() not in PROMQL_WORDS}


def rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {
        f"{panel['title']} / {target['refId']}": target["expr"]
        for panel in panels
        for target in panel.get("targets", [])
    }


@pytest.fixture(scope="module")
def exposed(tmp_path_factory) -> set[str]:
    """The sample names of a service that answered, was told the truth, and read a drift
    verdict: every series it can show without a challenger on trial."""
    settings = make_settings(tmp_path_factory.mktemp("exposed"))
    record_verdict(settings, at=1.7e9, drifted="island", checks={"island": (1e-9, 30.0)})
    reference, _ = reference_and_new_rows(42)
    pipeline = build_pipeline(42).fit(*features_and_target(reference))
    model = ServedModel(lineage=LINEAGE, predictor=serving_predictor(pipeline))
    with TestClient(create_app(settings, model, record=True)) as client:
        answer = client.post("/predict", json=EXAMPLE_PAYLOAD).json()
        confirmed = {"prediction_id": answer["prediction_id"], "species": "Adelie"}
        client.post("/feedback", json=confirmed, headers=TOKEN)
        samples = scrape_once_read(client)
    return set(samples)


def test_metric_names_sets_aside_labels_functions_and_groupings():
    """Only selected series count: not functions, label names or values, nor keywords."""
    expr = (
        'histogram_quantile(0.99, sum by (le, handler) (rate(a_bucket{handler=~"/p.*"}'
        "[$__rate_interval]))) > on(job) group_left b and ignoring(model_version) c:rate5m "
        "unless d offset 5m or bool time() - e > 7 * 86400"
    )

    assert metric_names(expr) == {"a_bucket", "b", "c:rate5m", "d", "e"}


def test_alert_rules_name_only_exposed_metrics(exposed):
    """Every rule's expression selects series the service shows (or Prometheus's `up`)."""
    unknown = {
        alert: sorted(metric_names(expr) - exposed - PROMETHEUS_OWN)
        for alert, expr in rule_expressions().items()
    }

    assert len(unknown) >= 8, "the rules were not read"
    assert {alert: names for alert, names in unknown.items() if names} == {}


def test_dashboard_queries_name_only_exposed_metrics(exposed):
    """Every panel's PromQL selects series the service shows (or Prometheus's `up`)."""
    unknown = {
        panel: sorted(metric_names(expr) - exposed - PROMETHEUS_OWN)
        for panel, expr in dashboard_expressions().items()
    }

    assert len(unknown) >= 10, "the panels were not read"
    assert {panel: names for panel, names in unknown.items() if names} == {}


def test_every_alert_has_a_promtool_unit_test():
    """Each alert in the rules is evaluated by at least one of promtool's unit tests."""
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }

    assert set(rule_expressions()) <= tested


def test_readiness_and_model_age_follow_the_served_model():
    """Nothing served: not ready and no training time; a model served: ready, and when it
    was trained."""
    metrics = ServiceMetrics(make_settings(Path("/nonexistent")))

    def shown() -> dict[str, float]:
        text = generate_latest(metrics.registry).decode()
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}

    metrics.show_served(None)
    before = shown()
    metrics.show_served(LINEAGE)
    after = shown()

    assert before["penguins_ready"] == 0
    assert before["penguins_served_model_trained_timestamp_seconds"] == 0
    assert after["penguins_ready"] == 1
    trained = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    assert after["penguins_served_model_trained_timestamp_seconds"] == trained
