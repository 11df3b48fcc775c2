"""The drills (`make drill-NAME`, `python -m workshop.drills NAME`) over scripted levels
(tests/scorecard_fakes.py): each runs, narrates its steps and ends with a verdict line for
every level that says what the level did; a level that fails stops the drill with exit 1 and
the failed step named, never a traceback."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.contract import INVALID_EXAMPLES
from tests.scorecard_fakes import FakeLab
from workshop.drills import DRILLS, run_drill
from workshop.lab import Lab, ServiceFailed
from workshop.scorecard.cells import LEVELS, failed_service

DRILL_NAMES = ["bad-data", "regression", "bad-request", "rollback", "drift", "canary"]
NARRATED = re.compile(r"^-- ", re.MULTILINE)


def drill(name: str, lab: FakeLab, capsys) -> tuple[int, str, str]:
    """Run one drill: (its exit status, what it printed, what it printed on stderr)."""
    status = run_drill(name, lab)
    printed = capsys.readouterr()
    return status, printed.out, printed.err


def verdict(out: str) -> tuple[str, dict[str, str]]:
    """The verdict's row name, and each level's line under it."""
    heading, *lines = out.split("\n== verdict: ", 1)[1].strip().splitlines()
    found = dict(re.fullmatch(r" {3}(level \d): (.+)", line).groups() for line in lines)
    return heading, found


def told_row(out: str, capability: str) -> str:
    """The narrated line that told `capability`'s row once every level had its cell."""
    return next(line for line in out.splitlines() if line.startswith(f"--    {capability}: "))


@pytest.fixture(autouse=True)
def small_drift_window(monkeypatch):
    """20 drifted birds instead of 200: the drift drill reads them the same, much faster."""
    monkeypatch.setattr("workshop.scorecard.table.DRIFT_WINDOW", 20)


def test_drills_are_the_ones_the_makefile_names():
    """Each `make drill-NAME` target has its drill, and no drill lacks a target."""
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()

    targets = re.findall(r"^\t\$\(PY\) -m workshop\.drills (\S+)$", makefile, re.MULTILINE)

    assert sorted(targets) == sorted(DRILLS) == sorted(DRILL_NAMES)


@pytest.mark.timeout(60)
def test_drill_bad_data_shows_levels_0_and_1_training_on_it(tmp_path, capsys):
    """Levels 0 and 1 train on the corrupted batch (✗); level 2's validation quarantines it."""
    lab = FakeLab(tmp_path / "lab")
    quarantine = tmp_path / "quarantine"
    (quarantine / "failed_expectations.txt").parent.mkdir()
    (quarantine / "failed_expectations.txt").write_text("body_mass_g\n")
    refused = (
        f"level 2: batch corrupted.csv failed 2 of 20 expectations and was quarantined in "
        f"{quarantine}:\n  - body_mass_g between 2700 and 6300\n  - bill_length_mm not null\n"
    )
    lab.level2 = lambda args: (
        subprocess.CompletedProcess([], 1, "", refused) if args else lab.store.register()
    )

    status, out, _ = drill("bad-data", lab, capsys)

    assert status == 0
    assert "-- every level trains once on the shared data, side by side" in out
    assert "-- a corrupted batch arrives (30% impossible masses, 30% missing bills)" in out
    assert "-- level 2 validation named: body_mass_g between 2700 and 6300" in out
    heading, lines = verdict(out)
    assert heading == "a corrupted training batch"
    assert lines["level 0"] == "✗ trained on it (macro F1 0.900)"
    assert re.fullmatch(r"✗ trained on it: card \w{12} \(macro F1 0.900\)", lines["level 1"])
    assert lines["level 2"] == "✓ blocked: 2 of 20 expectations failed, batch quarantined"
    assert told_row(out, heading).endswith(f"level 2 {lines['level 2']}")


@pytest.mark.timeout(60)
def test_drill_regression_shows_the_gate_stopping_the_worse_model(tmp_path, capsys):
    """Levels 0 and 1 let the worse model through (✗); level 2's gate rejects it."""
    lab = FakeLab(tmp_path / "lab")
    lab.level2 = lambda args: lab.store.register(gate="rejected" if args else "passed")

    status, out, _ = drill("regression", lab, capsys)

    assert status == 0
    assert "-- a worse model is trained (2,000 birds, 100% with shuffled species)" in out
    assert "-- level 2: v2 gate=rejected: macro F1 0.461 is below the floor 0.9" in out
    heading, lines = verdict(out)
    assert heading == "a worse model"
    assert lines["level 0"] == "✗ notebook wrote model.pkl (macro F1 0.900)"
    assert re.fullmatch(r"✗ hand-off took it: \w{12} \(macro F1 0.900\)", lines["level 1"])
    assert lines["level 2"] == "✓ blocked by the gate: macro F1 0.461 is below the floor 0.9"
    assert lab.champion() == "1"


