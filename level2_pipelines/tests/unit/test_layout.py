"""The lesson comes first: the stages, the flow, the service and the monitor do not import the
machinery in `ops/` when they are imported; only the command lines and the triggers' watcher
reach into it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2]
# Entry points that start or find the machinery at their top: the command line, the triggers
# and their watcher (it hands landed batches to the warm worker).
MAY_IMPORT_OPS = {"pipeline_cli.py", "triggers.py", "watcher.py"}


def top_level_imports(path: Path) -> set[str]:
    """The modules `path` imports when it is imported (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_lesson_modules_leave_ops_alone_at_import():
    """No module of the lesson (outside ops/, the entry points and the tests) imports ops/."""
    ops = f"{PACKAGE.name}.ops"
    lesson = [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not {"ops", "tests"} & set(path.relative_to(PACKAGE).parts)
        and path.name not in MAY_IMPORT_OPS
    ]

    reaching = sorted(
        str(path.relative_to(PACKAGE))
        for path in lesson
        if any(name == ops or name.startswith(f"{ops}.") for name in top_level_imports(path))
    )

    assert len(lesson) > 20, "the lesson's modules were not found"
    assert not reaching, f"import ops/ at their top: {reaching}"
