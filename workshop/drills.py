"""Failure drills: one scenario, run against all three levels, narrated step by step, ending
with a one-line verdict per level.

    python -m workshop.drills bad-data | regression | bad-request | rollback | drift | canary
    (make drill-bad-data, make drill-regression, make drill-bad-request, make drill-rollback,
    make drill-drift, make drill-canary)

Each drill works in its own lab folder, state/drills/<drill>/, and leaves the levels' own
state (state/level0, level1, level2) as it found it. A drill whose level fails (a command that
exits with an error, a service that does not start) stops there, names that step and what it
said, and exits with 1.
"""

import argparse
import subprocess
import sys
from collections.abc import Callable

from shared.contract import INVALID_EXAMPLES
from shared.paths import state_dir
from workshop.lab import Lab, ServiceFailed, stop_on_sigterm
from workshop.scorecard import LEVELS, Row, Scorecard, service_probes
from workshop.scorecard.cells import failed_service, failed_step
from workshop.scorecard.runner import new_data_and_rollback
from workshop.scorecard.scenarios import bad_requests, corrupted, worse_model
from workshop.scorecard.scenarios import canary as canary_scenario
from workshop.scorecard.scenarios import drift as drift_scenario
from workshop.scorecard.table import side_by_side


def baseline(card: Scorecard) -> None:
    """Every level trained once on the shared data, and in service (level 1 handed off, level 2
    promoted), side by side: the levels share no folder in the lab."""
    card.say("every level trains once on the shared data, side by side")

    def level1() -> None:
        card.lab.train_level1()
        card.lab.hand_off_level1()

    side_by_side(
        {
            "level 0": card.lab.train_level0,
            "level 1": level1,
            "level 2": lambda: card.lab.run_level2().check_returncode(),
        }
    )


def bad_data(card: Scorecard) -> Row:
    baseline(card)
    return card.add(corrupted.observe(card))


def regression(card: Scorecard) -> Row:
    baseline(card)
    return card.add(worse_model.observe(card))


def bad_request(card: Scorecard) -> Row:
    baseline(card)
    with card.lab.services() as urls:
        post = {level: service_probes(url)["post"] for level, url in urls.items()}
        card.say(f"{'request':<16}" + "".join(f"{level:>10}" for level in LEVELS))
        for example in INVALID_EXAMPLES:
            statuses = [post[level]("/predict", example.body) for level in LEVELS]
            card.say(
                f"{example.name:<16}"
                + "".join(f"{s:>10}" for s in statuses)
                + f"   ({example.why}; field {example.field})"
            )
        cells = {level: bad_requests.probe_bad_requests(post[level]) for level in LEVELS}
        return card.add(bad_requests.row(card, cells))


def rollback(card: Scorecard) -> Row:
    """New data gives each level a new model to withdraw; the verdict is the withdrawal."""
    baseline(card)
    with card.lab.services() as urls:
        _, withdrawn = new_data_and_rollback(card, urls)
    return withdrawn


def drift(card: Scorecard) -> Row:
    """Both drift rows are told as they come; the verdict is whether each level noticed."""
    baseline(card)
    with card.lab.services() as urls:
        noticed, accuracy = drift_scenario.observe(card, urls)
        card.add(noticed)
        card.add(accuracy)
    return noticed


def canary(card: Scorecard) -> Row:
    """A worse model meets callers: all of them at levels 0 and 1; at level 2 a share, on
    trial, until the judge withdraws it on their confirmed birds."""
    baseline(card)
    return card.add(canary_scenario.observe(card))


DRILLS: dict[str, Callable[[Scorecard], Row]] = {
    "bad-data": bad_data,
    "regression": regression,
    "bad-request": bad_request,
    "rollback": rollback,
    "drift": drift,
    "canary": canary,
}


def run_drill(name: str, lab: Lab) -> int:
    """Run one drill in `lab`, narrated on stdout: 0 with its verdict, or 1 with the failed
    step on stderr (never a traceback: a level failing is what a drill may well meet)."""
    card = Scorecard(lab, lambda message: print(f"-- {message}", flush=True))
    print(f"== drill {name}: working in {lab.root}", flush=True)
    try:
        capability, cells = DRILLS[name](card)
    except subprocess.CalledProcessError as error:
        return failed(name, failed_step(error))
    except subprocess.TimeoutExpired as error:
        command = " ".join(str(a) for a in error.cmd[1:])
        return failed(name, f"a level's command did not finish: python {command}")
    except ServiceFailed as error:
        return failed(name, failed_service(error))
    print(f"\n== verdict: {capability}")
    for level in LEVELS:
        print(f"   {level}: {cells[level]}")
    return 0


def failed(name: str, why: str) -> int:
    print(f"drill {name}: {why}", file=sys.stderr, flush=True)
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one failure drill against every level.")
    parser.add_argument("drill", choices=sorted(DRILLS))
    name = parser.parse_args().drill
    stop_on_sigterm()
    sys.exit(run_drill(name, Lab(state_dir() / "drills" / name)))


if __name__ == "__main__":
    main()
