"""What the service knows about its model: a version, and where it came from (the run, the
data, the batch, its metrics), as GET /model says."""

from collections.abc import Callable

from workshop.scorecard.cells import KNOWLEDGE, Cell, Row
from workshop.scorecard.probes import service_probes
from workshop.scorecard.table import Scorecard

# What a /model answer can say about where the model came from, and how the cell names it.
PROVENANCE = {
    "run_id": "run",
    "git_commit": "commit",
    "data_checksum": "data checksum",
    "batch_id": "batch",
    "metrics": "metrics",
}


def observe(card: Scorecard, url: str) -> Cell:
    return probe_knowledge(service_probes(url)["get_json"])


def row(card: Scorecard, cells: dict[str, Cell]) -> Row:
    return KNOWLEDGE, cells


def probe_knowledge(get_json: Callable[[str], tuple[int, dict]]) -> Cell:
    status, body = get_json("/model")
    if status != 200:
        return Cell(False, f"nothing (GET /model: {status})")
    said = ", ".join(label for key, label in PROVENANCE.items() if body.get(key))
    if {"run_id", "batch_id", "data_checksum"} <= set(body):
        return Cell(True, f"full lineage: v{body.get('version')}, {said}")
    if {"version", "data_checksum"} <= set(body):
        return Cell(None, f"a card: version {body['version']}, {said}")
    return Cell(False, "something, without provenance")
