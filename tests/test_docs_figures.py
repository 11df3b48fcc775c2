"""The dated figures in docs/: a measuring command replaces its block and nothing else."""

import pytest

from tests.makefiles import makefile_text
from tools.docs_figures import DOCS, NoSuchBlock, refresh
from workshop.scorecard.render import dated_table

PAGE = """# A page

Prose stays.

<!-- figures: speed (make bench DOCS=1) -->
old figures
<!-- /figures: speed -->

More prose.
"""


def test_refresh_replaces_only_its_block(tmp_path):
    """The block's lines are replaced; the markers and the prose around them stay."""
    page = tmp_path / "page.md"
    page.write_text(PAGE)

    refresh(page, "speed", "new figures\nmeasured today")

    assert page.read_text() == PAGE.replace("old figures\n", "new figures\nmeasured today\n")


def test_refresh_names_a_missing_block(tmp_path):
    """A page without the block is left alone, and the error names the markers to add."""
    page = tmp_path / "page.md"
    page.write_text(PAGE)

    with pytest.raises(NoSuchBlock, match="<!-- figures: latency -->"):
        refresh(page, "latency", "x")
    assert page.read_text() == PAGE


# Each page's block, and the make target (with DOCS=1) that rewrites it.
BLOCKS = [
    ("scorecard.md", "scorecard", "scorecard"),
    ("measurements.md", "capacity", "bench-capacity"),
    ("measurements.md", "workshop", "bench-workshop"),
]


@pytest.mark.parametrize(("page", "block", "target"), BLOCKS)
def test_page_marks_the_block_its_command_refreshes(page, block, target):
    """The page marks the block that `make TARGET DOCS=1` rewrites, and the target passes it on."""
    text = (DOCS / page).read_text()
    recipe = makefile_text(DOCS.parent / "Makefile").split(f"\n{target}:", 1)[1].split("\n\n")[0]

    assert f"<!-- figures: {block} (make {target} DOCS=1) -->" in text
    assert f"<!-- /figures: {block} -->" in text
    assert "$(if $(DOCS),--docs)" in recipe


def test_scorecard_dated_table_says_which_run():
    """The block `make scorecard DOCS=1` writes names the command and the run, then the rows."""
    rows = [("rollback", {"level 0": "✗ gone", "level 1": "on disk", "level 2": "✓ one command"})]

    text = dated_table(rows, "2026-12-04 10:00 UTC in 150 s")

    assert text.startswith("This table is from `make scorecard` on ")
    assert "2026-12-04 10:00 UTC in 150 s" in text.replace("\n", " ")
    assert text.endswith("| rollback | ✗ gone | on disk | ✓ one command |\n")
    assert "Scorecard, " not in text
