"""Every level taken away as a starter (`make template`).

The quick checks run in `make test`: what a copy holds, that nothing in it reaches back into
this repository, and that it takes the level's later changes (`copier update`) from a scratch
checkout whose state/ is gone, or which moved. The copies' own suites are marked `templates`
and run with `make test-templates` (and `.ci/run`): each level is generated outside the
repository, builds its environment from its own lock, and must pass its own `make lint` and
`make test` with an environment that knows nothing of this checkout.
"""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from packaging.version import Version

from shared.contract import CLASSES, EXAMPLE_PAYLOAD
from shared.servers import free_port, stop_group
from tests.makefiles import makefile_text
from tests.test_readme_walkthrough import scratch_copy
from tools import staging, template

ROOT = Path(__file__).resolve().parents[1]
COPY_TIMEOUT_S = 1500


def generate(level: int, dest: Path, name: str | None = None) -> Path:
    """Generate through the entry point people use."""
    args = ["--level", str(level), "--dest", str(dest), *(["--name", name] if name else [])]
    done = subprocess.run(
        [sys.executable, "-m", "tools.template", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return dest


def pins(lock: Path) -> set[str]:
    return {line for line in lock.read_text().splitlines() if re.match(r"^[\w.-]+==", line)}


def can_hide_the_repository() -> bool:
    """Whether this machine lets us run a command in a private mount namespace (Linux, root)."""
    probe = ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "none", "/mnt"]
    with contextlib.suppress(OSError):
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    return False


HIDE_REPOSITORY = can_hide_the_repository()


def out_of_reach(command: list[str]) -> list[str]:
    """`command` run with this repository's folder covered by an empty one, where the machine
    allows it: a copy that still reached for a file here would fail. Elsewhere the environment
    alone keeps it out (`outside_env`), and the test says so."""
    if not HIDE_REPOSITORY:
        print("the repository stays visible here (no private mount namespace); env only")
        return command
    hide = 'mount -t tmpfs none "$0" && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", hide, str(ROOT), *command]


def outside_env() -> dict[str, str]:
    """The environment of someone who never cloned this repository: no PYTHONPATH, none of the
    variables our Makefile exports or our levels read; the rest (HOME and its download caches,
    the machine's certificates and proxies) as it is."""
    ours = set(re.findall(r"^export (\w+)", makefile_text(ROOT / "Makefile"), re.M))
    ours |= {"PYTHONPATH", "VIRTUAL_ENV", "MLOPS_STATE_DIR", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}
    return {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("LEVEL")} | {
        "NO_COLOR": "1"
    }


@pytest.fixture(scope="module", params=sorted(staging.LEVELS), ids=lambda n: f"level{n}")
def quick_copy(request, tmp_path_factory) -> tuple[int, Path]:
    level = request.param
    return level, generate(level, tmp_path_factory.mktemp(f"copy{level}") / "project")


def test_a_copy_holds_a_standalone_project(quick_copy):
    level, copy = quick_copy
    package = copy / staging.LEVELS[level].package

    for name in ("pyproject.toml", "requirements.lock", "Makefile", "README.md", ".gitignore"):
        assert (copy / name).is_file(), name
    assert (copy / ".github" / "workflows" / "ci.yml").is_file()
    # `make lint` there runs the same checks as here.
    assert (copy / ".pre-commit-config.yaml").read_text() == (
        ROOT / ".pre-commit-config.yaml"
    ).read_text()
    assert (copy / "Dockerfile").is_file() == (level > 0)
    assert (package / "contract.py").is_file() and (package / "dataset.py").is_file()
    assert list((package / "tests").rglob("test_*.py"))


def test_nothing_in_a_copy_refers_to_this_repository(quick_copy):
    """No `shared` import, no path into this checkout (the copier answers file excepted: it names
    the level's template history, which is what `copier update` reads; the copy's own git
    folder too)."""
    _, copy = quick_copy

    for path in copy.rglob("*"):
        if path.is_file() and path.name != ".copier-answers.yml" and ".git" not in path.parts:
            text = path.read_text()
            assert not re.search(r"^\s*(from|import) shared\b", text, re.M), path
            assert str(ROOT) not in text, path
            assert not re.search(r"\bmake level\d", text), path


def test_a_copy_carries_its_levels_infra_folder_as_files_not_a_package(quick_copy):
    """The manifests and the compose file come along, every file of them, and no `__init__.py`
    is put among them; the compose file builds from the copy's own Dockerfile."""
    level, copy = quick_copy
    package = staging.LEVELS[level].package
    here, there = ROOT / package / "infra", copy / package / "infra"

    def files(folder: Path) -> set[Path]:
        return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()}

    assert files(here) == files(there)
    assert not list(there.rglob("__init__.py"))
    if (there / "compose.yaml").is_file():
        build = yaml.safe_load((there / "compose.yaml").read_text())["x-level2-image"]["build"]
        assert (there / build["context"] / build["dockerfile"]).resolve() == copy / "Dockerfile"


