"""The incoming folder: which of its names are whole batch files, and the file moves the watcher
(`watcher.py`) makes. A name starting with "." is still being written; anything but a regular
file is left alone; a file is whole once its size and time have held still long enough; one
over the size limit is set aside unread."""

import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

BATCH_SUFFIXES = {".csv", ".parquet"}
Stamp = tuple[int, int]  # a file's size and modification time
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


def link(source: Path, target: Path) -> None:
    """Another name for the same file (a copy where links cannot be made)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except FileExistsError:
        if not same_file(source, target):
            raise
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, target)


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
