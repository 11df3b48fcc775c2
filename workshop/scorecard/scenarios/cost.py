"""What each level costs, measured in the same run as what it buys: people (the commands and
decisions the new-data and rollback scenarios counted), machines (the processes the lab runs,
at rest and while retraining; the disk a retraining adds) and the code a team keeps (upkeep.py).

Every figure also goes to `card.costs`, which the HTML report charts beside the ✓ each level
earned.
"""

from workshop.scorecard.cells import (
    AT_REST,
    CODE,
    DEPENDENCIES,
    DISK,
    LEVELS,
    NEW_DATA,
    PEOPLE_NEW_DATA,
    PEOPLE_ROLLBACK,
    RETRAINING,
    ROLLBACK,
    Cell,
    Row,
    not_measured,
)
from workshop.scorecard.machines import at_rest
from workshop.scorecard.table import PersonSteps, Scorecard
from workshop.scorecard.upkeep import copied_files, count_code, locked_packages

# The scenario whose counts each people row reads.
TASKS = {PEOPLE_NEW_DATA: NEW_DATA, PEOPLE_ROLLBACK: ROLLBACK}
AT_REST_S = 2.0  # long enough for a service's idle polling (level 2: every 0.5 s) to show


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith('s') else 's'}"


def people_cell(steps: PersonSteps) -> Cell:
    """ "3 commands (run here: a; b; declared: c), 1 decision: d"."""
    said = [f"run here: {'; '.join(steps.typed)}"] if steps.typed else []
    said += [f"declared: {'; '.join(steps.declared)}"] if steps.declared else []
    text = plural(len(steps.typed) + len(steps.declared), "command")
    text += f" ({'; '.join(said)})" if said else ""
    text += ", " + plural(len(steps.decisions), "decision")
    text += f": {'; '.join(steps.decisions)}" if steps.decisions else ""
    return Cell(None, text)


def people_rows(card: Scorecard) -> list[Row]:
    """The two people rows, from what the new-data and rollback scenarios counted."""
    rows = []
    for task in (PEOPLE_NEW_DATA, PEOPLE_ROLLBACK):
        counted = card.people.get(TASKS[task], {})
        rows.append((task, {lv: people_cell(counted.get(lv, PersonSteps())) for lv in LEVELS}))
    for level in LEVELS:
        steps = card.people.get(TASKS[PEOPLE_NEW_DATA], {}).get(level, PersonSteps())
        typed = len(steps.typed) + len(steps.declared)
        card.costs.setdefault(level, {})["commands: new batch served"] = typed
    return rows


def measure_at_rest(card: Scorecard) -> None:
    """Each level's processes with nothing asked of them (the runner calls it once the services
    are up and trained, before any probe)."""
    card.say(f"each level's processes at rest, {AT_REST_S:g} s")
    card.at_rest = at_rest(LEVELS, AT_REST_S)


def machine_rows(card: Scorecard) -> list[Row]:
    rest, retrain, disk = {}, {}, {}
    for level in LEVELS:
        figures = card.costs.setdefault(level, {})
        usage = card.at_rest.get(level)
        if usage is None:
            rest[level] = not_measured("the services were not measured at rest")
        else:
            rest[level] = Cell(
                None,
                f"{plural(usage.processes, 'process')}, {usage.rss_mb:,.0f} MB resident, "
                f"{usage.cpu_percent:.1f}% of a core",
            )
            figures |= {"processes at rest": usage.processes, "MB resident at rest": usage.rss_mb}
        done = card.retraining.get(level)
        if done is None:
            retrain[level] = disk[level] = not_measured("no retraining on new data in this run")
            continue
        retrain[level] = Cell(
            None, f"{done.usage.cpu_s:.1f} CPU-s in {done.usage.wall_s:.1f} s wall"
        )
        disk[level] = Cell(None, f"{done.grew_bytes / 1e6:+.2f} MB")
        figures["CPU-s per retraining"] = done.usage.cpu_s
    return [(AT_REST, rest), (RETRAINING, retrain), (DISK, disk)]


def code_rows(card: Scorecard) -> list[Row]:
    code, packages = {}, {}
    for level in LEVELS:
        counted = count_code(copied_files(level))
        to_run, with_dev = locked_packages(level)
        code[level] = Cell(
            None,
            f"{counted.code_lines:,} / {counted.test_lines:,} lines "
            f"({plural(counted.files, 'Python file')})",
        )
        packages[level] = Cell(None, f"{to_run} to run, {with_dev} with the dev tools")
        card.costs.setdefault(level, {}).update(
            {"lines of code": counted.code_lines, "packages to run": to_run}
        )
    return [(CODE, code), (DEPENDENCIES, packages)]


def observe(card: Scorecard) -> list[Row]:
    """Every cost row, from what this run measured and counted."""
    return [*people_rows(card), *machine_rows(card), *code_rows(card)]
