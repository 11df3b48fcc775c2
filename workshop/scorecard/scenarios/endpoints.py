"""Health, ready and model endpoints: what an operator (or an orchestrator) can ask a service
about its state."""

from collections.abc import Callable

from workshop.scorecard.cells import ENDPOINTS, Cell, Row
from workshop.scorecard.probes import service_probes
from workshop.scorecard.table import Scorecard


def observe(card: Scorecard, url: str) -> Cell:
    return probe_endpoints(service_probes(url)["get"])


def row(card: Scorecard, cells: dict[str, Cell]) -> Row:
    return ENDPOINTS, cells


def probe_endpoints(get: Callable[[str], int]) -> Cell:
    statuses = {p: get(p) for p in ("/health", "/ready", "/model")}
    present = [p for p, status in statuses.items() if status == 200]
    if not present:
        return Cell(False, f"none ({', '.join(sorted({str(s) for s in statuses.values()}))})")
    return Cell(len(present) == len(statuses), " ".join(present))