@pytest.mark.timeout(60)
def test_drill_bad_request_verdict_counts_the_statuses_it_showed(tmp_path, capsys):
    """Every invalid example gets a line with each level's status, and each level's verdict
    counts the 4xx in its column: level 0, which answers anything, refuses none."""
    lab = FakeLab(tmp_path / "lab")

    status, out, _ = drill("bad-request", lab, capsys)

    assert status == 0
    table = {}
    for example in INVALID_EXAMPLES:
        line = next(x for x in out.splitlines() if x.startswith(f"-- {example.name:<16}"))
        table[example.name] = [int(s) for s in line[3 + 16 :].split("(")[0].split()]
        assert f"field {example.field})" in line
    heading, lines = verdict(out)
    assert heading == f"bad requests ({len(INVALID_EXAMPLES)} invalid payloads)"
    for column, level in enumerate(LEVELS):
        refused = sum(400 <= statuses[column] < 500 for statuses in table.values())
        assert lines[level][2:].startswith(f"{refused}/{len(INVALID_EXAMPLES)} refused with 4xx")
        assert lines[level][0] in "✓✗"
    assert lines["level 0"] == f"✗ 0/{len(INVALID_EXAMPLES)} refused with 4xx (11x 200)"


@pytest.mark.timeout(60)
def test_drill_rollback_ends_with_a_verdict_for_every_level(tmp_path, capsys):
    """New data replaces each level's model; only level 2 goes back, in one command."""
    lab = FakeLab(tmp_path / "lab")

    status, out, _ = drill("rollback", lab, capsys)

    assert status == 0
    assert "-- new data arrives: each level retrains as its README says" in out
    assert "-- the latest model must be withdrawn" in out
    assert "-- level 2: `make level2-rollback` said: from v2 back to v1" in out
    heading, lines = verdict(out)
    assert heading == "rollback"
    assert lines["level 0"] == "✗ the replaced pickle is gone: 1 on disk (model.pkl)"
    assert re.fullmatch(
        r"✗ the replaced model \w{12} is gone: 2 cards, none of it", lines["level 1"]
    )
    assert re.fullmatch(r"✓ one command: v2 to v1, served after \d+\.\d s", lines["level 2"])
    assert lab.champion() == "1"


@pytest.mark.timeout(60)
def test_drill_rollback_verdict_follows_a_level0_that_keeps_its_pickle(tmp_path, capsys):
    """A level 0 that keeps the pickle it replaced is not called ✗ gone: the verdict is read."""
    lab = FakeLab(tmp_path / "lab")
    lab.keep_previous_pickle = True

    status, out, _ = drill("rollback", lab, capsys)

    assert status == 0
    assert verdict(out)[1]["level 0"] == "kept on disk: the replaced pickle, as model.previous.pkl"


@pytest.mark.timeout(60)
def test_drill_drift_shows_only_level2_noticing(tmp_path, capsys):
    """Levels 0 and 1 answer the drifted birds and notice nothing; level 2's monitor asks for a
    retraining on the confirmed birds, and its new model is served."""
    lab = FakeLab(tmp_path / "lab")

    status, out, _ = drill("drift", lab, capsys)

    assert status == 0
    assert "-- the world moves: 20 birds with bills 1 sd longer are asked about" in out
    assert "-- level 2: the monitor drift in bill_length_mm" in out
    assert told_row(out, "live accuracy known")  # the second row is told too
    heading, lines = verdict(out)
    assert heading == "drift in served traffic"
    for level in ("level 0", "level 1"):
        assert lines[level] == (
            "✗ not noticed: 20 of 20 drifted requests answered; GET /metrics 404, nothing written"
        )
    assert re.fullmatch(
        r"✓ detected \d+ s after the traffic began \(20 answers\); v2, trained on 20 confirmed "
        r"birds, served at \d+ s",
        lines["level 2"],
    )
    assert lab.level2_calls[-1] == ("--drift-run-id", "monitor1")


