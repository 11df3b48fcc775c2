"""A corrupted training batch arrives (30% impossible body masses, 30% missing bills): does a
level train on it, or refuse it with evidence?"""

import re
from pathlib import Path

from workshop.lab import Lab
from workshop.scorecard.cells import CORRUPTED, Cell, Row, attempt, not_measured, shown
from workshop.scorecard.probes import Level2Run, run_level2
from workshop.scorecard.table import Scorecard, side_by_side


def batch(lab: Lab) -> Path:
    path = lab.root / "corrupted.csv"
    if not path.exists():
        from shared.simulate import Corruption, simulate_batch  # scikit-learn: ~5 s

        corruption = Corruption(
            out_of_range_rate={"body_mass_g": 0.3}, null_rate={"bill_length_mm": 0.3}
        )
        simulate_batch(300, seed=21, corruption=corruption).to_csv(path, index=False)
    return path


def observe(card: Scorecard) -> Row:
    path = batch(card.lab)
    card.say("a corrupted batch arrives (30% impossible masses, 30% missing bills)")
    return CORRUPTED, side_by_side(
        {level: lambda step=step: step(card, path) for level, step in STEPS.items()}
    )


def level0(card: Scorecard, path: Path) -> Cell:
    metrics, why = attempt(lambda: card.lab.train_level0("level0-corrupted", new_batch=path))
    if metrics is None:
        return not_measured(f"the notebook failed ({why})")
    return Cell(False, f"trained on it (macro F1 {metrics['macro_f1']:.3f})")


def level1(card: Scorecard, path: Path) -> Cell:
    folder = card.lab.root / "level1" / "corrupted"
    model_card, why = attempt(lambda: card.lab.train_level1(folder, new_batch=path))
    if model_card is None:
        return not_measured(f"training failed ({why})")
    f1 = model_card["metrics"]["macro_f1"]
    return Cell(False, f"trained on it: card {model_card['version']} (macro F1 {f1:.3f})")


def level2(card: Scorecard, path: Path) -> Cell:
    run = run_level2(card.lab, "--batch", str(path))
    stderr = run.result.stderr if run.result else ""
    failed = [line.strip()[2:] for line in stderr.splitlines() if line.startswith("  - ")]
    if failed:
        card.say(f"level 2 validation named: {'; '.join(failed[:2])}")
    return corrupted_batch_cell(run)


STEPS = {"level 0": level0, "level 1": level1, "level 2": level2}


def corrupted_batch_cell(run: Level2Run) -> Cell:
    """✓ only on validation's own evidence: the run stopped naming the failed expectations, the
    batch is in quarantine with them, and nothing was registered or promoted."""
    if run.store_error:
        return not_measured(f"the registry could not be read ({run.store_error})")
    if run.registered:
        return Cell(False, f"NOT blocked: v{run.version} registered from it")
    if run.result.returncode == 0:
        return not_measured(f"the run neither refused nor registered it ({run.said})")
    refused = re.search(
        r"failed (\d+) of (\d+) expectations and was quarantined in (.+):$",
        run.result.stderr,
        re.MULTILINE,
    )
    if refused is None:
        return not_measured(f"the run failed without a validation verdict ({run.failure})")
    if not Path(refused[3], "failed_expectations.txt").is_file():
        return not_measured(f"validation refused it, but nothing is in quarantine at {refused[3]}")
    if run.champion_after != run.champion_before:
        return Cell(False, f"refused, yet the champion moved to {shown(run.champion_after)}")
    return Cell(
        True, f"blocked: {refused[1]} of {refused[2]} expectations failed, batch quarantined"
    )
