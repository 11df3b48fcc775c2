"""The model card the register stage logs with each version's run, as a person reads it."""

from mlflow import MlflowClient

from level2_pipelines.data import make_batch, reference_and_new_rows
from level2_pipelines.evaluate import Verdict
from level2_pipelines.model_card import CARD_HTML, CARD_MD, to_html, version_card
from level2_pipelines.pipeline import register
from shared.contract import CATEGORIES, CLASSES


def table_rows(markdown: str) -> list[list[str]]:
    """Each table row of the card as its cells, stripped."""
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("|")
    ]


def read_artifact(run_id: str, path: str, folder) -> str:
    return (folder / MlflowClient().download_artifacts(run_id, path, str(folder))).read_text()


def test_register_logs_the_card_with_the_versions_run(settings, candidate, tmp_path):
    """Registering a real trained version logs its card, Markdown and HTML, with its run:
    species and island rows, the gate's verdict and what it was judged against."""
    reference, new_rows = reference_and_new_rows(settings.seed)
    batch = make_batch(new_rows, "2009 birds of the training split")

    version = register.fn(candidate, Verdict(passed=True), batch, reference, settings)

    names = {a.path for a in MlflowClient().list_artifacts(candidate.run_id)}
    assert {CARD_MD, CARD_HTML} <= names
    card = read_artifact(candidate.run_id, CARD_MD, tmp_path)
    assert card.startswith(f"# Model card: {settings.model_name} v{version}")
    first_cells = {row[0]: row[1:] for row in table_rows(card)}
    for species in CLASSES:  # precision, recall, F1, birds
        assert len(first_cells[species]) == 4, species
    for island in CATEGORIES["island"]:  # accuracy, birds
        assert len(first_cells[island]) == 2, island
    assert "**passed**" in card
    assert "no champion (the first version)" in card
    assert batch.batch_id in card and candidate.lineage["artifact_sha256"] in card
    assert first_cells["reference rows (birds of 2007-2008)"] == [str(len(reference))]
    html = read_artifact(candidate.run_id, CARD_HTML, tmp_path)
    assert "<table>" in html and "<h2>By species</h2>" not in html  # subsection: <h3>
    assert "<h3>By species</h3>" in html and "<h3>By island</h3>" in html


def test_rejected_version_card_names_the_reasons_and_the_champion(settings, candidate):
    """A rejected version's card says so, with the gate's reasons and the champion judged
    against."""
    reference, new_rows = reference_and_new_rows(settings.seed)
    tags = {
        "gate": "rejected",
        "gate_reasons": "accuracy on Dream 0.700 is below the floor 0.85",
        "judged_against": "4",
    }

    card = version_card("5", candidate, make_batch(new_rows, "x"), reference, tags, settings)

    text = card.render()
    assert "**rejected**, judged against champion v4" in text
    assert "accuracy on Dream 0\\.700" not in text  # numbers are not escaped
    assert "accuracy on Dream 0.700 is below the floor 0.85" in text


def test_card_html_shows_user_controlled_strings_as_text(settings, candidate):
    """A batch's source is the user's file name: the HTML shows it, escaped, never as markup
    or a link."""
    reference, new_rows = reference_and_new_rows(settings.seed)
    source = "<script>alert(1)</script> [x](javascript:alert(2)) | a*b*"
    batch = make_batch(new_rows, source)
    tags = {"gate": "passed", "judged_against": "none", "gate_reasons": "<img src=x>"}

    html = to_html(version_card("1", candidate, batch, reference, tags, settings).render())

    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "href=" not in html
    assert "a*b*" in html  # shown as typed, not as emphasis
