"""Reading requirements.lock, the one lock `make lock` writes (templates/common/setup.mk): every
platform and Python it holds for, each pin with its environment markers and file hashes.

`make template` takes the subset of it a copy needs (`lock_lines`) without reaching the index.
"""

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shared.paths import REPO_ROOT

SETUP_MK = REPO_ROOT / "templates" / "common" / "setup.mk"


class LockError(RuntimeError):
    """The lock does not hold what is asked of it: the message says what to run."""


@dataclass(frozen=True)
class Pin:
    """One package of a lock, as `uv pip compile --universal --generate-hashes` writes it."""

    lines: tuple[str, ...]  # `name==version ; marker \` and its `--hash=` lines, as written
    via: frozenset[str]  # the packages that need it, from the lock's `# via` notes


def read_lock(path: Path) -> dict[str, Pin]:
    """The lock's pins by canonical name."""
    pins: dict[str, Pin] = {}
    name, lines, via = "", [], set()

    def close() -> None:
        if name:
            pins[name] = Pin(tuple(lines), frozenset(via))

    for line in path.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            close()
            name, lines, via = canonicalize_name(re.split(r"[=;\s\[]", line)[0]), [line], set()
        elif line.lstrip().startswith("--hash="):
            lines.append(line)
        elif match := re.match(r"\s*# (?:via |  )\s*([A-Za-z0-9][\w.-]*)", line):
            via.add(canonicalize_name(match[1]))
    close()
    return pins


def lock_environments() -> list[dict[str, str]]:
    """The environment markers of each platform and Python `make lock-check` resolves the lock
    for (setup.mk's LOCK_PLATFORMS and LOCK_PYTHONS): what a copy's lock must hold."""
    setup = SETUP_MK.read_text().replace("\\\n", " ")
    platforms = re.search(r"^LOCK_PLATFORMS := (.*)$", setup, re.M)[1].split()
    pythons = re.search(r"^LOCK_PYTHONS := (.*)$", setup, re.M)[1].split()
    systems = {
        "linux": ("linux", "Linux", "posix"),
        "darwin": ("darwin", "Darwin", "posix"),
        "windows": ("win32", "Windows", "nt"),
    }
    environments = []
    for triple in platforms:
        arch = triple.split("-")[0]
        system = next(s for s in systems if s in triple)
        sys_platform, platform_system, os_name = systems[system]
        machine = {"darwin": {"aarch64": "arm64"}, "windows": {"x86_64": "AMD64"}}
        for python in pythons:
            environments.append(
                {
                    "sys_platform": sys_platform,
                    "platform_system": platform_system,
                    "os_name": os_name,
                    "platform_machine": machine.get(system, {}).get(arch, arch),
                    "python_version": python,
                    "python_full_version": f"{python}.0",
                    "implementation_name": "cpython",
                    "platform_python_implementation": "CPython",
                }
            )
    return environments


def lock_lines(requirements: list[str], lock: Path = REPO_ROOT / "requirements.lock") -> list[str]:
    """Our lock's entries (pin, markers, hashes: one string of lines per package) for each
    requirement and what it needs on any platform and Python the lock holds for, so the copy's
    lock is a subset of ours and making it needs no network. What a package needs is read from
    its metadata in this environment; a package not installed here (Windows' pywin32, macOS'
    appnope) brings what the lock's notes say it needs."""
    pins = read_lock(lock)
    environments = lock_environments()
    kept: set[str] = set()
    seen: set[tuple[str, str]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        key = canonicalize_name(requirement.name)
        if key not in pins:
            raise LockError(f"{key} is not in {lock}: run `make lock` first")
        kept.add(key)
        try:
            needs = metadata.distribution(key).requires or []
        except metadata.PackageNotFoundError:
            todo += [Requirement(name) for name, pin in pins.items() if key in pin.via]
            continue
        # What the distribution always needs, then what each extra asked for adds.
        for extra in ["", *sorted(requirement.extras)]:
            if (key, extra) in seen:
                continue
            seen.add((key, extra))
            for line in needs:
                needed = Requirement(line)
                if needed.marker is None or any(
                    needed.marker.evaluate({**env, "extra": extra}) for env in environments
                ):
                    todo.append(needed)
    return ["\n".join(pins[key].lines) for key in sorted(kept)]
