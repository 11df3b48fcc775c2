"""Level 1's Kubernetes manifests (infra/k8s/): valid for each checked Kubernetes version, within
the project's rules, and saying what this service needs: probes on /ready and /health, its
settings by their real names, the model mounted read-only where the service reads it."""

import re
from pathlib import Path

import yaml

from level1_devops.settings import Settings
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


def documents() -> list[dict]:
    return [d for path in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text())]


def the(kind: str, name: str = "penguins-level1") -> dict:
    found = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def service_container() -> dict:
    (container,) = the("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def env(container: dict) -> dict[str, str]:
    return {v["name"]: v.get("value") for v in container["env"]}


def test_manifests_are_valid_and_keep_the_rules(capsys):
    """`make k8s-validate` over this level's folder finds nothing wrong."""
    assert k8s_validate.validate([K8S]) == []


def test_service_is_ready_on_ready_and_alive_on_health():
    """Traffic only once a model is served (/ready); restarted only when it stops answering."""
    container = service_container()

    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/health"


def test_service_listens_where_the_probes_and_the_service_look():
    """LEVEL1_PORT, the container's `http` port and the Service's target are one port."""
    container = service_container()
    (port,) = container["ports"]
    (service_port,) = the("Service")["spec"]["ports"]

    assert port == {"name": "http", "containerPort": int(env(container)["LEVEL1_PORT"])}
    assert port["containerPort"] == PORT
    assert service_port["targetPort"] == "http"
    assert env(container)["LEVEL1_HOST"] == "0.0.0.0"


def test_service_runs_this_packages_serve():
    assert service_container()["command"] == ["python", "-m", f"{PACKAGE}.serve"]


def test_env_names_are_level1_settings():
    """A misspelt setting would be ignored silently: every LEVEL1_ name is a field."""
    fields = {f"LEVEL1_{name.upper()}" for name in Settings.model_fields}

    names = {n for n in env(service_container()) if n.startswith("LEVEL1_")}

    assert names and names <= fields, names - fields


def test_model_is_mounted_read_only_where_the_service_reads_it():
    """The ConfigMap of the hand-off, at LEVEL1_STATE_DIR's serving folder, read-only."""
    container = service_container()
    volumes = {v["name"]: v for v in the("Deployment")["spec"]["template"]["spec"]["volumes"]}
    serving = Settings(state_dir=env(container)["LEVEL1_STATE_DIR"]).serving_dir

    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(serving)]

    assert mount["readOnly"] is True
    assert volumes[mount["name"]]["configMap"]["name"] == "penguins-level1-model"


def test_pod_runs_as_the_images_user_on_a_read_only_root():
    """Non-root as the Dockerfile's `app` user; nothing escalates; writes go to /tmp only."""
    uid = int(re.search(r"useradd .*--uid (\d+)", DOCKERFILE.read_text())[1])
    pod = the("Deployment")["spec"]["template"]["spec"]
    security = service_container()["securityContext"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = service_container()["volumeMounts"]
    assert {m["mountPath"] for m in mounts if not m.get("readOnly")} == {"/tmp"}


def test_autoscaler_and_budget_select_the_deployment():
    """CPU-driven autoscaling (autoscaling/v2) of this Deployment, and a budget keeping a pod."""
    autoscaler, budget = the("HorizontalPodAutoscaler"), the("PodDisruptionBudget")
    labels = the("Deployment")["spec"]["template"]["metadata"]["labels"]

    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "penguins-level1"
    assert autoscaler["spec"]["minReplicas"] >= 2
    (metric,) = autoscaler["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["minAvailable"] == 1


def test_network_policy_denies_by_default_and_opens_the_service_port():
    deny, allow = the("NetworkPolicy", "default-deny-ingress"), the("NetworkPolicy")
    labels = the("Deployment")["spec"]["template"]["metadata"]["labels"]

    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert allow["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    (rule,) = allow["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": PORT}]
