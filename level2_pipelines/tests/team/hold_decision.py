"""Hold the registry's decision for a while, as a worker's run does, saying when it has it and
when it lets go (the lock tests start this in processes of their own):

    python -m level2_pipelines.tests.team.hold_decision SECONDS | FILE

(FILE: until that file exists, at most 300 s.)
"""

import sys
import time
from pathlib import Path

from level2_pipelines import registry
from level2_pipelines.settings import Settings


def main() -> None:
    until = sys.argv[1]
    settings = Settings()
    print(f"waiting {time.time()}", flush=True)  # about to ask for the decision
    try:
        with registry.decision(settings):
            print(f"held {time.time()}", flush=True)
            if until.replace(".", "", 1).isdigit():
                time.sleep(float(until))
            else:
                deadline = time.monotonic() + 300
                while not Path(until).exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            print(f"releasing {time.time()}", flush=True)
    except registry.RegistryError as error:
        sys.exit(f"refused: {error}")


if __name__ == "__main__":
    main()
