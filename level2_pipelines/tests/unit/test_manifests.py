"""Level 2's Kubernetes manifests (infra/k8s/): valid for each checked Kubernetes version, within
the project's rules, and saying what the service, the MLflow server and the worker need: probes
on /ready and /health, the admin token from a Secret, settings by their real names, each part
finding the others, and only the traffic the level needs."""

import re
from importlib import metadata
from pathlib import Path

import yaml

from level2_pipelines.settings import Settings
from shared import k8s_validate

# The port the settings default to, whatever this process's environment sets (the README
# walkthrough moves it).
PORT = Settings.model_fields["port"].default

PACKAGE_DIR = Path(__file__).resolve().parents[2]
PACKAGE = PACKAGE_DIR.name
K8S = PACKAGE_DIR / "infra" / "k8s"
# Here the level's own; in a copy, the project's at its top.
DOCKERFILE = next(
    p for p in (PACKAGE_DIR / "Dockerfile", PACKAGE_DIR.parent / "Dockerfile") if p.is_file()
)
DEPLOYMENTS = ("penguins-level2", "mlflow", "penguins-level2-worker")


def documents() -> list[dict]:
    return [d for path in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text())]


def the(kind: str, name: str) -> dict:
    found = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod(name: str) -> dict:
    return the("Deployment", name)["spec"]["template"]["spec"]


def labels(name: str) -> dict[str, str]:
    return the("Deployment", name)["spec"]["template"]["metadata"]["labels"]


def container(name: str) -> dict:
    (only,) = pod(name)["containers"]
    return only


def env(name: str) -> dict[str, dict]:
    """The container's env entries by name (with the ConfigMap's keys it takes as env)."""
    entries = {v["name"]: v for v in container(name).get("env", [])}
    for source in container(name).get("envFrom", []):
        config = the("ConfigMap", source["configMapRef"]["name"])
        entries |= {key: {"name": key, "value": value} for key, value in config["data"].items()}
    return entries


def dockerfile_env() -> dict[str, str]:
    """The image's ENV settings (what the manifests do not repeat)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.startswith("ENV ")]
    return dict(pair for line in lines for pair in re.findall(r"(\w+)=(\S+)", line))


def test_manifests_are_valid_and_keep_the_rules(capsys):
    """`make k8s-validate` over this level's folder finds nothing wrong."""
    assert k8s_validate.validate([K8S]) == []


