"""requirements.lock holds on every platform and Python it claims, pins each file by its hash and
names no index; the copies `make template` writes take their part of it whole. (`make lock-check`
resolves the install against the package index; these checks run offline.)"""

import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.lockfile import SETUP_MK, LockError, lock_environments, lock_lines, read_lock

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def marker(pin_line: str) -> Marker | None:
    """The environment marker of a `name==version ; marker \\` line, if it has one."""
    _, _, text = pin_line.rstrip(" \\").partition(";")
    return Marker(text) if text.strip() else None


def missing_on(lock_text_path: Path, environment: dict[str, str]) -> set[str]:
    """What a package the lock installs in `environment` needs there and the lock does not
    install there, judged by the metadata of the packages installed here."""
    pins = read_lock(lock_text_path)

    def installs(name: str) -> bool:
        pin = pins.get(canonicalize_name(name))
        return pin is not None and (
            (found := marker(pin.lines[0])) is None or found.evaluate(environment)
        )

    missing = set()
    for name in pins:
        if not installs(name):
            continue
        try:
            needs = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue  # not installed here (pywin32 on Linux): no metadata to read
        for line in needs:
            needed = Requirement(line)
            applies = needed.marker is None or needed.marker.evaluate({**environment, "extra": ""})
            if applies and not installs(needed.name):
                missing.add(f"{name} needs {needed.name}")
    return missing


@pytest.mark.parametrize(
    "environment",
    lock_environments(),
    ids=lambda e: f"{e['sys_platform']}-{e['platform_machine']}-py{e['python_version']}",
)
def test_lock_installs_what_its_packages_need_on_each_claimed_platform(environment):
    """On Windows mlflow needs waitress, docker needs pywin32; on macOS ipykernel needs appnope:
    the lock pins them, with markers, for every platform and Python it claims."""
    assert missing_on(LOCK, environment) == set()


def test_lock_claims_three_systems_and_three_pythons():
    """What the README says the lock holds for is what `make lock-check` resolves."""
    claimed = {(e["sys_platform"], e["python_version"]) for e in lock_environments()}

    assert claimed == {
        (s, p) for s in ("linux", "darwin", "win32") for p in ("3.11", "3.12", "3.13")
    }


def test_lock_pins_every_package_to_one_version_with_its_hashes():
    pins = read_lock(LOCK)

    assert len(pins) > 200
    for name, pin in pins.items():
        assert re.match(r"^[\w.-]+==[\w.!+]+( ; .+)? \\$", pin.lines[0]), pin.lines[0]
        assert len(pin.lines) > 1 and all(
            re.fullmatch(r" +--hash=sha256:[0-9a-f]{64}( \\)?", line) for line in pin.lines[1:]
        ), name


def test_lock_names_no_index_and_no_download_address():
    """The lock says what to install, never where from: no index or find-links option, no URL."""
    text = LOCK.read_text()

    assert "://" not in text
    assert not re.search(r"^\s*(-i|-f|--index-url|--extra-index-url|--find-links)\b", text, re.M)


def test_setup_installs_the_lock_and_uv_itself_with_hash_checking():
    """uv comes from pip with the lock's hashes for it; the lock from uv with every hash."""
    setup = SETUP_MK.read_text().replace("\\\n", " ")
    pip_installs = re.findall(r"\$\(PY\) -m pip install ([^\n]*)", setup)
    uv_installs = re.findall(r"\$\(UV\) pip install ([^\n]*-r requirements\.lock[^\n]*)", setup)

    assert pip_installs and all("--require-hashes" in flags for flags in pip_installs)
    assert uv_installs and all("--require-hashes" in flags for flags in uv_installs)


def test_setup_gives_pip_exactly_the_locks_uv_entry(tmp_path):
    """The awk line setup.mk runs cuts the lock's uv pin and all its hashes, nothing more."""
    script = re.search(r"awk '([^']+)' requirements\.lock", SETUP_MK.read_text())[1]
    script = script.replace("$$", "$")

    cut = subprocess.run(
        ["awk", script, str(LOCK)], capture_output=True, text=True, check=True, timeout=10
    )

    assert cut.stdout.splitlines() == list(read_lock(LOCK)["uv"].lines)


def test_lock_lines_keep_each_packages_markers_and_hashes_in_one_entry():
    """A copy's lock is whole entries of ours: mlflow's Windows-only waitress comes with its
    marker and hashes, so the copy installs with hash checking on every platform too."""
    ours = read_lock(LOCK)

    entries = lock_lines(["mlflow"])

    assert "\n".join(ours["waitress"].lines) in entries
    assert "sys_platform == 'win32'" in ours["waitress"].lines[0]
    assert set(entries) <= {"\n".join(pin.lines) for pin in ours.values()}


def test_lock_lines_for_a_level_leave_out_what_it_does_not_need():
    """The subset is what the requirements need, not the whole lock."""
    entries = lock_lines(["fastapi"])

    names = {canonicalize_name(entry.split("==")[0]) for entry in entries}

    assert {"fastapi", "starlette", "pydantic"} <= names
    assert "mlflow" not in names and "waitress" not in names


def test_lock_lines_follow_the_locks_notes_below_a_package_not_installed_here(tmp_path):
    """A package this machine never installs (its marker excludes it) has no metadata here: what
    it needs is what the lock's `# via` notes say."""
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "winonly==1.0 ; sys_platform == 'win32' \\\n    --hash=sha256:" + "a" * 64 + "\n"
        "winchild==2.0 ; sys_platform == 'win32' \\\n    --hash=sha256:" + "b" * 64 + "\n"
        "    # via\n    #   other\n    #   winonly\n"
        "unrelated==3.0 \\\n    --hash=sha256:" + "c" * 64 + "\n    # via other\n"
    )

    entries = lock_lines(["winonly"], lock=lock)

    assert [entry.splitlines()[0] for entry in entries] == [
        "winchild==2.0 ; sys_platform == 'win32' \\",
        "winonly==1.0 ; sys_platform == 'win32' \\",
    ]


def test_lock_lines_refuse_a_requirement_the_lock_does_not_pin(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("pytest==9.0.0 \\\n    --hash=sha256:" + "a" * 64 + "\n")

    with pytest.raises(LockError, match="make lock"):
        lock_lines(["fastapi"], lock=lock)
