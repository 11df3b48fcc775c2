"""Benchmark the batch simulator: how fast it makes 1,000,000 rows.

The baseline, timed in the same run, is the naive way to get more rows: resampling the real
ones with replacement (which cannot drift or corrupt, and repeats the same 344 birds).
Medians over several repeats, because this machine is shared and noisy.

    python -m bench.simulator [--rows 1000000] [--repeats 5]
"""

import argparse
import statistics
import time
from collections.abc import Callable

from shared.data import load_penguins
from shared.simulate import Corruption, Drift, fitted_models, simulate_batch


def median_seconds(make: Callable[[int], object], repeats: int) -> float:
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        make(seed)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = args.rows
    real = load_penguins()
    fitted_models()  # fit once up front: the benchmark measures drawing, not fitting
    drift = Drift(mean_shift={"body_mass_g": 300.0}, island_mix={"Biscoe": 1, "Dream": 1})
    corruption = Corruption(
        null_rate={"bill_length_mm": 0.05},
        out_of_range_rate={"body_mass_g": 0.01},
        wrong_type_rate={"flipper_length_mm": 0.01},
        rename={"island": "Island"},
    )
    cases = {
        "resample real rows (baseline)": lambda s: real.sample(n, replace=True, random_state=s),
        "simulate_batch": lambda s: simulate_batch(n, seed=s),
        "simulate_batch + drift + corruption": lambda s: simulate_batch(
            n, seed=s, drift=drift, corruption=corruption
        ),
    }
    print(f"{n:,} rows, median of {args.repeats} runs")
    print(f"{'case':<38} {'seconds':>8} {'rows/s':>12} {'vs baseline':>12}")
    baseline = None
    for name, make in cases.items():
        seconds = median_seconds(make, args.repeats)
        baseline = baseline or seconds
        print(f"{name:<38} {seconds:8.3f} {n / seconds:12,.0f} {seconds / baseline:11.2f}x")


if __name__ == "__main__":
    main()
