"""The model card a person reads, written by `train` beside the model and carried by the
hand-off with the pair."""

from level1_devops.handoff import PREVIOUS_DIR, hand_off, undo
from level1_devops.model_card import CARD_HTML, CARD_MD, read_card, to_html, training_card
from level1_devops.train import train, training_rows
from shared.contract import CATEGORIES, CLASSES


def table_rows(markdown: str) -> dict[str, list[str]]:
    """Each table row of the card, by its first cell: the other cells, stripped."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()]
    return {row[0]: row[1:] for row in rows if len(row) > 1}


def test_train_writes_the_card_beside_the_model(model_dir, card):
    """Training writes the card in Markdown and HTML: training data, metrics by species and
    island, lineage, and that level 1 has no gate and no feedback loop."""
    markdown = (model_dir / CARD_MD).read_text()

    cells = table_rows(markdown)
    assert markdown.startswith(f"# Model card: penguins-species {card.version}")
    for species in CLASSES:  # trained on; precision, recall, F1, birds
        assert len(cells[species]) == 4, species
    for island in CATEGORIES["island"]:  # accuracy, birds
        assert len(cells[island]) == 2, island
    assert cells["model file SHA-256"] == [card.artifact_sha256]
    assert cells["rows trained on"] == [str(card.parameters["training_rows"])]
    assert "level 1 has no gate" in markdown
    assert "it has no feedback loop" in markdown
    assert "<h3>By species</h3>" in (model_dir / CARD_HTML).read_text()


def test_card_html_shows_a_batch_file_name_as_text(card, pipeline, held_out):
    """A new batch's file name is the user's: the HTML shows it escaped, never as markup."""
    named = card.model_copy(
        update={"parameters": card.parameters | {"new_batch": "<script>alert(1)</script>"}}
    )

    page = to_html(training_card(named, pipeline, training_rows(42), held_out).render())

    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_hand_off_carries_the_card_and_undo_brings_the_previous_one(model_dir, card, tmp_path):
    """The card goes with its pair, and `--undo` brings back the previous pair's card; a model
    without a card leaves no card describing another model."""
    serving, bare = tmp_path / "serving", tmp_path / "bare"
    train(bare, seed=7)
    (bare / CARD_MD).unlink()  # as a model trained before cards

    hand_off(model_dir, serving)
    served_card = read_card(serving, card)
    hand_off(bare, serving)
    after_bare = sorted(p.name for p in serving.iterdir())
    undo(serving)

    assert served_card == (model_dir / CARD_MD).read_text()
    assert CARD_MD not in after_bare
    assert read_card(serving, card) == served_card
    assert not (serving / PREVIOUS_DIR / CARD_MD).exists()  # the bare pair is the previous
