"""Same model: every service is asked about the same held-out birds, and each level's answers
are compared with level 1's, the reference."""

import numpy as np

from workshop.scorecard.cells import LEVELS, SAME_MODEL, Cell, Row
from workshop.scorecard.probes import SAME_P, served_probabilities
from workshop.scorecard.table import Scorecard


def observe(card: Scorecard, url: str) -> np.ndarray:
    return served_probabilities(url, card.held_out)


def row(card: Scorecard, served: dict[str, np.ndarray]) -> Row:
    return SAME_MODEL, same_model_cells(served, len(card.held_out))


def same_model_cells(served: dict[str, np.ndarray], birds: int) -> dict[str, Cell]:
    """Each level's answers against level 1's, the reference, on the same birds."""
    cells = {}
    for level in LEVELS:
        gap = float(np.abs(served[level] - served["level 1"]).max())
        cells[level] = Cell(gap <= SAME_P, f"max Δp {gap:.1e} on {birds} birds")
    cells["level 1"] = Cell(None, f"the reference ({birds} birds)")
    return cells
