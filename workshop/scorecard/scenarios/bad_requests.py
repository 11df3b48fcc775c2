"""Bad requests: every invalid payload of the contract is sent to every service; a 4xx for
each is the mature answer, a 5xx (or a 200) the gap."""

from collections import Counter
from collections.abc import Callable

from shared.contract import INVALID_EXAMPLES
from workshop.scorecard.cells import BAD_REQUESTS, Cell, Row
from workshop.scorecard.probes import service_probes
from workshop.scorecard.table import Scorecard


def observe(card: Scorecard, url: str) -> Cell:
    return probe_bad_requests(service_probes(url)["post"])


def row(card: Scorecard, cells: dict[str, Cell]) -> Row:
    return BAD_REQUESTS, cells


def probe_bad_requests(post: Callable[[str, bytes], int]) -> Cell:
    """Send every invalid example; a 4xx for each is the mature answer."""
    statuses = [post("/predict", example.body) for example in INVALID_EXAMPLES]
    refused = sum(400 <= s < 500 for s in statuses)
    others = Counter(s for s in statuses if not 400 <= s < 500)
    detail = ", ".join(f"{n}x {s}" for s, n in sorted(others.items()))
    text = f"{refused}/{len(statuses)} refused with 4xx" + (f" ({detail})" if detail else "")
    return Cell(refused == len(statuses), text)
