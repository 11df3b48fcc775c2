"""`make scorecard`: the same probes against every level, and what each one measured.

    python -m workshop.scorecard [--quick]

Each level is trained and served as its own README says, in a lab folder of its own
(state/scorecard/lab/), then meets each scenario: same model, bad requests, endpoints, what
the service knows, reproducibility, the record of training, a corrupted batch, a worse model,
new data, rollback, drift in served traffic, live accuracy, tests, latency; then what each
level costs: people's commands and decisions, processes, memory and CPU, disk, code and
dependencies. Every cell is an observation from this run, or says "not measured" and why.
Every wait has a deadline and every request a timeout. The table is printed, and written as
Markdown, JSON and an HTML report with charts under state/scorecard/.

    cells.py     what a cell is, the rows' names and order
    table.py     the table a run fills, and what its scenarios share (the lab, the bounds)
    probes.py    what several scenarios observe alike: a service's answers, a level 2 run
    machines.py  a level's processes, memory and CPU (psutil), the disk its folder takes
    upkeep.py    the code and the lock a copy of a level keeps
    scenarios/   one module per scenario: how each level is observed, and its row
    runner.py    one run: the scenarios in order, the levels side by side through the lab
    render.py    Markdown, JSON and HTML (with the cost-beside-benefit chart)
    __main__.py  the command line
"""

from workshop.scorecard.cells import BAD_REQUESTS, DRIFT, LEVELS, Cell, Row, failed_step
from workshop.scorecard.probes import service_probes
from workshop.scorecard.render import html_report, markdown
from workshop.scorecard.runner import run
from workshop.scorecard.scenarios.bad_requests import probe_bad_requests
from workshop.scorecard.scenarios.endpoints import probe_endpoints
from workshop.scorecard.scenarios.knowledge import probe_knowledge
from workshop.scorecard.table import Scorecard

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
    "run",
    "service_probes",
]
