"""The model card a person reads, in Markdown and HTML, beside the model file and its
`card.json` (which the service checks the model against): what it was trained on, its
held-out metrics overall, by species and by island, its lineage, its intended use and known
limits. `train` writes it; the hand-off carries it with the pair; the service serves it at
`GET /model/card`.

At level 1 it is written once, at training: no gate judged the model (a person hands it off)
and nothing watches it in service, so the card cannot say how it does since (level 2's can).

The document is skops' `Card` (sections and tables); HTML is rendered from the Markdown with
markdown-it-py, raw HTML off, so a string a user controls (a batch's file name) is shown as
text, never run as markup.
"""

import html
import re
from pathlib import Path

import pandas as pd
from markdown_it import MarkdownIt
from sklearn.metrics import precision_recall_fscore_support
from sklearn.pipeline import Pipeline
from skops.card import Card

from level1_devops.data import features_and_target
from level1_devops.model import ModelCard
from shared.contract import CATEGORIES, CLASSES, RANGES, TARGET

CARD_MD, CARD_HTML = "model_card.md", "model_card.html"
SINCE_SERVED = "Since it was served"
# Markdown's own punctuation in a string we did not write, escaped so it reads as itself (an
# underscore inside a word, as in names and paths, is no markup in CommonMark: left as it is).
_MARKUP = re.compile(r"([\\`*\[\]<>|!~&#])")
_RENDERER = MarkdownIt("commonmark", {"html": False}).enable("table")
STYLE = (
    "body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.4}"
    "table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #bbb;padding:.2rem .6rem}"
    "code{background:#f3f3f3}"
)


def text(value: object) -> str:
    """`value` as Markdown that renders as exactly its characters, on one line."""
    return _MARKUP.sub(r"\\\1", " ".join(str(value).split()))


def add_table(card: Card, key: str, table: dict[str, list], description: str = "") -> None:
    """A table section at `key` ("Parent/Title"), headed by its own title only."""
    card.add_table(description=description, **{key: table})
    card.select(key).title = key.rsplit("/", 1)[-1]


def facts(rows: dict[str, object]) -> dict[str, list]:
    """A two-column table of facts: what, and its value (as text)."""
    return {"": list(rows), "value": [text(v) for v in rows.values()]}


def training_card(
    model: ModelCard, pipeline: Pipeline, training: pd.DataFrame, held_out: pd.DataFrame
) -> Card:
    """The card of a model just trained: `model` is its card.json, `training` the rows it was
    fitted on, `held_out` the rows it was evaluated on."""
    top = f"Model card: {text(model.name)} {model.version}"
    new_batch = model.parameters.get("new_batch")
    card = Card(pipeline, template=None, model_diagram=False)
    card.add(
        **{
            top: f"A {type(pipeline.steps[-1][1]).__name__} that tells {', '.join(CLASSES)} "
            "penguins apart from four measurements, the island and the sex. Trained by "
            "`python -m level1_devops.train`; served once a person hands it off.",
            f"{top}/Intended use": "Naming the species of an adult penguin of the Palmer "
            "Archipelago from measurements taken in the field, as a second opinion for the "
            "person measuring; not for any decision about a bird that nobody checks.",
        }
    )
    species = training[TARGET].value_counts()
    add_table(
        card,
        f"{top}/Training data",
        facts(
            {
                "shared training split (seed)": model.parameters.get("seed", "?"),
                "new batch": new_batch or "none",
                "rows trained on": len(training),
                "checksum of the rows trained on": model.data_checksum,
            }
        ),
        "The shared training split, plus any new batch appended as it is: level 1 validates "
        "no data.",
    )
    add_table(
        card,
        f"{top}/Training data/Species trained on",
        {"species": list(CLASSES), "rows": [int(species.get(c, 0)) for c in CLASSES]},
    )
    add_evaluation(card, f"{top}/Evaluation on held-out birds", model, pipeline, held_out)
    card.add(
        **{
            f"{top}/The gate's verdict": "None: level 1 has no gate. A person decides to hand "
            "the model off (`make level1-handoff`); nothing compares it with the model in "
            "service."
        }
    )
    add_table(
        card,
        f"{top}/Lineage",
        facts(
            {
                "version": model.version,
                "git commit": model.git_commit,
                "model file SHA-256": model.artifact_sha256,
                "fingerprint": model.fingerprint,
                "trained at": model.trained_at.isoformat(),
                **model.library_versions,
            }
        ),
    )
    parameters = {k: v for k, v in model.parameters.items() if k.startswith("classifier")}
    add_table(card, f"{top}/Parameters", facts(parameters))
    card.add(
        **{
            f"{top}/Known limits": known_limits(len(held_out)),
            f"{top}/{SINCE_SERVED}": "Unknown, and level 1 cannot know: it has no feedback "
            "loop. Nothing records its answers or brings the true species back, so this card "
            "stays as it was written at training (level 2's service adds live accuracy and "
            "drift to its card).",
        }
    )
    return card


