"""Data: the shared penguins, split the shared way, cut into features and target; and, new at
level 2, the reference rows and a new batch with an id.

The shared test split is never trained on: every model, candidate and champion alike, is judged
on those held-out rows. The story of level 2: the model was first trained on the 2007-2008
birds of the shared training split; new birds arrive in batches (by default the 2009 birds of
that split, or any CSV or Parquet file, or a simulated batch). A file landed in the incoming
folder is named by its name alone, and leaves that folder once the pipeline keeps it.
"""

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from shared.contract import FEATURES, TARGET
from shared.data import data_checksum, load_penguins, split_by_year, split_train_test


def training_split(seed: int) -> pd.DataFrame:
    """The shared training split: every row a model may learn from."""
    return split_train_test(load_penguins(), seed=seed)[0]


def held_out_rows(seed: int) -> pd.DataFrame:
    """The shared test split: never trained on, the rows every model is judged on."""
    return split_train_test(load_penguins(), seed=seed)[1]


def features_and_target(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The model's inputs in contract order, and the species."""
    return frame[list(FEATURES)], frame[TARGET]


def reference_and_new_rows(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training split cut by year: 2007-2008 (reference) and 2009 (the default batch)."""
    return split_by_year(training_split(seed))


ORIGINAL_REFERENCE = "reference"  # the 2007-2008 birds the first model was trained on
REFERENCE_TAG = "monitor_reference"  # on a run and its version: the rows it is watched against


def watched_reference(
    champion_tags: dict[str, str], seed: int, batches_dir: Path
) -> tuple[pd.DataFrame, str]:
    """The rows the champion (its registry tags; none: no champion) is watched against by the
    drift monitor and new batches are held to by validation, and their name: the original
    reference rows, or the kept batch whose drift the monitor confirmed. The reference moves
    with each champion; see monitor.py."""
    name = champion_tags.get(REFERENCE_TAG, ORIGINAL_REFERENCE)
    if name == ORIGINAL_REFERENCE:
        return reference_and_new_rows(seed)[0], name
    (kept,) = [p for p in (batches_dir / name).iterdir() if p.suffix in {".csv", ".parquet"}]
    return read_batch_file(kept), name


@dataclass(frozen=True)
class Batch:
    batch_id: str
    checksum: str  # SHA-256 of the batch's content
    source: str  # where it came from: a path, or "2009 rows"
    frame: pd.DataFrame


def read_batch_file(path: Path) -> pd.DataFrame:
    """Read as the file says, without coercing types: validation must see what arrived."""
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"batch {path}: expected a .csv or .parquet file")


def make_batch(frame: pd.DataFrame, source: str) -> Batch:
    checksum = data_checksum(frame)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return Batch(batch_id=f"{stamp}-{checksum[:8]}", checksum=checksum, source=source, frame=frame)


class UnsafeBatchName(ValueError):
    """A landed-file name that would reach outside the incoming folder."""


def landed_path(name: str, incoming: Path) -> Path:
    """The file `name` in the incoming folder: events name a file there, never a path."""
    incoming = incoming.resolve()
    path = (incoming / name).resolve()
    if path.parent != incoming or Path(name).name != name:
        raise UnsafeBatchName(
            f"incoming_name: {name!r} is not a file name in {incoming}; "
            "new-data events can only start runs on files landed there"
        )
    return path


def keep_batch(batch: Batch, folder: Path, incoming: Path) -> Path:
    """Keep the batch as it arrived: moved out of the incoming folder, copied from elsewhere."""
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(batch.source)
    if source.is_file() and source.resolve().parent == incoming.resolve():
        shutil.move(source, folder / source.name)
    elif source.is_file():
        shutil.copy2(source, folder / source.name)
    else:
        batch.frame.to_csv(folder / "batch.csv", index=False)
    return folder
