"""How level 2's drift checks behave: the report's cost, false alarms on clean windows, and how
often each kind of drift is flagged, on simulated windows against the reference birds.

    python -m bench.drift_detection [--windows 100] [--clean-windows 1000] [--size 200]
"""

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from level2_pipelines.data import reference_and_new_rows
from level2_pipelines.drift import PREDICTED, DriftReport, compare
from level2_pipelines.drift_report import write_html
from shared.contract import CATEGORIES, FEATURES, NUMERIC_FEATURES
from shared.simulate import Drift, simulate_batch


def measure(windows: int, clean_windows: int, size: int, seed: int) -> None:
    """Time the report, then measure false-alarm and detection rates on simulated windows."""
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

    from level2_pipelines.train import fit  # imports matplotlib: after the timing above

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


def main() -> None:
    parser = argparse.ArgumentParser(description=measure.__doc__)
    parser.add_argument("--windows", type=int, default=100, help="drifted windows per shift")
    parser.add_argument("--clean-windows", type=int, default=1000, help="clean windows")
    parser.add_argument("--size", type=int, default=200, help="rows per window")
    args = parser.parse_args()
    measure(args.windows, args.clean_windows, args.size, seed=42)


if __name__ == "__main__":
    main()
