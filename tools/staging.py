"""Staging for `make template` (tools/template.py): this checkout's level made into a copier
template, one tagged commit per change, in a git repository of its own that copies update from.

The staged template holds the level's files (what git keeps: never a `.env` or a database beside
the code) with their imports pointed at a placeholder package name, the `shared/` modules they
import vendored in with their tests, the project files from templates/, and a lock that is the
subset of ours the copy needs (read from this environment, so no network is needed).

The files are written under state/templates/levelN/ (disposable: `make clean` removes them), and
committed to `levelN.git`, a bare repository in this checkout's git folder
(`.git/copier-templates/`). That history is what a copy's `.copier-answers.yml` names as its
source, so it outlives the state folder, as the checkout's other git data does. Each change is
tagged `0.0.N+TREE`: N counts the changes, copier orders versions by it, and TREE is the start of
the staged tree's git hash, so a tag names the same content for as long as it exists; were that
history lost, a copy's recorded version would be missing rather than mean other files.
"""

import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from packaging.requirements import Requirement

from shared.paths import REPO_ROOT, state_dir
from tools.lockfile import LockError, lock_lines

TEMPLATES = REPO_ROOT / "templates"
# shared/data.py would collide with the level's own data stage (data.py) in one package.
VENDORED_AS = {"data": "dataset"}
PLACEHOLDER = "\x00package\x00"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
# Files a copy has at its top, rendered from templates/, in place of the level's own.
AT_THE_TOP = ("README.md", "Dockerfile")


@dataclass(frozen=True)
class Level:
    number: int
    package: str  # the folder here, and the copy's package name unless NAME is given
    main_target: str  # what `make levelN` is called in the copy
    stays: tuple[str, ...]  # files that only make sense here
    root_tests: dict[str, str]  # tests kept at the top of this repo: here -> in the copy
    dev: tuple[str, ...]  # the dev group's tools the copy needs


# `make lint` runs pre-commit's hooks: ruff and pre-commit-hooks' file checks.
# The services' levels test their manifests (infra/k8s/) and compose file, read with pyyaml.
LEVEL_DEV_TOOLS = (
    "pytest",
    "pytest-timeout",
    "hypothesis",
    "schemathesis",
    "kubernetes-validate",
    "pyyaml",
    "ruff",
    "pre-commit",
    "pre-commit-hooks",
    "uv",
)

LEVELS = {
    0: Level(
        0,
        "level0_notebook",
        main_target="run",
        stays=("README.md",),
        root_tests={"tests/test_level0_walkthrough.py": "tests/test_walkthrough.py"},
        dev=("pytest", "pytest-timeout", "ruff", "pre-commit", "pre-commit-hooks", "uv"),
    ),
    1: Level(
        1,
        "level1_devops",
        main_target="all",
        # The benchmark compares with `mlflow models serve`: MLflow is level 2's dependency.
        stays=("README.md", "Dockerfile", "bench.py"),
        root_tests={},
        dev=LEVEL_DEV_TOOLS,
    ),
    2: Level(
        2,
        "level2_pipelines",
        main_target="pipeline",
        # The copy builds from its own top folder, with the template's Dockerfile.
        stays=("README.md", "Dockerfile"),
        root_tests={},
        dev=LEVEL_DEV_TOOLS,
    ),
}


class TemplateError(RuntimeError):
    """The project cannot be generated: the message says why and what to do."""


