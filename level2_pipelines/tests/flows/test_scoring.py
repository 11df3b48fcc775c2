"""Batch scoring: a file scored with the champion, its predictions written beside it with the
model version, the MLflow run and the input checksum; bad rows set aside with their reasons;
a file that cannot be scored named, with nothing written; the folder scan scores a content once."""

import asyncio
import hashlib
import json

import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client

from level2_pipelines import registry
from level2_pipelines.data import reference_and_new_rows
from level2_pipelines.scoring import OUTPUTS, ScoringError, experiment_name, scoring_pipeline
from level2_pipelines.tests.helpers import add_version, champion
from shared.contract import FEATURES

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def scoring(settings, candidate, monkeypatch, tmp_path):
    """Settings with a champion, a scoring experiment and a scoring folder of this test's own."""
    monkeypatch.setenv("LEVEL2_EXPERIMENT", f"{settings.experiment}-{tmp_path.name}")
    monkeypatch.setenv("LEVEL2_SCORING_DIR", str(tmp_path / "to-score"))
    version = add_version(settings, candidate)
    MlflowClient().set_registered_model_alias(settings.model_name, registry.CHAMPION, version)
    return settings.model_copy(update={"experiment": f"{settings.experiment}-{tmp_path.name}"})


def birds(rows: int = 30) -> pd.DataFrame:
    """The 2009 birds, label included (scoring ignores columns beyond the features)."""
    return reference_and_new_rows(42)[1].head(rows).reset_index(drop=True)


def outputs_of(path) -> list:
    return [p for p in (path.with_name(path.stem + e) for e in OUTPUTS) if p.exists()]


def test_scoring_writes_every_row_with_the_champions_version_and_lineage(
    scoring, candidate, tmp_path
):
    """Each row is scored in the input's order with the champion's answer; the sidecar and the
    MLflow run name the version, the run and the input's SHA-256; the flow run names the file."""
    frame = birds()
    path = tmp_path / "birds.csv"
    frame.to_csv(path, index=False)

    state = scoring_pipeline(str(path), return_state=True)
    scored = state.result()

    predictions = pd.read_csv(path.with_name("birds.predictions.csv"))
    expected = candidate.pipeline.predict(frame[list(FEATURES)])
    assert list(predictions["row"]) == list(range(len(frame)))
    assert list(predictions["predicted_species"]) == list(expected)
    assert list(predictions["bill_length_mm"]) == list(frame["bill_length_mm"])
    probabilities = predictions.filter(like="probability_")
    assert probabilities.shape[1] == 3 and (probabilities.sum(axis=1) - 1).abs().max() < 1e-9
    version = champion(scoring)
    assert set(predictions["model_version"].astype(str)) == {version}
    sidecar = json.loads(path.with_name("birds.scoring.json").read_text())
    checksum = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sidecar["input_checksum"] == checksum
    assert (sidecar["model_version"], sidecar["model_run_id"]) == (version, candidate.run_id)
    assert (sidecar["rows_scored"], sidecar["rows_rejected"]) == (len(frame), 0)
    run = MlflowClient().get_run(scored.scoring_run_id)
    assert run.data.tags["input_checksum"] == checksum
    assert run.data.tags["model_version"] == version
    assert run.data.metrics["rows_scored"] == len(frame)
    assert sum(v for k, v in run.data.metrics.items() if k.startswith("predicted_")) == len(frame)
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "scoring")}
    assert artifacts == {"scoring/birds.predictions.csv", "scoring/birds.scoring.json"}
    assert flow_run_name(state) == "score birds.csv"


def flow_run_name(state) -> str:
    async def read():
        async with get_client() as client:
            return (await client.read_flow_run(state.state_details.flow_run_id)).name

    return asyncio.run(read())


