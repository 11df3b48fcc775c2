"""Whole pipeline runs under Prefect's test harness, one scenario each, each with its own
registered model: what gets promoted, what gets stopped, and what is kept for inspection.

A scenario that needs a champion before its run starts from `a_champion`: the session's
candidate registered and promoted, a registry write, where a first pipeline run would cost ~2 s
and show nothing the good-batch scenario does not."""

import threading
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from level2_pipelines import pipeline, registry, rollout
from level2_pipelines.data import reference_and_new_rows
from level2_pipelines.outcome import report_lines
from level2_pipelines.pipeline import BatchRejected, training_pipeline
from level2_pipelines.settings import Settings
from level2_pipelines.tests.helpers import add_version, write_batch
from shared.simulate import Corruption, simulate_batch

pytestmark = pytest.mark.usefixtures("prefect_api")


def champion(settings):
    found = registry.version_by_alias(MlflowClient(), settings.model_name, registry.CHAMPION)
    return str(found.version) if found else None


def versions(settings):
    return MlflowClient().search_model_versions(f"name = '{settings.model_name}'")


@pytest.fixture
def a_champion(settings, candidate) -> str:
    """A champion already in service: the candidate's model, registered and promoted."""
    version = add_version(settings, candidate)
    registry.promote(MlflowClient(), settings.model_name, version, registry.CHAMPION, None)
    return version


def test_good_batch_is_promoted_with_lineage_data_docs_and_figure(settings):
    """The 2009 birds pass: a new version becomes champion, tagged with its lineage, and its run
    holds the GX data docs, the confusion matrix and the model card as artifacts."""
    outcome = training_pipeline()

    version = MlflowClient().get_model_version(settings.model_name, outcome.version)
    run = MlflowClient().get_run(outcome.run_id)
    assert outcome.promoted_to == registry.CHAMPION
    assert champion(settings) == outcome.version
    assert version.tags["validation"] == "passed"
    assert version.tags["gate"] == "passed"
    assert version.tags["batch_id"] == outcome.batch_id
    assert len(version.tags["data_checksum"]) == 64
    assert version.tags["flow_run_id"] != "None"
    assert run.data.tags["validation"] == "passed"
    assert run.info.status == "FINISHED"
    names = {a.path for a in MlflowClient().list_artifacts(outcome.run_id)}
    assert "data_docs" in names
    assert "confusion_matrix.png" in names
    assert {"model_card.md", "model_card.html"} <= names


def test_corrupted_batch_is_quarantined_and_nothing_downstream_runs(settings, a_champion, tmp_path):
    """A batch with text in a numeric column and a renamed column fails validation: the flow
    fails naming the checks, the file is kept in quarantine, no version is registered."""
    bad = simulate_batch(
        300,
        seed=7,
        corruption=Corruption(rename={"island": "Island"}, wrong_type_rate={"body_mass_g": 0.1}),
    )
    path = write_batch(bad, tmp_path)

    with pytest.raises(BatchRejected, match="expect_table_columns_to_match_set") as rejected:
        training_pipeline(batch_path=path)

    quarantined = list(settings.quarantine_dir.glob("*/batch.csv"))
    assert "in_type_list on body_mass_g" in str(rejected.value)
    assert any(q.read_bytes() == (tmp_path / "batch.csv").read_bytes() for q in quarantined)
    assert champion(settings) == a_champion
    assert len(versions(settings)) == 1


def test_worse_model_is_registered_but_rejected(settings, a_champion, tmp_path):
    """2,000 birds with shuffled species pass validation but train a worse model: it is
    registered, tagged rejected with the reasons, and the champion stays."""
    shuffled = simulate_batch(2000, seed=8)
    shuffled["species"] = shuffled["species"].sample(frac=1, random_state=0).to_numpy()

    outcome = training_pipeline(batch_path=write_batch(shuffled, tmp_path))

    tags = MlflowClient().get_model_version(settings.model_name, outcome.version).tags
    assert outcome.promoted_to is None
    assert tags["gate"] == "rejected"
    assert "macro F1" in tags["gate_reasons"]
    assert champion(settings) == a_champion


def test_crash_between_register_and_promote_leaves_the_champion(settings, a_champion, monkeypatch):
    """If the flow dies after registering, the new version exists but the champion is unchanged."""

    def crash(*args, **kwargs):
        raise RuntimeError("injected crash before promotion")

    monkeypatch.setattr(pipeline, "promote", crash)
    with pytest.raises(RuntimeError, match="injected crash"):
        training_pipeline(force=True)

    assert len(versions(settings)) == 2
    assert champion(settings) == a_champion


def test_rollback_restores_the_previous_champion(settings, a_champion):
    """After a run promotes over a champion, one rollback moves champion back to it."""
    first = a_champion
    second = training_pipeline().version
    assert champion(settings) == second

    moved_from, moved_to = registry.rollback(MlflowClient(), settings.model_name)

    assert (moved_from, moved_to) == (second, first)
    assert champion(settings) == first


