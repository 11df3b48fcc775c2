"""How `serve` starts uvicorn: TCP_NODELAY on every connection, even on the listening sockets
of worker processes, which asyncio alone leaves without it; a listening socket for each worker
on the one port; and workers starting together all open the prediction log."""

import asyncio
import os
import pickle
import socket
from multiprocessing.reduction import ForkingPickler

import pytest
import sqlalchemy as sa
import uvicorn
from sqlalchemy.schema import CreateTable

from level2_pipelines import prediction_log
from level2_pipelines.api import open_log
from level2_pipelines.serve import HTTP, ReusePortSocket, main
from level2_pipelines.settings import Settings
from level2_pipelines.tests.unit.test_prediction_log import PROBABILITIES
from shared.contract import EXAMPLE_PAYLOAD


async def answer(scope, receive, send) -> None:
    """The smallest ASGI app: 200, empty body."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def nodelay_of_a_served_connection(http: str) -> int:
    """TCP_NODELAY on the server's side of one answered connection, when uvicorn serves with
    protocol `http` on a socket made the way it makes the one its workers share (proto 0)."""
    listener = socket.socket(socket.AF_INET)  # as uvicorn's Config.bind_socket for workers
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(answer, http=http, lifespan="off", log_level="error"))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection(*listener.getsockname())
    writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")  # accepted and answered

    (connection,) = server.server_state.connections
    nodelay = connection.transport.get_extra_info("socket").getsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY
    )

    writer.close()
    server.should_exit = True
    await serving
    return nodelay


def test_worker_socket_without_the_fix_has_no_tcp_nodelay():
    """uvicorn's own HTTP protocol on a worker's socket leaves TCP_NODELAY off (uvicorn#3149):
    the reason for `serve`'s protocol. If this fails, uvicorn fixed it and the class can go."""
    nodelay = asyncio.run(nodelay_of_a_served_connection("h11"))

    assert nodelay == 0


def test_serve_protocol_sets_tcp_nodelay_on_each_connection():
    """The protocol `serve` gives uvicorn turns TCP_NODELAY on for the connection it serves."""
    nodelay = asyncio.run(nodelay_of_a_served_connection(HTTP))

    assert nodelay != 0


def test_a_worker_losing_the_race_to_create_the_log_tables_still_opens_the_log(
    tmp_path, monkeypatch
):
    """Two workers start together: the one whose CREATE TABLE meets the table the other just
    made opens the log anyway, and its first flush finds the tables and writes."""
    settings = Settings(state_dir=tmp_path)
    real_create, attempts = prediction_log.metadata.create_all, []

    def racing(engine: sa.Engine) -> None:
        attempts.append(engine)
        if len(attempts) == 1:
            real_create(engine)  # the other worker, a moment earlier
            with engine.begin() as connection:  # then this one's CREATE TABLE
                connection.execute(CreateTable(prediction_log.predictions))
        real_create(engine)

    monkeypatch.setattr(prediction_log.metadata, "create_all", racing)
    log = open_log(settings)
    log.record("a" * 32, "1", EXAMPLE_PAYLOAD, "Adelie", PROBABILITIES, 1.0)

    assert log.flush() == 1
    assert len(attempts) == 2


def test_each_worker_gets_a_listening_socket_of_its_own_on_the_port():
    """The supervisor's socket, pickled to a worker as multiprocessing pickles it, opens a new
    one on the same port; both can listen at once (SO_REUSEPORT), so the kernel spreads new
    connections between the workers' sockets."""
    supervisor = ReusePortSocket.bound("127.0.0.1", 0)

    workers = [pickle.loads(bytes(ForkingPickler.dumps(supervisor))) for _ in range(2)]
    for worker in workers:
        worker.listen()

    assert {w.getsockname() for w in workers} == {supervisor.getsockname()}
    # Sockets of their own, not copies of one file descriptor (which share one inode).
    assert len({os.fstat(s.fileno()).st_ino for s in (supervisor, *workers)}) == 3
    with socket.create_connection(supervisor.getsockname(), timeout=5):
        pass  # answered by one of the workers' sockets
    for sock in (supervisor, *workers):
        sock.close()


def test_serve_refuses_zero_workers_naming_the_setting(monkeypatch):
    """LEVEL2_WORKERS=0 stops `serve` before the port is bound, with one line naming it."""
    monkeypatch.setenv("LEVEL2_WORKERS", "0")

    with pytest.raises(SystemExit) as stopped:
        main()

    assert "LEVEL2_WORKERS" in str(stopped.value) and "greater than or equal to 1" in str(
        stopped.value
    )
