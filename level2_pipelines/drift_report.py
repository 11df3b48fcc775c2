"""The drift report a person reads: one HTML page with the verdict, a row per check and a plot
per feature (reference against window), the plots inlined as PNG so the page stands alone in
MLflow's artifact view. The statistics are `drift.py`'s; matplotlib is imported only when a
page is drawn (~1 s).
"""

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from level2_pipelines.drift import OTHER, PREDICTED, DriftReport, category_counts, check_columns
from shared.contract import CATEGORICAL_FEATURES, CATEGORIES, CLASSES, NUMERIC_FEATURES


def _png(figure) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot(
    name: str, reference: pd.Series, window: pd.Series, categories: tuple[str, ...] | None
) -> str:
    """Reference against window for one check, as a base64 PNG: histograms for a measurement
    (`categories` None), shares per category otherwise."""
    from matplotlib.figure import Figure  # ~1 s to import: only when a report is drawn

    # Fixed margins and one filled outline per histogram rather than a patch per bar: a
    # third of the drawing time of a constrained layout with bar patches.
    figure = Figure(figsize=(5, 2.8), dpi=80)
    figure.subplots_adjust(left=0.12, right=0.98, bottom=0.18, top=0.89)
    ax = figure.subplots()
    if categories is None:
        ref = reference.dropna().to_numpy(dtype=float)
        win = window.dropna().to_numpy(dtype=float)
        both = np.concatenate([ref, win])
        # Shared bins, so the two histograms are comparable bin for bin.
        bins = np.histogram_bin_edges(both, bins=20) if both.size else 1
        for values, label in ((ref, "reference"), (win, "window")):
            if values.size:
                ax.hist(
                    values,
                    bins=bins,
                    density=True,
                    histtype="stepfilled",
                    alpha=0.5,
                    label=f"{label} (n={values.size})",
                )
        # Densities in 1/g or 1/mm mean little to a reader; the shapes are the point.
        ax.set(xlabel=name, ylabel="density", yticks=[])
    else:
        ref, win = category_counts(reference, categories), category_counts(window, categories)
        shown = [c for c in ref.index if c != OTHER or ref[c] + win[c]]
        x = np.arange(len(shown))
        for offset, counts, label in ((-0.2, ref, "reference"), (0.2, win, "window")):
            shares = counts[shown] / counts.sum() if counts.sum() else counts[shown] * 0.0
            ax.bar(x + offset, shares, 0.4, label=f"{label} (n={counts.sum()})")
        ax.set(xticks=x, xticklabels=shown, ylabel="share", xlabel=name)
    if ax.get_legend_handles_labels()[0]:
        # Above the plot, where it cannot hide a bar.
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1), ncols=2, fontsize="small", frameon=False)
    return _png(figure)


def _render(report: DriftReport, plots: dict[str, str]) -> str:
    e = html.escape
    rows = "".join(
        f'<tr class="{"drifted" if c.drifted else "ok"}">'
        f"<th>{e(c.feature)}</th><td>{e(c.test)}</td>"
        f"<td>{c.statistic:.3f}</td><td>{c.p_value:.2g}</td><td>{report.threshold:.2g}</td>"
        f"<td>{'yes' if c.drifted else 'no'}</td><td>{e(c.reference_summary)}</td>"
        f"<td>{e(c.window_summary)}</td></tr>"
        for c in report.checks
    )
    figures = "".join(
        f'<h3>{e(name)}</h3><img alt="{e(name)}: reference and window" '
        f'src="data:image/png;base64,{png}">'
        for name, png in plots.items()
    )
    verdict = "Drift in " + e(", ".join(report.drifted)) if report.drifted else "No drift detected"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Drift report</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:.4em;
text-align:left;vertical-align:top}}table{{border-collapse:collapse}}
tr.drifted td,tr.drifted th{{background:#fce8e6}}</style></head><body>
<h1>Drift report</h1>
<p><strong>{verdict}.</strong> {report.window_rows} served rows against {report.reference_rows}
reference rows; family-wise false-alarm rate {report.alpha:g}, so each of the
{len(report.checks)} checks is flagged below p = {report.threshold:.2g} (Bonferroni).</p>
<table><tr><th>check</th><th>test</th><th>statistic</th><th>p-value</th><th>threshold</th>
<th>drifted</th><th>reference</th><th>window</th></tr>{rows}</table>
<h2>Reference and window</h2>{figures}
</body></html>
"""


def write_html(
    report: DriftReport,
    reference: pd.DataFrame,
    window: pd.DataFrame,
    path: Path,
    *,
    reference_predictions: pd.Series | None = None,
    window_predictions: pd.Series | None = None,
) -> Path:
    """One self-contained HTML file: the table of checks and a plot per feature (and of the
    prediction mix, when the predictions are passed again here)."""
    check_columns(reference, "reference")
    check_columns(window, "window")
    plots = {f: _plot(f, reference[f], window[f], None) for f in NUMERIC_FEATURES}
    plots |= {f: _plot(f, reference[f], window[f], CATEGORIES[f]) for f in CATEGORICAL_FEATURES}
    if reference_predictions is not None and window_predictions is not None:
        plots[PREDICTED] = _plot(
            PREDICTED, pd.Series(reference_predictions), pd.Series(window_predictions), CLASSES
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_render(report, plots), encoding="utf-8")
    return path