def test_manual_approval_waits_as_challenger(settings, a_champion):
    """With manual approval the candidate becomes challenger; approving makes it champion."""
    first = a_champion

    outcome = training_pipeline(approval="manual")

    assert outcome.promoted_to == registry.CHALLENGER
    assert champion(settings) == first
    assert registry.approve(MlflowClient(), settings.model_name) == outcome.version
    assert champion(settings) == outcome.version


def test_with_a_rollout_a_passed_candidate_goes_on_trial_beside_the_champion(
    settings, a_champion, monkeypatch
):
    """LEVEL2_ROLLOUT=canary: the candidate that passed becomes challenger, tagged with the
    mode and share every service follows; the champion keeps serving until the judge rules."""
    monkeypatch.setenv("LEVEL2_ROLLOUT", "canary")
    monkeypatch.setenv("LEVEL2_CANARY_SHARE", "0.2")

    outcome = training_pipeline(force=True)

    assert (outcome.promoted_to, outcome.rollout) == (registry.CHALLENGER, "canary")
    assert champion(settings) == a_champion
    assert rollout.switch_of(MlflowClient(), settings.model_name) == rollout.Switch(
        outcome.version, "canary", 0.2
    )
    lines = report_lines(outcome, Settings(), 1.0)
    assert any("rolled out beside the champion (canary)" in line for line in lines)


def test_ingest_task_reads_a_file_and_hashes_it(settings, tmp_path):
    """ingest (its logic, via .fn) gives the batch an id ending in its content hash."""
    frame = reference_and_new_rows(42)[1]

    batch, _ = pipeline.ingest.fn(write_batch(frame, tmp_path), None, None, settings)

    assert batch.batch_id.endswith(batch.checksum[:8])
    assert len(batch.frame) == len(frame)


def test_ingest_task_simulates_a_batch_when_asked(settings):
    """ingest with simulate_rows makes that many simulated birds, named as such."""
    batch, _ = pipeline.ingest.fn(None, 120, None, settings)

    assert len(batch.frame) == 120
    assert batch.source == "120 simulated birds"


def test_same_batch_content_is_trained_once(settings):
    """The same batch again is skipped, naming the run and version; `force` trains it again."""
    first = training_pipeline()

    again = training_pipeline()
    forced = training_pipeline(force=True)

    assert again.run_id is None
    assert f"run {first.run_id} as {settings.model_name} v{first.version}" in again.skipped
    assert forced.version != first.version
    assert len(versions(settings)) == 2


def test_two_runs_started_together_decide_one_after_the_other(settings):
    """Two batches at once: each is judged against the champion of its moment, so each
    records the one before it and two rollbacks walk back to the first champion."""
    first = training_pipeline().version
    outcomes = []
    runs = [
        threading.Thread(target=lambda n=n: outcomes.append(training_pipeline(simulate_rows=n)))
        for n in (150, 160)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    client = MlflowClient()
    tags = {
        o.version: client.get_model_version(settings.model_name, o.version).tags for o in outcomes
    }
    earlier, later = sorted(tags, key=lambda v: tags[v]["champion_since"])

    assert [o.promoted_to for o in outcomes] == [registry.CHAMPION, registry.CHAMPION]
    assert tags[earlier]["previous_champion"] == first
    assert tags[later]["previous_champion"] == earlier
    assert tags[later]["judged_against"] == earlier
    assert registry.rollback(client, settings.model_name) == (later, earlier)
    assert registry.rollback(client, settings.model_name) == (earlier, first)


def test_champion_that_cannot_be_loaded_does_not_block_a_good_candidate(settings):
    """With a champion whose file was damaged in the artifact store, a good batch is judged
    against the champion's recorded metrics and promoted, replacing it."""
    broken = training_pipeline().version
    source = MlflowClient().get_model_version(settings.model_name, broken).source
    stored = mlflow.get_logged_model(source.removeprefix("models:/")).artifact_location
    (Path(urlparse(stored).path) / "model.skops").write_bytes(b"not a model any more")

    outcome = training_pipeline(simulate_rows=200)

    assert outcome.promoted_to == registry.CHAMPION
    assert champion(settings) == outcome.version


def test_store_error_stops_the_run_and_is_named(settings, a_champion, monkeypatch):
    """A registry that cannot be read stops the run with that reason; nothing is promoted as
    if there were no champion."""

    def locked(*args, **kwargs):
        raise MlflowException("(sqlite3.OperationalError) database is locked", "INTERNAL_ERROR")

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", locked)
    with pytest.raises(registry.RegistryUnavailable, match="database is locked"):
        training_pipeline(simulate_rows=200)
    monkeypatch.undo()

    assert len(versions(settings)) == 1
