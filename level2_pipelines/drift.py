"""Drift: are the birds the service is asked about still like the birds the model learned from?

A window of served requests (one row per request: the six features, and the species the service
predicted) is compared with reference rows (by default the 2007-2008 birds the first model was
trained on), one check per column:

- each measurement: two-sample Kolmogorov-Smirnov (`scipy.stats.ks_2samp`). It compares whole
  distributions, not just means, so a shifted, widened or lost species cluster all show, and it
  assumes no shape (the measurements are mixtures of three species, far from normal);
- island and sex: chi-squared on counts per category, window against reference
  (`scipy.stats.chi2_contingency`); missing sex is left out (the API allows it);
- the prediction mix, when predictions are given: chi-squared on the species the service
  predicted in the window against the model's predictions on the reference rows. Label drift
  shows here even when no single feature moved far enough to be flagged.

These are Evidently's own defaults for a small reference set (under 1,000 rows). Evidently
itself is not used: 0.7.23 does not import with pandas 3.1.1, and scipy is already locked.

Seven tests per window at p < 0.05 each raised a false alarm on 77 of 1,000 clean simulated
windows of 200, so `alpha` is the family-wise false-alarm rate per window and each test is held
to alpha / number of tests (Bonferroni): 3 of the 1,000 then. Bonferroni holds whatever the
dependence between the tests (the measurements are strongly correlated) and gives the one
per-test threshold the report shows; Holm would raise an alarm on exactly the same windows.
With it, a shift of one reference standard deviation in any one measurement, or every bird
from one island, was flagged in every window of 200; an even island mix (reference 48/34/18 %)
in 85 of 100, as the 174 reference rows limit what a chi-squared test can see.
`python -m level2_pipelines.drift` measures these rates on simulated windows and times the
report.

A check with nothing to compare (no values on one side, or a single category in both) reports
statistic 0 and p-value 1: no evidence of drift, and strict JSON for the files that carry it.
"""

import base64
import html
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, ks_2samp

from shared.contract import CATEGORICAL_FEATURES, CATEGORIES, CLASSES, FEATURES, NUMERIC_FEATURES

PREDICTED = "predicted_species"  # the name of the prediction-mix check
OTHER = "(other)"  # values outside the contract's categories, counted together


@dataclass(frozen=True)
class FeatureDrift:
    feature: str  # a feature name, or "predicted_species"
    test: str  # "ks" (two-sample Kolmogorov-Smirnov) or "chi2" (chi-squared on counts)
    statistic: float
    p_value: float
    drifted: bool  # p_value < the report's per-test threshold
    reference_summary: str  # e.g. "mean 43.7, sd 5.4" or "Biscoe 48%, Dream 34%, Torgersen 18%"
    window_summary: str


@dataclass(frozen=True)
class DriftReport:
    window_rows: int
    reference_rows: int
    alpha: float  # family-wise false-alarm rate per window
    threshold: float  # per-test p-value threshold: alpha / number of checks (Bonferroni)
    checks: list[FeatureDrift]

    @property
    def drifted(self) -> list[str]:
        """The names of the checks that flagged drift."""
        return [c.feature for c in self.checks if c.drifted]

    def as_dict(self) -> dict:
        """Plain types only, ready for `json.dumps`."""
        return {
            "window_rows": self.window_rows,
            "reference_rows": self.reference_rows,
            "alpha": self.alpha,
            "threshold": self.threshold,
            "correction": "bonferroni",
            "drifted": self.drifted,
            "checks": [asdict(c) for c in self.checks],
        }


def _numeric_summary(values: np.ndarray) -> str:
    if values.size == 0:
        return "no values"
    if values.size == 1:
        return f"mean {values[0]:.1f}"
    return f"mean {values.mean():.1f}, sd {values.std(ddof=1):.1f}"


def _ks(feature: str, reference: pd.Series, window: pd.Series, threshold: float) -> FeatureDrift:
    ref = reference.dropna().to_numpy(dtype=float)
    win = window.dropna().to_numpy(dtype=float)
    if ref.size and win.size:
        result = ks_2samp(ref, win)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    else:
        statistic, p_value = 0.0, 1.0  # nothing to compare is no evidence of drift
    return FeatureDrift(
        feature,
        "ks",
        statistic,
        p_value,
        p_value < threshold,
        _numeric_summary(ref),
        _numeric_summary(win),
    )


def _counts(values: pd.Series, categories: tuple[str, ...]) -> pd.Series:
    """Counts per category, in contract order; values outside the contract under OTHER."""
    present = values.dropna().astype(str)
    counts = present.value_counts().reindex(list(categories), fill_value=0)
    counts[OTHER] = int((~present.isin(categories)).sum())
    return counts.astype(int)


def _shares_summary(counts: pd.Series, missing: int) -> str:
    total = int(counts.sum())
    shares = [
        f"{name} {count / total:.0%}"
        for name, count in counts.items()
        if total and (name != OTHER or count)
    ]
    text = ", ".join(shares) if shares else "no values"
    return f"{text} ({missing} missing)" if missing else text