@pytest.mark.timeout(60)
def test_drill_canary_shows_only_level2_trying_the_worse_model_on_a_share(tmp_path, capsys):
    """Levels 0 and 1 answer every caller with the worse model once it is handed over; level
    2's gate refuses it, a person rolls it out as a canary anyway, it meets about a quarter of
    the callers (each answer names it), the judge withdraws it on their feedback, and then no
    caller meets it."""
    lab = FakeLab(tmp_path / "lab")
    lab.level2 = lambda args: lab.store.register(gate="rejected") if args else lab.store.register()

    status, out, _ = drill("canary", lab, capsys)

    assert status == 0, out
    assert "-- level 2: v2 gate=rejected: macro F1 0.461 is below the floor 0.9" in out
    assert "-- level 2 rollout: v2 is challenger (canary: 25% of callers)" in out
    assert "level 2 rollout start canary --share 0.25 --version 2" in lab.calls
    heading, lines = verdict(out)
    assert heading == "a new model on trial before every caller meets it"
    callers = int(re.search(r"then (\d+) callers ask", out)[1])
    assert lines["level 0"].startswith(
        f"✗ no trial: {callers} of {callers} callers answered by the new pickle ("
    )
    version = lab.level1_cards()[-1]["version"]
    assert lines["level 1"].startswith(
        f"✗ no trial: {callers} of {callers} callers answered by {version} ("
    )
    met = re.fullmatch(
        rf"✓ canary: v2 met (\d+) of {callers} callers; withdrawn: live accuracy .+; "
        r"then 0 met it",
        lines["level 2"],
    )
    assert met and 0.15 * callers < int(met[1]) < 0.35 * callers
    assert lab.store.champion == "1" and lab.store.challenger is None
    # Every caller's bird was confirmed, and the judge read the canary's on its own answers.
    assert len(lab.feedback) == callers
    assert f"on {met[1]} confirmed birds" in lines["level 2"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", DRILL_NAMES)
def test_drill_stops_naming_the_command_of_a_level_that_fails(tmp_path, capsys, name):
    """Level 1's training failing stops every drill at the baseline: exit 1, and stderr names
    the command and its last words instead of a traceback."""
    lab = FakeLab(tmp_path / "lab")
    command = [sys.executable, "-m", "level1_devops.train", "--output-dir", "x"]
    said = "ValueError: no penguins left after cleaning\n"
    lab.failing["level 1 train"] = subprocess.CalledProcessError(1, command, "", said)

    status, out, err = drill(name, lab, capsys)

    assert status == 1
    assert err.startswith(
        f"drill {name}: a level's command failed: python -m level1_devops.train --output-dir x"
    )
    assert "ValueError: no penguins left after cleaning" in err
    assert "== verdict" not in out


@pytest.mark.timeout(60)
def test_drill_stops_naming_a_level2_run_that_fails(tmp_path, capsys):
    """A level 2 pipeline run that exits with an error is named with its own last words."""
    lab = FakeLab(tmp_path / "lab")
    lab.level2 = lambda args: subprocess.CompletedProcess(
        [], 1, "", "sqlite3.OperationalError: database is locked\n"
    )

    status, _, err = drill("regression", lab, capsys)

    assert status == 1
    assert "a level's command failed: python -m level2_pipelines.pipeline_cli" in err
    assert err.rstrip().endswith("sqlite3.OperationalError: database is locked")


@pytest.mark.timeout(60)
def test_drill_stops_naming_a_service_that_does_not_start(tmp_path, capsys):
    """A level's service that exits as it starts stops the drill with exit 1, naming it."""
    lab = FakeLab(tmp_path / "lab")
    lab.service_fails = "level 1"

    status, out, err = drill("bad-request", lab, capsys)

    assert status == 1
    assert err.startswith("drill bad-request: level 1's service did not start:")
    assert "address already in use" in err
    assert "== verdict" not in out


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_lab_services_name_the_level_whose_service_did_not_start(tmp_path):
    """Level 0's real server with no pickle to load exits as it starts: ServiceFailed names it."""
    lab = Lab(tmp_path / "lab")

    with (
        pytest.raises(ServiceFailed, match="level 0's service did not start: level0_notebook"),
        lab.services(("level 0",)),
    ):
        pass


def test_failed_service_keeps_which_service_and_its_last_words():
    """A long server log is cut to its first line (which service) and its last eight."""
    log = "\n".join(f"line {n}" for n in range(40))
    error = ServiceFailed(
        f"level 1's service did not start: level1_devops.serve exited early:\n{log}"
    )

    said = failed_service(error).splitlines()

    assert said[0] == "level 1's service did not start: level1_devops.serve exited early:"
    assert said[1:] == [f"line {n}" for n in range(32, 40)]
