"""Serving under load: 8 concurrent clients against each service in turn, one level at a time
with nothing else running, so each has the machine to itself."""

import json

from shared.contract import EXAMPLE_PAYLOAD
from shared.loadgen import run_load
from workshop.scorecard.cells import LEVELS, Cell, Row, serving_row
from workshop.scorecard.table import Scorecard


def observe(card: Scorecard) -> Row:
    """The row, and each level's figures in `card.latency` (the report's chart)."""
    card.say(f"load: 8 concurrent clients, {card.load_seconds:g} s per service")
    cells = {}
    for level in LEVELS:
        cells[level], card.latency[level] = probe_latency(card.lab.ports[level], card.load_seconds)
    return serving_row(card.load_seconds), cells


def probe_latency(port: int, seconds: float) -> tuple[Cell, dict[str, float]]:
    result = run_load(
        port, "/predict", json.dumps(EXAMPLE_PAYLOAD).encode(), concurrency=8, seconds=seconds
    )
    figures = {
        "p50_ms": result.percentile_ms(0.5),
        "p99_ms": result.percentile_ms(0.99),
        "requests_per_s": result.throughput,
    }
    text = (
        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
        f"{figures['requests_per_s']:,.0f} req/s"
    )
    return Cell(None, text), figures