def kept_by_git(folder: Path) -> list[Path]:
    """The files under folder that git would keep (committed or new, not ignored): a `.env`
    or a database beside the code is the user's own and never reaches a copy."""
    listed = subprocess.run(
        ["git", "-C", str(folder), "ls-files", "--cached", "--others", "--exclude-standard", "."],
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        raise TemplateError(
            f"cannot list the files git keeps under {folder} ({listed.stderr.strip()}): "
            "make template copies from a git clone of this repository"
        )
    return [folder / line for line in listed.stdout.splitlines() if (folder / line).is_file()]


def level_files(level: Level) -> dict[str, Path]:
    """The level's files (relative path in the package -> source), including root tests."""
    source = REPO_ROOT / level.package
    files = {
        str(path.relative_to(source)): path
        for path in sorted(kept_by_git(source))
        if str(path.relative_to(source)) not in level.stays
    }
    files.update({there: REPO_ROOT / here for here, there in level.root_tests.items()})
    return files


def shared_imports(text: str) -> set[str]:
    return set(re.findall(r"\bshared\.(\w+)", text)) | set(
        re.findall(r"from shared import (\w+)", text)
    )


def vendored_modules(files: dict[str, Path]) -> set[str]:
    """The `shared` modules the files import, and the ones those import in turn."""
    wanted = set().union(*(shared_imports(p.read_text()) for p in files.values()))
    todo = list(wanted)
    while todo:
        for module in shared_imports((REPO_ROOT / "shared" / f"{todo.pop()}.py").read_text()):
            if module not in wanted:
                wanted.add(module)
                todo.append(module)
    return wanted


def rewrite(text: str, level: Level, vendored: set[str]) -> str:
    """Point the text at the copy: imports, module paths, make targets and state folders.

    The package name is left as PLACEHOLDER; the template renders it from the answer.
    """
    n = level.number
    name = {m: VENDORED_AS.get(m, m) for m in vendored}
    text = re.sub(
        r"from shared import (\w+)",
        lambda m: f"from {PLACEHOLDER} import {name[m[1]]}",
        text,
    )
    text = re.sub(
        r"\bshared([./])(\w+)",
        lambda m: f"{PLACEHOLDER}{m[1]}{name[m[2]]}" if m[2] in name else m[0],
        text,
    )
    # A README or Dockerfile that stays here has the copy's own at its top: name that one.
    for name in set(level.stays) & set(AT_THE_TOP):
        text = re.sub(rf"\b{level.package}/{re.escape(name)}(?![\w.])", name, text)
    text = re.sub(rf"\b{level.package}\b", PLACEHOLDER, text)
    text = re.sub(rf"\bmake level{n}-([\w-]+)", r"make \1", text)
    text = re.sub(rf"\bmake level{n}\b", f"make {level.main_target}", text)
    # The copy is one level: its state folder is state/, not state/levelN/.
    text = re.sub(rf'state_dir\(\) / "level{n}"', "state_dir()", text)
    return re.sub(rf"\bstate/level{n}\b", "state", text)


def as_template(text: str) -> str:
    """Jinja that renders back to `text` with the package name filled in: everything else is
    raw, so code containing braces can never be read as template syntax."""
    parts = text.split(PLACEHOLDER)
    return "{{ package_name }}".join(f"{{% raw %}}{part}{{% endraw %}}" for part in parts)


def dependencies(level: Level) -> tuple[list[str], list[str]]:
    """The copy's requirements, as in our pyproject.toml: what every level needs plus the
    level's extra (to run), and the dev group's tools the level uses (to test and lint)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *extras[f"level{level.number}"]], group_requirements(
        dependency_groups(level), "dev"
    )


def dependency_groups(level: Level) -> dict[str, list]:
    """Our PEP 735 dependency groups with only the tools the level uses (`Level.dev`)."""
    groups = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["dependency-groups"]
    return {
        name: [i for i in items if isinstance(i, dict) or Requirement(i).name in level.dev]
        for name, items in groups.items()
    }


def group_requirements(groups: dict[str, list], name: str) -> list[str]:
    """A dependency group's requirements, with the groups it includes spelled out."""
    found: list[str] = []
    for item in groups[name]:
        if isinstance(item, dict):
            found += group_requirements(groups, item["include-group"])
        else:
            found.append(item)
    return found


def groups_toml(groups: dict[str, list]) -> str:
    """The `[dependency-groups]` entries of a copy's pyproject.toml."""
    lines = []
    for name, items in groups.items():
        lines.append(f"{name} = [")
        for item in items:
            if isinstance(item, dict):
                lines.append(f'  {{ include-group = "{item["include-group"]}" }},')
            else:
                lines.append(f'  "{item}",')
        lines.append("]")
    return "\n".join(lines)


def fill(path: Path, **values: str) -> None:
    """Replace the UPPER_CASE markers in a staged template file."""
    text = path.read_text()
    for marker, value in values.items():
        text = text.replace(marker, value)
    path.write_text(text)


def holds_python(directory: Path) -> bool:
    """Whether the staged folder has Python code in it, at any depth."""
    return any(p.name.endswith((".py", ".py.jinja")) for p in directory.rglob("*"))


def stage(level: Level) -> Path:
    """Stage the level and commit a change to its template history; return that repository."""
    root = state_dir() / "templates" / f"level{level.number}"
    repository = history(level)
    for folder in (root.parent, repository.parent):
        folder.mkdir(parents=True, exist_ok=True)
    # Two `make template` at once (or two test workers) would empty each other's staging, or
    # commit to one history at once (a state folder set elsewhere, the same checkout).
    with FileLock(root.with_suffix(".lock")), FileLock(repository.with_suffix(".lock")):
        stage_into(root, level)
        return commit(root, repository)


def history(level: Level) -> Path:
    """The level's template repository, in this checkout's git folder (a linked worktree has
    its own): kept with the checkout's history, apart from the disposable state folder."""
    git_dir = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--absolute-git-dir"],
        capture_output=True,
        text=True,
    )
    if git_dir.returncode != 0:
        raise TemplateError(
            f"{REPO_ROOT} is not a git checkout ({git_dir.stderr.strip()}): "
            "make template keeps the level's template history in git; clone the repository"
        )
    # The `.git` suffix is how copier tells a bare repository (a git source) from a folder.
    return Path(git_dir.stdout.strip()) / "copier-templates" / f"level{level.number}.git"


