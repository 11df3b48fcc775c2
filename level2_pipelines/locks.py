"""One at a time, across processes and, for a team, across hosts: what the registry's decisions
and the drift monitor's ask for a retraining hold while they read, then write.

On one machine a file lock in the state folder does it. Workers on several hosts or in
containers each have a folder of their own, so a file excludes nothing there: with a PostgreSQL
database configured (`Settings.resolved_lock_uri`, by default the prediction log's when it is
PostgreSQL) the lock is a session advisory lock in that database. It is held by a connection of
its own, so PostgreSQL releases it when that connection ends: a holder that is killed, or whose
host dies (the server's keepalive notices within ~a minute), never leaves it held. Waiting is
bounded (`decision_wait_s`); a wait that runs out names the holder.
"""

import hashlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10  # PostgreSQL that does not answer this fast is reported, not waited on
POLL_S = 0.5  # between two tries at a lock someone else holds
# How soon PostgreSQL drops the connection of a holder whose host went away (idle + interval
# x count, the server's side of the connection): then the lock is free again.
KEEPALIVE = {"tcp_keepalives_idle": 20, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 4}


class LockTimeout(RuntimeError):
    """Someone else held the lock for longer than we may wait; the message names the holder."""


class LockUnavailable(RuntimeError):
    """The lock's database cannot be reached: nobody can say who holds it."""


@contextmanager
def one_at_a_time(uri: str | None, file: Path, name: str, wait_s: float) -> Iterator[None]:
    """Hold lock `name` for the block: a PostgreSQL advisory lock in database `uri`, or with no
    `uri` the file lock `file`. Waits at most `wait_s` seconds for another holder."""
    if uri is None:
        with _file_lock(file, wait_s):
            yield
    else:
        with _advisory_lock(uri, name, wait_s):
            yield


@contextmanager
def _file_lock(file: Path, wait_s: float) -> Iterator[None]:
    file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(file)
    try:
        lock.acquire(timeout=wait_s)
    except Timeout:
        raise LockTimeout(
            f"another process has held {file} for {wait_s:.0f} s (LEVEL2_DECISION_WAIT_S); "
            "if no level 2 process is running, delete that file"
        ) from None
    try:
        yield
    finally:
        lock.release()


def lock_key(name: str) -> int:
    """The advisory lock's 64-bit key for `name`, the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def holder_name(name: str) -> str:
    """What the holder's connection calls itself (`application_name`): a waiter that gives up
    names it. PostgreSQL keeps 63 bytes of it."""
    return f"level2 pid {os.getpid()} on {socket.gethostname()}: {name}"[:63]


@contextmanager
def _advisory_lock(uri: str, name: str, wait_s: float) -> Iterator[None]:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    url = sa.make_url(uri)
    where = f"PostgreSQL {url.host or 'localhost'}:{url.port or 5432}/{url.database}"
    key = lock_key(name)
    engine = sa.create_engine(
        url,
        poolclass=NullPool,  # one connection, closed with the lock: never back in a pool
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": holder_name(name)},
    )
    try:
        try:
            connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            for setting, value in KEEPALIVE.items():
                connection.execute(sa.text(f"SET {setting} = {int(value)}"))
        except sa.exc.DBAPIError as error:
            problem = _first_line(error)
            raise LockUnavailable(f"lock {name!r}: cannot reach {where}: {problem}") from None
        with connection:
            _acquire(connection, key, name, where, wait_s)
            try:
                yield
            finally:
                try:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                except sa.exc.DBAPIError as error:
                    # The connection is gone, and with it the lock: PostgreSQL released it.
                    log.warning("lock %r: released with its lost connection (%s)", name, error)
    finally:
        engine.dispose()


def _acquire(connection, key: int, name: str, where: str, wait_s: float) -> None:
    import sqlalchemy as sa

    deadline = time.monotonic() + wait_s
    try_lock = sa.text("SELECT pg_try_advisory_lock(:key)")
    try:
        while not connection.execute(try_lock, {"key": key}).scalar():
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"lock {name!r} in {where} is still held after {wait_s:.0f} s "
                    f"(LEVEL2_DECISION_WAIT_S) by {_holder(connection, key)}"
                )
            time.sleep(POLL_S)
    except sa.exc.DBAPIError as error:
        raise LockUnavailable(f"lock {name!r}: {where} failed: {_first_line(error)}") from None


def _holder(connection, key: int) -> str:
    """Who holds the advisory lock `key`, as PostgreSQL sees them, and how to free it."""
    import sqlalchemy as sa

    row = connection.execute(
        sa.text(
            "SELECT a.pid, a.application_name, a.client_addr, a.state_change "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid::bigint = :high AND l.objid::bigint = :low"
        ),
        {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF},
    ).first()
    if row is None:
        return "a holder that has just let go"
    pid, application, address, since = row
    idle = f", idle since {since.astimezone(UTC):%H:%M:%S} UTC" if since else ""
    return (
        f"{application or 'an unnamed connection'} (PostgreSQL backend {pid} from "
        f"{address or 'a local socket'}{idle}): if that process is stuck, stop it (its lock goes "
        f"with its connection) or run SELECT pg_terminate_backend({pid})"
    )


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
