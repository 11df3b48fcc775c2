"""GET /model/card: the served model's card for a person, Markdown by default, HTML for a
browser; written at training, so without live facts."""

import pytest
from fastapi.testclient import TestClient

from level1_devops.api import create_app, load_served_model
from level1_devops.model_card import CARD_HTML, CARD_MD
from level1_devops.settings import Settings


def test_model_card_is_markdown_by_default(client, card):
    """curl's `*/*` gets the served model's card as Markdown."""
    answer = client.get("/model/card", headers={"Accept": "*/*"})

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/markdown")
    assert answer.text.startswith(f"# Model card: penguins-species {card.version}")
    assert "## Since it was served" in answer.text and "no feedback loop" in answer.text


@pytest.mark.parametrize(
    ("query", "accept"),
    [("", "text/html,application/xhtml+xml,*/*;q=0.8"), ("?format=html", "*/*")],
    ids=["browser", "format-html"],
)
def test_model_card_is_html_for_a_browser_or_when_asked(client, query, accept):
    """A browser's Accept header, or ?format=html, gets a page that runs nothing."""
    answer = client.get(f"/model/card{query}", headers={"Accept": accept})

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert "<h3>By island</h3>" in answer.text


def test_model_card_is_404_for_a_model_trained_before_cards(model_dir, tmp_path):
    """A model whose folder has no card still serves; its card is a 404 that says why."""
    for path in model_dir.iterdir():
        if path.is_file() and path.name not in (CARD_MD, CARD_HTML):
            (tmp_path / path.name).write_bytes(path.read_bytes())
    app = create_app(Settings(state_dir=tmp_path / "state"), load_served_model(tmp_path))

    answer = TestClient(app).get("/model/card")

    assert answer.status_code == 404
    assert "no model_card.md" in answer.json()["detail"]


def test_model_card_without_a_model_is_503(tmp_path):
    """No model loaded: a 503 naming the model, as for every endpoint that needs one."""
    app = create_app(Settings(state_dir=tmp_path))

    answer = TestClient(app).get("/model/card")

    assert answer.status_code == 503
    assert answer.json()["detail"] == "model: not loaded"
