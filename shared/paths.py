"""Where the project keeps what it generates: one git-ignored state folder."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def state_dir() -> Path:
    """The state folder: `MLOPS_STATE_DIR` if set, else `state/` at the top of the checkout."""
    return Path(os.environ.get("MLOPS_STATE_DIR", REPO_ROOT / "state")).resolve()
