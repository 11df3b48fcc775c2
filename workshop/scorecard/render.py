"""The scorecard as Markdown (printed and written), JSON, and an HTML page with a chart."""

import base64
import html
import io
import json
import os
import textwrap
from pathlib import Path

import numpy as np

from workshop.scorecard.cells import LEVELS, Cell, Row


def markdown(rows: list[Row], when: str) -> str:
    lines = [
        f"Scorecard, {when}",
        "",
        "| capability | " + " | ".join(LEVELS) + " |",
        "|---|" + "---|" * len(LEVELS),
    ]
    for capability, cells in rows:
        texts = [str(cells[lv]).replace("|", "\\|") for lv in LEVELS]  # a pipe ends a cell
        lines.append(f"| {capability} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def dated_table(rows: list[Row], when: str) -> str:
    """The table as docs/scorecard.md shows it: which run, on how many cores, then the rows."""
    dated = (
        f"This table is from `make scorecard` on {os.cpu_count()} cores, {when} (the levels' own"
        " suites run alongside the probes; a red suite's cell names the first test that failed):"
    )
    table = markdown(rows, when).split("\n", 2)[2]  # without its own title line
    return textwrap.fill(dated, 100) + "\n\n" + table


def chart_png(latency: dict[str, dict[str, float]]) -> bytes:
    from matplotlib.figure import Figure  # ~1 s to import: only when a chart is drawn

    figure = Figure(figsize=(9, 3.4))
    left, right = figure.subplots(1, 2)
    levels = list(latency)
    x = np.arange(len(levels))
    left.bar(x - 0.2, [latency[lv]["p50_ms"] for lv in levels], 0.4, label="p50")
    left.bar(x + 0.2, [latency[lv]["p99_ms"] for lv in levels], 0.4, label="p99")
    left.set(xticks=x, xticklabels=levels, ylabel="ms", title="Latency at c=8")
    left.legend()
    right.bar(x, [latency[lv]["requests_per_s"] for lv in levels], color="tab:green")
    right.set(xticks=x, xticklabels=levels, ylabel="requests/s", title="Throughput at c=8")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


BENEFIT = "✓ capabilities (what it buys)"
PANEL_W, PANEL_H, PER_LINE = 250, 96, 4


def benefits(rows: list[Row]) -> dict[str, int]:
    """How many rows each level earned a ✓ in."""
    return {lv: sum(cells[lv].ok is True for _, cells in rows) for lv in LEVELS}


def cost_chart_svg(rows: list[Row], costs: dict[str, dict[str, float]]) -> str:
    """Inline SVG, one small panel per figure: the ✓ each level earned (green) beside what it
    costs (orange), each panel's bars scaled to its own largest value."""
    earned = benefits(rows)
    names = sorted({name for figures in costs.values() for name in figures}, key=str.lower)
    panels = [(BENEFIT, earned, "#34a853")]
    panels += [(n, {lv: costs.get(lv, {}).get(n, 0) for lv in LEVELS}, "#f29900") for n in names]
    parts = []
    for i, (title, values, colour) in enumerate(panels):
        x0, y0 = (i % PER_LINE) * PANEL_W, (i // PER_LINE) * PANEL_H
        top = max(values.values()) or 1
        parts.append(f'<text x="{x0}" y="{y0 + 14}" font-weight="bold">{html.escape(title)}</text>')
        for j, level in enumerate(LEVELS):
            y, width = y0 + 22 + j * 22, 130 * values[level] / top
            shown = f"{values[level]:,.{figure_digits(values[level])}f}"
            parts.append(
                f'<text x="{x0}" y="{y + 13}">{level}</text>'
                f'<rect x="{x0 + 55}" y="{y}" width="{width:.1f}" height="16" fill="{colour}"/>'
                f'<text x="{x0 + 60 + width:.1f}" y="{y + 13}">{shown}</text>'
            )
    lines = -(-len(panels) // PER_LINE)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{PANEL_W * PER_LINE}" '
        f'height="{PANEL_H * lines}" font-family="sans-serif" font-size="12">'
        f"<title>what each level buys beside what it costs</title>{''.join(parts)}</svg>"
    )


def figure_digits(value: float) -> int:
    return 0 if float(value).is_integer() or abs(value) >= 100 else 1


def html_report(rows: list[Row], latency: dict, when: str, costs: dict | None = None) -> str:
    def cell(c: Cell) -> str:
        colour = {True: "#e6f4ea", False: "#fce8e6", None: "#f5f5f5"}[c.ok]
        return f'<td style="background:{colour}">{html.escape(str(c))}</td>'

    body = "".join(
        f"<tr><th>{html.escape(cap)}</th>" + "".join(cell(cells[lv]) for lv in LEVELS) + "</tr>"
        for cap, cells in rows
    )
    chart = ""
    if latency:
        png = base64.b64encode(chart_png(latency)).decode()
        chart = (
            '<h2>Serving</h2><img alt="latency and throughput per level" '
            f'src="data:image/png;base64,{png}">'
        )
    if costs:
        chart += "<h2>What it buys, what it costs</h2>" + cost_chart_svg(rows, costs)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>MLOps scorecard</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:.4em;
text-align:left;vertical-align:top}}table{{border-collapse:collapse}}</style></head><body>
<h1>What each level buys you, and what it costs</h1><p>Measured {html.escape(when)}.</p>
<table><tr><th>capability</th>{"".join(f"<th>{lv}</th>" for lv in LEVELS)}</tr>{body}</table>
{chart}
</body></html>"""


def record(rows: list[Row], latency: dict, when: str, costs: dict | None = None) -> dict:
    """What the JSON file holds: every cell's verdict and text, the serving and cost figures."""
    return {
        "when": when,
        "rows": [{"capability": c, **{lv: vars(cells[lv]) for lv in LEVELS}} for c, cells in rows],
        "latency": latency,
        "costs": costs or {},
    }


def write_reports(
    folder: Path, rows: list[Row], latency: dict, when: str, costs: dict | None = None
) -> str:
    """scorecard.md, .json and .html into `folder`; returns the Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, when)
    (folder / "scorecard.md").write_text(text)
    written = record(rows, latency, when, costs)
    (folder / "scorecard.json").write_text(json.dumps(written, indent=2) + "\n")
    (folder / "scorecard.html").write_text(html_report(rows, latency, when, costs))
    return text
