"""Schemathesis against level 2's own OpenAPI document, with every check it has, on the service
following a real registry, with and without the admin token.

Where `test_fuzz.py` aims at the contract, schemathesis reads only the published document and
checks that the service keeps it: no 5xx, only documented statuses and content types, bodies
that match their schemas, valid data accepted and invalid data refused, unsupported methods
refused. Its examples, coverage and fuzzing phases run with valid and invalid data, a few
hundred requests per run. (The stateful phase needs links between operations; there are none.)
"""

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import settings as hypothesis_settings

from level2_pipelines import registry
from level2_pipelines.api import create_app
from level2_pipelines.settings import Settings
from level2_pipelines.tests.helpers import log_candidate
from level2_pipelines.tracking import connect

TOKEN = "schemathesis-admin-token"
# Every check on, and both kinds of data, stated here rather than left to defaults. The
# `max_response_time` check stays off: it needs a limit, and speed is what benchmarks measure.
CONFIG = schemathesis.Config.from_dict({"checks": {"enabled": True}, "generation": {"mode": "all"}})
# Schemathesis binds its schema to the app when tests are collected (its `ignored_auth` check
# sends probes of its own through it), so the app and its state folder exist from import time.
# The app starts (lifespan: connect, follow) on the first request, after the fixture below has
# filled its registry. The state folder goes when the module ends.
SETTINGS = Settings(
    state_dir=Path(tempfile.mkdtemp(prefix="level2-schemathesis-")),
    model_name="penguins-schemathesis",
    admin_token=TOKEN,
    poll_seconds=3600,  # reloads and rollbacks are what move it here
)
APP = create_app(SETTINGS)
schema = schemathesis.openapi.from_dict(APP.openapi(), config=CONFIG)
schema.app = APP


@pytest.fixture(scope="module", autouse=True)
def champion_with_history():
    """A champion with two before it, so rollbacks have a history to walk before they are
    refused; the app serves it from its first request."""
    client = connect(SETTINGS)
    candidate = log_candidate(SETTINGS)
    for _ in range(3):
        version = registry.register(
            client, SETTINGS.model_name, candidate.model_uri, candidate.run_id, candidate.lineage
        )
        judged = registry.version_by_alias(client, SETTINGS.model_name, registry.CHAMPION)
        registry.promote(
            client, SETTINGS.model_name, version, registry.CHAMPION, judged and str(judged.version)
        )
    yield
    shutil.rmtree(SETTINGS.state_dir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(120)
@schema.parametrize()
@hypothesis_settings(max_examples=60, deadline=None, database=None, derandomize=True)
def test_api_keeps_its_openapi_document_anonymous(case):
    """Generated requests without a token pass all of schemathesis's checks."""
    case.call_and_validate(app=APP)


@pytest.mark.slow
@pytest.mark.timeout(120)
@schema.parametrize()
@hypothesis_settings(max_examples=60, deadline=None, database=None, derandomize=True)
def test_api_keeps_its_openapi_document_as_admin(case):
    """Generated requests with the admin token (reloads, rollbacks) pass all the checks."""
    case.call_and_validate(app=APP, headers={"Authorization": f"Bearer {TOKEN}"})
