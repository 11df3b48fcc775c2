"""Prometheus for level 2: its binaries found (or fetched once), its configuration, and the
alert rules checked the way Prometheus reads them.

    python -m level2_pipelines.ops.prometheus install | check    (`make test-alerts`: check)

`install` puts Debian's `prometheus` package (which ships both `prometheus` and `promtool`)
under the state folder: `apt-get download` and `dpkg -x`, no root, nothing installed system
wide, gone with `make clean`. A `prometheus` on PATH wins. `check` runs promtool over what
Prometheus will load: the rules (`check rules`), their unit tests, which fire and do not fire
each alert (`test rules`), and the configurations of team mode and compose (`check config`,
which reads the rule files they name).
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from shared.paths import state_dir

INFRA = Path(__file__).resolve().parents[1] / "infra" / "prometheus"
RULES = INFRA / "alerts.yml"
RULE_TESTS = INFRA / "alerts.test.yml"
COMPOSE_CONFIG = INFRA / "prometheus.yml"
JOB = "penguins-level2"  # the scrape job, which the rules name
PACKAGE = "prometheus"  # Debian's: 2.42 on bookworm
TIMEOUT_S = 300


class PrometheusMissing(RuntimeError):
    """No Prometheus here and none can be fetched: the message says what would fix it."""


def installed_dir() -> Path:
    return state_dir() / "tools" / "prometheus"


def binary(name: str) -> str | None:
    """`prometheus` or `promtool`: on PATH, else the copy `install` unpacked; None if neither."""
    unpacked = installed_dir() / "usr" / "bin" / name
    return shutil.which(name) or (str(unpacked) if unpacked.is_file() else None)


def install() -> str:
    """promtool's path, after fetching Debian's package into the state folder if needed."""
    found = binary("promtool")
    if found is not None:
        return found
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        raise PrometheusMissing(
            "no promtool on PATH and no apt-get to fetch it: install Prometheus "
            "(https://prometheus.io/download/), whose archive ships promtool"
        )
    print(f"prometheus: fetching Debian's {PACKAGE} package into {installed_dir()}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        run(["apt-get", "download", PACKAGE], cwd=scratch)
        (package,) = Path(scratch).glob(f"{PACKAGE}_*.deb")
        unpacking = installed_dir().with_name("prometheus.partial")
        shutil.rmtree(unpacking, ignore_errors=True)
        unpacking.parent.mkdir(parents=True, exist_ok=True)
        run(["dpkg", "-x", str(package), str(unpacking)])
        shutil.rmtree(installed_dir(), ignore_errors=True)
        unpacking.rename(installed_dir())  # whole or not at all
    return str(installed_dir() / "usr" / "bin" / "promtool")


def config(target: str, scrape_interval: str = "15s") -> str:
    """A configuration scraping the service at `target` and loading the alert rules."""
    return (
        "global:\n"
        f"  scrape_interval: {scrape_interval}\n"
        f"  evaluation_interval: {scrape_interval}\n"
        "rule_files:\n"
        f"  - {RULES}\n"
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )


def run(command: list[str], cwd: str | None = None) -> str:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    output = (done.stdout + done.stderr).strip()
    if done.returncode:
        raise subprocess.CalledProcessError(done.returncode, command, output)
    return output


def check() -> None:
    """promtool over the rules, their unit tests and both configurations; raises on the first
    failure, with promtool's own words."""
    promtool = install()
    with tempfile.TemporaryDirectory() as scratch:
        team_config = Path(scratch) / "team-prometheus.yml"
        team_config.write_text(config("127.0.0.1:8002"))
        for command in (
            [promtool, "check", "rules", str(RULES)],
            [promtool, "test", "rules", str(RULE_TESTS)],
            [promtool, "check", "config", str(team_config)],
            [promtool, "check", "config", str(COMPOSE_CONFIG)],
        ):
            print(f"prometheus: promtool {' '.join(command[1:3])} {Path(command[3]).name}")
            print(run(command), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m level2_pipelines.ops.prometheus")
    parser.add_argument("command", choices=["install", "check"])
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            print(f"prometheus: promtool at {install()}")
        else:
            check()
    except (PrometheusMissing, subprocess.CalledProcessError) as error:
        sys.exit(f"prometheus: {error}\n{getattr(error, 'output', '') or ''}".rstrip())


if __name__ == "__main__":
    main()