def _chi2(
    feature: str,
    reference: pd.Series,
    window: pd.Series,
    categories: tuple[str, ...],
    threshold: float,
) -> FeatureDrift:
    ref, win = _counts(reference, categories), _counts(window, categories)
    table = np.vstack([ref.to_numpy(), win.to_numpy()])
    # A category nobody is in carries no information and would make an expected count of 0.
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] >= 2 and (table.sum(axis=1) > 0).all():
        result = chi2_contingency(table)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    else:
        statistic, p_value = 0.0, 1.0  # one side empty, or one category only: nothing to test
    return FeatureDrift(
        feature,
        "chi2",
        statistic,
        p_value,
        p_value < threshold,
        _shares_summary(ref, int(reference.isna().sum())),
        _shares_summary(win, int(window.isna().sum())),
    )


def _check_columns(frame: pd.DataFrame, what: str) -> None:
    missing = [c for c in FEATURES if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} lacks columns {missing}; it needs every feature: {list(FEATURES)}"
        )


def compare(
    reference: pd.DataFrame,
    window: pd.DataFrame,
    *,
    reference_predictions: pd.Series | None = None,
    window_predictions: pd.Series | None = None,
    alpha: float = 0.05,
) -> DriftReport:
    """Test each feature (and the prediction mix, if both predictions are given) of `window`
    against `reference`; flag a check when its p-value is below alpha / number of checks."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha is a false-alarm rate and must be within (0, 1), got {alpha}")
    if (reference_predictions is None) != (window_predictions is None):
        raise ValueError(
            "the prediction mix needs both reference_predictions and window_predictions, or neither"
        )
    _check_columns(reference, "reference")
    _check_columns(window, "window")

    with_predictions = reference_predictions is not None and window_predictions is not None
    threshold = alpha / (len(FEATURES) + with_predictions)
    checks = [_ks(f, reference[f], window[f], threshold) for f in NUMERIC_FEATURES]
    checks += [
        _chi2(f, reference[f], window[f], CATEGORIES[f], threshold) for f in CATEGORICAL_FEATURES
    ]
    if with_predictions:
        reference_mix, window_mix = pd.Series(reference_predictions), pd.Series(window_predictions)
        checks.append(_chi2(PREDICTED, reference_mix, window_mix, CLASSES, threshold))
    return DriftReport(
        window_rows=len(window),
        reference_rows=len(reference),
        alpha=alpha,
        threshold=threshold,
        checks=checks,
    )


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
        ref, win = _counts(reference, categories), _counts(window, categories)
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
    _check_columns(reference, "reference")
    _check_columns(window, "window")
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


def _measure(windows: int, clean_windows: int, size: int, seed: int) -> None:
    """Time the report, then measure false-alarm and detection rates on simulated windows."""
    import tempfile
    import time

    from level2_pipelines.data import reference_and_new_rows
    from shared.simulate import Drift, simulate_batch

    reference = reference_and_new_rows(seed)[0]
    window = simulate_batch(size, seed=1)
    timings = []
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(5):
            start = time.perf_counter()
            write_html(compare(reference, window), reference, window, Path(scratch) / "d.html")
            timings.append(time.perf_counter() - start)
    print(
        f"compare + write_html, {size} rows: {timings[0] * 1000:.0f} ms the first time (with"
        f" matplotlib's import), then {sorted(timings[1:])[2] * 1000:.0f} ms (median of 4)"
    )

    from level2_pipelines.train import fit  # imports matplotlib too: after the timing

    model = fit(reference, seed)
    reference_predictions = pd.Series(model.predict(reference[list(FEATURES)]))

    def run(drift: Drift | None, i: int) -> DriftReport:
        window = simulate_batch(size, seed=i, drift=drift)
        return compare(
            reference,
            window,
            reference_predictions=reference_predictions,
            window_predictions=pd.Series(model.predict(window[list(FEATURES)])),
        )

    print(f"{size}-row windows against {len(reference)} reference rows, 7 checks, alpha 0.05")
    clean = [run(None, i) for i in range(clean_windows)]
    alarms = sum(bool(r.drifted) for r in clean)
    naive = sum(any(c.p_value < 0.05 for c in r.checks) for r in clean)
    print(f"clean, any check flagged: {alarms}/{clean_windows} = {alarms / clean_windows:.1%}")
    print(
        f"clean, any p < 0.05 (uncorrected): {naive}/{clean_windows} = {naive / clean_windows:.1%}"
    )
    shifts = {
        f"{f} +1 sd ({reference[f].std():.1f})": (Drift(mean_shift={f: reference[f].std()}), f)
        for f in NUMERIC_FEATURES
    }
    even = dict.fromkeys(CATEGORIES["island"], 1.0)
    for mix in (even, *({island: 1.0} for island in CATEGORIES["island"])):
        shifts[f"island mix {mix}"] = (Drift(island_mix=mix), "island")
    gentoo = Drift(species_mix={"Adelie": 0.1, "Chinstrap": 0.1, "Gentoo": 0.8})
    shifts["species mix 80% Gentoo, prediction mix"] = (gentoo, PREDICTED)
    for label, (drift, check) in shifts.items():
        hits = sum(check in run(drift, 10_000 + i).drifted for i in range(windows))
        print(f"{label}: flagged in {hits}/{windows} = {hits / windows:.1%}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=_measure.__doc__)
    parser.add_argument("--windows", type=int, default=100, help="drifted windows per shift")
    parser.add_argument("--clean-windows", type=int, default=1000, help="clean windows")
    parser.add_argument("--size", type=int, default=200, help="rows per window")
    args = parser.parse_args()
    _measure(args.windows, args.clean_windows, args.size, seed=42)
