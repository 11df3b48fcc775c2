"""Start a service as a subprocess on a free loopback port, wait until it answers, stop it."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO

import httpx

STARTUP_TIMEOUT_S = 60.0


def free_port(preferred: int = 0) -> int:
    """`preferred` if nobody listens there on 127.0.0.1, else a port the OS picks."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


@contextmanager
def running_server(
    module: str,
    env: Mapping[str, str],
    port: int,
    probe: str = "/openapi.json",
    args: Sequence[str] = (),
) -> Iterator[str]:
    """Run `python -m module *args` with `env` added; yield its base URL once `probe` answers."""
    with server_process(module, env, port, probe, args):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def server_process(
    module: str,
    env: Mapping[str, str],
    port: int,
    probe: str = "/openapi.json",
    args: Sequence[str] = (),
) -> Iterator[subprocess.Popen]:
    """`running_server`, yielding the process: it leads a process group of its own, which
    holds its workers too (e.g. to read their memory)."""
    # Output goes to a file, not a pipe: an unread pipe fills up and stalls a chatty server.
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so children stop with it
        )
        try:
            _wait_until_answering(process, log, f"http://127.0.0.1:{port}{probe}", module)
            yield process
        finally:
            stop_group(process)


def _wait_until_answering(process: subprocess.Popen, log: IO[str], url: str, name: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{name} exited early:\n{log.read()}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not answer in {STARTUP_TIMEOUT_S}s") from None
            time.sleep(0.2)


def stop_group(
    process: subprocess.Popen, signum: int = signal.SIGTERM, grace_s: float = 10.0
) -> None:
    """Send `signum` to a process group started with `start_new_session`; SIGKILL whatever is
    still there after `grace_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived their leader
    process.wait()
