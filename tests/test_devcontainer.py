"""The dev container (.devcontainer/): read against the Makefile, and run for real.

The JSON is checked by reading it, not by the devcontainer CLI (an npm package this project
does not depend on). The run, marked `images` (minutes; `make test-devcontainer`), does what an
editor does on "Reopen in Container": it builds the image the JSON names, starts a container
on a copy of the repository, runs the JSON's postCreateCommand in it, then checks that the
environment it made works. Where no Docker engine can run, it skips and says why.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from shared.paths import REPO_ROOT, state_dir
from tests.test_readme_walkthrough import scratch_copy
from tools import images

FOLDER = REPO_ROOT / ".devcontainer"
CONFIG = json.loads((FOLDER / "devcontainer.json").read_text())
# What the host needs to reach the package index (its pip settings, certificates, proxies),
# handed to the container by the test as the host has them: none of it is in the dev container.
INDEX_SETTINGS = ("PIP_", "UV_", "SSL_CERT_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
PROXIES = ("http_proxy", "https_proxy", "no_proxy")
# pip's configuration files, with their folders: a configuration may name a file beside it.
PIP_CONFIGS = ["/etc/pip.conf", "/etc/xdg/pip", "~/.config/pip", "~/.pip"]


def make_help() -> str:
    return subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"NO_COLOR": "1"},
    ).stdout


def test_devcontainer_forwards_every_port_make_help_names():
    """Each port a target's help names (the services, the Prefect and MLflow UIs) is forwarded."""
    named = {int(port) for port in re.findall(r"(?:127\.0\.0\.1)?:(\d{4})\b", make_help())}

    assert named, "make help names no port: the pattern no longer matches its lines"
    assert named <= set(CONFIG["forwardPorts"]), named - set(CONFIG["forwardPorts"])
    assert set(map(int, CONFIG["portsAttributes"])) == set(CONFIG["forwardPorts"])


def test_devcontainer_sets_up_with_a_make_target():
    """The postCreateCommand is `make <target>` for a target `make help` lists."""
    command = shlex.split(CONFIG["postCreateCommand"])

    assert command[0] == "make"
    assert re.search(rf"^\s+{re.escape(command[1])}\s", make_help(), re.M), command


def index_access() -> list[str]:
    """`docker run` options that give the container the host's way to the package index."""
    names = [n for n in os.environ if n.startswith(INDEX_SETTINGS) or n.lower() in PROXIES]
    paths = {os.environ[n] for n in names if os.environ[n].startswith("/")}
    paths |= {os.path.expanduser(p) for p in PIP_CONFIGS}
    options = [f"--env={name}" for name in sorted(names)]
    options += [f"--volume={p}:{p}:ro" for p in sorted(paths) if os.path.exists(p)]
    return options


def in_container(container: str, command: str | list[str], timeout: float = 900):
    """`command` run in the container's workspace, as a string through the shell or as a list."""
    argv = ["sh", "-c", command] if isinstance(command, str) else command
    return subprocess.run(
        ["docker", "exec", container, *argv], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.images
@pytest.mark.timeout(1800)
def test_devcontainer_sets_up_the_workshop(engine):
    """The JSON's postCreateCommand, run in its image on a copy of the repository, makes an
    environment that imports level 2's pipeline and runs `make help`."""
    scratch = Path(tempfile.mkdtemp(prefix="devcontainer-", dir=state_dir()))
    name, container = "penguins-devcontainer:check", f"penguins-devcontainer-{scratch.name}"
    build = CONFIG["build"]
    workspace = f"/workspaces/{REPO_ROOT.name}"
    try:
        tree = scratch_copy(scratch / "repo", link_venv=False)
        images.build_from_debian(
            name, FOLDER / build["context"], images.base_image(), FOLDER / build["dockerfile"]
        )
        subprocess.run(
            ["docker", "run", "--detach", "--name", container, "--network", "host",
             f"--volume={tree}:{workspace}", f"--workdir={workspace}", *index_access(),
             name, "sleep", "infinity"],
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip

        made = in_container(container, CONFIG["postCreateCommand"])
        imported = in_container(
            container, [".venv/bin/python", "-c", "import level2_pipelines.pipeline"]
        )
        helped = in_container(container, ["make", "help"], timeout=60)

        assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
        assert imported.returncode == 0, imported.stderr[-2000:]
        assert helped.returncode == 0 and "Usage: make <target>" in helped.stdout, helped.stderr
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True)
        subprocess.run(["docker", "rmi", "--force", name], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
