"""The hand-off: put a trained model where the service reads it. At level 1 this is a step a
person runs (`make level1-handoff`); nothing decides whether the new model is better.

    python -m level1_devops.handoff [--from DIR] [--to DIR]

The pair is checked before it is copied, and each file lands with an atomic rename, so a
service starting meanwhile finds the old pair, the new pair, or a mismatch it refuses.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

from level1_devops.model import CARD_FILE, MODEL_FILE, ModelCard, ModelLoadError, load_artifact
from level1_devops.settings import Settings


def hand_off(source: Path, destination: Path) -> ModelCard:
    _, card = load_artifact(source)  # refuse to hand over a pair that would not load
    destination.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, CARD_FILE):
        scratch = destination / f".{name}.incoming"
        shutil.copyfile(source / name, scratch)
        os.replace(scratch, destination / name)
    return card


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description="Copy the trained model to the serving folder.")
    parser.add_argument("--from", dest="source", type=Path, default=settings.artifacts_dir)
    parser.add_argument("--to", dest="destination", type=Path, default=settings.serving_dir)
    args = parser.parse_args()
    try:
        card = hand_off(args.source, args.destination)
    except ModelLoadError as error:
        sys.exit(f"level 1 hand-off: {error}")
    print(f"level 1 hand-off: model {card.version} copied to {args.destination}")
    print("level 1 hand-off: restart the service (`make level1-serve`) to serve it")


if __name__ == "__main__":
    main()
