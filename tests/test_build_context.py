"""No secret reaches an image: what each build context holds, here and in every copy.

A build context is what `docker build` sends to the engine and what a `COPY` can put in an
image. The context is read with docker-py's own matcher of `.dockerignore` rules (the Docker
SDK for Python, the same rules the engine applies), over a scratch tree where a team's usual
secrets and generated files have been planted: if any of them is in the context, a build could
bake it into an image that anyone who pulls it can read.
"""

from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from tests.test_readme_walkthrough import scratch_copy
from tests.test_templates import generate
from tools import staging

ROOT = Path(__file__).resolve().parents[1]

# Secret-shaped or generated files a team's checkout has, relative to the package folder of a
# level ("{pkg}") or to the top. Each must stay out of every build context.
PLANTED = (
    ".env",
    ".env.local",
    "{pkg}/infra/.env",
    "{pkg}/infra/.env.production",
    "{pkg}/infra/secrets/token",
    "{pkg}/.env",
    "state/level2/mlflow.db",
    "state/level2/servers/admin-token",
    "{pkg}/state/prediction_log.sqlite3",
    "{pkg}/models/model.skops",
    "{pkg}/model.pkl",
    "{pkg}/server.key",
    "{pkg}/tls.pem",
    "{pkg}/__pycache__/api.cpython-311.pyc",
    ".venv/bin/python",
    ".netrc",
)


def plant(root: Path, package: str) -> list[str]:
    planted = []
    for pattern in PLANTED:
        relative = pattern.format(pkg=package)
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("LEVEL2_ADMIN_TOKEN=a-real-secret\n")
        planted.append(relative)
    return planted


def context(root: Path, dockerfile: str) -> set[str]:
    """The files `docker build -f dockerfile root` would send, as paths relative to root."""
    ignore = root / ".dockerignore"
    patterns = ignore.read_text().splitlines() if ignore.is_file() else []
    patterns = [p.strip() for p in patterns if p.strip() and not p.startswith("#")]
    return {p for p in exclude_paths(str(root), patterns, dockerfile) if (root / p).is_file()}


@pytest.mark.parametrize("package", ["level1_devops", "level2_pipelines"])
def test_repository_context_keeps_secrets_out(tmp_path, package):
    """The repository's build context for a level's image holds none of the planted files."""
    tree = scratch_copy(tmp_path / "repo", link_venv=False)
    planted = plant(tree, package)

    sent = context(tree, f"{package}/Dockerfile")

    assert not sent & set(planted), f"in the build context: {sorted(sent & set(planted))}"
    # ...and it still holds what the Dockerfile copies.
    assert {"requirements.lock", "pyproject.toml", f"{package}/serve.py"} <= sent


def test_staging_leaves_ignored_files_behind(tmp_path, monkeypatch):
    """`make template` stages only what git would keep: a level's .env never reaches a copy."""
    tree = scratch_copy(tmp_path / "repo", link_venv=False)  # a git repository
    planted = plant(tree, "level2_pipelines")
    monkeypatch.setattr(staging, "REPO_ROOT", tree)

    staged = staging.level_files(staging.LEVELS[2])

    leaked = {f"level2_pipelines/{name}" for name in staged} & set(planted)
    assert not leaked, f"staged for the copy: {sorted(leaked)}"
    assert "serve.py" in staged


@pytest.mark.slow
@pytest.mark.parametrize("level", [1, 2])
def test_copy_context_keeps_secrets_out(tmp_path, level):
    """A copy made by `make template` has an ignore file that keeps the same secrets out."""
    copy = generate(level, tmp_path / "copy", "starter")
    planted = plant(copy, "starter")

    sent = context(copy, "Dockerfile")

    assert not sent & set(planted), f"in the copy's build context: {sorted(sent & set(planted))}"
    assert {"requirements.lock", "pyproject.toml", "starter/serve.py"} <= sent
