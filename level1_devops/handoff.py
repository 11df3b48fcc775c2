"""The hand-off: put a trained model where the service reads it. At level 1 this is a step a
person runs (`make level1-handoff`); nothing decides whether the new model is better.

    python -m level1_devops.handoff [--from DIR] [--to DIR]
    python -m level1_devops.handoff --undo [--to DIR]

The pair is checked before it is copied (SHA-256 and fingerprint against its card), and each
file lands with an atomic rename, so a service starting meanwhile finds the old pair, the new
pair, or a mismatch it refuses. The pair it replaces is kept in `previous/` of the serving
folder, so a bad hand-off can be undone: `--undo` swaps the two pairs back.
"""

import argparse
import os
import sys
from pathlib import Path

from level1_devops.model import CARD_FILE, MODEL_FILE, ModelCard, ModelLoadError, load_artifact
from level1_devops.model_card import CARD_HTML, CARD_MD
from level1_devops.settings import Settings

PREVIOUS_DIR = "previous"
READABLE = (CARD_MD, CARD_HTML)


def write_atomically(path: Path, data: bytes) -> None:
    """A reader of `path` sees the old bytes or the new ones, never half of them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.incoming")
    scratch.write_bytes(data)
    os.replace(scratch, path)


def hand_off(source: Path, destination: Path) -> ModelCard:
    """Serve the pair in `source` from `destination`, keeping the replaced pair in `previous/`."""
    _, card = load_artifact(source)  # refuse to hand over a pair that would not load
    # Read before writing anything: with --undo, `source` is the previous/ folder rewritten below.
    incoming = {name: (source / name).read_bytes() for name in (MODEL_FILE, CARD_FILE)}
    # The model card a person reads goes with the pair when there is one (older models have
    # none, and then neither does the serving folder: no card describing another model).
    readable = {
        name: (source / name).read_bytes() for name in READABLE if (source / name).is_file()
    }
    served = {name: destination / name for name in incoming}
    # The same pair handed off twice must not push the real previous pair out.
    if all(p.is_file() for p in served.values()) and (
        served[MODEL_FILE].read_bytes() != incoming[MODEL_FILE]
    ):
        for name in (*served, *READABLE):
            kept = destination / PREVIOUS_DIR / name
            if (destination / name).is_file():
                write_atomically(kept, (destination / name).read_bytes())
            else:
                kept.unlink(missing_ok=True)
    for name in READABLE:
        (destination / name).unlink(missing_ok=True)
    for name, data in (incoming | readable).items():
        write_atomically(destination / name, data)
    return card


def undo(destination: Path) -> ModelCard:
    """Serve the previous pair again; the pair it replaces becomes the previous one."""
    previous = destination / PREVIOUS_DIR
    if not (previous / MODEL_FILE).is_file():
        raise ModelLoadError(
            f"nothing to undo: no previous pair in {previous} (one is kept from the second "
            "hand-off on)"
        )
    return hand_off(previous, destination)


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description="Copy the trained model to the serving folder.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from", dest="source", type=Path, default=settings.artifacts_dir)
    source.add_argument(
        "--undo", action="store_true", help="serve the previous pair again (run twice to redo)"
    )
    parser.add_argument("--to", dest="destination", type=Path, default=settings.serving_dir)
    args = parser.parse_args()
    try:
        card = undo(args.destination) if args.undo else hand_off(args.source, args.destination)
    except ModelLoadError as error:
        sys.exit(f"level 1 hand-off: {error}")
    print(f"level 1 hand-off: model {card.version} copied to {args.destination}")
    if (args.destination / PREVIOUS_DIR).is_dir():
        print(
            f"level 1 hand-off: the previous pair is kept in {args.destination / PREVIOUS_DIR}; "
            "`python -m level1_devops.handoff --undo` serves it again"
        )
    print("level 1 hand-off: restart the service (`make level1-serve`) to serve it")


if __name__ == "__main__":
    main()
