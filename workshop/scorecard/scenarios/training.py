"""Every level trained twice on the shared data, side by side, as its README says, and put in
service (level 1 handed off, level 2 promoted). The two trainings are what reproducibility and
the record of training compare; the second is the model every service serves."""

from collections.abc import Callable

from workshop.scorecard.table import Scorecard, side_by_side


def level0(card: Scorecard) -> None:
    card.trained.level0_pickles = []
    for _ in range(2):
        card.lab.train_level0()
        card.trained.level0_pickles.append((card.lab.root / "level0" / "model.pkl").read_bytes())


def level1(card: Scorecard) -> None:
    first = card.lab.train_level1()
    second = card.lab.train_level1()  # same folder, as a person reruns it
    card.trained.level1_model_cards = [first, second]
    card.lab.hand_off_level1()


def level2(card: Scorecard) -> None:
    card.trained.level2_versions, card.trained.level2_runs = [], 0
    for args in ((), ("--force",)):  # level 2 skips a batch it has trained, unless forced
        before = set(card.lab.versions())
        card.lab.run_level2(*args).check_returncode()
        card.trained.level2_runs += 1
        card.trained.level2_versions += sorted(set(card.lab.versions()) - before, key=int)


def train_everything(card: Scorecard, before_level2: Callable[[], None] = lambda: None) -> None:
    """`before_level2` runs first in level 2's thread (e.g. starting the lab's Prefect server
    while the other levels train)."""
    card.say("training every level twice, side by side, each in its own folder of the lab")

    def level2_after() -> None:
        before_level2()
        level2(card)

    side_by_side(
        {"level 0": lambda: level0(card), "level 1": lambda: level1(card), "level 2": level2_after}
    )
