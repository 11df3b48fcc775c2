"""The model card: what a person reads before trusting a registered version, in Markdown and HTML.

Written by the `register` stage for every version and logged with its MLflow run
(`model_card.md`, `model_card.html`): what it was trained on, its held-out metrics overall, by
species and by island, the gate's verdict and reasons, its lineage, its intended use and known
limits. The service serves the card of the version it serves at `GET /model/card`, adding what
only it can know: live accuracy on confirmed birds and the drift monitor's latest verdict
(`routes/card.py`).

The document is skops' `Card` (sections and tables; the estimator's own parameters); HTML is
rendered from the Markdown with markdown-it-py, raw HTML off, so a string a user controls (a
batch's file name, a reason) is shown as text, never run as markup.
"""

import html
import re

import pandas as pd
from markdown_it import MarkdownIt
from mlflow import MlflowClient
from sklearn.metrics import precision_recall_fscore_support
from skops.card import Card

from level2_pipelines.data import Batch, features_and_target, held_out_rows
from level2_pipelines.model import classifier_parameters
from level2_pipelines.monitor_runs import ShownVerdict
from level2_pipelines.prediction_log import LiveAccuracy
from level2_pipelines.settings import Settings
from level2_pipelines.train import Candidate
from shared.contract import CATEGORIES, CLASSES, RANGES, TARGET

CARD_MD, CARD_HTML = "model_card.md", "model_card.html"
LITERAL_SLASH = "\\/"  # skops reads "/" in a section's key as a subsection; this as "/"
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


def version_card(
    version: str,
    candidate: Candidate,
    batch: Batch,
    reference: pd.DataFrame,
    tags: dict[str, str],
    settings: Settings,
) -> Card:
    """The card of registry version `version`, from what the pipeline knows as it registers
    it: the candidate, the batch and the reference rows it was fitted on, its tags."""
    name, held_out = settings.model_name, held_out_rows(settings.seed)
    training_species = pd.concat([reference[TARGET], batch.frame[TARGET]]).value_counts()
    gate = tags.get("gate", "?")
    judged = tags.get("judged_against", "none")
    against = "no champion (the first version)" if judged == "none" else f"champion v{judged}"
    top = f"Model card: {text(name).replace('/', LITERAL_SLASH)} v{version}"
    card = Card(candidate.pipeline, template=None, model_diagram=False)
    card.add(
        **{
            top: f"A {type(candidate.pipeline.steps[-1][1]).__name__} that tells "
            f"{', '.join(CLASSES)} penguins apart from four measurements, the island and the "
            f"sex. Registered by the level 2 pipeline; the gate **{text(gate)}** it against "
            f"{against}. Written at registration; the service adds what it has seen since "
            f"(`GET /model/card`).",
            f"{top}/Intended use": "Naming the species of an adult penguin of the Palmer "
            "Archipelago from measurements taken in the field, as a second opinion for the "
            "person measuring; not for any decision about a bird that nobody checks.",
        }
    )
    add_table(
        card,
        f"{top}/Training data",
        facts(
            {
                "batch": batch.batch_id,
                "batch source": batch.source,
                "batch checksum (SHA-256)": batch.checksum,
                "batch rows": len(batch.frame),
                "reference rows (birds of 2007-2008)": len(reference),
                "rows trained on": len(reference) + len(batch.frame),
                "checksum of the rows trained on": candidate.lineage.get("data_checksum", "?"),
                "drift is watched against": candidate.lineage.get("monitor_reference", "?"),
            }
        ),
        "The reference rows plus the batch, validated by the Great Expectations suite first.",
    )
    add_table(
        card,
        f"{top}/Training data/Species trained on",
        {"species": list(CLASSES), "rows": [int(training_species.get(c, 0)) for c in CLASSES]},
    )
    add_evaluation(card, f"{top}/Evaluation on held-out birds", candidate, held_out)
    reasons = tags.get("gate_reasons", "-")
    card.add(
        **{
            f"{top}/The gate's verdict": f"**{text(gate)}**, judged against {against}. "
            f"The gate: macro F1 at least {settings.macro_f1_floor}, no drop of more than "
            f"{settings.regression_tolerance} from the champion's, accuracy at least "
            f"{settings.island_accuracy_floor} on every island, and a smoke test through the "
            "service. Reasons: " + ("none (every rule held)." if reasons == "-" else text(reasons))
        }
    )
    add_table(
        card,
        f"{top}/Lineage",
        facts(
            {
                "registry version": f"{name} v{version}",
                "MLflow run": candidate.run_id,
                "git commit": candidate.lineage.get("git_commit", "?"),
                "model file SHA-256": candidate.lineage.get("artifact_sha256", "?"),
                "fingerprint": candidate.lineage.get("fingerprint", "?"),
                "trained at": candidate.lineage.get("trained_at", "?"),
                "Prefect flow run": candidate.lineage.get("flow_run_id", "?"),
            }
        ),
    )
    parameters = classifier_parameters(candidate.pipeline)
    add_table(card, f"{top}/Parameters", facts(parameters))
    card.add(**{f"{top}/Known limits": known_limits(len(held_out))})
    return card


def add_evaluation(card: Card, key: str, candidate: Candidate, held_out: pd.DataFrame) -> None:
    """Overall metrics (the gate's), then precision, recall and F1 by species and accuracy by
    island, on the held-out rows every version is judged on."""
    features, truth = features_and_target(held_out)
    predicted = candidate.pipeline.predict(features)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=list(CLASSES), zero_division=0
    )
    metrics = candidate.metrics
    add_table(
        card,
        key,
        facts({"accuracy": f"{metrics['accuracy']:.3f}", "macro F1": f"{metrics['macro_f1']:.3f}"}),
        f"{len(held_out)} birds of the shared test split: never trained on, the same rows for "
        "every version.",
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
            "- It cannot know how it does after training: the birds served may drift from "
            f"those it learned from, and only confirmed species tell; see *{SINCE_SERVED}*.",
        ]
    )


def since_served(
    version: str,
    live: LiveAccuracy | str | None,
    drift: ShownVerdict | None,
    drift_problem: str | None,
) -> str:
    """The section the service adds: live accuracy of `version` on confirmed birds (or why
    there is none: a string), and the drift monitor's latest verdict (or why it is unknown)."""
    if isinstance(live, str):
        accuracy = f"unknown: {text(live)}"
    elif live is None or not live.labelled:
        accuracy = "no confirmed birds yet (`POST /feedback` brings the true species back)"
    else:
        accuracy = f"{live.accuracy:.3f} ({live.correct} of {live.labelled} confirmed birds right)"
    if drift is None:
        verdict = "no verdict yet (`make level2-monitor`)"
    else:
        checked = pd.Timestamp(drift.checked_at, unit="s", tz="UTC").isoformat(timespec="seconds")
        found = f"drift in {text(', '.join(drift.drifted))}" if drift.drifted else "no drift"
        verdict = f"{found}, checked {checked} (monitor run {text(drift.run_id)})"
    if drift_problem is not None:
        verdict += f"; may be stale: {text(drift_problem)}"
    return (
        f"\n## {SINCE_SERVED}\n\nAs this service knows it now, for v{text(version)}:\n\n"
        f"- Live accuracy: {accuracy}.\n- The drift monitor's latest verdict: {verdict}.\n"
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


def log_card(client: MlflowClient, run_id: str, card: Card) -> str:
    """Log the card with the version's run, as Markdown and HTML; return the Markdown."""
    markdown = card.render().lstrip("\n")
    client.log_text(run_id, markdown, CARD_MD)
    client.log_text(run_id, to_html(markdown), CARD_HTML)
    return markdown
