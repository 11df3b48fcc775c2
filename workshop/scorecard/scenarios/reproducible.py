"""Reproducible training: the two trainings of each level (training.py) compared, by what
each level leaves to compare with: pickles, cards' fingerprints, registry tags."""

import json
import pickle
from typing import TYPE_CHECKING

import numpy as np

from workshop.scorecard.cells import REPRODUCIBLE, Cell, Row, not_measured
from workshop.scorecard.table import Scorecard

if TYPE_CHECKING:
    import pandas as pd


def observe(card: Scorecard) -> Row:
    recorded = json.loads((card.lab.root / "level0" / "metrics.json").read_text())
    first, second = card.trained.level0_pickles
    return REPRODUCIBLE, {
        "level 0": reproducibility_level0(first, second, card.held_out, recorded),
        "level 1": reproducibility_level1(*card.trained.level1_model_cards),
        "level 2": reproducibility_level2(card.trained.level2_versions, card.lab.versions()),
    }


def reproducibility_level0(first: bytes, second: bytes, rows: "pd.DataFrame", recorded) -> Cell:
    """Two notebook pickles compared on the same birds, and what metrics.json keeps."""
    answers = [pickle.loads(p).predict_proba(rows) for p in (first, second)]
    gap = float(np.abs(answers[0] - answers[1]).max())
    same = "same" if first == second else "other"
    kept = ", ".join(recorded)
    return Cell(None, f"max Δp {gap:.0e}, {same} pickle bytes; metrics.json records {kept} only")


def reproducibility_level1(first: dict, second: dict) -> Cell:
    same = first["fingerprint"] == second["fingerprint"]
    return Cell(same, "same fingerprint on both cards" if same else "fingerprints differ")


def reproducibility_level2(versions: list[str], registry: dict) -> Cell:
    """The two runs' versions compared by the fingerprint tag level 2 gives each (the
    SHA-256 of the fitted numbers): no model file is loaded here."""
    if len(versions) != 2:
        return not_measured(f"the two runs registered {versions or 'nothing'}")
    a, b = versions
    prints = [registry[v].tags.get("fingerprint") for v in (a, b)]
    if None in prints:
        return not_measured(f"v{a} and v{b} do not both carry a fingerprint tag")
    same = prints[0] == prints[1]
    return Cell(
        same, f"registry v{a} and v{b}: " + ("same fingerprint" if same else "fingerprints differ")
    )
