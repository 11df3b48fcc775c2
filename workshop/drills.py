"""Failure drills: one scenario, run against all three levels, narrated step by step, ending
with a one-line verdict per level.

    python -m workshop.drills bad-data | regression | bad-request | rollback | drift
    (make drill-bad-data, make drill-regression, make drill-bad-request, make drill-rollback,
    make drill-drift)

Each drill works in its own lab folder, state/drills/<drill>/, and leaves the levels' own
state (state/level0, level1, level2) as it found it.
"""

import argparse
import subprocess
import sys

from shared.contract import INVALID_EXAMPLES
from shared.paths import state_dir
from workshop.lab import Lab
from workshop.scorecard import (
    BAD_REQUESTS,
    DRIFT,
    LEVELS,
    Scorecard,
    failed_step,
    probe_bad_requests,
    service_probes,
)


def baseline(card: Scorecard) -> None:
    """Every level trained once on the shared data, and in service (level 1 handed off)."""
    card.say("every level trains once on the shared data")
    card.lab.train_level0()
    card.first_card = card.card = card.lab.train_level1()
    card.lab.hand_off_level1()
    card.lab.run_level2().check_returncode()


def bad_data(card: Scorecard) -> None:
    baseline(card)
    card.probe_bad_data()


def regression(card: Scorecard) -> None:
    baseline(card)
    card.probe_worse_model()


def bad_request(card: Scorecard) -> None:
    baseline(card)
    with card.lab.services() as urls:
        probes = {level: service_probes(url) for level, url in urls.items()}
        card.say(f"{'request':<16}" + "".join(f"{level:>10}" for level in LEVELS))
        for example in INVALID_EXAMPLES:
            statuses = [probes[level]["post"]("/predict", example.body) for level in LEVELS]
            card.say(
                f"{example.name:<16}"
                + "".join(f"{s:>10}" for s in statuses)
                + f"   ({example.why}; field {example.field})"
            )
        card.add(
            VERDICT_ROWS["bad-request"],
            {level: probe_bad_requests(probes[level]["post"]) for level in LEVELS},
        )


def rollback(card: Scorecard) -> None:
    card.train_everything()
    with card.lab.services() as urls:
        card.probe_new_data_and_rollback(urls)


def drift(card: Scorecard) -> None:
    baseline(card)
    with card.lab.services() as urls:
        card.probe_drift(urls)


DRILLS = {
    "bad-data": bad_data,
    "regression": regression,
    "bad-request": bad_request,
    "rollback": rollback,
    "drift": drift,
}
VERDICT_ROWS = {
    "bad-data": "a corrupted training batch",
    "regression": "a worse model",
    "bad-request": BAD_REQUESTS,
    "rollback": "rollback",
    "drift": DRIFT,
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one failure drill against every level.")
    parser.add_argument("drill", choices=sorted(DRILLS))
    name = parser.parse_args().drill
    folder = state_dir() / "drills" / name
    card = Scorecard(Lab(folder), lambda message: print(f"-- {message}", flush=True))
    print(f"== drill {name}: working in {folder}")
    try:
        DRILLS[name](card)
    except subprocess.CalledProcessError as error:
        sys.exit(f"drill {name}: {failed_step(error)}")
    print(f"\n== verdict: {VERDICT_ROWS[name]}")
    for capability, cells in card.rows:
        if capability == VERDICT_ROWS[name]:
            for level in LEVELS:
                print(f"   {level}: {cells[level]}")


if __name__ == "__main__":
    main()
