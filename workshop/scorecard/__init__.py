"""`make scorecard`: the same probes against every level, and what each one measured.

    python -m workshop.scorecard [--quick]

Each level is trained and served as its own README says, in a lab folder of its own
(state/scorecard/lab/), then probed: same model, reproducibility, bad requests, endpoints, what
the service knows, the record of training, a corrupted batch, a worse model, new data,
rollback, drift in served traffic, live accuracy, tests, latency. Every cell is an observation
from this run, or says "not measured" and why. Every wait has a deadline and every request a
timeout. The table is printed, and written as Markdown, JSON and an HTML report with a chart
under state/scorecard/.

    cells.py     what a cell is, the rows' names and order
    probes.py    how each capability is observed, and how an observation reads as a cell
    run.py       one run: the levels driven side by side through the lab, phase by phase
    render.py    Markdown, JSON and HTML
    __main__.py  the command line
"""

from workshop.scorecard.cells import BAD_REQUESTS, DRIFT, LEVELS, Cell, Row, failed_step
from workshop.scorecard.probes import (
    probe_bad_requests,
    probe_endpoints,
    probe_knowledge,
    service_probes,
)
from workshop.scorecard.render import html_report, markdown
from workshop.scorecard.run import Scorecard

__all__ = [
    "BAD_REQUESTS",
    "DRIFT",
    "LEVELS",
    "Cell",
    "Row",
    "Scorecard",
    "failed_step",
    "html_report",
    "markdown",
    "probe_bad_requests",
    "probe_endpoints",
    "probe_knowledge",
    "service_probes",
]
