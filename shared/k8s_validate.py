"""Check the Kubernetes manifests offline: `make k8s-validate`, or
`python -m shared.k8s_validate [PATH ...]`
(files or folders; by default each level's `infra/k8s/`).

No cluster is needed, and none can run here (`kubectl apply --dry-run=client` still asks a
server for its schemas): kubernetes-validate carries the OpenAPI schemas of Kubernetes 1.25-1.37
in its wheel. Every YAML document is checked

- against the strict schemas of each version in VERSIONS: a wrong type (`replicas: "two"`) or a
  field Kubernetes does not know (a typo such as `replica:`) fails, naming the file, the
  document and the field;
- against the rules the project holds its workloads to (`rule_problems`): non-root, read-only
  root filesystem, no privilege escalation, no capabilities, the runtime's seccomp profile,
  requests and a memory limit, a liveness probe, a pinned image; a Service, an autoscaler, a
  disruption budget or a network policy that selects no workload of its folder (a label typo
  that the schemas cannot see); a default-deny ingress policy; no secret committed.

One line per file and version, then one per folder for the rules; exit status 1 if anything
failed.
"""

import argparse
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from shared.paths import REPO_ROOT

# The oldest version a managed cluster is still likely to run, and the newest the schemas cover.
VERSIONS = ("1.30", "1.37")
# Each level keeps its manifests with its code, so a copied level carries them.
MANIFEST_FOLDERS = "*/infra/k8s"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET", re.IGNORECASE)
# Where secrets are read from (a mounted Secret's folder or file), not a secret.
PATH_NAME = re.compile(r"_(DIR|FILE|PATH)$", re.IGNORECASE)
CREDENTIALS_IN_URL = re.compile(r"://[^/@\s:]+:[^/@\s]+@")


@dataclass(frozen=True)
class Document:
    """One YAML document of a manifest file."""

    path: Path
    index: int  # 1-based, in its file
    body: Any

    @property
    def kind(self) -> str:
        return self.body.get("kind", "") if isinstance(self.body, dict) else ""

    @property
    def name(self) -> str:
        metadata_ = self.body.get("metadata") if isinstance(self.body, dict) else None
        return (metadata_ or {}).get("name", "?")

    def __str__(self) -> str:
        return f"{shown(self.path)} document {self.index} ({self.kind or '?'}/{self.name})"


def shown(path: Path) -> str:
    """The path as the project names it: relative to its root when inside it."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    """The YAML files among `paths`, folders searched recursively."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        else:
            found.append(path)
    return found


def load(path: Path) -> list[Document]:
    """The file's documents, empty ones (a lone `---`) left out."""
    bodies = yaml.safe_load_all(path.read_text())
    return [Document(path, i, body) for i, body in enumerate(bodies, 1) if body is not None]