def test_scoring_sets_bad_rows_aside_with_their_reasons(scoring, tmp_path):
    """Rows breaking a per-row check are written to the rejected file naming the field and
    not scored; a bird without a recorded sex (optional) is scored; every row has one outcome."""
    frame = birds(8).astype({"body_mass_g": object, "bill_depth_mm": object})
    frame.loc[1, "body_mass_g"] = "heavy"
    frame.loc[2, "island"] = "Atlantis"
    frame.loc[3, "flipper_length_mm"] = 1810.0
    frame.loc[4, "bill_depth_mm"] = None
    frame.loc[5, "sex"] = None
    path = tmp_path / "mixed.csv"
    frame.to_csv(path, index=False)

    scored = scoring_pipeline(str(path))

    rejected = pd.read_csv(path.with_name("mixed.rejected.csv"))
    predictions = pd.read_csv(path.with_name("mixed.predictions.csv"))
    reasons = dict(zip(rejected["row"], rejected["reason"], strict=True))
    assert set(reasons) == {1, 2, 3, 4}
    assert "body_mass_g: 'heavy' is not a number" in reasons[1]
    assert "island: 'Atlantis' not one of" in reasons[2]
    assert "flipper_length_mm: 1810.0 outside the physical range" in reasons[3]
    assert "bill_depth_mm: missing" in reasons[4]
    assert list(predictions["row"]) == [0, 5, 6, 7]
    assert (scored.rows, scored.rows_scored, scored.rows_rejected) == (8, 4, 4)
    assert MlflowClient().get_run(scored.scoring_run_id).data.metrics["rows_rejected"] == 4


def test_scoring_a_missing_file_names_it_and_writes_nothing(scoring, tmp_path):
    """A file that is not there is a ScoringError naming it; the champion stays."""
    before = champion(scoring)
    path = tmp_path / "nowhere.csv"

    with pytest.raises(ScoringError, match=f"{path}: no such file"):
        scoring_pipeline(str(path))

    assert outputs_of(path) == [] and champion(scoring) == before


def test_scoring_refuses_a_file_without_a_feature_column_and_keeps_it(scoring, tmp_path):
    """A renamed column refuses the whole file, naming it and the column; the file stays as it
    was, nothing is written beside it, and the refusal is recorded in MLflow."""
    path = tmp_path / "renamed.csv"
    birds().rename(columns={"island": "Island"}).to_csv(path, index=False)
    content = path.read_bytes()

    with pytest.raises(ScoringError, match=r"renamed.csv refused.*\['island'\] missing"):
        scoring_pipeline(str(path))

    assert path.read_bytes() == content and outputs_of(path) == []
    experiment = MlflowClient().get_experiment_by_name(experiment_name(scoring))
    (run,) = MlflowClient().search_runs([experiment.experiment_id])
    assert (run.data.tags["scoring_outcome"], run.info.status) == ("refused", "FAILED")


def test_scoring_refuses_a_file_it_cannot_read(scoring, tmp_path):
    """A file that is not a table is refused naming it and why; nothing written beside it."""
    path = tmp_path / "garbage.parquet"
    path.write_bytes(b"not parquet at all")

    with pytest.raises(ScoringError, match=r"garbage\.parquet refused.*cannot be read"):
        scoring_pipeline(str(path))

    assert outputs_of(path) == []


def test_scoring_without_a_champion_says_so(settings, tmp_path):
    """With no champion there is nothing to score with: a ScoringError saying so, no output."""
    path = tmp_path / "birds.csv"
    birds().to_csv(path, index=False)

    with pytest.raises(ScoringError, match="has no champion yet"):
        scoring_pipeline(str(path))

    assert outputs_of(path) == []


def test_scoring_never_replaces_earlier_outputs_unless_forced(scoring, tmp_path):
    """A file scored before is refused, its outputs untouched; `force` replaces them."""
    path = tmp_path / "birds.csv"
    birds().to_csv(path, index=False)
    first = scoring_pipeline(str(path))
    sidecar = path.with_name("birds.scoring.json")
    kept = sidecar.read_text()

    with pytest.raises(ScoringError, match="scored before"):
        scoring_pipeline(str(path))
    unchanged = sidecar.read_text()
    again = scoring_pipeline(str(path), force=True)

    assert unchanged == kept
    assert json.loads(sidecar.read_text())["scoring_run_id"] == again.scoring_run_id
    assert again.scoring_run_id != first.scoring_run_id


def test_scheduled_scan_scores_each_content_once(scoring, tmp_path):
    """The folder scan scores new CSV and Parquet files, skips its own outputs, and never takes
    a content again: not on the next scan, not under another name."""
    folder = tmp_path / "to-score"
    folder.mkdir()
    birds(10).to_csv(folder / "a.csv", index=False)
    birds(12).to_parquet(folder / "b.parquet")

    first = scoring_pipeline()
    second = scoring_pipeline()
    (folder / "copy-of-a.csv").write_bytes((folder / "a.csv").read_bytes())
    third = scoring_pipeline()

    assert first == ["a.csv: Completed", "b.parquet: Completed"]
    assert second == [] and third == []
    assert not (folder / "copy-of-a.predictions.csv").exists()
    assert (folder / "b.predictions.csv").exists()
