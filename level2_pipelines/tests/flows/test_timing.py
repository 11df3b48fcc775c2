"""The run's clock reaches the stages: a Prefect task called from a flow measures into the
clock its flow opened, with no clock among its parameters; outside a flow it measures nothing."""

import pytest
from prefect import flow, task

from level2_pipelines.timing import MLFLOW, WORK, Clock, clocked, measure

pytestmark = pytest.mark.usefixtures("prefect_api")


@task
def a_stage() -> None:
    with measure(WORK, "a stage"):
        pass
    with measure(MLFLOW, "a stage"):
        pass


@flow
def a_flow() -> Clock:
    with clocked() as clock:
        a_stage()
        a_stage()
    return clock


def test_clock_measures_the_tasks_of_its_flow():
    """Both kinds of seconds of a task, called twice, land in the flow's clock as one key each."""
    clock = a_flow()

    assert set(clock.seconds) == {(WORK, "a stage"), (MLFLOW, "a stage")}
    assert clock.total(WORK) > 0 and clock.total(MLFLOW) > 0


def test_clock_outside_a_flow_measures_nothing():
    """A stage's logic run without a clock (as tests call `task.fn`) neither fails nor leaks
    its seconds into a clock opened later."""
    a_stage.fn()

    with clocked() as clock:
        pass

    assert clock.seconds == {}
