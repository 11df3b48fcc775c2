"""The incoming watcher: it turns a batch file landed in the incoming folder into a pipeline
run, handing it to the warm worker when one is ready, else emitting the event the on-new-data
deployment waits for (`triggers.py`). Prefect has no file sensor, so this small loop polls.

Landing a file: write it under a name starting with "." (ignored), then rename it, or copy it
in whole; the watcher also waits until its size and time have held still for
LEVEL2_INCOMING_SETTLE_S (2 s), so a writer that pauses is not read half-way. Files are known
by their content, so a daily export under a fixed name is seen each time its content changes.
A directory, FIFO, socket or symbolic link under a batch's name is named once and left alone
(a FIFO is never opened); a file over LEVEL2_INCOMING_MAX_BYTES (50 MB) is moved unread to the
quarantine folder's incoming/ with its reason. A send that fails (the API away) is tried again
at the next polls, three times in all. An error never ends the watching: it is said, and the
watcher beats on (servers/watcher.json), which `make level2-status` reads.
"""

import hashlib
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prefect.events import emit_event

from level2_pipelines.ops import warm_runs
from level2_pipelines.ops.processes import write_heartbeat
from level2_pipelines.settings import Settings

BATCH_LANDED = "penguins.batch.landed"
ROUTE = "penguins.batch.route"  # who runs the landed batch: "warm-worker" or "deployment"
BATCH_SUFFIXES = {".csv", ".parquet"}
WATCH_EVERY_S = 1.0


Stamp = tuple[int, int]  # a file's size and modification time
SEND_TRIES = 3  # a landed file whose run cannot be started is tried this many times
KINDS = {  # what a name in the incoming folder can be besides a file, and why it is not taken
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (never opened: reading it would wait for a writer)",
    stat.S_IFLNK: "a symbolic link (land the file itself: a link can point anywhere)",
    stat.S_IFSOCK: "a socket",
}


@dataclass
class Seen:
    stamp: Stamp
    since: float  # when this poll's clock first saw the file at this stamp


def settled_files(
    incoming: Path,
    seen: dict[Path, Seen],
    *,
    settle_s: float = 0.0,
    max_bytes: int | None = None,
    quarantine: Path | None = None,
    told: set[tuple[Path, str]] | None = None,
) -> list[Path]:
    """Batch files in `incoming` that are whole: unchanged (size and modification time) since
    the previous poll, whose view `seen` holds and is updated to this poll's, and for at least
    `settle_s` by this process's clock (a writer may pause longer than a poll; the file's own
    time may come from another machine's clock). Names starting with "." are still being
    written. Anything but a regular file is named once (in `told`) and left alone; a file over
    `max_bytes` is moved to `quarantine` with its reason."""
    told = set() if told is None else told
    now, clock = {}, time.monotonic()
    for path in sorted(incoming.iterdir()):
        if path.suffix.lower() not in BATCH_SUFFIXES or path.name.startswith("."):
            continue
        try:
            info = path.lstat()  # never follows a link, never opens the file
        except FileNotFoundError:  # taken by a run meanwhile
            continue
        kind = stat.S_IFMT(info.st_mode)
        if kind != stat.S_IFREG:
            if (path, str(kind)) not in told:
                told.add((path, str(kind)))
                print(
                    f"level 2 watcher: {path.name} is {KINDS.get(kind, 'not a file')}; left alone"
                )
            continue
        if max_bytes is not None and info.st_size > max_bytes:
            set_aside(path, info.st_size, max_bytes, quarantine or incoming.parent / "quarantine")
            continue
        stamp = (info.st_size, info.st_mtime_ns)
        earlier = seen.get(path)
        now[path] = (
            earlier if earlier is not None and earlier.stamp == stamp else Seen(stamp, clock)
        )
    settled = [
        path
        for path, entry in now.items()
        if path in seen and seen[path].stamp == entry.stamp and clock - entry.since >= settle_s
    ]
    seen.clear()
    seen.update(now)
    return settled


