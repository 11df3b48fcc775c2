"""The house in floors: shared/ holds the conditions, each level stands on shared/ alone, and the
harness, benchmarks and tools stand above the levels. An import that runs back down-to-up, or
from one level into another, would break a level taken away with `make template`."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEVELS = ("level0_notebook", "level1_devops", "level2_pipelines")
ABOVE = ("workshop", "bench", "tools")
# What each home may import from this repository (besides the libraries).
ALLOWED = {"shared": {"shared"}} | {level: {"shared", level} for level in LEVELS}


def project_imports(path: Path) -> set[str]:
    """The top-level packages of this repository that a module imports."""
    ours = {"shared", *LEVELS, *ABOVE, "tests"}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & ours


def modules(home: str) -> list[Path]:
    return sorted(p for p in (ROOT / home).rglob("*.py") if "tests" not in p.parts)


@pytest.mark.parametrize("home", sorted(ALLOWED))
def test_home_imports_only_what_lies_below_it(home):
    """shared/ imports nothing of ours but itself; a level imports only shared/ and itself."""
    wrong = {
        str(path.relative_to(ROOT)): sorted(project_imports(path) - ALLOWED[home])
        for path in modules(home)
        if project_imports(path) - ALLOWED[home]
    }

    assert not wrong, f"imports from outside what {home} stands on: {wrong}"


def test_shared_holds_only_the_conditions():
    """Nothing in shared/ drives the levels: no scorecard, lab, demo, drill or benchmark there."""
    names = {path.stem for path in modules("shared")}

    assert not {n for n in names if n.startswith("bench") or n in {"lab", "demo", "drills"}}
    assert not (ROOT / "shared" / "scorecard").exists()
