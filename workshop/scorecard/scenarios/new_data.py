"""New data arrives: every level retrains on new birds as its README says, side by side, and
each service is then asked what it serves. Level 2 is timed from the batch to its new
champion served; levels 0 and 1 are looked at once each has had as long since its hand-off."""

import pickle
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from workshop.lab import Lab
from workshop.scorecard.cells import NEW_DATA, Cell, Row, not_measured, shown
from workshop.scorecard.machines import CpuMeter, folder_bytes
from workshop.scorecard.probes import (
    SAME_P,
    no_new_champion,
    not_served,
    run_level2,
    served_card,
    served_probabilities,
    served_version,
    wait_until_served,
)
from workshop.scorecard.table import Retraining, Scorecard, side_by_side

if TYPE_CHECKING:
    import pandas as pd

# What a person must judge to put a new batch's model in service, beyond typing the commands:
# declared here, beside the commands this scenario runs. Level 2's gate judges for them.
DECISIONS = {
    "level 0": ("is the new model better? (the notebook's metrics, read by eye)",),
    "level 1": ("is the new card's model better than the one served?",),
    "level 2": (),
}
RESTART = {"level 0": "make level0-serve", "level 1": "make level1-serve"}


def new_birds(lab: Lab) -> Path:
    path = lab.root / "new_birds.csv"
    if not path.exists():
        from shared.simulate import simulate_batch

        simulate_batch(200, seed=23).to_csv(path, index=False)
    return path


def observe(
    card: Scorecard, urls: dict[str, str], also: dict[str, Callable[[], None]] | None = None
) -> tuple[Row, dict[str, Any]]:
    """The row, and what each level served before: the model a rollback restores. `also`
    runs first in each level's thread (the full run's corrupted batch and worse model)."""
    lab, birds = card.lab, new_birds(card.lab)
    pickle_path = lab.root / "level0" / "model.pkl"
    replaced = {"level 0": pickle_path.read_bytes(), "level 1": served_card(urls["level 1"])}
    also = also or {}
    handed_off: dict[str, float] = {}

    def level0() -> None:
        also.get("level 0", lambda: None)()
        with retraining(card, "level 0"):
            card.typed(  # into the folder its server reads from
                NEW_DATA,
                "level 0",
                "python -m level0_notebook.run --new-batch FILE",
                lambda: lab.train_level0(new_batch=birds),
            )
        handed_off["level 0"] = time.perf_counter()

    def level1() -> dict:
        also.get("level 1", lambda: None)()
        with retraining(card, "level 1"):
            model_card = card.typed(
                NEW_DATA,
                "level 1",
                "python -m level1_devops.train --new-batch FILE",
                lambda: lab.train_level1(new_batch=birds),
            )
            card.typed(NEW_DATA, "level 1", "make level1-handoff", lab.hand_off_level1)
        handed_off["level 1"] = time.perf_counter()
        return model_card

    def level2() -> tuple[Cell, float]:
        also.get("level 2", lambda: None)()
        replaced["level 2"] = served_version(urls["level 2"])  # after `also`'s runs
        card.say("new data arrives: each level retrains as its README says")
        started = time.perf_counter()
        with retraining(card, "level 2"):
            cell = level2_follows(card, urls["level 2"], birds, replaced["level 2"])
        return cell, time.perf_counter() - started

    done = side_by_side({"level 0": level0, "level 1": level1, "level 2": level2})
    level2_cell, level2_took = done["level 2"]
    # Levels 0 and 1 are looked at once each has had, since its hand-off, at least the time
    # level 2 took from the new batch to a served champion: the same chance to follow.
    latest = max(handed_off["level 0"], handed_off["level 1"])
    time.sleep(max(0.0, latest + level2_took - time.perf_counter()))
    now = time.perf_counter()
    cells = {
        "level 0": new_data_level0(
            urls["level 0"],
            replaced["level 0"],
            pickle_path.read_bytes(),
            now - handed_off["level 0"],
            card.held_out,
        ),
        "level 1": new_data_level1(
            urls["level 1"],
            replaced["level 1"],
            done["level 1"]["version"],
            now - handed_off["level 1"],
        ),
        "level 2": level2_cell,
    }
    for level, cell in cells.items():
        steps = card.person(NEW_DATA, level)
        steps.decisions += DECISIONS[level]
        if cell.ok is False and level in RESTART:  # this run saw the service not follow
            steps.declared.append(f"{RESTART[level]} (restart: the service does not follow)")
    return (NEW_DATA, cells), replaced


@contextmanager
def retraining(card: Scorecard, level: str) -> Iterator[None]:
    """The level's CPU, wall time and state folder's growth while it retrains."""
    folder = card.lab.root / level.replace(" ", "")
    before = folder_bytes(folder)
    with CpuMeter(level).measuring() as usage:
        yield
    card.retraining[level] = Retraining(usage, folder_bytes(folder) - before)


def level2_follows(card: Scorecard, url: str, batch: Path, before: str | None) -> Cell:
    """✓ only if the service comes to serve a version this batch's run registered and
    promoted, other than the one it served before, within `serve_wait_s`."""
    start = time.perf_counter()
    command = "make level2 BATCH=FILE"
    run = card.typed(
        NEW_DATA, "level 2", command, lambda: run_level2(card.lab, "--batch", str(batch))
    )
    refused = no_new_champion(run)
    if refused is not None:
        return refused
    served, seen = wait_until_served(url, run.version, card.serve_wait_s)
    if not served:
        return not_served(run.version, seen, before, card.serve_wait_s)
    seconds = time.perf_counter() - start
    return Cell(
        True,
        f"automatic: {seconds:.0f} s from batch to v{run.version} served (was {shown(before)})",
    )


def new_data_level0(url: str, old: bytes, new: bytes, waited: float, rows: "pd.DataFrame") -> Cell:
    """Which pickle the level 0 server answers with: its answers on the held-out birds
    against each pickle's own."""
    before, after = (pickle.loads(p).predict_proba(rows) for p in (old, new))
    if np.allclose(before, after, rtol=0, atol=SAME_P):
        return not_measured("the new pickle answers as the old one")
    try:
        served = served_probabilities(url, rows)
    except (httpx.HTTPError, ValueError, KeyError) as error:
        return not_measured(f"the server did not answer ({error!r})")
    if np.allclose(served, after, rtol=0, atol=SAME_P):
        return Cell(True, "the server answers with the new pickle")
    if np.allclose(served, before, rtol=0, atol=SAME_P):
        return Cell(False, f"the server still answers with the old pickle {waited:.0f} s later")
    return Cell(False, "the server answers with neither pickle")


def new_data_level1(url: str, old: str | None, new: str, waited: float) -> Cell:
    if new == old:
        return not_measured(f"retraining gave the same model ({new})")
    served = served_card(url)
    if served == new:
        return Cell(True, f"serves {new} after the hand-off")
    now = "still serves" if served == old else "serves"
    return Cell(False, f"handed off {new}; {now} {served} {waited:.0f} s later")
