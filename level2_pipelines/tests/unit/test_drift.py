"""Drift on served windows: a real shift is flagged within one window of 200 requests, a clean
window almost never, and the HTML report shows every check safely."""

import json
from dataclasses import replace

import pandas as pd
import pytest

from level2_pipelines.data import reference_and_new_rows
from level2_pipelines.drift import PREDICTED, compare
from level2_pipelines.drift_report import write_html
from level2_pipelines.train import fit
from shared.contract import CATEGORIES, FEATURES, NUMERIC_FEATURES
from shared.simulate import Drift, simulate_batch

WINDOW = 200  # requests per window
DETECTION_SEEDS = range(100, 120)  # 20 drifted windows per shift
CLEAN_SEEDS = range(60)  # clean windows for the false-alarm rate


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """The 2007-2008 birds the first model was trained on (one missing value per measurement)."""
    return reference_and_new_rows(42)[0]


@pytest.fixture(scope="module")
def model(reference):
    """The recipe fitted on the reference rows, as the first model was."""
    return fit(reference, 42)


def predicted(model, frame: pd.DataFrame) -> pd.Series:
    """What the service would have answered for each row: its inputs only, no species."""
    return pd.Series(model.predict(frame[list(FEATURES)]))


def flagged(reference: pd.DataFrame, drift: Drift, seed: int) -> list[str]:
    """The checks flagged on one simulated window of WINDOW requests."""
    return compare(reference, simulate_batch(WINDOW, seed=seed, drift=drift)).drifted


@pytest.mark.parametrize("feature", NUMERIC_FEATURES)
def test_compare_flags_a_one_sd_shift_in_any_measurement(reference, feature):
    """A shift of one reference standard deviation in one measurement is flagged in each of 20
    windows of 200 (measured: 100 of 100 windows per measurement; here p is 2e-8 at worst)."""
    shift = Drift(mean_shift={feature: float(reference[feature].std())})

    missed = [seed for seed in DETECTION_SEEDS if feature not in flagged(reference, shift, seed)]

    assert missed == [], f"{feature} shifted by 1 sd not flagged in windows with seeds {missed}"


@pytest.mark.parametrize("island", CATEGORIES["island"])
def test_compare_flags_all_birds_from_one_island(reference, island):
    """Every bird from one island (the others' colonies unserved) is flagged in each of 20
    windows of 200."""
    drift = Drift(island_mix={island: 1.0})

    missed = [seed for seed in DETECTION_SEEDS if "island" not in flagged(reference, drift, seed)]

    assert missed == [], f"all birds from {island} not flagged in windows with seeds {missed}"


def test_compare_flags_an_even_island_mix_in_most_windows(reference):
    """An even island mix (reference 48/34/18 %) is a smaller change: flagged in at least 75 % of
    50 windows of 200 (measured: 42/50 here, 85/100 in `python -m level2_pipelines.drift`; the
    reference's 174 rows limit the power)."""
    drift = Drift(island_mix={"Biscoe": 1.0, "Dream": 1.0, "Torgersen": 1.0})

    hits = sum("island" in flagged(reference, drift, seed) for seed in range(200, 250))

    assert hits / 50 >= 0.75, f"even island mix flagged in only {hits}/50 windows"


def test_compare_rarely_flags_a_clean_window(reference, model):
    """Over 60 clean windows of 200, all seven checks including the prediction mix, at most 5 %
    raise any alarm (measured: 0 of these 60, 3 of 1,000; at p < 0.05 uncorrected, 77 of 1,000)."""
    reference_predictions = predicted(model, reference)
    alarms = {}

    for seed in CLEAN_SEEDS:
        window = simulate_batch(WINDOW, seed=seed)
        report = compare(
            reference,
            window,
            reference_predictions=reference_predictions,
            window_predictions=predicted(model, window),
        )
        assert len(report.checks) == 7
        if report.drifted:
            alarms[seed] = report.drifted

    assert len(alarms) / len(CLEAN_SEEDS) <= 0.05, f"false alarms (seed: checks): {alarms}"


def test_compare_flags_a_changed_prediction_mix(reference, model):
    """When 80 % of the birds served are Gentoo (reference: 36 %), the mix of predicted species is
    flagged in each of 5 windows."""
    drift = Drift(species_mix={"Adelie": 0.1, "Chinstrap": 0.1, "Gentoo": 0.8})
    reference_predictions = predicted(model, reference)

    caught = []
    for seed in range(300, 305):
        window = simulate_batch(WINDOW, seed=seed, drift=drift)
        report = compare(
            reference,
            window,
            reference_predictions=reference_predictions,
            window_predictions=predicted(model, window),
        )
        caught.append(PREDICTED in report.drifted)

    assert all(caught), caught


def test_compare_holds_each_check_to_alpha_over_the_number_of_checks(reference):
    """Bonferroni: six checks at alpha 0.05 are each held to p < 0.05 / 6."""
    report = compare(reference, simulate_batch(WINDOW, seed=1), alpha=0.05)

    assert [c.feature for c in report.checks] == list(FEATURES)
    assert report.threshold == pytest.approx(0.05 / 6)
    assert all(c.drifted == (c.p_value < report.threshold) for c in report.checks)