def test_a_renamed_copys_manifests_run_the_new_package(tmp_path):
    """A manifest that names the package (`python -m level1_devops.serve`) names the copy's."""
    copy = generate(1, tmp_path / "service", name="penguin_service")
    manifest = copy / "penguin_service" / "infra" / "k8s" / "penguins-level1.yaml"

    deployment = next(yaml.safe_load_all(manifest.read_text()))

    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "penguin_service.serve"]
    assert "level1_devops" not in manifest.read_text()


def test_a_copys_lock_pins_its_dependencies_at_our_versions(quick_copy):
    """The copy's lock is a subset of ours (same versions), holds every direct dependency, and
    level 1's leaves MLflow out (its benchmark against `mlflow models serve` stays here)."""
    level, copy = quick_copy
    lock = pins(copy / "requirements.lock")
    names = {line.split("==")[0] for line in lock}

    assert lock <= pins(ROOT / "requirements.lock")
    # Whole entries of ours, hashes included: the copy installs with hash checking too.
    assert "--require-hashes" in (copy / "setup.mk").read_text()
    assert lock and all(line.endswith(" \\") for line in lock)
    runtime, dev = staging.dependencies(staging.LEVELS[level])
    for requirement in runtime + dev:
        name = re.match(r"[\w.-]+", requirement)[0].lower()
        assert name in names, name
    assert ("mlflow" in names) == (level == 2)
    assert "copier" not in names


def test_a_copys_make_targets_are_ours_under_plain_names(quick_copy):
    """Each `levelN-x` target here is `x` there, `levelN` is the level's main target, and the
    copy's CI workflow runs only targets its Makefile has."""
    level, copy = quick_copy
    ours = re.findall(rf"^level{level}(-[\w-]+)?:", (ROOT / "Makefile").read_text(), re.M)
    theirs = set(re.findall(r"^([\w-]+):", makefile_text(copy / "Makefile"), re.M))
    main = staging.LEVELS[level].main_target

    expected = {suffix[1:] if suffix else main for suffix in ours} | {"test", "lint", "format"}
    assert expected <= theirs
    steps = re.findall(
        r"run: make ([\w-]+)", (copy / ".github" / "workflows" / "ci.yml").read_text()
    )
    assert steps[:2] == ["lint", "test"]
    assert set(steps) <= theirs


