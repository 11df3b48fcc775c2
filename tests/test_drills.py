"""The drills (`make drill-NAME`) over scripted levels (tests/scorecard_fakes.py): each runs,
narrates its steps and ends with a verdict line for every level."""

import sys

import pytest

from tests.scorecard_fakes import FakeLab
from workshop import drills


@pytest.mark.timeout(60)
def test_drill_rollback_ends_with_a_verdict_for_every_level(tmp_path, monkeypatch, capsys):
    """`make drill-rollback` retrains on new data, withdraws it and prints each level's verdict."""
    monkeypatch.setattr(sys, "argv", ["drills", "rollback"])
    monkeypatch.setattr(drills, "state_dir", lambda: tmp_path)
    monkeypatch.setattr(drills, "Lab", FakeLab)

    drills.main()

    said = capsys.readouterr().out
    verdict = said.split("== verdict: rollback\n", 1)[1].splitlines()
    assert [line.split(":")[0].strip() for line in verdict] == ["level 0", "level 1", "level 2"]
