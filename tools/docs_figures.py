"""Pages under docs/ hold the dated figures; the command that measures them refreshes them.

A page marks each block a command refreshes:

    <!-- figures: scorecard (make scorecard DOCS=1) -->
    ...
    <!-- /figures: scorecard -->

and the command, asked to (`DOCS=1`, or `--docs` without make), replaces what lies between the
two lines with what it measured and when. By default a run writes only under state/, so the
runs of a workshop leave the checkout as it was.
"""

import re
from pathlib import Path

from shared.paths import REPO_ROOT

DOCS = REPO_ROOT / "docs"


class NoSuchBlock(LookupError):
    """The page has no block of that name: the message names the page and the markers to add."""


def refresh(page: Path, name: str, text: str) -> None:
    """Put `text` between the page's markers of block `name`, keeping the markers."""
    content = page.read_text()
    key = re.escape(name)
    opening, closing = rf"^<!-- figures: {key}\b[^\n]*-->\n", rf"^<!-- /figures: {key} -->$"
    block = re.compile(rf"({opening})(.*?)({closing})", re.M | re.S)
    if not block.search(content):
        raise NoSuchBlock(
            f"{page} has no block '{name}': add the lines "
            f"'<!-- figures: {name} -->' and '<!-- /figures: {name} -->' around it"
        )
    body = text.rstrip("\n") + "\n"
    page.write_text(block.sub(lambda m: m[1] + body + m[3], content, count=1))