def test_a_name_must_be_a_package_name(tmp_path):
    args = ["--level", "1", "--dest", str(tmp_path / "x"), "--name", "My-Service"]
    done = subprocess.run(
        [sys.executable, "-m", "tools.template", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    assert done.returncode != 0
    assert "not a package name" in done.stderr
    assert not (tmp_path / "x").exists()


def test_a_copy_is_not_written_over_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")

    with pytest.raises(template.TemplateError, match="not empty"):
        template.generate(1, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def git(path: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@localhost",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@localhost",
    }
    return subprocess.run(
        ["git", "-C", str(path), *args], env=env, check=True, capture_output=True, text=True
    ).stdout


def template_from(checkout: Path, dest: Path) -> subprocess.CompletedProcess:
    """`python -m tools.template --level 1 --name penguins` run from another checkout."""
    args = ["--level", "1", "--dest", str(dest), "--name", "penguins"]
    return subprocess.run(
        [sys.executable, "-m", "tools.template", *args],
        cwd=checkout,
        env=outside_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def generate_from(checkout: Path, dest: Path) -> None:
    done = template_from(checkout, dest)
    assert done.returncode == 0, done.stderr


def answers(copy: Path) -> dict:
    return yaml.safe_load((copy / ".copier-answers.yml").read_text())


@pytest.fixture
def edited_copy(tmp_path) -> tuple[Path, Path]:
    """A scratch checkout of this repository, and a copy of its level 1 that changed its port
    (committed, as someone keeping their project in git would)."""
    (tmp_path / "checkout").mkdir()
    checkout = scratch_copy(tmp_path / "checkout", link_venv=False)
    copy = tmp_path / "project"
    generate_from(checkout, copy)
    settings = copy / "penguins" / "settings.py"
    settings.write_text(settings.read_text().replace("port: int = 8001", "port: int = 9001"))
    git(copy, "commit", "--quiet", "-am", "our own port")
    return checkout, copy


def gain_a_line(checkout: Path, line: str) -> None:
    model = checkout / "level1_devops" / "model.py"
    model.write_text(model.read_text() + f"\n# {line}\n")


def test_a_copy_starts_as_a_clean_git_repository(quick_copy):
    """The copy's first version is committed, so `copier update` (which needs a clean work tree
    in git) works from the start."""
    _, copy = quick_copy

    log = git(copy, "log", "--format=%s")
    status = git(copy, "status", "--porcelain")

    assert log.startswith("Level ") and status == ""


def test_generating_again_updates_a_copy_after_the_parents_state_folder_is_gone(edited_copy):
    """With the parent's state/ removed, `make template` on the same folder brings the level's
    later change, keeps the copy's edit, and records the newer version."""
    checkout, copy = edited_copy
    first = answers(copy)["_commit"]

    gain_a_line(checkout, "A line the level gained later.")
    shutil.rmtree(checkout / "state")
    generate_from(checkout, copy)

    assert "A line the level gained later." in (copy / "penguins" / "model.py").read_text()
    assert "port: int = 9001" in (copy / "penguins" / "settings.py").read_text()
    assert Version(answers(copy)["_commit"]) > Version(first)


def test_copier_update_in_a_copy_works_after_the_parents_state_folder_is_gone(edited_copy):
    """A plain `copier update` in the copy reads the level's template history, which outlives the
    parent's state/: the change the level gained since (staged when someone copied the level
    again) arrives, merged with the copy's edit."""
    checkout, copy = edited_copy
    first = answers(copy)["_commit"]
    gain_a_line(checkout, "A line the level gained later.")
    generate_from(checkout, copy.parent / "another-project")
    shutil.rmtree(checkout / "state")

    updated = subprocess.run(
        [sys.executable, "-m", "copier", "update", "--defaults", "--quiet"],
        cwd=copy,
        env=outside_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert updated.returncode == 0, updated.stderr
    assert "A line the level gained later." in (copy / "penguins" / "model.py").read_text()
    assert "port: int = 9001" in (copy / "penguins" / "settings.py").read_text()
    assert Version(answers(copy)["_commit"]) > Version(first)
    assert not Path(answers(copy)["_src_path"]).is_relative_to(checkout / "state")


def test_a_copy_follows_its_parent_checkout_when_it_moves(edited_copy):
    """Generating again from the moved checkout points the copy's answers at its new place, and
    the update still merges."""
    checkout, copy = edited_copy
    moved = checkout.rename(checkout.with_name("moved"))

    gain_a_line(moved, "A line the level gained later.")
    generate_from(moved, copy)

    assert Path(answers(copy)["_src_path"]).is_relative_to(moved)
    assert "A line the level gained later." in (copy / "penguins" / "model.py").read_text()
    assert "port: int = 9001" in (copy / "penguins" / "settings.py").read_text()


def test_a_copy_with_work_not_committed_is_left_as_it_is(edited_copy):
    """Generating again on a copy with uncommitted work stops before touching it, and says why."""
    checkout, copy = edited_copy
    settings = copy / "penguins" / "settings.py"
    settings.write_text(settings.read_text() + "# work in progress\n")
    gain_a_line(checkout, "A line the level gained later.")

    done = template_from(checkout, copy)

    assert done.returncode != 0
    assert "not committed" in done.stderr
    assert "A line the level gained later." not in (copy / "penguins" / "model.py").read_text()
    assert settings.read_text().endswith("# work in progress\n")


def test_a_copy_from_a_lost_history_is_refused_with_the_reason(edited_copy):
    """With the template history gone and the level changed, the restarted history's first
    version is other content under another tag: the copy is not merged against it, and the
    message names the version the copy came from."""
    checkout, copy = edited_copy
    shutil.rmtree(Path(answers(copy)["_src_path"]))
    gain_a_line(checkout, "A line the level gained later.")
    settings = (copy / "penguins" / "settings.py").read_text()

    done = template_from(checkout, copy)

    assert done.returncode != 0
    assert answers(copy)["_commit"] in done.stderr and answers(copy)["_src_path"] in done.stderr
    assert (copy / "penguins" / "settings.py").read_text() == settings


# --- The copies' own suites ---------------------------------------------------------------------


def make(copy: Path, *targets: str, timeout: float = COPY_TIMEOUT_S) -> str:
    started = time.monotonic()
    done = subprocess.run(
        out_of_reach(["make", *targets]),
        cwd=copy,
        env=outside_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    took = time.monotonic() - started
    print(f"{copy.name}: make {' '.join(targets)}: {took:.0f} s")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


@pytest.mark.templates
@pytest.mark.timeout(COPY_TIMEOUT_S * 2)
@pytest.mark.parametrize("level", sorted(staging.LEVELS), ids=lambda n: f"level{n}")
def test_a_copy_passes_its_own_lint_and_tests(level, tmp_path):
    """Generated outside the repository, the copy builds its own .venv from its own lock and
    passes its own `make lint` and `make test`; `make help` lists the level's targets, and the
    README's first steps run."""
    copy = generate(level, tmp_path / f"level{level}-starter")

    help_text = make(copy, "help")
    make(copy, "lint")
    output = make(copy, "test")
    walkthrough = [make(copy, target) for target in FIRST_STEPS[level]]

    if HIDE_REPOSITORY:  # what the copy's commands saw of this checkout: nothing
        seen = subprocess.run(out_of_reach(["ls", "-A", str(ROOT)]), capture_output=True, text=True)
        assert seen.returncode == 0 and seen.stdout == ""
    assert all(f"  {target} " in help_text for target in ["test", "lint", *FIRST_STEPS[level]])
    assert re.search(r"\d+ passed", output) and " failed" not in output
    assert (copy / "state" / WRITTEN[level]).is_file(), f"no state/{WRITTEN[level]}"
    assert EXPECTED_OUTPUT[level] in walkthrough[-1]


# What each copy's README has people run first, after `make test`, and a line it prints.
FIRST_STEPS = {0: ["run"], 1: ["train", "handoff"], 2: ["pipeline", "registry"]}
# What those steps leave in the copy's state folder (state/, not state/levelN/).
WRITTEN = {0: "model.pkl", 1: "serving/card.json", 2: "mlflow.db"}
EXPECTED_OUTPUT = {0: "macro F1", 1: "hand-off: model", 2: " champion "}

FOREST_TYPES = ["numpy.dtype", "sklearn.tree._tree.Tree"]
RANDOM_FOREST = """\
def build_classifier(seed: int) -> ClassifierMixin:
    \"\"\"A random forest instead of the logistic regression: the starter's first change.\"\"\"
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=50, random_state=seed)
"""


@contextlib.contextmanager
def make_serve(copy: Path, port: int):
    """`make serve` in the background until /ready answers; its process group stopped after."""
    env = outside_env() | {"LEVEL1_PORT": str(port)}
    log = (copy.parent / "serve.log").open("w")
    process = subprocess.Popen(
        out_of_reach(["make", "serve"]),
        cwd=copy,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (copy.parent / "serve.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the service did not get ready in 120 s"
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(process)
        log.close()


@pytest.mark.templates
@pytest.mark.timeout(COPY_TIMEOUT_S)
def test_a_renamed_level1_with_another_estimator_trains_serves_and_predicts(tmp_path):
    """NAME set and the estimator swapped in its one place: train, hand off, serve, predict."""
    copy = generate(1, tmp_path / "penguin-service", name="penguin_service")
    model = copy / "penguin_service" / "model.py"
    source = model.read_text()
    recipe = re.search(r"def build_classifier\(.*?\n\n\n", source, re.S)[0]
    source = source.replace(recipe, RANDOM_FOREST + "\n\n")
    # A forest's file holds the trees' own type, which skops trusts only when told (model.py).
    source = source.replace('TRUSTED_TYPES = ["numpy.dtype"]', f"TRUSTED_TYPES = {FOREST_TYPES}")
    model.write_text(source)

    make(copy, "train")
    make(copy, "handoff")
    with make_serve(copy, free_port()) as base_url:
        prediction = httpx.post(f"{base_url}/predict", json=EXAMPLE_PAYLOAD, timeout=10)
        card = httpx.get(f"{base_url}/model", timeout=10).json()

    assert prediction.status_code == 200
    body = prediction.json()
    assert set(body["probabilities"]) == set(CLASSES)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    assert card["serving_path"] == "pipeline"
    assert "RandomForestClassifier" in str(card["parameters"])