def set_aside(path: Path, size: int, max_bytes: int, quarantine: Path) -> None:
    """Move a file too large to be a batch out of the incoming folder, with its reason."""
    quarantine.mkdir(parents=True, exist_ok=True)
    reason = (
        f"{path.name} is {size:,} bytes, over LEVEL2_INCOMING_MAX_BYTES ({max_bytes:,}); "
        f"moved to {quarantine} unread"
    )
    path.replace(quarantine / path.name)
    (quarantine / f"{path.name}.reason.txt").write_text(reason + "\n")
    print(f"level 2 watcher: {reason}")


def watch_incoming(
    incoming: Path,
    stop: threading.Event,
    *,
    settle_s: float = 0.0,
    max_bytes: int | None = None,
    quarantine: Path | None = None,
    heartbeat: Path | None = None,
) -> None:
    """Emit `penguins.batch.landed` once for every batch content that lands in `incoming`; say
    once, not silently, when a new file brings a content already sent. Each landing (a file
    at a size and modification time) is read and hashed once. An error in one poll is said and
    the watcher watches on; each poll writes `heartbeat` (`make level2-status` reads it)."""
    seen: dict[Path, Seen] = {}
    told: set[tuple[Path, str]] = set()
    done: set[tuple[Path, Stamp]] = set()  # landings (a file at a size and time) dealt with
    sent: dict[str, tuple[Path, Stamp]] = {}  # content -> the landing that brought it
    tries: dict[str, int] = {}  # content -> sends that failed
    while not stop.is_set():
        try:
            for path in settled_files(
                incoming, seen, settle_s=settle_s, max_bytes=max_bytes,
                quarantine=quarantine, told=told,
            ):  # fmt: skip
                landing = (path, seen[path].stamp)
                if landing in done:
                    continue
                try:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                except FileNotFoundError:  # taken by a run meanwhile
                    continue
                if send(path, digest, landing, sent, tries):
                    done.add(landing)
        except Exception as error:  # one bad poll must not end the watching
            print(f"level 2 watcher: {type(error).__name__}: {error}; watching on")
        if heartbeat is not None:
            write_heartbeat(heartbeat)
        sys.stdout.flush()
        stop.wait(WATCH_EVERY_S)


def send(path: Path, digest: str, landing: tuple[Path, Stamp], sent: dict, tries: dict) -> bool:
    """Start a run on a content not sent before; say so, not silently, for a repeat. False when
    the send failed and is to be tried again at the next poll (up to SEND_TRIES times; then
    the watcher says it gave up, and landing the file again starts over)."""
    if digest in sent:
        print(
            f"level 2 watcher: {path.name} brings a content already sent "
            f"(sha256 {digest[:12]}); not sent again, left in place"
        )
        return True
    try:
        taken_by = hand_over(path.name, digest)
    except Exception as error:  # the Prefect API away, the warm worker gone: say it, go on
        tries[digest] = tries.get(digest, 0) + 1
        again = tries[digest] < SEND_TRIES
        print(
            f"level 2 watcher: {path.name} not sent ({type(error).__name__}: {error}); "
            + ("trying again" if again else f"gave up after {SEND_TRIES} tries; land it again")
        )
        if not again:
            del tries[digest]
        return not again
    sent[digest] = landing
    print(f"level 2 watcher: {path.name} landed; {BATCH_LANDED} sent, {taken_by}")
    return True


def hand_over(name: str, digest: str) -> str:
    """Start a run on the landed file `name`: in the warm worker if it is ready, else through
    the event the on-new-data deployment's trigger waits for. Returns who runs it."""
    resource = {"prefect.resource.id": f"penguins.batch.{digest[:12]}", ROUTE: "deployment"}
    related = []
    taken_by = "for the on-new-data deployment"
    worker, _ = warm_runs.ready_worker(Settings())
    future = None
    if worker is not None:
        try:
            future = warm_runs.warm_training.delay(incoming_name=name)
        except Exception as error:  # the watcher must go on: the deployment takes this one
            print(f"level 2 watcher: the warm worker could not take {name} ({error})")
    if future is not None:
        resource[ROUTE] = "warm-worker"
        related = [
            {
                "prefect.resource.id": f"prefect.task-run.{future.task_run_id}",
                "prefect.resource.role": "task-run",
            }
        ]
        taken_by = f"run by the warm worker (pid {worker.pid}), task run {future.task_run_id}"
    emit_event(
        event=BATCH_LANDED,
        resource=resource,
        related=related,
        payload={"name": name, "sha256": digest},
    )
    return taken_by
