"""One scorecard run: every scenario (scenarios/), in an order that lets the levels work side by
side, each row put in the table as it is observed.

The levels share no folder, port or database in the lab, so each phase runs the three levels'
commands side by side (one thread per level, each waiting on its subprocesses), and each
level's own tests run in the background (from the moment the lab's Prefect server is up: its
start is on level 2's path). Level 2's five pipeline runs share that one server instead of
booting a temporary one each. Phases follow one another where an observation needs it: the
services are probed before new data replaces their models, levels 0 and 1 are looked at only
after level 2 had its time to follow, and the load test runs last, alone, so that nothing else
competes with the services for the two cores.

Nothing is trained for one row only when another's training shows the same: the two first
trainings give reproducibility, the record of training and the models every service serves;
the corrupted batch, the worse model and the new data each need a training of their own. What
each level costs is read from the same run: its processes at rest once the services are up,
its retraining on new data, the commands the new-data and rollback scenarios counted.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from workshop.scorecard.cells import CORRUPTED, LEVELS, WORSE, Row
from workshop.scorecard.scenarios import (
    bad_requests,
    corrupted,
    cost,
    drift,
    endpoints,
    knowledge,
    level_tests,
    new_data,
    records,
    reproducible,
    rollback,
    same_model,
    serving,
    training,
    worse_model,
)
from workshop.scorecard.table import Scorecard, side_by_side

# Each asks a running service; one pass per level asks them all, in this order.
SERVICE_SCENARIOS = (same_model, bad_requests, endpoints, knowledge)


def run(card: Scorecard, quick: bool = False) -> None:
    """Every scenario, every level: the whole scorecard, into `card`."""
    with ExitStack() as stack, ThreadPoolExecutor(len(LEVELS)) as pool:
        try:
            suites: list[level_tests.Suites] = []

            def prefect() -> None:  # in level 2's thread, while the others train
                card.say_prefect(stack.enter_context(card.lab.prefect_server()))
                # Only now: the server's start is on level 2's path, and the machine
                # has two cores.
                suites.append(level_tests.Suites(card, quick, pool))

            training.train_everything(card, before_level2=prefect)
            with card.lab.services() as urls:
                card.say("services up: " + ", ".join(f"{lv} {u}" for lv, u in urls.items()))
                cost.measure_at_rest(card)  # before any probe asks them anything
                probe_services(card, urls)
                card.add(reproducible.observe(card))
                card.add(records.observe(card))
                probe_changes(card, urls)
                for row in drift.observe(card, urls):
                    card.add(row)
                stack.close()  # the Prefect server: no level 2 run is left
                if not suites[0].finished():
                    card.say("waiting for the levels' own tests to finish")
                card.add(suites[0].row())
                card.add(serving.observe(card))
                for row in cost.observe(card):
                    card.add(row)
        except BaseException:
            card.lab.stop()  # the tests in the background: a failed run does not wait
            raise


def probe_services(card: Scorecard, urls: dict[str, str]) -> list[Row]:
    """The services' scenarios, one thread per level asking its service all of them."""
    birds = len(card.held_out)
    card.say(f"sending {birds} held-out birds and the invalid requests to every service")

    def observe(url: str) -> list:
        return [scenario.observe(card, url) for scenario in SERVICE_SCENARIOS]

    seen = side_by_side({lv: lambda url=url: observe(url) for lv, url in urls.items()})
    return [
        card.add(scenario.row(card, {lv: seen[lv][i] for lv in LEVELS}))
        for i, scenario in enumerate(SERVICE_SCENARIOS)
    ]


def probe_changes(card: Scorecard, urls: dict[str, str]) -> None:
    """A corrupted batch, a worse model and new data: each level takes the three in turn in
    its own thread (their folders are apart), then the rollback."""
    corrupted_batch, worse_batch = corrupted.batch(card.lab), worse_model.batch(card.lab)
    card.say("each level meets a corrupted batch, a worse model and new data, side by side")

    def before_new_data(level: str) -> Callable[[], None]:
        def steps() -> None:
            card.put(CORRUPTED, level, corrupted.STEPS[level](card, corrupted_batch))
            card.put(WORSE, level, worse_model.STEPS[level](card, worse_batch))

        return steps

    new_data_and_rollback(card, urls, {level: before_new_data(level) for level in LEVELS})


def new_data_and_rollback(
    card: Scorecard, urls: dict[str, str], also: dict[str, Callable[[], None]] | None = None
) -> tuple[Row, Row]:
    """New data, then its model withdrawn: both rows (`also`: as new_data.observe's)."""
    row, replaced = new_data.observe(card, urls, also)
    return card.add(row), card.add(rollback.observe(card, urls, replaced))
