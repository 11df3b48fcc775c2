"""Schemathesis against level 1's own OpenAPI document, with every check it has.

Where `test_fuzz.py` aims at the contract, schemathesis reads only the published document and
checks that the service keeps it: no 5xx, only documented statuses and content types, bodies
that match their schemas, valid data accepted and invalid data refused, unsupported methods
refused with a 405. Its examples, coverage and fuzzing phases run, with valid and invalid data:
about 430 requests. (The stateful phase needs links between operations; this document has none.)
"""

import pytest
import schemathesis
from hypothesis import settings

from level1_devops.api import create_app
from level1_devops.settings import Settings

# Every check on, and both kinds of data, stated here rather than left to whatever defaults or
# schemathesis.toml apply. `max_response_time` stays off: it needs a limit, and speed on this
# shared machine is what `bench.py` measures, not what this test guards.
CONFIG = schemathesis.Config.from_dict({"checks": {"enabled": True}, "generation": {"mode": "all"}})
# The document does not depend on the model, so it is read from an app that is never started.
# (`schemathesis.pytest.from_fixture` would read it from the served app, but 4.32.5 sets
# pytest's private `Node._nodeid`, which pytest 9.2 no longer has.)
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi(), config=CONFIG)


@pytest.fixture(scope="module")
def app(served, tmp_path_factory):
    """The service over the session's model; schemathesis runs its lifespan."""
    return create_app(Settings(state_dir=tmp_path_factory.mktemp("level1-state")), served)


@pytest.mark.slow
@pytest.mark.timeout(60)  # ~4 s here; a hang fails in a minute, not at the suite's 300 s limit
@schema.parametrize()
@settings(max_examples=100, deadline=None, database=None, derandomize=True)
def test_api_keeps_its_openapi_document(case, app):
    """Generated requests to every operation pass all of schemathesis's checks."""
    case.call_and_validate(app=app)
