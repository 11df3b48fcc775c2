"""Rollback: the model new data brought (new_data.py) must be withdrawn. Can each level go
back to the one it replaced?"""

import json
import re
import time
from pathlib import Path
from typing import Any

from workshop.scorecard.cells import ROLLBACK, Cell, Row, last_words, not_measured
from workshop.scorecard.probes import not_served, wait_until_served
from workshop.scorecard.table import Scorecard

# What a person does where this scenario only looks on disk (levels 0 and 1): declared here,
# chosen by what it found. Level 2's command is run and counted (level2 below).
BY_HAND = {
    ("level 0", "kept"): ["cp KEPT.pkl model.pkl", "make level0-serve (restart)"],
    ("level 0", "gone"): ["python -m level0_notebook.run on the old data", "make level0-serve"],
    ("level 1", "kept"): ["make level1-undo", "make level1-serve (restart)"],
    ("level 1", "gone"): [
        "python -m level1_devops.train on the old data",
        "make level1-handoff",
        "make level1-serve",
    ],
}
JUDGED = {
    (level, "gone"): ["which data and code made the replaced model?"]
    for level in ("level 0", "level 1")
}


def observe(card: Scorecard, urls: dict[str, str], replaced: dict[str, Any]) -> Row:
    """`replaced`: what each level served before the new data (new_data.observe's)."""
    card.say("the latest model must be withdrawn")
    cells = {
        "level 0": rollback_level0(card.lab.root / "level0", replaced["level 0"]),
        "level 1": rollback_level1(card.lab.root / "level1", replaced["level 1"]),
        "level 2": level2(card, urls["level 2"]),
    }
    for level in ("level 0", "level 1"):
        if cells[level].text.startswith("not measured"):  # nothing was replaced
            continue
        found = "kept" if cells[level].text.startswith("kept") else "gone"
        steps = card.person(ROLLBACK, level)
        steps.declared += BY_HAND.get((level, found), [])
        steps.decisions += JUDGED.get((level, found), [])
    return ROLLBACK, cells


def rollback_level0(folder: Path, replaced: bytes) -> Cell:
    """Whether the pickle the new data replaced is still in level 0's folder."""
    if (folder / "model.pkl").read_bytes() == replaced:
        return not_measured("retraining wrote the same pickle")
    pickles = sorted(folder.glob("*.pkl"))
    kept = [p.name for p in pickles if p.read_bytes() == replaced]
    if kept:
        return Cell(None, f"kept on disk: the replaced pickle, as {kept[0]}")
    names = ", ".join(p.name for p in pickles)
    return Cell(False, f"the replaced pickle is gone: {len(pickles)} on disk ({names})")


def rollback_level1(folder: Path, replaced: str | None) -> Cell:
    """Whether a card of the model the hand-off replaced is anywhere in level 1's folders."""
    if json.loads((folder / "serving" / "card.json").read_text())["version"] == replaced:
        return not_measured(f"the hand-off did not replace {replaced}")
    cards = {p: json.loads(p.read_text())["version"] for p in folder.rglob("card.json")}
    kept = [p.parent.name for p, version in cards.items() if version == replaced]
    if kept:
        return Cell(None, f"kept on disk: {replaced}, in {kept[0]}/")
    return Cell(False, f"the replaced model {replaced} is gone: {len(cards)} cards, none of it")


def level2(card: Scorecard, url: str) -> Cell:
    """`make level2-rollback`, then the version it names served within `serve_wait_s`."""
    start = time.perf_counter()
    result = card.typed(
        ROLLBACK,
        "level 2",
        "make level2-rollback",
        lambda: card.lab.run("level2_pipelines.registry", "rollback", check=False),
    )
    moved = re.search(r"from v(\d+) back to v(\d+)", result.stdout)
    if moved is None:
        return Cell(False, f"failed: {last_words(result.stderr or result.stdout)}")
    card.say(f"level 2: `make level2-rollback` said: {moved[0]}")
    served, seen = wait_until_served(url, moved[2], card.serve_wait_s)
    if not served:
        return not_served(moved[2], seen, moved[1], card.serve_wait_s)
    seconds = time.perf_counter() - start
    return Cell(True, f"one command: v{moved[1]} to v{moved[2]}, served after {seconds:.1f} s")