def add_evaluation(
    card: Card, key: str, model: ModelCard, pipeline: Pipeline, held_out: pd.DataFrame
) -> None:
    """Overall metrics (the card's), then precision, recall and F1 by species and accuracy by
    island, on the shared held-out rows."""
    features, truth = features_and_target(held_out)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, pipeline.predict(features), labels=list(CLASSES), zero_division=0
    )
    metrics = model.metrics
    add_table(
        card,
        key,
        facts({"accuracy": f"{metrics['accuracy']:.3f}", "macro F1": f"{metrics['macro_f1']:.3f}"}),
        f"{len(held_out)} birds of the shared test split, never trained on.",
    )
    add_table(
        card,
        f"{key}/By species",
        {
            "species": list(CLASSES),
            "precision": [f"{v:.3f}" for v in precision],
            "recall": [f"{v:.3f}" for v in recall],
            "F1": [f"{v:.3f}" for v in f1],
            "birds": [int(n) for n in support],
        },
    )
    islands = list(CATEGORIES["island"])
    add_table(
        card,
        f"{key}/By island",
        {
            "island": islands,
            "accuracy": [f"{metrics[f'accuracy_{i}']:.3f}" for i in islands],
            "birds": [int((held_out["island"] == i).sum()) for i in islands],
        },
    )


def known_limits(held_out_rows: int) -> str:
    ranges = "; ".join(f"{f} {lo:g}-{hi:g}" for f, (lo, hi) in RANGES.items())
    return "\n".join(
        [
            f"- It knows three species ({', '.join(CLASSES)}): any other penguin is still "
            "named as one of them, with confidence.",
            f"- It knows three islands ({', '.join(CATEGORIES['island'])}); the service refuses "
            "any other, and birds of one island teach it little about another.",
            f"- The contract's physical ranges bound what it answers: {text(ranges)}. Within "
            "them it cannot tell a mismeasured bird from a real one, nor a chick from an adult.",
            f"- Its held-out figures come from {held_out_rows} birds: one more mistake moves an "
            "island's accuracy by several points; 1.000 means no mistake on those, not never.",
            f"- It cannot know how it does after training; see *{SINCE_SERVED}*.",
        ]
    )


def to_html(markdown: str) -> str:
    """A standalone HTML page of the card; raw HTML in the Markdown is shown as text."""
    heading = next((line for line in markdown.splitlines() if line.startswith("# ")), "# card")
    title = html.escape(heading.removeprefix("# ").replace("\\", ""))
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"{_RENDERER.render(markdown)}</body>\n</html>\n"
    )


def write_card(directory: Path, card: Card) -> Path:
    """Write the card beside the model, as Markdown and HTML; return the Markdown's path."""
    markdown = card.render().lstrip("\n")
    (directory / CARD_HTML).write_text(to_html(markdown), encoding="utf-8")
    (directory / CARD_MD).write_text(markdown, encoding="utf-8")
    return directory / CARD_MD


def read_card(directory: Path, model: ModelCard) -> str:
    """The Markdown card in `directory` if it describes `model` (it names its file's SHA-256);
    LookupError saying why not otherwise."""
    path = directory / CARD_MD
    if not path.is_file():
        raise LookupError(
            f"model card: no {CARD_MD} for model {model.version} in {directory}: it was trained "
            "before cards were written; train and hand off again"
        )
    markdown = path.read_text(encoding="utf-8")
    if model.artifact_sha256 not in markdown:
        raise LookupError(
            f"model card: {path} describes another model than {model.version}; hand off the "
            "model with its card"
        )
    return markdown