def test_compare_needs_both_predictions_or_neither(reference):
    """Predictions for the window alone cannot be compared with anything: refused, saying so."""
    window = simulate_batch(20, seed=1)

    with pytest.raises(ValueError, match="reference_predictions"):
        compare(reference, window, window_predictions=window["species"])


def test_compare_names_a_missing_column(reference):
    """A window without a feature column is refused with the column's name."""
    window = simulate_batch(20, seed=1).drop(columns=["island"])

    with pytest.raises(ValueError, match="island"):
        compare(reference, window)


def test_report_as_dict_is_strict_json(reference):
    """The dict the monitor writes is plain JSON (no NaN, no numpy types) and lists the drifted."""
    window = simulate_batch(WINDOW, seed=1, drift=Drift(mean_shift={"body_mass_g": 800.0}))

    record = json.loads(json.dumps(compare(reference, window).as_dict(), allow_nan=False))

    assert record["drifted"] == ["body_mass_g"]
    assert len(record["checks"]) == 6


def test_write_html_has_the_table_and_one_plot_per_check(reference, model, tmp_path):
    """One self-contained file: the table of checks, and one embedded PNG per check."""
    window = simulate_batch(WINDOW, seed=1)
    predictions = {
        "reference_predictions": predicted(model, reference),
        "window_predictions": predicted(model, window),
    }
    report = compare(reference, window, **predictions)

    page = write_html(report, reference, window, tmp_path / "drift.html", **predictions).read_text()

    assert page.count("<img ") == len(FEATURES) + 1
    assert page.count('src="data:image/png;base64,') == len(FEATURES) + 1
    assert page.count("<tr") == len(report.checks) + 1  # the header and one row per check
    assert all(f"<th>{c.feature}</th>" in page for c in report.checks)
    assert "<script" not in page and "<link" not in page and "http" not in page


def test_write_html_escapes_text(reference, tmp_path):
    """Text from the report is escaped: a summary holding markup shows as text."""
    window = simulate_batch(WINDOW, seed=1)
    report = compare(reference, window)
    hostile = "<script>alert('drift')</script> & more"
    report = replace(report, checks=[replace(report.checks[0], window_summary=hostile)])

    page = write_html(report, reference, window, tmp_path / "drift.html").read_text()

    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;drift&#x27;)&lt;/script&gt; &amp; more" in page


@pytest.mark.parametrize(
    "make_window",
    [
        lambda: simulate_batch(5, seed=7),
        lambda: simulate_batch(0, seed=7),
        lambda: simulate_batch(WINDOW, seed=7).assign(island="Dream", sex=None),
        lambda: simulate_batch(1, seed=7).assign(sex=float("nan")),
    ],
    ids=["5_rows", "empty", "one_island_no_sex", "1_row_no_sex"],
)
def test_a_small_or_degenerate_window_does_not_crash(reference, tmp_path, make_window):
    """Tiny windows, one island only and no recorded sex still give a full, JSON-able report."""
    window = make_window()

    report = compare(reference, window)
    path = write_html(report, reference, window, tmp_path / "drift.html")

    assert len(report.checks) == len(FEATURES)
    assert all(0.0 <= c.p_value <= 1.0 for c in report.checks)
    json.dumps(report.as_dict(), allow_nan=False)
    assert path.read_text().count("<img ") == len(FEATURES)


def test_a_category_empty_on_both_sides_is_left_out(reference):
    """Reference and window both from Biscoe only: no expected count of zero, nothing flagged."""
    biscoe = reference[reference["island"] == "Biscoe"]
    window = simulate_batch(WINDOW, seed=8).assign(island="Biscoe")

    island = compare(biscoe, window).checks[FEATURES.index("island")]

    assert (island.statistic, island.p_value, island.drifted) == (0.0, 1.0, False)
    assert island.window_summary == "Biscoe 100%, Dream 0%, Torgersen 0%"


def test_sex_counts_leave_missing_out_and_say_how_many(reference):
    """Missing sex is not a category: the shares are of recorded sexes, the missing counted."""
    window = simulate_batch(WINDOW, seed=9)
    window.loc[window.index[:50], "sex"] = None

    sex = compare(reference, window).checks[FEATURES.index("sex")]

    assert sex.window_summary.endswith(f"({window['sex'].isna().sum()} missing)")
    assert not sex.drifted


def test_values_outside_the_contract_count_as_other(reference):
    """An island the contract does not know (the API refuses it; a broken log might not) counts
    under "(other)" and is flagged, rather than silently dropped."""
    window = simulate_batch(WINDOW, seed=10)
    window.loc[window.index[:20], "island"] = "Anvers"

    island = compare(reference, window).checks[FEATURES.index("island")]

    assert island.drifted
    assert island.window_summary.endswith("(other) 10%")
