"""The record of training: after two trainings (training.py), what each level kept of both."""

from workshop.scorecard.cells import RECORDS, Cell, Row
from workshop.scorecard.table import Scorecard


def observe(card: Scorecard) -> Row:
    records = sorted(p.name for p in (card.lab.root / "level0").glob("*.json"))
    first_model_card = card.trained.level1_model_cards[0]
    return RECORDS, {
        "level 0": records_level0(records),
        "level 1": records_level1(first_model_card, card.lab.level1_cards()),
        "level 2": records_level2(card.lab.tracked_runs(), card.trained.level2_runs),
    }


def records_level0(records: list[str]) -> Cell:
    left = ", ".join(records) or "none"
    return Cell(
        False if len(records) < 2 else None,
        f"2 notebook runs, {len(records)} record left: {left}",
    )


def records_level1(first: dict, model_cards: list[dict]) -> Cell:
    kept = {c["trained_at"] for c in model_cards}
    first_kept = first["trained_at"] in kept
    return Cell(
        None,
        f"2 training runs, {len(kept)} card on disk: the first run's "
        + ("kept" if first_kept else "overwritten"),
    )


def records_level2(tracked_runs: int, pipeline_runs: int) -> Cell:
    text = f"{tracked_runs} MLflow runs for {pipeline_runs} pipeline runs"
    return Cell(tracked_runs >= pipeline_runs, text)
