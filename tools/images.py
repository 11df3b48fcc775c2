"""Build the levels' container images on any machine with a Docker engine, air-gapped included.

    make level1-image | make level2-image     (python -m tools.images build 1|2)

Each step says what it does, and why, when it has to do more than `docker build`:

1. **The engine.** `docker info` must answer. Where it does not, and this is root on a Debian
   machine, Debian's docker.io is installed if missing and its engine started for the duration
   (then stopped again).
2. **The base image.** BASE_IMAGE if set; otherwise the public `python:3.11-slim` if the engine
   has it or can pull it; otherwise a base made here from Debian's packages (debootstrap
   bookworm with python3 and venv, apt's caches and the docs dropped), `penguins-base:bookworm`.
3. **The wheels.** The level's runtime dependencies at the lock's versions (what `make template`
   pins for a copy), resolved by uv for the base image's own Python (Debian's 3.11.2 needs a
   backport the lock's 3.11.7 does not) and downloaded on the host into state/wheels/levelN/.
   The Dockerfile installs them with `--no-index`: no index is reached from inside a build.
4. **The build**, from the repository root, whose .dockerignore lets in only what the image
   copies (and the wheels).
"""

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

from shared.paths import REPO_ROOT, state_dir
from tools.staging import LEVELS, dependencies, lock_lines

PUBLIC_BASE = "python:3.11-slim"
LOCAL_BASE = "penguins-base:bookworm"
ENGINE_START_TIMEOUT_S = 60


class ImageError(RuntimeError):
    """The image cannot be built here: the message says why and what would fix it."""


def run(*command: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    with contextlib.suppress(subprocess.TimeoutExpired):
        return run("docker", "info", timeout=20).returncode == 0
    return False


def installed(program: str, package: str) -> bool:
    """Whether `program` is on PATH, installing Debian's `package` first where it is missing and
    this is root on a machine with apt (this project's CI machines are)."""
    if shutil.which(program):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"images: installing {package} (apt-get) for {program}")
        run("apt-get", "install", "--yes", "--quiet", package, timeout=900)
    return shutil.which(program) is not None


def start_engine() -> subprocess.Popen | None:
    """The engine answers when this returns: the running one (None), or dockerd started here,
    where this is root on a Debian machine (the process, for `stop_engine`)."""
    if engine_answers():
        return None
    if not installed("docker", "docker.io"):
        raise ImageError("no `docker` client on PATH (Debian: apt install docker.io)")
    if not installed("dockerd", "docker.io") or os.geteuid() != 0:
        raise ImageError(
            "no Docker engine answers (`docker info` fails) and none can be started here: "
            "that needs root and dockerd (Debian: apt install docker.io)"
        )
    log = state_dir() / "images" / "dockerd.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        daemon = subprocess.Popen(["dockerd"], stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + ENGINE_START_TIMEOUT_S
    while not engine_answers():
        if daemon.poll() is not None or time.monotonic() > deadline:
            stop_engine(daemon.pid)
            raise ImageError(f"dockerd did not start; its log is {log}")
        time.sleep(1)
    print(f"images: started dockerd (log {log})")
    return daemon


