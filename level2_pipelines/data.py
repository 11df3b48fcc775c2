"""Data: the shared penguins, split the shared way, cut into features and target; and, new at
level 2, the reference rows and a new batch with an id.

The shared test split is never trained on: every model, candidate and champion alike, is judged
on those held-out rows. The story of level 2: the model was first trained on the 2007-2008
birds of the shared training split; new birds arrive in batches (by default the 2009 birds of
that split, or any CSV or Parquet file, or a simulated batch). A file landed in the incoming
folder is named by its name alone, and leaves that folder once the pipeline keeps it.
"""

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from level2_pipelines.settings import Settings
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
REFERENCE_RUN_TAG = "monitor_reference_run"  # the MLflow run holding those rows (BATCH_ARTIFACT)
BATCH_ARTIFACT = "batch"  # the artifact folder where a training run keeps the batch it validated


class ReferenceUnavailable(RuntimeError):
    """The champion's reference rows cannot be read, and why."""


@dataclass(frozen=True)
class Reference:
    """Which rows a model is watched against: the original reference, or a kept batch (by its
    id) whose drift the monitor confirmed, with the MLflow run that logged that batch."""

    name: str = ORIGINAL_REFERENCE
    run_id: str | None = None

    @classmethod
    def of(cls, tags: dict[str, str]) -> "Reference":
        """The reference a version's (or run's) tags name; no tags: the original."""
        return cls(tags.get(REFERENCE_TAG, ORIGINAL_REFERENCE), tags.get(REFERENCE_RUN_TAG))

    def tags(self) -> dict[str, str]:
        run = {REFERENCE_RUN_TAG: self.run_id} if self.run_id else {}
        return {REFERENCE_TAG: self.name} | run


def watched_reference(
    client: MlflowClient, champion_tags: dict[str, str], settings: Settings
) -> tuple[pd.DataFrame, Reference]:
    """The rows the champion (its registry tags; none: no champion) is watched against by the
    drift monitor and new batches are held to by validation: the original reference rows, or
    the kept batch whose drift the monitor confirmed. The reference moves with each champion;
    see monitor.py.

    A kept batch is read from its training run's artifacts on the tracking server, which every
    worker reaches, and kept under `references_dir` (a run's artifacts never change). A
    version tagged before references were logged there names only the batch folder of the
    worker that trained it: read from this state folder if it is there."""
    reference = Reference.of(champion_tags)
    if reference.name == ORIGINAL_REFERENCE:
        return reference_and_new_rows(settings.seed)[0], reference
    if reference.run_id is not None:
        folder = _downloaded(client, reference, settings.references_dir)
    else:
        folder = settings.batches_dir / reference.name
        if not folder.is_dir():
            raise ReferenceUnavailable(
                f"the champion is watched against batch {reference.name}, kept only in the state "
                f"folder of the worker that trained it (its version predates {REFERENCE_RUN_TAG}"
                f" tags), not in {settings.batches_dir}: copy that batch folder there, or promote"
                " a version trained since"
            )
    return read_batch_file(_batch_file(folder, reference)), reference


def _downloaded(client: MlflowClient, reference: Reference, cache: Path) -> Path:
    """The folder of the reference's batch, downloaded once: into a scratch folder first, then
    renamed into place, so a reader never sees half of it (another process may race us)."""
    folder = cache / reference.run_id
    if folder.is_dir():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        local = client.download_artifacts(reference.run_id, BATCH_ARTIFACT, str(scratch))
        with contextlib.suppress(OSError):  # another process put it in place first
            os.rename(local, folder)
        if not folder.is_dir():
            raise OSError(f"{local} could not be moved to {folder}")
    except Exception as error:  # a missing artifact, or a tracking server that does not answer
        raise ReferenceUnavailable(
            f"the champion's reference rows (batch {reference.name}, artifact "
            f"{BATCH_ARTIFACT}/ of MLflow run {reference.run_id}) cannot be read: {error}"
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def _batch_file(folder: Path, reference: Reference) -> Path:
    found = [p for p in folder.iterdir() if p.suffix.lower() in {".csv", ".parquet"}]
    if len(found) != 1:
        raise ReferenceUnavailable(
            f"reference batch {reference.name}: expected one CSV or Parquet file in {folder}, "
            f"found {len(found)}"
        )
    return found[0]


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
