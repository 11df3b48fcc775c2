"""Start a service as a subprocess on a free loopback port, wait until it answers, stop it."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

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
    module: str, env: Mapping[str, str], port: int, probe: str = "/openapi.json"
) -> Iterator[str]:
    """Run `python -m module` with `env` added; yield its base URL once `probe` answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{module} exited early:\n{process.stdout.read()}")
            try:
                httpx.get(base_url + probe, timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{module} did not answer in {STARTUP_TIMEOUT_S}s") from None
                time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
