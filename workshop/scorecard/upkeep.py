"""The code a team keeps with a level, counted from what `make template LEVEL=N` copies out:
the level's files git keeps (and the root tests it takes along), the `shared/` modules it
vendors in with their tests, and the lock it writes.

The rule for lines: Python files and the notebook's code cells; a line counts unless it is blank
or only a comment (docstrings count: they are kept too); a file is a test if it sits in a tests/
folder or is named test_*.py or conftest.py.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from shared.paths import REPO_ROOT
from tools.staging import LEVELS, dependencies, level_files, lock_lines, vendored_modules

NUMBERS = {"level 0": 0, "level 1": 1, "level 2": 2}


@dataclass
class Code:
    code_lines: int
    test_lines: int
    files: int


def source_lines(path: Path) -> list[str]:
    """A Python file's lines, or a notebook's code cells' lines."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return [
            line
            for cell in cells
            if cell["cell_type"] == "code"
            for line in "".join(cell["source"]).splitlines()
        ]
    return path.read_text().splitlines()


def counted(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


def is_test(relative: str) -> bool:
    parts = Path(relative).parts
    return "tests" in parts[:-1] or parts[-1].startswith("test_") or parts[-1] == "conftest.py"


def count_code(files: dict[str, Path]) -> Code:
    """Lines of code and of tests in `files` (relative name -> path) by the module's rule."""
    code = tests = kept = 0
    for relative, path in files.items():
        if path.suffix not in (".py", ".ipynb"):
            continue
        kept += 1
        lines = counted(source_lines(path))
        if is_test(relative):
            tests += lines
        else:
            code += lines
    return Code(code, tests, kept)


def copied_files(level: str) -> dict[str, Path]:
    """What a copy of the level holds in Python: its files and the vendored shared/ modules."""
    files = level_files(LEVELS[NUMBERS[level]])
    for module in vendored_modules(files):
        files[f"shared/{module}.py"] = REPO_ROOT / "shared" / f"{module}.py"
        test = REPO_ROOT / "tests" / "shared" / f"test_{module}.py"
        if test.is_file():
            files[f"tests/test_{module}.py"] = test
    return files


def locked_packages(level: str) -> tuple[int, int]:
    """(packages to run, packages with the dev tools): the lines of the lock a copy gets."""
    runtime, dev = dependencies(LEVELS[NUMBERS[level]])
    return len(lock_lines(runtime)), len(lock_lines(runtime + dev))