def schema_problem(document: Document, version: str) -> str | None:
    """Why the document does not fit Kubernetes `version`'s strict schema, or None if it does."""
    if not isinstance(document.body, dict) or not {"apiVersion", "kind"} <= document.body.keys():
        return "not a Kubernetes object: it needs apiVersion and kind"
    try:
        kubernetes_validate.validate(document.body, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        field = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        return f"{field}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError as error:
        return error.message
    return None


# --- The project's rules ------------------------------------------------------------------------


def pod_labels(workload: Document) -> dict[str, str]:
    return workload.body["spec"]["template"]["metadata"].get("labels", {})


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether a selector (`matchLabels` form or a Service's plain map) picks these labels."""
    wanted = (selector or {}).get("matchLabels", selector or {})
    return bool(wanted) and all(labels.get(key) == value for key, value in wanted.items())


def container_problems(container: dict[str, Any], init: bool) -> Iterator[str]:
    name = f"container {container.get('name', '?')}"
    security = container.get("securityContext", {})
    if security.get("allowPrivilegeEscalation") is not False:
        yield f"{name}: securityContext.allowPrivilegeEscalation must be false"
    if security.get("readOnlyRootFilesystem") is not True:
        yield f"{name}: securityContext.readOnlyRootFilesystem must be true (emptyDir for writes)"
    if "ALL" not in security.get("capabilities", {}).get("drop", []):
        yield f"{name}: securityContext.capabilities.drop must include ALL"
    resources = container.get("resources", {})
    for missing in {"cpu", "memory"} - set(resources.get("requests", {})):
        yield f"{name}: resources.requests.{missing} is missing"
    if "memory" not in resources.get("limits", {}):
        yield f"{name}: resources.limits.memory is missing"
    image = container.get("image", "")
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if "@sha256:" not in image and (not tag or tag == "latest"):
        yield f"{name}: image {image!r} is not pinned to a version"
    if not init and "livenessProbe" not in container:
        yield f"{name}: no livenessProbe"


def workload_problems(workload: Document) -> Iterator[str]:
    pod = workload.body["spec"]["template"]["spec"]
    security = pod.get("securityContext", {})
    if security.get("runAsNonRoot") is not True:
        yield "securityContext.runAsNonRoot must be true"
    if not security.get("runAsUser"):
        yield "securityContext.runAsUser must name a user other than root (0)"
    if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        yield "securityContext.seccompProfile.type must be RuntimeDefault"
    for key, init in (("initContainers", True), ("containers", False)):
        for container in pod.get(key, []):
            yield from container_problems(container, init)
            for variable in container.get("env", []):
                name = variable["name"]
                if "value" in variable and (
                    (SECRET_NAME.search(name) and not PATH_NAME.search(name))
                    or CREDENTIALS_IN_URL.search(str(variable["value"]))
                ):
                    yield (
                        f"env {name} is written in the manifest: take it from a Secret "
                        "(a mounted file, or valueFrom.secretKeyRef)"
                    )


def rule_problems(documents: list[Document]) -> list[str]:
    """What breaks the project's rules in one folder's documents, each naming its document."""
    problems: list[str] = []
    workloads = [d for d in documents if d.kind in WORKLOADS]
    by_name = {(d.kind, d.name): d for d in workloads}
    budgets = [d for d in documents if d.kind == "PodDisruptionBudget"]

    def selecting(document: Document, selector: dict[str, Any] | None, what: str) -> None:
        if not any(selects(selector, pod_labels(w)) for w in workloads):
            problems.append(f"{document}: {what} {selector} selects no workload in this folder")

    for document in documents:
        body, kind = document.body, document.kind
        if kind in WORKLOADS:
            problems += [f"{document}: {p}" for p in workload_problems(document)]
        elif kind in ("Service", "PodDisruptionBudget"):
            selecting(document, body["spec"].get("selector"), "selector")
        elif kind == "HorizontalPodAutoscaler":
            target = body["spec"]["scaleTargetRef"]
            workload = by_name.get((target["kind"], target["name"]))
            if workload is None:
                problems.append(f"{document}: scales {target['kind']}/{target['name']}, not here")
                continue
            if "replicas" in workload.body["spec"]:
                problems.append(
                    f"{workload}: sets spec.replicas, which every apply would reset under the "
                    "autoscaler: leave it out"
                )
            labels = pod_labels(workload)
            if not any(selects(b.body["spec"].get("selector"), labels) for b in budgets):
                problems.append(f"{workload}: autoscaled but no PodDisruptionBudget selects it")
        elif kind == "NetworkPolicy":
            spec = body["spec"]
            if spec.get("podSelector"):
                selecting(document, spec["podSelector"], "podSelector")
            for rule in spec.get("ingress", []):
                for peer in rule.get("from", []):
                    if peer.get("podSelector") and "namespaceSelector" not in peer:
                        selecting(document, peer["podSelector"], "ingress from podSelector")
        elif kind == "Secret":
            problems.append(
                f"{document}: a Secret is never committed; create it with `kubectl create secret`"
            )
        elif kind == "ConfigMap":
            for key, value in (body.get("data") or {}).items():
                if CREDENTIALS_IN_URL.search(str(value)):
                    problems.append(f"{document}: data.{key} holds credentials: use a Secret")

    default_deny = any(
        d.kind == "NetworkPolicy"
        and d.body["spec"].get("podSelector") == {}
        and "Ingress" in d.body["spec"].get("policyTypes", [])
        and not d.body["spec"].get("ingress")
        for d in documents
    )
    if workloads and not default_deny:
        problems.append(
            f"{shown(documents[0].path.parent)}: no default-deny ingress NetworkPolicy "
            "(podSelector: {}, policyTypes: [Ingress], no ingress rules)"
        )
    return problems


# --- The command --------------------------------------------------------------------------------


def default_folders() -> list[Path]:
    return sorted(REPO_ROOT.glob(MANIFEST_FOLDERS))


def count(documents: list[Document]) -> str:
    return f"{len(documents)} document{'s' if len(documents) != 1 else ''}"


def validate(paths: list[Path], versions: Iterable[str] = VERSIONS) -> list[str]:
    """Check every manifest under `paths`; print one line per file and version and one per
    folder for the rules. Returns the failures (empty: all valid)."""
    files = manifest_files(paths)
    if not files:
        failure = f"no manifest (*.yaml, *.yml) under {', '.join(map(shown, paths)) or 'nothing'}"
        print(f"FAIL  {failure}")
        return [failure]
    failures: list[str] = []
    folders: dict[Path, list[Document]] = {}
    for path in files:
        try:
            documents = load(path)
        except (OSError, yaml.YAMLError) as error:
            failures.append(f"{shown(path)}: cannot be read as YAML: {error}")
            print(f"FAIL  {failures[-1]}")
            continue
        folders.setdefault(path.parent, []).extend(documents)
        for version in versions:
            found = [(d, schema_problem(d, version)) for d in documents]
            found = [f"{d}: {problem}" for d, problem in found if problem]
            status = "FAIL" if found else "ok  "
            print(f"{status}  {version}  {shown(path)} ({count(documents)})")
            failures += [f"Kubernetes {version}: {problem}" for problem in found]
            for problem in found:
                print(f"        {problem}")
    for folder, documents in folders.items():
        found = rule_problems(documents)
        print(f"{'FAIL' if found else 'ok  '}  rules {shown(folder)} ({count(documents)})")
        failures += found
        for problem in found:
            print(f"        {problem}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate Kubernetes manifests offline.")
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: levels')")
    parser.add_argument(
        "--versions",
        default=",".join(VERSIONS),
        help=f"Kubernetes versions, comma-separated (default: {','.join(VERSIONS)})",
    )
    args = parser.parse_args(argv)
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    paths = args.paths or default_folders()
    tool = f"kubernetes-validate {metadata.version('kubernetes-validate')}"
    print(f"k8s-validate: strict schemas of Kubernetes {', '.join(versions)} ({tool})")
    failures = validate(paths, versions)
    files = len(manifest_files(paths))
    if failures:
        print(f"k8s-validate: {len(failures)} problem(s) in {files} file(s); see FAIL above")
        return 1
    print(f"k8s-validate: {files} files valid for Kubernetes {' and '.join(versions)}; rules hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