def test_service_is_ready_on_ready_and_alive_on_health():
    """Traffic only once a champion is served (/ready); restarted only when it stops answering."""
    service = container("penguins-level2")

    assert service["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert service["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert service["startupProbe"]["httpGet"]["path"] == "/health"
    assert service["ports"] == [{"name": "http", "containerPort": PORT}]
    assert env("penguins-level2")["LEVEL2_PORT"]["value"] == str(PORT)


def test_service_runs_this_packages_serve():
    assert container("penguins-level2")["command"] == ["python", "-m", f"{PACKAGE}.serve"]


def test_worker_serves_its_health_check_and_is_probed_there():
    """A worker has no HTTP port of its own: `--with-healthcheck` gives it /health on 8080."""
    worker = container("penguins-level2-worker")

    assert worker["command"][:3] == ["prefect", "worker", "start"]
    assert "--with-healthcheck" in worker["command"]
    assert worker["ports"] == [{"name": "health", "containerPort": 8080}]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/health", "port": "health"}
    assert "readinessProbe" not in worker


def test_worker_polls_the_pool_the_deployments_are_published_to():
    """`--pool` and LEVEL2_WORK_POOL (which `deployments --publish` uses) are one pool."""
    command = container("penguins-level2-worker")["command"]
    pool = command[command.index("--pool") + 1]

    assert pool == env("penguins-level2-worker")["LEVEL2_WORK_POOL"]["value"]
    assert command[command.index("--type") + 1] == "process"


def test_secrets_are_files_from_one_secret_in_the_service_and_the_worker():
    """The admin token and the prediction log's URL (it holds a password) are files mounted
    from the Secret, read through LEVEL2_SECRETS_DIR: a worker's flow runs inherit its
    environment, so no secret is in it. The same keys for both (the worker's deploy stage
    authenticates with the token); no literal anywhere."""
    files = {"admin-token": "LEVEL2_ADMIN_TOKEN", "prediction-log-uri": "LEVEL2_PREDICTION_LOG_URI"}

    for name in ("penguins-level2", "penguins-level2-worker"):
        assert not [e for e in container(name).get("env", []) if "valueFrom" in e]
        (volume,) = [v for v in pod(name)["volumes"] if "secret" in v]
        secret = volume["secret"]
        assert secret["secretName"] == "penguins-level2"
        assert {item["key"]: item["path"] for item in secret["items"]} == files
        # Readable by the pod's group only (fsGroup), never by others.
        assert secret["defaultMode"] & 0o007 == 0
        assert pod(name)["securityContext"]["fsGroup"] == 10001
        (mount,) = [m for m in container(name)["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True
        assert env(name)["LEVEL2_SECRETS_DIR"]["value"] == mount["mountPath"]
        assert not set(files.values()) & set(env(name))
    # MLflow's server reads its store from the environment (no file setting); it starts no runs.
    assert env("mlflow")["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "penguins-level2",
        "key": "mlflow-backend-store-uri",
    }
    assert not [d for d in documents() if d["kind"] == "Secret"]


def test_env_names_are_level2_settings():
    """A misspelt setting would be ignored silently: every LEVEL2_ name is a field."""
    fields = {f"LEVEL2_{name.upper()}" for name in Settings.model_fields}

    names = {n for d in ("penguins-level2", "penguins-level2-worker") for n in env(d)}
    names = {n for n in names if n.startswith("LEVEL2_")}

    assert names and names <= fields, names - fields


def test_the_parts_find_each_other_by_their_service_names():
    """LEVEL2_TRACKING_URI is the mlflow Service; the worker's LEVEL2_HOST and PORT are the
    level 2 Service (the deploy stage asks it to reload)."""
    (mlflow_port,) = the("Service", "mlflow")["spec"]["ports"]
    (service_port,) = the("Service", "penguins-level2")["spec"]["ports"]
    worker = env("penguins-level2-worker")

    for name in ("penguins-level2", "penguins-level2-worker"):
        assert env(name)["LEVEL2_TRACKING_URI"]["value"] == f"http://mlflow:{mlflow_port['port']}"
    assert worker["LEVEL2_HOST"]["value"] == "penguins-level2"
    assert worker["LEVEL2_PORT"]["value"] == str(service_port["port"])
    assert "--port" in container("mlflow")["command"]
    command = container("mlflow")["command"]
    assert command[command.index("--port") + 1] == str(mlflow_port["port"])


def test_mlflow_server_is_the_clients_version_and_proxies_artifacts():
    """The server image is the MLflow the lock pins, and the clients need no store credentials."""
    command = container("mlflow")["command"]

    version = metadata.version("mlflow")
    assert container("mlflow")["image"] == f"ghcr.io/mlflow/mlflow:v{version}-full"
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == "/mlartifacts"
    assert env("mlflow")["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"
    assert "mlflow:5000" in env("mlflow")["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")


def test_pods_run_as_the_images_user_and_write_only_to_their_volumes():
    """Non-root as the Dockerfile's `app` user on a read-only root; what it writes to, the state
    folder, PREFECT_HOME (the worker) and /tmp, are emptyDir volumes, where the image points
    them."""
    uid = int(re.search(r"useradd .*--uid (\d+)", DOCKERFILE.read_text())[1])
    image = dockerfile_env()
    wanted = {
        "penguins-level2": {image["LEVEL2_STATE_DIR"], "/tmp"},
        "penguins-level2-worker": {image["LEVEL2_STATE_DIR"], image["PREFECT_HOME"], "/tmp"},
    }

    for name in DEPLOYMENTS:
        assert pod(name)["securityContext"]["runAsNonRoot"] is True
        assert pod(name)["securityContext"]["runAsUser"] == uid
        assert container(name)["securityContext"]["readOnlyRootFilesystem"] is True
    for name, paths in wanted.items():
        volumes = {v["name"]: v for v in pod(name)["volumes"]}
        mounts = {
            m["mountPath"]: volumes[m["name"]]
            for m in container(name)["volumeMounts"]
            if not m.get("readOnly")  # the Secret's files (above)
        }
        assert set(mounts) == paths
        assert all("emptyDir" in volume for volume in mounts.values())


def test_resources_are_the_measured_figures():
    """Requests and limits as measured (`make bench-capacity` refines them)."""
    expected = {
        "penguins-level2": ({"cpu": "1", "memory": "384Mi"}, {"memory": "512Mi"}),
        "mlflow": ({"cpu": "250m", "memory": "512Mi"}, {"memory": "1Gi"}),
        "penguins-level2-worker": ({"cpu": "1", "memory": "1Gi"}, {"memory": "2Gi"}),
    }

    for name, (requests, limits) in expected.items():
        assert container(name)["resources"] == {"requests": requests, "limits": limits}, name


def test_service_is_autoscaled_on_cpu_and_kept_through_drains():
    autoscaler = the("HorizontalPodAutoscaler", "penguins-level2")
    (metric,) = autoscaler["spec"]["metrics"]

    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "penguins-level2"
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert "replicas" not in the("Deployment", "penguins-level2")["spec"]
    for name in ("penguins-level2", "penguins-level2-worker"):
        selector = the("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels(name).items(), name


def test_network_policies_admit_only_what_the_level_needs():
    """Default deny; the service's port open in the namespace; MLflow reached by the service and
    the worker only, and reaching only DNS and PostgreSQL."""
    deny = the("NetworkPolicy", "default-deny-ingress")
    service = the("NetworkPolicy", "penguins-level2")
    mlflow = the("NetworkPolicy", "mlflow")
    (mlflow_port,) = the("Service", "mlflow")["spec"]["ports"]

    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    selected = service["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= labels("penguins-level2").items()
    assert service["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": PORT}]
    assert mlflow["spec"]["podSelector"]["matchLabels"].items() <= labels("mlflow").items()
    (rule,) = mlflow["spec"]["ingress"]
    admitted = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    for name in ("penguins-level2", "penguins-level2-worker"):
        assert any(a.items() <= labels(name).items() for a in admitted), name
    assert not any(a.items() <= labels("mlflow").items() for a in admitted)
    assert rule["ports"] == [{"protocol": "TCP", "port": mlflow_port["port"]}]
    egress_ports = {p["port"] for e in mlflow["spec"]["egress"] for p in e["ports"]}
    assert egress_ports == {53, 5432}
