"""`make help` is a page a person scans: every documented target once, under its section."""

import re
import subprocess
from pathlib import Path

from tests.makefiles import makefile_text

ROOT = Path(__file__).resolve().parents[1]


def help_page() -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_help_lists_sections_in_the_declared_order():
    """The sections appear in HELP_SECTIONS' order: set-up, each level, workshop, team, dev."""
    declared = re.search(r"^HELP_SECTIONS := (.*)$", makefile_text(ROOT / "Makefile"), re.M)

    shown = re.findall(r"^(\S.*)$", help_page(), re.M)[1:]

    assert shown == declared[1].split("|")


def test_help_lists_every_documented_target_once():
    """Each target with a `## description` in the Makefile or what it includes is listed once."""
    documented = re.findall(r"^([a-zA-Z0-9_-]+):.*## ", makefile_text(ROOT / "Makefile"), re.M)

    listed = re.findall(r"^  (\S+)", help_page(), re.M)

    assert sorted(listed) == sorted(documented)
    assert len(set(listed)) == len(listed)
