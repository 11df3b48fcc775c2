"""Serve the registry's champion and follow it: `make level2-serve`, or
`python -m level2_pipelines.serve`.

Settings are checked before the port is bound: a placeholder admin token, or a host other
machines can reach without a token of your own, is one clear line and a non-zero exit. Without
LEVEL2_ADMIN_TOKEN the service makes a random token in the state folder (mode 0600), where the
pipeline and `make level2-rollback` on this machine find it.

With LEVEL2_WORKERS=N (N > 1) uvicorn's supervisor starts N worker processes, each building
the app from the environment (`api.app_from_env`), loading the champion itself and listening
on the port with a socket of its own (`ReusePortSocket`), so the kernel spreads connections.
The admin token and an empty folder where their metrics meet (`metrics.py`) are made here,
before they start. Each worker appends to the prediction log from its own buffer: SQLite, in
WAL mode with a 30 s busy timeout, takes one writer at a time, each flush one short
transaction; many workers, or several machines, want PostgreSQL (LEVEL2_PREDICTION_LOG_URI).
"""

import os
import shutil
import socket
import sys
from asyncio import BaseTransport

import uvicorn
from pydantic import ValidationError
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.supervisors import Multiprocess

from level2_pipelines.settings import Settings

APP = "level2_pipelines.api:app_from_env"
# By name, as the app: each worker imports it (this module may be running as __main__).
HTTP = "level2_pipelines.serve:NoDelayHTTPProtocol"


class NoDelayHTTPProtocol(AutoHTTPProtocol):
    """uvicorn's HTTP protocol, with TCP_NODELAY set on every connection it is given.

    asyncio sets TCP_NODELAY only on sockets whose `proto` is IPPROTO_TCP; workers accept on
    sockets made with proto 0 (uvicorn's own, Kludex/uvicorn#3149, and ReusePortSocket), so
    without this an answer written in two parts waits for the client's delayed ACK: ~40 ms
    per keep-alive request.
    """

    def connection_made(self, transport: BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


class ReusePortSocket(socket.socket):
    """The service's port, opened by each worker for itself (SO_REUSEPORT).

    uvicorn's workers accept on one socket their supervisor opened: every idle worker wakes on
    a new connection and the first takes every connection waiting (asyncio accepts up to the
    backlog at once), so connections opened together, as a pool opens them, often all land on
    one worker. With a socket each, the kernel spreads new connections between them (by a hash
    of the client's address and port). The supervisor holds one bound, never listening, to
    keep the port; each worker receives it pickled, which opens a new one on the same port.
    Any process of the same user may join the group: this is a service for one machine user.
    """

    @classmethod
    def bound(cls, host: str, port: int) -> "ReusePortSocket":
        sock = cls(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        return sock

    def __reduce__(self):
        host, port = self.getsockname()[:2]
        return type(self).bound, (host, port)


def run_workers(settings: Settings) -> None:
    """What `uvicorn.run(..., workers=N)` does (its supervisor restarts a worker that dies),
    with a listening socket of each worker's own."""
    config = uvicorn.Config(
        APP,
        factory=True,
        workers=settings.workers,
        http=HTTP,
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
    )
    with ReusePortSocket.bound(settings.host, settings.port) as port:
        Multiprocess(config, sockets=[port]).run()


def share_between_workers(settings: Settings) -> None:
    """Make, once and before any worker starts, what the workers share."""
    folder = settings.worker_metrics_dir
    shutil.rmtree(folder, ignore_errors=True)  # counts from a previous run are not this one's
    folder.mkdir(parents=True)
    # prometheus-client reads it when first imported: in each worker, after this.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as error:
        first = error.errors()[0]
        field = f"LEVEL2_{str(first['loc'][0]).upper()}: " if first["loc"] else ""
        sys.exit(f"level 2 serve: cannot start: {field}{first['msg']}")
    settings.admin_token_value(create=True)  # a random one in the state folder, if none is set
    if settings.workers > 1:
        share_between_workers(settings)
    workers = f" ({settings.workers} workers)" if settings.workers > 1 else ""
    print(
        f"level 2 serve: following {settings.model_name}@champion at "
        f"http://{settings.host}:{settings.port}{workers}"
    )
    where = "LEVEL2_ADMIN_TOKEN" if settings.admin_token is not None else settings.admin_token_file
    print(f"level 2 serve: admin endpoints take the bearer token in {where}")
    if settings.workers > 1:
        run_workers(settings)
        return
    # An import string and a factory, as each worker builds its app.
    uvicorn.run(
        APP,
        factory=True,
        http=HTTP,
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
    )


if __name__ == "__main__":
    main()
