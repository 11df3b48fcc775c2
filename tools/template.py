"""Take one level away as the starter of your own project.

    make template LEVEL=1 DEST=~/penguins-service [NAME=penguins_service]
    python -m tools.template --level 1 --dest ~/penguins-service [--name penguins_service]

The copy is a standalone project: the level's code and tests as a package named NAME (default:
the level's own name), the parts of `shared/` it imports vendored into that package, its own
pyproject.toml and lock, a Makefile with the level's targets under plain names (`train`,
`serve`, `pipeline`...), a README, a CI workflow, a Dockerfile (levels 1 and 2), a .gitignore.

Rendering is copier's (a maintained templating tool): the project files are Jinja templates in
`templates/`, and the answers are recorded in `.copier-answers.yml`. The copy starts as a git
repository with its first version committed (unless DEST is already inside one), because that is
what `copier update` needs: running this again on the copy, or `copier update` in it, brings the
level's later changes merged with the project's own edits.

copier renders, it cannot rewrite code, so a staging step (tools/staging.py) first makes the
level a copier template: imports pointed at the new package name, `shared/` modules vendored in.
Two sources for copies were weighed. This repository itself (copier's `_subdirectory`, its own
version tags) cannot be one as it stands: its files are the levels before that rewrite, which
copier could make only by running our staging code as `_tasks` (code each user must trust, with
this project's environment, at every copy and update), and copier takes a template's latest
version from all of a repository's tags, where three levels would share one line of versions.
A template repository per level is what copier expects, so staging commits each change to one,
kept in this checkout's git folder: it survives `make clean`, needs no network and no account,
and the answers name it as `_src_path`. (A project could also publish those repositories from CI
for people who never clone it; this one does not yet.) If this checkout moves, its git folder
moves with it: running this again points the copy's answers at the new place (by hand: edit
`_src_path` in `.copier-answers.yml`, commit, `copier update`).
"""

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from shared.paths import REPO_ROOT
from tools.staging import LEVELS, NAME_PATTERN, TemplateError, has_version, stage

# Who commits a copy's first version when the user has no git identity set up yet.
FALLBACK_IDENTITY = ["-c", "user.name=mlops-maturity-levels", "-c", "user.email=template@localhost"]


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
        committed(dest)
        follow(dest, answers, source)
        copier.run_update(
            dest, data={"package_name": name}, defaults=True, overwrite=True, quiet=True
        )
        tidy(dest)
        print(f"template: updated {dest} to level {level_number}'s latest version")
        print(f"template: next, review `git -C {dest} diff` and commit it")
        return dest
    copier.run_copy(str(source), dest, data={"package_name": name}, defaults=True, quiet=True)
    tidy(dest)
    first_commit(dest, level_number)
    print(f"template: wrote level {level_number} as package {name!r} in {dest}")
    print(f"template: next, `cd {dest} && make test` (it builds .venv from requirements.lock)")
    return dest


def committed(dest: Path) -> None:
    """Refuse a copy that copier could not update: one outside git, or with work not committed
    (the update merges the level's changes into a clean work tree)."""
    status = subprocess.run(
        ["git", "-C", str(dest), "status", "--porcelain"], capture_output=True, text=True
    )
    if status.returncode != 0:
        raise TemplateError(
            f"{dest} is not kept in git, which the update merges through: "
            "`git init`, commit it, and run this again"
        )
    if status.stdout.strip():
        raise TemplateError(f"{dest} has changes not committed: commit or stash them first")


def follow(dest: Path, answers: Path, source: Path) -> None:
    """Point the copy's answers at this checkout's template history, if they name another
    place (the checkout moved), once sure it holds the version the copy came from."""
    recorded = yaml.safe_load(answers.read_text())
    if not has_version(source, str(recorded["_commit"])):
        raise TemplateError(
            f"{dest} came from version {recorded['_commit']} of the level's template, which "
            f"{source} does not hold (this checkout's template history started after it): run "
            "this from the checkout that made the copy, whose `_src_path` the answers name"
        )
    if recorded["_src_path"] == str(source):
        return
    text = answers.read_text().replace(
        f"_src_path: {recorded['_src_path']}\n", f"_src_path: {source}\n"
    )
    answers.write_text(text)
    message = f"Take the template's later versions from {source}"
    git(dest, "commit", "--quiet", "--message", message, "--", answers.name)


def first_commit(dest: Path, level_number: int) -> None:
    """Commit the copy as it was generated, so `copier update` (which merges the template's
    changes with the project's) works from the start; a copy inside a repository is left to it."""
    inside = subprocess.run(
        ["git", "-C", str(dest), "rev-parse", "--is-inside-work-tree"], capture_output=True
    )
    if inside.returncode == 0:
        return
    git(dest, "init", "--quiet")
    git(dest, "add", "--all")
    git(dest, "commit", "--quiet", "--message", f"Level {level_number} of mlops-maturity-levels")


def git(dest: Path, *args: str) -> None:
    """git in the copy, as the user; as FALLBACK_IDENTITY if git does not know them yet."""
    known = subprocess.run(["git", "-C", str(dest), "config", "user.email"], capture_output=True)
    identity = [] if known.returncode == 0 else FALLBACK_IDENTITY
    subprocess.run(["git", *identity, "-C", str(dest), *args], check=True, capture_output=True)


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