def stop_engine(pid: int, timeout: float = 30) -> None:
    """Stop a dockerd this project started (SIGTERM, then SIGKILL after `timeout`)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)  # raises once it is gone
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    return
            time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def engine() -> Iterator[None]:
    """A Docker engine for the duration: the running one, or one started here and stopped after."""
    daemon = start_engine()
    try:
        yield
    finally:
        if daemon is not None:
            stop_engine(daemon.pid)
            print("images: stopped the dockerd it started")


def has_image(name: str) -> bool:
    return run("docker", "image", "inspect", name, timeout=30).returncode == 0


def base_image() -> str:
    """The image both stages start from (step 2 of the module's docstring)."""
    if chosen := os.environ.get("BASE_IMAGE"):
        if not has_image(chosen) and run("docker", "pull", chosen, timeout=300).returncode:
            raise ImageError(f"BASE_IMAGE {chosen} is not on this engine and cannot be pulled")
        return chosen
    if has_image(PUBLIC_BASE) or run("docker", "pull", PUBLIC_BASE, timeout=120).returncode == 0:
        return PUBLIC_BASE
    if not has_image(LOCAL_BASE):
        build_local_base()
    return LOCAL_BASE


def build_local_base() -> None:
    """penguins-base:bookworm from Debian's packages, for machines that reach no image registry."""
    if not installed("debootstrap", "debootstrap") or os.geteuid() != 0:
        raise ImageError(
            f"{PUBLIC_BASE} cannot be pulled here, and a base from Debian's packages needs root "
            "and debootstrap (apt install debootstrap); or set BASE_IMAGE to an image you have"
        )
    print(f"images: {PUBLIC_BASE} cannot be pulled; making {LOCAL_BASE} with debootstrap (~1 min)")
    with tempfile.TemporaryDirectory(dir=state_dir()) as scratch:
        root = Path(scratch) / "root"
        made = run(
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(root),
            timeout=900,
        )
        if made.returncode:
            raise ImageError(f"debootstrap failed: {made.stderr.strip()[-500:]}")
        # What only apt and a person reading docs need: ~120 MB of the 275.
        for dropped in (
            "var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
            "usr/share/locale", "usr/share/info",
        ):  # fmt: skip
            shutil.rmtree(root / dropped, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = run("docker", "import", "-", LOCAL_BASE, stdin=tar.stdout)
        tar.wait()
        if imported.returncode:
            raise ImageError(f"docker import failed: {imported.stderr.strip()}")


def python_version(image: str) -> str:
    probe = "import platform; print(platform.python_version())"
    done = run("docker", "run", "--rm", "--network", "none", image, "python3", "-c", probe)
    if done.returncode:
        raise ImageError(f"{image} has no working python3: {done.stderr.strip()}")
    return done.stdout.strip()


def platforms() -> list[str]:
    """pip's --platform flags for a Linux image of this machine's architecture, built on any
    host (a Mac's wheels would not run in it): every manylinux tag glibc 2.36 (Debian bookworm,
    the base images' release) accepts, as pip does not expand one tag to the older ones."""
    machine = {"arm64": "aarch64"}.get(platform.machine(), platform.machine())
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(36, 16, -1)]
    tags += [f"manylinux2014_{machine}", f"linux_{machine}"]
    return [flag for tag in tags for flag in ("--platform", tag)]


def wheels(level: int, python: str) -> Path:
    """The level's locked runtime wheels for `python`, in state/wheels/levelN/ (step 3)."""
    folder = state_dir() / "wheels" / f"level{level}"
    folder.mkdir(parents=True, exist_ok=True)
    pins = folder / "pins.txt"
    pins.write_text("\n".join(lock_lines(dependencies(LEVELS[level])[0])) + "\n")
    requirements = folder / "requirements.txt"
    uv = Path(sys.executable).with_name("uv")
    resolved = run(
        str(uv), "pip", "compile", str(pins), "--python-version", python,
        "--no-header", "--no-annotate", "--quiet", "-o", str(requirements),
    )  # fmt: skip
    if resolved.returncode:
        raise ImageError(f"the lock does not resolve for Python {python}: {resolved.stderr}")
    wanted = requirements.read_text()
    downloaded = run(
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--python-version", python, *platforms(),
        "-r", str(requirements), "-d", str(folder),
        timeout=1800,
    )  # fmt: skip
    if downloaded.returncode:
        raise ImageError(f"downloading the wheels failed: {downloaded.stderr.strip()[-800:]}")
    print(f"images: {len(wanted.splitlines())} locked wheels for Python {python} in {folder}")
    return folder


def tag(level: int) -> str:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    return f"penguins-level{level}:{version}"


def build(level: int, context: Path = REPO_ROOT, name: str | None = None) -> str:
    """Steps 2-4: the level's image from `context` (the repository, or a copy of it)."""
    base = base_image()
    folder = wheels(level, python_version(base))
    there = context / "state" / "wheels" / f"level{level}"
    if there.resolve() != folder.resolve():
        # A copy of the tree (the image tests') gets the wheels as hard links: no second copy.
        shutil.rmtree(there, ignore_errors=True)
        shutil.copytree(folder, there, copy_function=os.link)
    name = name or tag(level)
    dockerfile = context / LEVELS[level].package / "Dockerfile"
    print(f"images: building {name} from {base} (a few minutes the first time)")
    built = run(
        "docker", "build", "--quiet", "--build-arg", f"BASE_IMAGE={base}",
        "-f", str(dockerfile), "-t", name, str(context),
        timeout=1800,
    )  # fmt: skip
    if built.returncode:
        raise ImageError(f"docker build failed:\n{built.stdout[-2000:]}{built.stderr[-2000:]}")
    size = run("docker", "image", "inspect", "--format", "{{.Size}}", name).stdout.strip()
    print(f"images: built {name}, {int(size) / 1e6:,.0f} MB")
    return name


PUBLIC_DEBIAN = "debian:bookworm-slim"


def debian_base() -> str:
    """A Debian bookworm image for the images made from Debian's packages: the public one if
    the engine has it or can pull it, else the one made here (build_local_base)."""
    if (
        has_image(PUBLIC_DEBIAN)
        or run("docker", "pull", PUBLIC_DEBIAN, timeout=120).returncode == 0
    ):
        return PUBLIC_DEBIAN
    if not has_image(LOCAL_BASE):
        build_local_base()
    return LOCAL_BASE


def build_from_debian(
    name: str, folder: Path, base: str | None = None, dockerfile: Path | None = None
) -> str:
    """An image whose Dockerfile installs Debian's packages (level 2's PostgreSQL and
    Prometheus for compose, the dev container's make): apt inside the build reaches the archive
    the way the host does. `base` is a bare Debian (debian_base) unless the image needs more."""
    base = base or debian_base()
    print(f"images: building {name} from {base} with Debian's packages")
    built = run(
        "docker", "build", "--quiet", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
        "-f", str(dockerfile or folder / "Dockerfile"), "-t", name, str(folder),
        timeout=1800,
    )  # fmt: skip
    if built.returncode:
        raise ImageError(f"docker build of {name} failed:\n{built.stderr[-2000:]}")
    return name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a level's container image.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build a level's image").add_argument(
        "level", type=int, choices=[1, 2]
    )
    args = parser.parse_args(argv)
    try:
        with engine():
            build(args.level)
    except ImageError as error:
        sys.exit(f"images: {error}")


if __name__ == "__main__":
    main()
