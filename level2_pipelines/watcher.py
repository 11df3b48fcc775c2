"""The incoming watcher: it turns a batch file landed in the incoming folder into a pipeline
run, handing it to the warm worker when one is ready, else emitting the event the on-new-data
deployment waits for (`triggers.py`). Prefect has no file sensor, so this small loop polls.

Landing a file: write it under a name starting with "." (ignored), then rename it, or copy it
in whole; the watcher also waits until its size and time have held still for
LEVEL2_INCOMING_SETTLE_S (2 s), so a writer that pauses is not read half-way (`incoming.py`
says which files are whole). Files are known by their content, so a daily export under a
fixed name is seen each time its content changes. A directory, FIFO, socket or symbolic link
under a batch's name is named once and left alone (a FIFO is never opened); a file over
LEVEL2_INCOMING_MAX_BYTES (50 MB) is moved unread to the quarantine folder's incoming/ with its
reason. A send that fails (the API away) is tried again at the next polls, three times in all.

A batch is followed to its run's end: the warm worker's task run, or the flow run the event
started on the on-new-data deployment (found by the file's name among that deployment's runs).
A run that fails or crashes for a reason not the input's (a killed process, a server away) is
started again on the same content, LEVEL2_INCOMING_RETRIES (3) runs in all, waiting
LEVEL2_INCOMING_RETRY_BACKOFF_S (10 s) before the first retry, twice that before the next; then
the batch goes to the quarantine folder's incoming/ with the reason. A refusal is the input's
fault and not retried (the pipeline quarantined the batch, or named an expected failure). Until
its run's outcome is known the watcher keeps a hard link to the batch in incoming/.sent/, so
a run that crashed after validation moved the file can be started on it again, and a note of
the run it waits for beside it, so a restarted watcher follows that run on (a link left without
a note is landed again: a content already trained on is skipped).

An error never ends the watching: one in a poll is said and the watcher goes on; one outside
(its heartbeat cannot be written) stops it a while, longer each time, then it starts again. It
beats (servers/watcher.json), which `make level2-status` reads; the process that runs it is
restarted by its supervisor when it dies or stops beating (`ops/processes.py`).
"""

import hashlib
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from prefect.events import emit_event

from level2_pipelines.incoming import Seen, Stamp, link, same_file, settled_files
from level2_pipelines.ops import warm_runs
from level2_pipelines.ops.processes import Backoff, write_heartbeat
from level2_pipelines.ops.warm_runs import WAIT_LIMIT_S
from level2_pipelines.sent_runs import ON_NEW_DATA, Pending, Run, judge, run_state
from level2_pipelines.settings import Settings

BATCH_LANDED = "penguins.batch.landed"
ROUTE = "penguins.batch.route"  # who runs the landed batch: "warm-worker" or "deployment"
WATCH_EVERY_S = 1.0
CHECK_EVERY_S = 5.0  # how often the runs of sent batches are asked how they ended
FIND_RUN_S = 120.0  # an event whose flow run has not appeared by then: a failed try
KEPT = ".sent"  # in incoming/: links to the batches whose run has not ended yet
SEND_TRIES = 3  # a landed file whose run cannot be started is tried this many times


