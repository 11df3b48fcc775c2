"""The offline manifest check (`make k8s-validate`): every document against the strict schemas
of each checked Kubernetes version and against the project's rules; a broken manifest fails,
naming its file, its document and the field."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes_validate.utils import all_versions

from shared import k8s_validate
from shared.k8s_validate import Document

LABELS = {"app.kubernetes.io/name": "web"}
HARDENED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def manifests() -> list[dict]:
    """A small workload that keeps every rule: Deployment, Service, autoscaler, budget, policy."""
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": dict(LABELS)},
                    "spec": {
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "web",
                                "image": "web:1.0.0",
                                "ports": [{"name": "http", "containerPort": 8000}],
                                "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}},
                                "resources": {
                                    "requests": {"cpu": "100m", "memory": "64Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                                "securityContext": copy.deepcopy(HARDENED),
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": dict(LABELS), "ports": [{"port": 8000, "targetPort": "http"}]},
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 4,
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": dict(LABELS)}},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-ingress"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        },
    ]


def write(folder: Path, documents: list[dict], name: str = "web.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def run_command(*args: str) -> subprocess.CompletedProcess:
    """The entry point `make k8s-validate` runs, as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "shared.k8s_validate", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_validate_passes_a_workload_that_keeps_the_rules(tmp_path, capsys):
    """Valid for each checked version and within the rules: no failure, one line per version."""
    path = write(tmp_path, manifests())

    failures = k8s_validate.validate([tmp_path])

    assert failures == []
    lines = capsys.readouterr().out.splitlines()
    for version in k8s_validate.VERSIONS:
        assert any(line.startswith(f"ok    {version}  {path}") for line in lines), version
    assert any(line.startswith("ok    rules") for line in lines)


def test_validate_checks_at_least_two_versions_the_wheel_carries():
    """Two or more versions, each one whose schemas kubernetes-validate ships."""
    shipped = {".".join(version.split(".")[:2]) for version in all_versions()}

    assert len(k8s_validate.VERSIONS) >= 2
    assert set(k8s_validate.VERSIONS) <= shipped


def test_command_fails_on_replicas_as_text_naming_the_field(tmp_path):
    """`replicas: "two"` exits non-zero; the line names the file, the document and the field."""
    documents = manifests()[:2]
    documents[0]["spec"]["replicas"] = "two"
    path = write(tmp_path, documents)

    done = run_command(str(path))

    assert done.returncode == 1
    assert f"{path} document 1 (Deployment/web): spec.replicas: 'two' is not of type" in done.stdout
    assert done.stdout.count("FAIL") >= len(k8s_validate.VERSIONS)


def test_command_fails_on_an_unknown_field_under_strict(tmp_path):
    """A typo (`replica:`), which the lenient schemas would let through, fails and is named."""
    documents = manifests()
    documents[0]["spec"]["replica"] = 2
    path = write(tmp_path, documents)

    done = run_command(str(path), "--versions", "1.30")

    assert done.returncode == 1
    assert "document 1 (Deployment/web): spec: Additional properties" in done.stdout
    assert "'replica' was unexpected" in done.stdout


def test_validate_fails_a_document_that_is_not_a_kubernetes_object(tmp_path, capsys):
    write(tmp_path, [{"name": "web"}])

    failures = k8s_validate.validate([tmp_path], ["1.30"])

    assert any("document 1" in f and "needs apiVersion and kind" in f for f in failures)


