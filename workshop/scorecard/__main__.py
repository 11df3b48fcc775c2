"""`make scorecard [DOCS=1]`: python -m workshop.scorecard [--quick] [--docs]"""

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime

from shared.paths import state_dir
from tools.docs_figures import DOCS, refresh
from workshop.lab import Lab, ServiceFailed, stop_on_sigterm
from workshop.scorecard.cells import failed_service, failed_step
from workshop.scorecard.render import dated_table, write_reports
from workshop.scorecard.runner import run
from workshop.scorecard.table import Scorecard


def main() -> None:
    parser = argparse.ArgumentParser(description="Probe every level and print the scorecard.")
    parser.add_argument("--quick", action="store_true", help="count tests instead of running")
    parser.add_argument(
        "--docs", action="store_true", help="also rewrite the dated run in docs/scorecard.md"
    )
    args = parser.parse_args()
    stop_on_sigterm()
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {message}", flush=True)

    out = state_dir() / "scorecard"
    card = Scorecard(Lab(out / "lab"), say)
    try:
        run(card, quick=args.quick)
    except subprocess.CalledProcessError as error:
        sys.exit(f"scorecard: {failed_step(error)}")
    except ServiceFailed as error:
        sys.exit(f"scorecard: {failed_service(error)}")
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {time.perf_counter() - started:.0f} s"
    text = write_reports(out, card.rows, card.latency, when, card.costs)
    print("\n" + text)
    print(f"written: {out / 'scorecard.md'}, scorecard.html and scorecard.json")
    if args.docs:
        refresh(DOCS / "scorecard.md", "scorecard", dated_table(card.rows, when))
        print(f"written: {DOCS / 'scorecard.md'}")


if __name__ == "__main__":
    main()