class Watcher:
    """The incoming folder's watcher and what it remembers between polls."""

    def __init__(
        self,
        incoming: Path,
        *,
        settle_s: float = 0.0,
        max_bytes: int | None = None,
        quarantine: Path | None = None,
        heartbeat: Path | None = None,
        retries: int = 3,
        backoff_s: float = 10.0,
    ) -> None:
        self.incoming, self.heartbeat = incoming, heartbeat
        self.rules = {"settle_s": settle_s, "max_bytes": max_bytes, "quarantine": quarantine}
        self.quarantine = quarantine or incoming.parent / "quarantine" / "incoming"
        self.retries, self.backoff_s = retries, backoff_s
        self.seen: dict[Path, Seen] = {}
        self.told: set[tuple[Path, str]] = set()
        self.done: set[tuple[Path, Stamp]] = set()  # landings (a file at a size, time) dealt with
        self.sent: dict[str, tuple[Path, Stamp]] = {}  # content -> the landing that brought it
        self.tries: dict[str, int] = {}  # content -> sends that failed
        self.pending: dict[str, Pending] = {}  # content -> its run, until it ends
        self.claimed: set[str] = set()  # flow runs already matched to a send
        self.land_leftovers()

    def watch(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll()
            except Exception as error:  # one bad poll must not end the watching
                print(f"level 2 watcher: {type(error).__name__}: {error}; watching on")
            if self.heartbeat is not None:
                write_heartbeat(self.heartbeat)
            sys.stdout.flush()
            stop.wait(WATCH_EVERY_S)

    def poll(self) -> None:
        for path in settled_files(self.incoming, self.seen, told=self.told, **self.rules):
            landing = (path, self.seen[path].stamp)
            if landing in self.done:
                continue
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except FileNotFoundError:  # taken by a run meanwhile
                continue
            if self.send(path, digest, landing):
                self.done.add(landing)
        for pending in list(self.pending.values()):
            self.follow(pending)

    def send(self, path: Path, digest: str, landing: tuple[Path, Stamp]) -> bool:
        """Start a run on a content not sent before; say so, not silently, for a repeat. False
        when the send failed and is to be tried again at the next poll (up to SEND_TRIES times;
        then the watcher says it gave up, and landing the file again starts over)."""
        if digest in self.sent:
            print(
                f"level 2 watcher: {path.name} brings a content already sent "
                f"(sha256 {digest[:12]}); not sent again, left in place"
            )
            return True
        kept = self.incoming / KEPT / f"{digest[:16]}-{path.name}"
        try:
            link(path, kept)
            run = hand_over(path.name, digest)
        except FileNotFoundError:  # taken meanwhile
            kept.unlink(missing_ok=True)
            return True
        except Exception as error:  # the Prefect API away, the warm worker gone: say it, go on
            kept.unlink(missing_ok=True)
            self.tries[digest] = self.tries.get(digest, 0) + 1
            again = self.tries[digest] < SEND_TRIES
            print(
                f"level 2 watcher: {path.name} not sent ({type(error).__name__}: {error}); "
                + ("trying again" if again else f"gave up after {SEND_TRIES} tries; land it again")
            )
            if not again:
                del self.tries[digest]
            return not again
        self.sent[digest] = landing
        self.pending[digest] = Pending(path.name, digest, kept, run)
        self.pending[digest].save()
        print(f"level 2 watcher: {path.name} landed; {BATCH_LANDED} sent, {run.taken_by}")
        return True

    def follow(self, pending: Pending) -> None:
        """Ask how the batch's run ended, now and then; start it again, or give up on it."""
        now = time.monotonic()
        if pending.retry_at is not None:
            if now >= pending.retry_at:
                self.retry(pending)
            return
        if now - pending.checked < CHECK_EVERY_S:
            return
        pending.checked = now
        found = pending.run.flow_run_id
        try:
            state = run_state(pending.run, self.claimed)
        except Exception as error:  # the API away: asked again at the next check
            print(f"level 2 watcher: {pending.name}: cannot ask how its run went ({error})")
            state = None
        if pending.run.flow_run_id != found:
            pending.save()
        waited = (datetime.now(UTC) - pending.run.asked_at).total_seconds()
        if state is None and pending.run.task_run_id is None and pending.run.flow_run_id is None:
            if waited > FIND_RUN_S:
                self.failed(pending, f"no run of {ON_NEW_DATA} started within {FIND_RUN_S:.0f} s")
            return
        if state is None or not state.is_final():
            if waited > WAIT_LIMIT_S:
                self.failed(pending, f"{pending.run} did not end within {WAIT_LIMIT_S:.0f} s")
            return
        verdict = judge(state, pending, self.quarantine.parent)
        if verdict is None:
            self.failed(pending, f"{pending.run} {state.name}: {state.message}")
            return
        print(f"level 2 watcher: {pending.name}: {pending.run} {state.name}; {verdict}")
        self.forget(pending)

    def failed(self, pending: Pending, reason: str) -> None:
        if pending.tries >= self.retries:
            self.give_up(pending, reason)
            return
        delay = self.backoff_s * 2 ** (pending.tries - 1)
        pending.retry_at = time.monotonic() + delay
        print(
            f"level 2 watcher: {pending.name}: {reason}; not the input's fault: "
            f"starting it again in {delay:.0f} s (run {pending.tries + 1} of {self.retries})"
        )

    def retry(self, pending: Pending) -> None:
        """A new run on the same content, put back in incoming/ if a run had moved it."""
        pending.retry_at = None
        pending.tries += 1
        path = self.incoming / pending.name
        if not same_file(path, pending.kept):
            if path.exists() or path.is_symlink():  # its name holds another content now
                path = self.incoming / f"{pending.digest[:8]}-{pending.name}"
            link(pending.kept, path)
            pending.name = path.name
        info = path.stat()
        self.done.add((path, (info.st_size, info.st_mtime_ns)))  # not a new landing
        try:
            pending.run = hand_over(pending.name, pending.digest)
        except Exception as error:  # the API away: counts as a run that did not start
            self.failed(pending, f"not sent again ({type(error).__name__}: {error})")
            return
        pending.checked = time.monotonic()
        pending.save()
        print(f"level 2 watcher: {pending.name} sent again; {pending.run.taken_by}")

    def give_up(self, pending: Pending, reason: str) -> None:
        self.quarantine.mkdir(parents=True, exist_ok=True)
        target = self.quarantine / pending.name
        path = self.incoming / pending.name
        if same_file(path, pending.kept):
            path.replace(target)
        else:
            link(pending.kept, target)
        why = f"{pending.name}: {pending.tries} runs failed, the last: {reason}; moved to {target}"
        (self.quarantine / f"{pending.name}.reason.txt").write_text(why + "\n")
        print(f"level 2 watcher: {why}")
        self.forget(pending)
        del self.sent[pending.digest]  # landing it again starts over

    def forget(self, pending: Pending) -> None:
        pending.kept.unlink(missing_ok=True)
        pending.note.unlink(missing_ok=True)
        del self.pending[pending.digest]

    def land_leftovers(self) -> None:
        """Batches an earlier watcher sent and never saw end: their runs followed on, or, when
        it left no note of the run, the batch landed again."""
        folder = self.incoming / KEPT
        for kept in sorted(folder.iterdir()) if folder.is_dir() else []:
            if kept.suffix == ".partial" or (
                kept.suffix == ".json" and not kept.with_suffix("").exists()
            ):  # half a note, or the note of a batch gone: nothing to follow
                kept.unlink()
            if kept.suffix in {".json", ".partial"}:
                continue
            pending = Pending.load(kept)
            if pending is not None:
                self.follow_on(pending)
                continue
            name = kept.name.split("-", 1)[-1]
            if not (self.incoming / name).exists():
                link(kept, self.incoming / name)
                print(
                    f"level 2 watcher: {name} was sent by an earlier watcher that did not see "
                    "its run end; landed again (a content already trained on is skipped)"
                )
            kept.unlink()

    def follow_on(self, pending: Pending) -> None:
        path = self.incoming / pending.name
        stamp = (0, 0)
        if same_file(path, pending.kept):  # still waiting in incoming/: not a new landing
            info = path.stat()
            stamp = (info.st_size, info.st_mtime_ns)
            self.done.add((path, stamp))
        self.sent[pending.digest] = (path, stamp)
        self.pending[pending.digest] = pending
        self.claimed |= {pending.run.flow_run_id} - {None}
        print(
            f"level 2 watcher: {pending.name} was sent by an earlier watcher; "
            f"following {pending.run} on"
        )


def watch_incoming(incoming: Path, stop: threading.Event, **rules) -> None:
    """Start one run for every batch content that lands in `incoming`, follow it to its end, and
    start it again if it failed (`Watcher`); say once, not silently, when a new file brings a
    content already sent. An error that ends the watching is said, and it starts again."""
    backoff, watcher = Backoff(), None
    while not stop.is_set():
        started = time.monotonic()
        try:
            watcher = watcher or Watcher(incoming, **rules)  # what it remembers, kept
            watcher.watch(stop)
        except Exception as error:
            delay = backoff.delay(time.monotonic() - started)
            print(
                f"level 2 watcher: stopped by {type(error).__name__}: {error}; "
                f"watching again in {delay} s",
                flush=True,
            )
            stop.wait(delay)


def hand_over(name: str, digest: str) -> Run:
    """Start a run on the landed file `name`: in the warm worker if it is ready, else through
    the event the on-new-data deployment's trigger waits for. Returns the run."""
    resource = {"prefect.resource.id": f"penguins.batch.{digest[:12]}", ROUTE: "deployment"}
    related = []
    run = Run(f"for {ON_NEW_DATA}", name=name)
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
        run = Run(
            f"run by the warm worker (pid {worker.pid}), task run {future.task_run_id}",
            task_run_id=str(future.task_run_id),
            name=name,
        )
    emit_event(
        event=BATCH_LANDED,
        resource=resource,
        related=related,
        payload={"name": name, "sha256": digest},
    )
    return run
