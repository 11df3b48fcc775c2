"""Every command the docs show runs: the console blocks of the root README, of each level's
README and of every page under `docs/`, run in order in a scratch copy of the tree, their shown
output checked.

Marked `walkthrough` (minutes; not part of `make test`): `make test-readme` runs it, and
`.ci/run` runs that. What is run, and how (`tests/readme_commands.py` reads the blocks):

- **The copy.** The files git knows (tracked, or new and not ignored) as they are in the working
  tree, copied with their times into a temporary folder, so what the commands write under
  `state/` (or next to the copy, as `make template ... DEST=../x` does) never touches the
  checkout. The folder is short (`/tmp/walk-...`: a Jupyter kernel's socket path under the
  drills' lab must fit in 107 bytes) and removed at the end; the copy is a git repository with
  every file staged, since `make template` copies what git keeps. `.venv` is a link to the
  checkout's environment; the copy's lock and pyproject keep their times, so `make` finds the
  install stamp up to date and installs nothing (checked first: a `make` that would set up the
  environment stops the test before it writes there). A doc in `OWN_ENVIRONMENT` sets its
  environment up itself, as a reader without make does: its copy has no `.venv` at all.
- **The shell.** Each command runs in `bash -c` at the top of the copy, as a person at the
  top of the repository types it (a `cd` lasts for its own line); `export NAME=value` lines
  carry over to the doc's later commands. The environment is the Makefile's (its `export`
  lines, with the copy's paths), without our own `PYTHONPATH`, `MLOPS_STATE_DIR`, `LEVEL*` and
  make variables; `PYTHONPATH` is the copy, because the shared `.venv` has the checkout
  installed in editable mode and subprocesses (the notebook's kernel, Prefect's runner) would
  import the checkout's code instead. Output is unbuffered, as on a terminal.
- **Ports and databases.** Every service and local server gets a free loopback port through
  its setting (`LEVEL0_PORT`, `LEVEL1_PORT`, `LEVEL2_PORT`, `LEVEL2_PREFECT_PORT`,
  `LEVEL2_MLFLOW_UI_PORT`, team mode's `LEVEL2_TEAM_*_PORT`), and the doc's default port (8000,
  8001, 8002, 4200, 5000; 4210, 5010, 8012, 9090) is rewritten to it in later commands
  (`127.0.0.1:8001`, `--port 8001`) and in the output shown. Nothing another process on this
  machine serves on a default port is reached. Team mode's PostgreSQL databases get a prefix
  of their own (`LEVEL2_TEAM_DB_PREFIX`), and `make team-down DROP=1` drops them at the end.
- **Servers.** A command that serves until Ctrl-C (`make levelN-serve`, `python -m
  levelN_....serve`) starts in the background in its own process group; the next command runs
  once it answers. It keeps running for the doc's later commands (the `curl` lines, the
  pipeline's deploy step, the load generator) until the doc starts that level's service
  again ("restart the service") or its last command has run; then its group is stopped.
  `make level2-up` is followed by `make level2-down` at the end, also on failure, and any
  process whose pid file it left is stopped after that. Every command has a time limit.
- **Output.** Every line a doc shows after a `$ ` command is looked for, in order, in what
  the command printed (stdout and stderr together; a server's in its log once it answers),
  except a lone `...`. Matching ignores what changes between runs: `...` stands for any text
  (a path's start, a shortened float, elided JSON), a run of 7+ hex digits for any hex (model
  versions, hashes, run and batch ids), any number for any number (timings, counts, registry
  versions, Makefile line numbers), any run of spaces for any run of spaces; the remaining
  words must be there as shown. A command whose shown output ends in `make: *** ... Error N`
  must fail; every other command must succeed.
- **What is not run, and why: written here, never in what a reader sees.** Two kinds only:
  a block whose fence follows `<!-- walkthrough: skip KEY -->` (invisible in the rendered
  doc), KEY one of `SKIP_REASONS` (a Kubernetes cluster); and a command `RUN_BY_CI` runs as
  a step of its own (`make test`, `make test-compose`). Drills,
  the demo, the scorecard and a copied level's own `make test` run for real. The test prints
  every command it did not run with its reason, so nothing is skipped silently; the quick tests
  below (part of `make test`) hold the comments and the tables to these rules.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from shared.servers import free_port, stop_group
from tests.makefiles import makefile_text
from tests.readme_commands import (
    Command,
    bare,
    checked_lines,
    expects_failure,
    extract,
    missing_lines,
)

ROOT = Path(__file__).resolve().parents[1]
# Every doc a reader is sent to: the READMEs and the pages under docs/ (those with console blocks
# are walked; `test_every_doc_with_commands_is_walked` keeps the list whole).
READMES = [
    "README.md",
    "level0_notebook/README.md",
    "level1_devops/README.md",
    "level2_pipelines/README.md",
]
DOCS = READMES + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
WALKED = [doc for doc in DOCS if extract((ROOT / doc).read_text())]
# Why a block after `<!-- walkthrough: skip KEY -->` is not run, by KEY, and the commands such a
# block may hold (a skip covers nothing else).
SKIP_REASONS = {
    "cluster": "needs a Kubernetes cluster, none here (`make k8s-validate` checks the manifests)",
}
SKIPPABLE = {
    "cluster": re.compile(r"kubectl\b"),
}
# Commands CI runs as steps of their own (`.ci/run`), by their text without a trailing comment.
RUN_BY_CI = {
    "make test": "CI runs it on its own, as the step after `make lint`",
    ".venv/bin/python -m pytest -n 2 --dist loadgroup": "`make test`, which CI runs on its own",
    "make level1-image": "`make test-images` builds it the same way (tools/images.py), a CI step",
    "make level2-image": "`make test-images` builds it the same way (tools/images.py), a CI step",
    "make compose-up": "`make test-compose` brings it up the same way (tools/compose.py)",
    "make compose-status": "`make test-compose` shows it the same way (tools/compose.py)",
    "make compose-down VOLUMES=1": "`make test-compose` takes it down the same way, a CI step",
}
# Docs that set the environment up themselves: their copy has no link to the checkout's .venv.
OWN_ENVIRONMENT = {"docs/without-make.md"}
COMMAND_TIMEOUT_S = 900
SERVER_START_TIMEOUT_S = 180
# The README's default ports, by the setting that moves each one.
DEFAULT_PORTS = {
    "LEVEL0_PORT": 8000,
    "LEVEL1_PORT": 8001,
    "LEVEL2_PORT": 8002,
    "LEVEL2_PREFECT_PORT": 4200,
    "LEVEL2_MLFLOW_UI_PORT": 5000,
    "LEVEL2_TEAM_PREFECT_PORT": 4210,
    "LEVEL2_TEAM_MLFLOW_PORT": 5010,
    "LEVEL2_TEAM_SERVICE_PORT": 8012,
    "LEVEL2_TEAM_PROMETHEUS_PORT": 9090,
}
SERVER = re.compile(r"\b(?:make level(?P<target>\d)-serve|-m level(?P<module>\d)_\w+\.serve)\b")
EXPORT = re.compile(r"export (?P<name>\w+)=(?P<value>\S+)(?:\s+#.*)?")


def scratch_copy(dest: Path, link_venv: bool = True) -> Path:
    """The working tree's files git knows, with their times, and a link to the checkout's .venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    if link_venv:
        (dest / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    for git in (["init", "--quiet"], ["add", "--all"]):
        subprocess.run(["git", "-C", str(dest), *git], capture_output=True, check=True)
    return dest


def command_env(copy: Path, ports: dict[str, int]) -> dict[str, str]:
    exports = dict(re.findall(r"^export (\w+) := (.*)$", makefile_text(copy / "Makefile"), re.M))
    ours = {"PYTHONPATH", "VIRTUAL_ENV", "MLOPS_STATE_DIR", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}
    kept = {
        name: value
        for name, value in os.environ.items()
        if name not in ours and not name.startswith(("LEVEL", "PYTEST_"))
    }
    return (
        kept
        | {name: value.replace("$(CURDIR)", str(copy)) for name, value in exports.items()}
        | {name: str(port) for name, port in ports.items()}
        | {"PYTHONPATH": str(copy), "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "200"}
        # Team mode's databases are named for this walkthrough, and dropped at its end.
        | {"LEVEL2_TEAM_DB_PREFIX": f"walk_{uuid.uuid4().hex[:8]}"}
    )


def short(command: Command) -> str:
    """The command's first line without its comment, for the walkthrough's report."""
    return re.sub(r"\s+#.*", "", command.text.splitlines()[0])


def not_run(command: Command) -> str:
    """Why the walkthrough does not run `command`, from the test's tables; "" when it runs it."""
    if command.skip:
        return SKIP_REASONS[command.skip]
    return RUN_BY_CI.get(bare(command), "")


class Walkthrough:
    """One README's commands, run in order in one scratch copy."""

    def __init__(self, copy: Path, logs: Path):
        self.copy, self.logs = copy, logs
        self.ports = {name: free_port() for name in DEFAULT_PORTS}
        self.env = command_env(copy, self.ports)
        self.servers: dict[int, tuple[subprocess.Popen, Path]] = {}
        self.report: list[str] = []

    def moved(self, text: str) -> str:
        """`text` with each README default port replaced by the one this walkthrough uses."""
        for name, default in DEFAULT_PORTS.items():
            text = re.sub(rf"(127\.0\.0\.1:|--port ){default}\b", rf"\g<1>{self.ports[name]}", text)
        return text

    def shell(self, text: str, timeout: float = COMMAND_TIMEOUT_S) -> tuple[int, str]:
        process = subprocess.Popen(
            ["bash", "-c", text],
            cwd=self.copy,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(process, grace_s=15)
            pytest.fail(f"{text!r} did not finish in {timeout:.0f} s")
        finally:
            stop_group(process, grace_s=15)  # anything it left in its group
        return process.returncode, output

    def run(self, command: Command) -> None:
        text, shown = self.moved(command.text), [self.moved(s) for s in checked_lines(command)]
        where = f"line {command.line}: {command.text!r}"
        started = time.monotonic()
        if reason := not_run(command):
            self.report.append(f"not run  {short(command)}  ({reason})")
            return
        if export := EXPORT.fullmatch(text):
            self.env[export["name"]] = export["value"]
        elif server := SERVER.search(text):
            self.serve(int(server["target"] or server["module"]), text, shown, where)
        else:
            returncode, output = self.shell(text)
            failing = expects_failure(command)
            assert (returncode != 0) == failing, (
                f"{where}: exit status {returncode}, expected {'failure' if failing else 0}:\n"
                + output[-4000:]
            )
            missing = missing_lines(shown, output)
            assert not missing, f"{where}: shown but not printed: {missing}\n{output[-4000:]}"
        took = time.monotonic() - started
        self.report.append(f"{took:6.1f} s  {short(command)}")

    def serve(self, level: int, text: str, shown: list[str], where: str) -> None:
        """Start a service in the background; return once it answers and has printed `shown`."""
        if level in self.servers:  # the README restarts it
            stop_group(self.servers.pop(level)[0], grace_s=15)
        log = self.logs / f"level{level}-serve-{len(self.report)}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                ["bash", "-c", text],
                cwd=self.copy,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.servers[level] = (process, log)
        url = f"http://127.0.0.1:{self.ports[f'LEVEL{level}_PORT']}/openapi.json"
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"{where}: exited:\n{log.read_text()[-4000:]}"
            with contextlib.suppress(httpx.TransportError):
                httpx.get(url, timeout=1)
                break
            assert time.monotonic() < deadline, f"{where}: no answer at {url}"
            time.sleep(0.3)
        missing = missing_lines(shown, log.read_text())
        assert not missing, f"{where}: shown but not printed: {missing}\n{log.read_text()[-4000:]}"

    def close(self) -> None:
        """Stop the services, then what `make level2-up` and `make team-up` started (dropping
        team mode's databases); nothing is left running."""
        for process, _ in self.servers.values():
            stop_group(process, grace_s=15)
        if (self.copy / "state" / "team").exists():
            self.shell("make team-down DROP=1", timeout=300)
        servers = self.copy / "state" / "level2" / "servers"
        if any(servers.glob("*.pid")):
            self.shell("make level2-down", timeout=120)
        for pid_file in servers.glob("*.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def assert_make_installs_nothing(copy: Path) -> None:
    """`make` in the copy finds the shared .venv's stamp up to date: nothing is set up there."""
    done = subprocess.run(
        ["make", "-n", "setup"], cwd=copy, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "setting up" not in done.stdout, (
        "make in the scratch copy would set up the shared .venv (run `make setup` here first):\n"
        + done.stdout
    )


@pytest.mark.walkthrough
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("readme", WALKED)
def test_every_readme_command_runs(readme, tmp_path):
    """Each command of the doc's console blocks runs in order in a scratch copy and prints the
    lines shown after it; a command that is not run has its reason in this test's tables."""
    base = Path(tempfile.mkdtemp(prefix="walk-"))
    copy = scratch_copy(base / "repo", link_venv=readme not in OWN_ENVIRONMENT)
    if readme not in OWN_ENVIRONMENT:
        assert_make_installs_nothing(copy)
    assert shutil.which("curl"), "the docs use curl"
    commands = extract((copy / readme).read_text())
    walkthrough = Walkthrough(copy, logs=tmp_path)
    started = time.monotonic()

    try:
        for command in commands:
            walkthrough.run(command)
    finally:
        walkthrough.close()
        shutil.rmtree(base, ignore_errors=True)
        print(f"{readme}: {time.monotonic() - started:.0f} s", *walkthrough.report, sep="\n  ")

    assert commands
