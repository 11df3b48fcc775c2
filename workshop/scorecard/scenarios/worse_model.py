"""A worse model is trained (new birds with their species shuffled): does it reach the place a
model is served from, or does something stop it?"""

import json
from pathlib import Path

from workshop.lab import Lab
from workshop.scorecard.cells import WORSE, Cell, Row, attempt, not_measured, shown
from workshop.scorecard.probes import Level2Run, run_level2
from workshop.scorecard.table import Scorecard, side_by_side


def batch(lab: Lab, shuffled_share: float = 1.0) -> Path:
    """2,000 new birds, `shuffled_share` of them with their species shuffled."""
    path = lab.root / f"shuffled-{shuffled_share:.2f}.csv"
    if not path.exists():
        from shared.simulate import simulate_batch

        birds = simulate_batch(2000, seed=22)
        rows = birds.sample(frac=shuffled_share, random_state=0).index
        birds.loc[rows, "species"] = (
            birds.loc[rows, "species"].sample(frac=1, random_state=1).to_numpy()
        )
        birds.to_csv(path, index=False)
    return path


def observe(card: Scorecard, shuffled_share: float = 1.0) -> Row:
    path = batch(card.lab, shuffled_share)
    card.say(f"a worse model is trained (2,000 birds, {shuffled_share:.0%} with shuffled species)")
    return WORSE, side_by_side(
        {level: lambda step=step: step(card, path) for level, step in STEPS.items()}
    )


def level0(card: Scorecard, path: Path) -> Cell:
    """Whether the notebook writes the worse model where a person picks it up."""
    metrics, why = attempt(lambda: card.lab.train_level0("level0-worse", new_batch=path))
    if metrics is None:
        return not_measured(f"the notebook failed ({why})")
    if not (card.lab.root / "level0-worse" / "model.pkl").is_file():
        return not_measured("the notebook wrote no model.pkl")
    return Cell(False, f"notebook wrote model.pkl (macro F1 {metrics['macro_f1']:.3f})")


def level1(card: Scorecard, path: Path) -> Cell:
    """Whether level 1's hand-off takes the worse model (into a folder nothing serves)."""
    trained = card.lab.root / "level1" / "worse"
    serving = card.lab.root / "level1" / "worse-serving"
    model_card, why = attempt(lambda: card.lab.train_level1(trained, new_batch=path))
    if model_card is None:
        return not_measured(f"training failed ({why})")
    _, why = attempt(lambda: card.lab.hand_off_level1(trained, serving))
    if why:  # the hand-off checks that a pair loads, not how good it is
        return not_measured(f"the hand-off failed ({why})")
    handed = json.loads((serving / "card.json").read_text())["version"]
    if handed != model_card["version"]:
        return not_measured(f"the hand-off left {handed}, not {model_card['version']}")
    f1 = model_card["metrics"]["macro_f1"]
    return Cell(False, f"hand-off took it: {handed} (macro F1 {f1:.3f})")


def level2(card: Scorecard, path: Path) -> Cell:
    run = run_level2(card.lab, "--batch", str(path))
    if run.registered:
        card.say(f"level 2: v{run.version} gate={run.tags.get('gate')}: {run.first_reason}")
    return worse_model_cell(run)


STEPS = {"level 0": level0, "level 1": level1, "level 2": level2}


def worse_model_cell(run: Level2Run) -> Cell:
    """✓ only when this run registered a version the gate rejected and the champion stayed."""
    if run.store_error:
        return not_measured(f"the registry could not be read ({run.store_error})")
    if run.result.returncode != 0:
        return not_measured(f"the run failed ({run.failure})")
    if not run.registered:
        return not_measured(f"the run registered nothing ({run.said})")
    if run.champion_after == run.version:
        return Cell(False, f"PROMOTED: v{run.version} is the champion")
    if run.tags.get("gate") == "rejected" and run.champion_after == run.champion_before:
        return Cell(True, f"blocked by the gate: {run.first_reason}")
    return not_measured(
        f"v{run.version} registered with gate={run.tags.get('gate')}, "
        f"champion {shown(run.champion_after)}"
    )