def stage_into(root: Path, level: Level) -> None:
    """Write the level as a copier template into root (emptied first)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for part in ("common", f"level{level.number}"):
        shutil.copytree(TEMPLATES / part, root, dirs_exist_ok=True)

    files = level_files(level)
    vendored = vendored_modules(files)
    clash = {VENDORED_AS.get(m, m) + ".py" for m in vendored} & set(files)
    if clash:
        raise TemplateError(f"vendored modules would replace the level's own: {sorted(clash)}")
    package = root / "{{ package_name }}"
    for module in sorted(vendored):
        there = VENDORED_AS.get(module, module)
        files[f"{there}.py"] = REPO_ROOT / "shared" / f"{module}.py"
        # The vendored modules' own tests come along, so the copy checks what it carries.
        test = REPO_ROOT / "tests" / "shared" / f"test_{module}.py"
        if test.is_file():
            files[f"tests/test_{there}.py"] = test
    for relative, source in files.items():
        text = rewrite(source.read_text(), level, vendored)
        target = package / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if PLACEHOLDER in text:
            target.with_name(target.name + ".jinja").write_text(as_template(text))
        else:
            target.write_text(text)
    # A folder of code is a package; one of manifests or config (infra/) is left as it is.
    for directory in [package, *[p for p in package.rglob("*") if p.is_dir()]]:
        if not (directory / "__init__.py.jinja").exists() and (
            directory == package or holds_python(directory)
        ):
            (directory / "__init__.py").touch()

    runtime, dev = dependencies(level)
    try:
        lock = lock_lines(runtime + dev)
    except LockError as error:
        raise TemplateError(str(error)) from error
    (root / "requirements.lock").write_text("\n".join(lock) + "\n")
    # The same checks as here: `make lint` runs them.
    shutil.copy2(REPO_ROOT / ".pre-commit-config.yaml", root)
    fill(
        root / "copier.yml",
        LEVEL_NUMBER=str(level.number),
        LEVEL_PACKAGE=level.package,
        LEVEL_MAIN_TARGET=level.main_target,
    )
    fill(
        root / "pyproject.toml.jinja",
        RUNTIME_DEPENDENCIES="".join(f'  "{r}",\n' for r in runtime).rstrip("\n"),
        DEPENDENCY_GROUPS=groups_toml(dependency_groups(level)),
    )


def git(repository: Path, *args: str, work_tree: Path | None = None) -> str:
    """git on the template repository, as the fixed identity that stages it."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "mlops-maturity-levels",
        "GIT_AUTHOR_EMAIL": "template@localhost",
        "GIT_COMMITTER_NAME": "mlops-maturity-levels",
        "GIT_COMMITTER_EMAIL": "template@localhost",
    }
    where = ["--git-dir", str(repository), *(["--work-tree", str(work_tree)] if work_tree else [])]
    done = subprocess.run(["git", *where, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise TemplateError(f"git {' '.join(args)} in {repository}: {done.stderr.strip()}")
    return done.stdout.strip()


def commit(root: Path, repository: Path) -> Path:
    """Commit the staged files to the template repository and tag the change: copier copies
    the latest tag, and `copier update` diffs the tag a project came from against it."""
    if not repository.exists():
        git(repository, "init", "--quiet", "--bare", "--initial-branch=main")
    git(repository, "add", "--all", work_tree=root)
    if git(repository, "status", "--porcelain", work_tree=root):
        message = "staged from the levels"
        git(repository, "commit", "--quiet", "--no-verify", "-m", message, work_tree=root)
        count = git(repository, "rev-list", "--count", "HEAD")
        tree = git(repository, "rev-parse", "HEAD^{tree}")
        git(repository, "tag", f"0.0.{count}+{tree[:12]}")
    return repository


def has_version(repository: Path, version: str) -> bool:
    """Whether the template repository holds the version a copy records (its `_commit`)."""
    names = git(repository, "tag", "--list").splitlines()
    return version in names
