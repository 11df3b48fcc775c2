"""Take one level away as the starter of your own project.

    make template LEVEL=1 DEST=~/penguins-service [NAME=penguins_service]
    python -m tools.template --level 1 --dest ~/penguins-service [--name penguins_service]

The copy is a standalone project: the level's code and tests as a package named NAME (default:
the level's own name), the parts of `shared/` it imports vendored into that package, its own
pyproject.toml and lock, a Makefile with the level's targets under plain names (`train`,
`serve`, `pipeline`...), a README, a CI workflow, a Dockerfile (levels 1 and 2), a .gitignore.

Rendering is copier's (a maintained templating tool): the project files are Jinja templates in
`templates/`, and the answers are recorded in `.copier-answers.yml`, so running this again on a
project it made (kept in git) brings later changes of the level with `copier update`, merging
them with the project's own edits. copier renders, it cannot rewrite code, so a staging step
first turns this checkout into a copier template under `state/templates/levelN/` (a git
repository, one tagged commit per change): the level's files with their imports pointed at the
new package name, plus the vendored `shared/` modules and their tests. Nothing in the copy
imports `shared` or this repository; the answers file names the staged template, which is what
`copier update` reads.
"""

import argparse
import subprocess
import sys
from pathlib import Path

from shared.paths import REPO_ROOT
from tools.staging import LEVELS, NAME_PATTERN, TemplateError, stage


def generate(level_number: int, dest: Path, name: str | None = None) -> Path:
    """Write (or, for a project this made, update) the standalone project at `dest`."""
    import copier  # imported here: the levels themselves never need it

    if level_number not in LEVELS:
        raise TemplateError(f"LEVEL must be one of {sorted(LEVELS)}, not {level_number}")
    level = LEVELS[level_number]
    name = name or level.package
    if not NAME_PATTERN.fullmatch(name):
        raise TemplateError(
            f"NAME {name!r} is not a package name: lowercase letters, digits and _, "
            "starting with a letter"
        )
    dest = dest.expanduser().resolve()
    if dest == REPO_ROOT or REPO_ROOT in dest.parents:
        raise TemplateError(f"DEST {dest} is inside this repository; pick a folder outside it")
    answers = dest / ".copier-answers.yml"
    if not answers.is_file() and dest.exists() and any(dest.iterdir()):
        raise TemplateError(f"DEST {dest} exists and is not empty; pick a new folder")
    source = stage(level)
    if answers.is_file():
        # A project this made: bring it up to date with the level, keeping its own edits.
        copier.run_update(
            dest, data={"package_name": name}, defaults=True, overwrite=True, quiet=True
        )
        verb = "updated"
    else:
        copier.run_copy(str(source), dest, data={"package_name": name}, defaults=True, quiet=True)
        verb = "wrote"
    tidy(dest)
    print(f"template: {verb} level {level_number} as package {name!r} in {dest}")
    print(f"template: next, `cd {dest} && make test` (it builds .venv from requirements.lock)")
    return dest


def tidy(dest: Path) -> None:
    """Sort the renamed imports where the new name changed their order; format as ruff would."""
    ruff = [sys.executable, "-m", "ruff"]
    for command in (["check", "--select", "I", "--fix"], ["format"]):
        subprocess.run([*ruff, *command, "--quiet", "--no-cache", "."], cwd=dest, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Copy one level out as a standalone project.")
    parser.add_argument("--level", type=int, required=True, choices=sorted(LEVELS))
    parser.add_argument("--dest", type=Path, required=True, help="a new folder outside the repo")
    parser.add_argument("--name", help="the package name (default: the level's own)")
    args = parser.parse_args(argv)
    try:
        generate(args.level, args.dest, args.name)
    except TemplateError as error:
        sys.exit(f"template: {error}")


if __name__ == "__main__":
    main()
