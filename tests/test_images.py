"""Each level's image, built for real from a tree holding a team's usual secrets: none inside.

Marked `images` (minutes; `make test-images`, which `.ci/run` runs). The tree is this checkout's
files (what a clone holds) with secret-shaped files planted where people leave them, each
holding one marker value; the image is built from it as `make levelN-image` builds, then its
whole file system is exported and read: no planted path, and the marker value in no file. Where
no Docker engine can run, the tests skip and say why.
"""

import secrets
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from shared.paths import state_dir
from tests.test_build_context import PLANTED
from tests.test_readme_walkthrough import scratch_copy
from tools import images

# A first build makes the base image and downloads the wheels: minutes, not seconds.
pytestmark = [pytest.mark.images, pytest.mark.timeout(1800)]

PACKAGES = {1: "level1_devops", 2: "level2_pipelines"}
# What each image should weigh at most, in MB: printed beside the measured size.
SIZE_AIM_MB = {1: 350, 2: 700}


def exported_files(image: str) -> tarfile.TarFile:
    """The image's file system as a tar stream (a container created, exported, removed)."""
    container = subprocess.run(
        ["docker", "create", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        out = tempfile.TemporaryFile()  # noqa: SIM115 (the returned archive reads from it)
        subprocess.run(["docker", "export", container], stdout=out, check=True, timeout=600)
        out.seek(0)
        return tarfile.open(fileobj=out)
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True)


@pytest.mark.parametrize("level", [1, 2])
def test_image_holds_no_secret(engine, level):
    """An image built from a tree with planted secrets holds none of their files or values."""
    marker = f"planted-{secrets.token_hex(16)}"
    scratch = Path(tempfile.mkdtemp(prefix="image-", dir=state_dir()))
    name = f"penguins-level{level}:secret-check"
    try:
        tree = scratch_copy(scratch / "tree", link_venv=False)
        planted = {p.format(pkg=PACKAGES[level]) for p in PLANTED}
        for relative in planted:
            (tree / relative).parent.mkdir(parents=True, exist_ok=True)
            (tree / relative).write_text(f"LEVEL2_ADMIN_TOKEN={marker}\n")

        images.build(level, context=tree, name=name)

        leaked_paths, leaked_values = [], []
        with exported_files(name) as files:
            for member in files:
                path = member.name.removeprefix("./")
                if path.startswith("app/") and path.removeprefix("app/") in planted:
                    leaked_paths.append(path)
                readable = member.isfile() and member.size < 50_000_000
                if readable and marker.encode() in files.extractfile(member).read():
                    leaked_values.append(path)
        assert not leaked_paths, f"planted files inside the image: {leaked_paths}"
        assert not leaked_values, f"the planted secret's value inside the image: {leaked_values}"
    finally:
        subprocess.run(["docker", "rmi", "--force", name], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.parametrize("level", [1, 2])
def test_image_runs_its_level(engine, level):
    """The image built as `make levelN-image` builds imports its service and stays in its aim."""
    name = images.build(level)

    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", name, "python", "-c",
         f"import {PACKAGES[level]}.serve"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    size_mb = int(
        subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", name],
            capture_output=True, text=True, check=True,
        ).stdout
    ) / 1e6  # fmt: skip

    assert done.returncode == 0, done.stderr
    print(f"{name}: {size_mb:,.0f} MB (aim {SIZE_AIM_MB[level]} MB)")
