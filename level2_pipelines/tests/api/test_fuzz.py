"""Schema-driven fuzzing of the level 2 service: over a thousand generated requests, never a 5xx.

Hypothesis builds bodies around the contract: valid payloads with one field mutated to any
JSON value, payloads with fields added or removed, arbitrary JSON, and arbitrary bytes.
"""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contract import EXAMPLE_PAYLOAD, FEATURES

REQUESTS = 1200

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
mutated_payloads = st.builds(
    lambda field, value: {**EXAMPLE_PAYLOAD, field: value},
    st.sampled_from([*FEATURES, "wingspan_cm", ""]),
    json_values,
)
partial_payloads = st.builds(
    lambda keep: {k: v for k, v in EXAMPLE_PAYLOAD.items() if k in keep},
    st.sets(st.sampled_from(FEATURES)),
)
bodies = st.one_of(
    mutated_payloads.map(lambda p: json.dumps(p).encode()),
    partial_payloads.map(lambda p: json.dumps(p).encode()),
    st.lists(mutated_payloads, max_size=3).map(lambda ps: json.dumps({"penguins": ps}).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


def test_fuzzed_requests_never_get_a_5xx(client):
    """1,200 generated bodies to /predict and /predict/batch: every answer is below 500."""
    statuses = []

    @settings(
        max_examples=REQUESTS,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure reproduces
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(path=st.sampled_from(["/predict", "/predict/batch"]), body=bodies)
    def send(path, body):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        statuses.append(response.status_code)
        assert response.status_code < 500, (path, body, response.text)

    send()

    assert len(statuses) >= 1000
    assert any(s == 200 for s in statuses) and any(400 <= s < 500 for s in statuses)