def test_validate_fails_a_file_that_is_not_yaml(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("kind: [Deployment\n")

    failures = k8s_validate.validate([tmp_path], ["1.30"])

    assert len(failures) == 1 and "broken.yaml: cannot be read as YAML" in failures[0]


def test_command_fails_when_there_is_nothing_to_validate(tmp_path):
    """A wrong path is a failure, not a silent pass over no manifests."""
    done = run_command(str(tmp_path))

    assert done.returncode == 1
    assert "no manifest" in done.stdout


def container(documents: list[dict]) -> dict:
    return documents[0]["spec"]["template"]["spec"]["containers"][0]


def pod(documents: list[dict]) -> dict:
    return documents[0]["spec"]["template"]["spec"]


# Each case breaks one rule of a workload that keeps them all; the problem must name it.
BREAKS = {
    "root allowed": (lambda d: pod(d)["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    "runs as root": (lambda d: pod(d)["securityContext"].update(runAsUser=0), "runAsUser"),
    "no seccomp": (lambda d: pod(d)["securityContext"].pop("seccompProfile"), "seccompProfile"),
    "writable root": (
        lambda d: container(d)["securityContext"].update(readOnlyRootFilesystem=False),
        "readOnlyRootFilesystem",
    ),
    "escalation": (
        lambda d: container(d)["securityContext"].pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation",
    ),
    "capabilities kept": (
        lambda d: container(d)["securityContext"].update(capabilities={}),
        "capabilities.drop",
    ),
    "no memory limit": (lambda d: container(d)["resources"].pop("limits"), "limits.memory"),
    "no cpu request": (
        lambda d: container(d)["resources"]["requests"].pop("cpu"),
        "requests.cpu",
    ),
    "image latest": (lambda d: container(d).update(image="web:latest"), "not pinned"),
    "image untagged": (lambda d: container(d).update(image="registry:5000/web"), "not pinned"),
    "no liveness": (lambda d: container(d).pop("livenessProbe"), "livenessProbe"),
    "literal token": (
        lambda d: container(d).update(env=[{"name": "ADMIN_TOKEN", "value": "s3cr3t"}]),
        "env ADMIN_TOKEN is written in the manifest",
    ),
    "password in a url": (
        lambda d: container(d).update(env=[{"name": "DB", "value": "postgresql://u:pw@db/x"}]),
        "env DB is written in the manifest",
    ),
    "service selector typo": (
        lambda d: d[1]["spec"].update(selector={"app.kubernetes.io/name": "wbe"}),
        "Service/web): selector",
    ),
    "autoscaler owns replicas": (
        lambda d: d[0]["spec"].update(replicas=3),
        "sets spec.replicas",
    ),
    "autoscaler aims elsewhere": (
        lambda d: d[2]["spec"]["scaleTargetRef"].update(name="api"),
        "scales Deployment/api",
    ),
    "no disruption budget": (lambda d: d.pop(3), "no PodDisruptionBudget selects it"),
    "budget selects nothing": (
        lambda d: d[3]["spec"].update(selector={"matchLabels": {"app": "web"}}),
        "PodDisruptionBudget/web): selector",
    ),
    "no default deny": (lambda d: d.pop(4), "no default-deny ingress NetworkPolicy"),
    "secret committed": (
        lambda d: d.append(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "data": {}}
        ),
        "a Secret is never committed",
    ),
}


def documents_of(bodies: list[dict], path: Path) -> list[Document]:
    return [Document(path, index, body) for index, body in enumerate(bodies, 1)]


def test_rules_hold_for_the_workload_that_keeps_them(tmp_path):
    assert k8s_validate.rule_problems(documents_of(manifests(), tmp_path / "web.yaml")) == []


def test_a_secret_files_folder_is_a_path_not_a_secret(tmp_path):
    """Secrets mounted as files are read through a folder's path (LEVEL2_SECRETS_DIR): writing
    the path is what the rule asks for, not what it forbids."""
    bodies = manifests()
    container(bodies).update(env=[{"name": "APP_SECRETS_DIR", "value": "/run/secrets/web"}])

    assert k8s_validate.rule_problems(documents_of(bodies, tmp_path / "web.yaml")) == []


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_rules_name_what_a_workload_breaks(case, tmp_path):
    """Each broken rule is reported, and the report names what to change."""
    bodies = manifests()
    breaking, expected = BREAKS[case]
    breaking(bodies)

    problems = k8s_validate.rule_problems(documents_of(bodies, tmp_path / "web.yaml"))

    assert any(expected in problem for problem in problems), problems
