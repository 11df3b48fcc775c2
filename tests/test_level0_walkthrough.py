"""Level 0 as a workshop runs it: the notebook executes headless and its pickle is served.

Level 0 deliberately has no tests of its own (that is one of its gaps); these check that the
walkthrough works, so the comparison with the other levels is fair.
"""

import json

import httpx
import nbformat
import pytest

from shared.contract import CLASSES, EXAMPLE_PAYLOAD, EXPECTED_SPECIES, VALID_EXAMPLES
from shared.servers import free_port, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def level0_server(level0_output) -> str:
    port = free_port()
    env = {"LEVEL0_MODEL_PATH": str(level0_output / "model.pkl"), "LEVEL0_PORT": str(port)}
    with running_server("level0_notebook.serve", env, port) as base_url:
        yield base_url


def test_notebook_executes_without_errors(level0_output):
    """Every code cell ran and none produced an error output."""
    notebook = nbformat.read(level0_output / "penguins.executed.ipynb", as_version=4)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]

    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]

    assert errors == []
    assert all(c.execution_count for c in code_cells)


def test_notebook_holds_at_least_three_figures(level0_output):
    """The executed notebook carries the EDA and confusion-matrix figures as images."""
    notebook = nbformat.read(level0_output / "penguins.executed.ipynb", as_version=4)

    figures = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]

    assert len(figures) >= 4


def test_notebook_html_export_embeds_figures(level0_output):
    """The HTML export opens on its own: figures are inline, not links to missing files."""
    html = (level0_output / "penguins.html").read_text(encoding="utf-8")

    assert html.count("data:image/png;base64,") >= 4


def test_notebook_model_scores_well_on_held_out_rows(level0_output):
    """The metrics the notebook wrote show a useful model (macro F1 at least 0.95)."""
    metrics = json.loads((level0_output / "metrics.json").read_text())

    assert metrics["macro_f1"] >= 0.95
    assert (level0_output / "model.pkl").stat().st_size > 0


def test_level0_server_answers_the_example_payload(level0_server):
    """POST /predict returns a species and probabilities over the three classes summing to 1."""
    response = httpx.post(f"{level0_server}/predict", json=EXAMPLE_PAYLOAD, timeout=10)

    body = response.json()
    assert response.status_code == 200
    assert body["species"] in CLASSES
    assert set(body["probabilities"]) == set(CLASSES)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(EXPECTED_SPECIES))
def test_level0_server_recognises_archetypes(level0_server, name):
    """Each archetypal bird is classified as its species."""
    response = httpx.post(f"{level0_server}/predict", json=VALID_EXAMPLES[name], timeout=10)

    assert response.json()["species"] == EXPECTED_SPECIES[name]


def test_level0_server_answers_bad_input_with_500(level0_server):
    """Level 0's gap, pinned: a word where a number is due is a server error, not a 4xx."""
    bad = {**EXAMPLE_PAYLOAD, "bill_length_mm": "long"}

    response = httpx.post(f"{level0_server}/predict", json=bad, timeout=10)

    assert response.status_code == 500
