"""The hand-off serves only a pair that matches its card, and keeps the pair it replaces."""

import json
import re
import shutil
import sys

import pytest

from level1_devops.handoff import PREVIOUS_DIR, hand_off, main
from level1_devops.model import CARD_FILE, MODEL_FILE, ModelLoadError, load_artifact
from level1_devops.train import train


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory):
    """A second model (another seed), to hand off after the session's."""
    directory = tmp_path_factory.mktemp("level1-other")
    train(directory, seed=7)
    return directory


@pytest.fixture
def serving(tmp_path):
    """The serving folder, where LEVEL1_STATE_DIR=tmp_path puts it."""
    return tmp_path / "serving"


def run_handoff_cli(monkeypatch, state_dir, *args: str) -> None:
    """`python -m level1_devops.handoff ARGS` with LEVEL1_STATE_DIR set, in this process."""
    monkeypatch.setenv("LEVEL1_STATE_DIR", str(state_dir))
    monkeypatch.setattr(sys, "argv", ["level1_devops.handoff", *args])
    main()


def test_hand_off_copies_the_pair(model_dir, card, serving):
    """The hand-off puts both files in the serving folder, loadable and unchanged."""
    hand_off(model_dir, serving)

    _, served_card = load_artifact(serving)

    assert served_card == card


def test_hand_off_refuses_a_bad_pair_and_keeps_the_served_one(model_dir, card, tmp_path, serving):
    """A mismatched pair is not handed off; the model already in service stays."""
    hand_off(model_dir, serving)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MODEL_FILE).write_bytes(b"junk")
    (broken / CARD_FILE).write_text((model_dir / CARD_FILE).read_text())

    with pytest.raises(ModelLoadError, match="does not match its card"):
        hand_off(broken, serving)

    assert load_artifact(serving)[1] == card


def test_hand_off_refuses_a_card_with_another_fingerprint(model_dir, card, tmp_path, serving):
    """A card whose SHA-256 is right but whose fingerprint is not is refused, naming both values."""
    hand_off(model_dir, serving)
    edited = tmp_path / "edited"
    shutil.copytree(model_dir, edited)
    fields = json.loads((edited / CARD_FILE).read_text())
    (edited / CARD_FILE).write_text(json.dumps({**fields, "fingerprint": "0" * 64}))

    message = rf"{re.escape(str(edited / MODEL_FILE))}.*{card.fingerprint}.*card says 0{{64}}$"
    with pytest.raises(ModelLoadError, match=message):
        hand_off(edited, serving)

    assert load_artifact(serving)[1] == card


def test_hand_off_keeps_the_previous_pair(model_dir, card, other_dir, serving):
    """Handing off a new pair keeps the one it replaces in `previous/`, loadable."""
    hand_off(model_dir, serving)

    new_card = hand_off(other_dir, serving)

    assert load_artifact(serving)[1] == new_card
    assert load_artifact(serving / PREVIOUS_DIR)[1] == card


def test_hand_off_of_the_served_pair_again_keeps_the_previous_one(
    model_dir, card, other_dir, serving
):
    """Handing off the pair already in service leaves the kept previous pair alone."""
    hand_off(model_dir, serving)
    hand_off(other_dir, serving)

    hand_off(other_dir, serving)

    assert load_artifact(serving / PREVIOUS_DIR)[1] == card


def test_handoff_undo_puts_the_previous_pair_back(
    model_dir, card, other_dir, tmp_path, serving, monkeypatch
):
    """`python -m level1_devops.handoff --undo` swaps the served pair with the previous one."""
    hand_off(model_dir, serving)
    new_card = hand_off(other_dir, serving)

    run_handoff_cli(monkeypatch, tmp_path, "--undo")

    assert load_artifact(serving)[1] == card
    assert load_artifact(serving / PREVIOUS_DIR)[1] == new_card


def test_handoff_undo_without_a_previous_pair_says_so(
    model_dir, card, tmp_path, serving, monkeypatch
):
    """With nothing kept yet, `--undo` exits with one line naming the folder; service unchanged."""
    hand_off(model_dir, serving)

    with pytest.raises(SystemExit, match=f"nothing to undo: no previous pair in {serving}"):
        run_handoff_cli(monkeypatch, tmp_path, "--undo")

    assert load_artifact(serving)[1] == card
