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
`python -m bench.drift_detection` measures these rates on simulated windows and times the
report.

A check with nothing to compare (no values on one side, or a single category in both) reports
statistic 0 and p-value 1: no evidence of drift, and strict JSON for the files that carry it.
"""

from dataclasses import asdict, dataclass

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


def category_counts(values: pd.Series, categories: tuple[str, ...]) -> pd.Series:
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
    ref, win = category_counts(reference, categories), category_counts(window, categories)
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


def check_columns(frame: pd.DataFrame, what: str) -> None:
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
    check_columns(reference, "reference")
    check_columns(window, "window")

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
