"""Run the level 0 notebook headless, as `make level0` does.

Executes `penguins.ipynb` top to bottom in a fresh kernel, keeps the executed copy and an HTML
export (figures inline) under the state folder next to the pickled model, and prints the
metrics. This is the only automation level 0 gets, and it is the workshop's, not the level's:
a level 0 team runs the notebook by hand.

    python -m level0_notebook.run [--output-dir DIR] [--new-batch CSV]
"""

import argparse
import json
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter
from traitlets.config import Config

from shared.paths import state_dir

NOTEBOOK = Path(__file__).with_name("penguins.ipynb")
CELL_TIMEOUT_S = 300


def execute(output_dir: Path, new_batch: Path | None = None) -> dict[str, float]:
    """Execute the notebook into `output_dir` (training on `new_batch` too, if given); return
    the metrics it wrote."""
    output_dir.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel inherits this process's environment: tell the notebook where to write.
    os.environ["LEVEL0_OUTPUT_DIR"] = str(output_dir)
    if new_batch is None:
        os.environ.pop("LEVEL0_NEW_BATCH", None)
    else:
        os.environ["LEVEL0_NEW_BATCH"] = str(new_batch.resolve())
    # Talk to the kernel over local IPC sockets in the output folder, not TCP on a port.
    config = Config({"KernelManager": {"transport": "ipc", "ip": str(output_dir / "kernel")}})
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        config=config,
    )
    try:
        client.execute()
    finally:
        # Keep what ran even when a cell failed: the traceback is in the executed copy.
        nbformat.write(notebook, output_dir / "penguins.executed.ipynb")
        html, _ = HTMLExporter().from_notebook_node(notebook)
        (output_dir / "penguins.html").write_text(html, encoding="utf-8")
    return json.loads((output_dir / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description="Execute the level 0 notebook headless.")
    parser.add_argument("--output-dir", type=Path, default=state_dir() / "level0")
    parser.add_argument("--new-batch", type=Path, help="a CSV of new birds to train on as well")
    args = parser.parse_args()
    output_dir = args.output_dir.resolve()
    print(f"level 0: executing {NOTEBOOK.name} ...", flush=True)
    try:
        metrics = execute(output_dir, args.new_batch)
    except CellExecutionError as error:
        sys.exit(f"level 0: the notebook failed; see {output_dir / 'penguins.html'}\n{error}")
    print(f"level 0: accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['macro_f1']:.3f}")
    print(f"level 0: model      {output_dir / 'model.pkl'}")
    print(f"level 0: notebook   {output_dir / 'penguins.executed.ipynb'}")
    print(f"level 0: report     {output_dir / 'penguins.html'}")


if __name__ == "__main__":
    main()
