"""The decision lock: a file on one machine, PostgreSQL's advisory lock for a team (by default
wherever the prediction log is on PostgreSQL); a wait is bounded and names what it waited on.
The advisory lock across processes and hosts is tested against PostgreSQL in
tests/team/test_decision_lock.py (`make test-team`)."""

import threading
import time

import pytest

from level2_pipelines import registry
from level2_pipelines.settings import Settings
from shared.servers import free_port


def test_the_lock_is_in_postgresql_when_the_prediction_log_is():
    team_log = "postgresql+psycopg://penguins@db:5432/penguins_predictions"

    assert Settings(prediction_log_uri=team_log).resolved_lock_uri == team_log
    assert Settings(prediction_log_uri="sqlite:////tmp/p.db").resolved_lock_uri is None
    chosen = "postgresql+psycopg://penguins@locks:5432/locks"
    assert Settings(prediction_log_uri=team_log, decision_lock_uri=chosen).resolved_lock_uri == (
        chosen
    )


def test_a_file_lock_held_elsewhere_is_waited_for_within_the_bound_and_named(tmp_path):
    settings = Settings(state_dir=tmp_path, decision_wait_s=0.3, prediction_log_uri=None)
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with registry.decision(settings):
            held.set()
            done.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    started = time.monotonic()
    try:
        with (
            pytest.raises(registry.RegistryError, match=r"decision\.lock for 0 s"),
            registry.decision(settings),
        ):
            pass
    finally:
        done.set()
        thread.join()

    assert time.monotonic() - started < 5


def test_a_lock_database_that_cannot_be_reached_is_named_without_its_password(tmp_path):
    port = free_port()
    settings = Settings(
        state_dir=tmp_path,
        decision_lock_uri=f"postgresql+psycopg://penguins:hunter2@127.0.0.1:{port}/locks",
    )

    with pytest.raises(registry.RegistryUnavailable) as refused, registry.decision(settings):
        pass

    assert f"cannot reach PostgreSQL 127.0.0.1:{port}/locks" in str(refused.value)
    assert "hunter2" not in str(refused.value)
