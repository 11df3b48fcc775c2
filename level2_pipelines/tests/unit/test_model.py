"""Only safe model files load: skops, trusting no more than TRUSTED_TYPES, the file and the
model (its fingerprint) the registry recorded. Anything else is refused, naming the version,
and its code never runs."""

from pathlib import Path

import mlflow.artifacts
import mlflow.sklearn
import pytest
import sklearn
import skops
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from level2_pipelines import registry
from level2_pipelines.model import TRUSTED_TYPES, ModelLoadError, load_version
from level2_pipelines.tests.helpers import add_unsafe_version, add_version


class Trap:
    """Unpickling this writes a file: proof that a model file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code from a model file ran"))


def test_load_version_loads_the_registered_pipeline_with_lineage(settings, candidate):
    """A version the pipeline logged loads, equal to the fitted model, with its lineage."""
    version = add_version(settings, candidate)

    pipeline, lineage = load_version(MlflowClient(), settings.model_name, version)

    assert lineage.version == version
    assert lineage.run_id == candidate.run_id
    assert list(pipeline.classes_) == list(candidate.pipeline.classes_)


@pytest.mark.parametrize("serialization_format", ["cloudpickle", "pickle"])
def test_load_version_refuses_a_pickled_version_without_running_it(
    settings, tmp_path, serialization_format
):
    """A pickled version is refused with one line naming it and its format; its code never runs."""
    marker = tmp_path / "ran.txt"
    version = add_unsafe_version(settings, Trap(marker), serialization_format)

    with pytest.raises(ModelLoadError, match=f"v{version}: saved with {serialization_format}"):
        load_version(MlflowClient(), settings.model_name, version)

    assert not marker.exists()


def test_load_version_refuses_a_version_trusting_more_types(settings, candidate):
    """A skops file that asks to trust types beyond TRUSTED_TYPES is refused."""
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            candidate.pipeline,
            name="model",
            serialization_format="skops",
            skops_trusted_types=[*TRUSTED_TYPES, "builtins.eval"],
            pip_requirements=[],
        )
    version = registry.register(MlflowClient(), settings.model_name, info.model_uri, "", {})

    with pytest.raises(ModelLoadError, match=r"asks to trust \['builtins.eval'\]"):
        load_version(MlflowClient(), settings.model_name, version)


def test_load_version_refuses_a_file_that_is_not_the_one_registered(settings, candidate):
    """A version whose file's SHA-256 differs from the one recorded is refused."""
    version = add_version(settings, candidate, artifact_sha256="0" * 64)

    with pytest.raises(ModelLoadError, match=f"v{version}: its file's SHA-256 is"):
        load_version(MlflowClient(), settings.model_name, version)


def test_load_version_refuses_a_model_that_is_not_the_one_registered(settings, candidate):
    """A version whose fingerprint differs from the one recorded is refused, naming both."""
    version = add_version(settings, candidate, fingerprint="f" * 64)

    with pytest.raises(ModelLoadError, match=f"v{version} is not the model .*recorded f{{64}}"):
        load_version(MlflowClient(), settings.model_name, version)


def test_load_version_refuses_a_version_without_recorded_checksums(settings, candidate):
    """A version registered without the SHA-256 (not by the pipeline) is refused."""
    version = registry.register(
        MlflowClient(), settings.model_name, candidate.model_uri, candidate.run_id, {}
    )

    with pytest.raises(ModelLoadError, match="the registry recorded none"):
        load_version(MlflowClient(), settings.model_name, version)


def test_connect_switches_mlflow_model_loading_off(settings, candidate):
    """After `connect`, MLflow's own loader refuses to deserialize any model (second fence)."""
    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.sklearn.load_model(candidate.model_uri)


def test_training_records_pins_signature_parameters_and_metrics(candidate, tmp_path):
    """Logging the model without MLflow's re-check of its pins and in batched writes keeps what
    it records: requirements pinned to the running versions, the signature `mlflow models serve`
    checks requests with, and the run's parameters, metrics and lineage tags."""
    model_dir = Path(mlflow.artifacts.download_artifacts(candidate.model_uri, dst_path=tmp_path))
    pins = (model_dir / "requirements.txt").read_text().split()
    run = MlflowClient().get_run(candidate.run_id)

    assert sorted(pins) == sorted(
        [
            f"mlflow=={mlflow.__version__}",
            f"scikit-learn=={sklearn.__version__}",
            f"skops=={skops.__version__}",
        ]
    )
    assert Model.load(model_dir / "MLmodel").signature is not None
    assert run.data.params["seed"] == "42"
    assert run.data.params["classifier"] == "LogisticRegression"
    assert run.data.metrics == candidate.metrics
    assert {"artifact_sha256", "fingerprint"} <= set(run.data.tags)
