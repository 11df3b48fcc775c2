"""The docs test's rules, checked in seconds: how console blocks are read, how shown output is
matched, and that what the walkthrough skips is written in its tables and nowhere a reader sees."""

import re
import subprocess

from tests.makefiles import makefile_text
from tests.readme_commands import (
    bare,
    checked_lines,
    expects_failure,
    extract,
    missing_lines,
    skip_comments,
)
from tests.test_readme_walkthrough import (
    DOCS,
    ROOT,
    RUN_BY_CI,
    SKIP_REASONS,
    SKIPPABLE,
    WALKED,
    not_run,
)

EXAMPLE = """\
Some prose.

```console
make demo     # every level side by side
make test
```

1. A step:

   ```console
   $ make level0
   level 0: accuracy 1.000, macro F1 1.000
   ...
   $ curl -s -X POST 127.0.0.1:8000/predict \\
       -d '{"island": "Torgersen",
            "sex": "male"}'
   {"species":"Adelie"}
   ```

<!-- walkthrough: skip cluster -->
```console
kubectl create namespace penguins
kubectl -n penguins apply -f level1_devops/infra/k8s/
```

```python
print("not a console block")
```
"""


def test_extract_reads_commands_output_and_skip_comments():
    """Bare and prompted blocks, an indented block, a command over three lines (a backslash,
    then an open quote), shown output, and a block after a skip comment."""
    commands = extract(EXAMPLE)

    assert [c.text.split()[0:2] for c in commands] == [
        ["make", "demo"],
        ["make", "test"],
        ["make", "level0"],
        ["curl", "-s"],
        ["kubectl", "create"],
        ["kubectl", "-n"],
    ]
    demo, test, level0, curl, namespace, apply = commands
    assert (demo.skip, test.output) == ("", ())
    assert level0.output == ("level 0: accuracy 1.000, macro F1 1.000", "...")
    assert checked_lines(level0) == ["level 0: accuracy 1.000, macro F1 1.000"]
    assert curl.text.count("\n") == 2 and curl.text.endswith('"sex": "male"}\'')
    assert curl.output == ('{"species":"Adelie"}',)
    assert curl.line == 14
    assert namespace.skip == apply.skip == "cluster"
    assert skip_comments(EXAMPLE) == [(20, "cluster")]


def test_bare_drops_the_comment_and_joins_continued_lines():
    """The key of the test's tables is the command on one line, without its trailing comment."""
    (demo, test, *_) = extract(EXAMPLE)
    (joined,) = extract("```console\nmake template LEVEL=1 \\\n  DEST=../x   # a copy\n```")

    assert bare(demo) == "make demo"
    assert bare(joined) == "make template LEVEL=1    DEST=../x"
    assert not_run(test) == RUN_BY_CI["make test"] and not_run(demo) == ""


def test_shown_lines_match_up_to_what_varies():
    """Numbers, hex ids and `...` match anything of their kind; the words must be there."""
    output = "\n".join(
        [
            "make[1]: entering",
            "level 1 train: model 3f2a9c0d11be, fingerprint 5b17ba080f84",
            "level 0: model      /tmp/x/repo/state/level0/model.pkl",
            '{"Adelie":0.9992917,"Chinstrap":5.5e-04}',
        ]
    )
    shown = [
        "level 1 train: model e81d3f6c0c8b, fingerprint 5b17ba080f84",
        "level 0: model .../state/level0/model.pkl",
        '{"Adelie":0.99929...,"Chinstrap":0.00055}',
    ]

    assert missing_lines(shown, output) == []
    assert missing_lines(["level 1 serve: model e81d3f6c0c8b"], output) != []


def test_shown_lines_are_found_in_order():
    """A shown line is looked for only after the line shown before it."""
    output = "first\nsecond\n"

    assert missing_lines(["second", "first"], output) == ["first"]


def test_a_shown_make_error_means_the_command_must_fail():
    """Output ending in make's error line marks a command the walkthrough expects to fail."""
    (failing,) = extract("```console\n$ make level2\nmake: *** [Makefile:107: level2] Error 1\n```")
    (passing,) = extract("```console\n$ make level2\nlevel 2: ok\n```")

    assert expects_failure(failing) and not expects_failure(passing)


# --- The docs themselves --------------------------------------------------------------------------


def test_every_doc_with_commands_is_walked():
    """Every Markdown file git knows that has a console block is one the walkthrough runs."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    with_commands = {name for name in listed if extract((ROOT / name).read_text())}

    assert with_commands <= set(WALKED) and "docs/workshop.md" in WALKED


def test_no_console_line_carries_test_machinery():
    """A reader sees commands and their output: no console line speaks of the walkthrough."""
    found = [
        f"{doc}:{command.line}"
        for doc in DOCS
        for command in extract((ROOT / doc).read_text())
        if re.search(r"\b(walkthrough|dry run|not run)\b", command.text + "\n".join(command.output))
    ]

    assert found == []


def test_skip_comments_open_a_block_name_a_reason_and_cover_only_their_kind():
    """Each skip comment sits on the line before a console block, its key has a reason in the
    test, and the block holds only the commands that kind of skip may cover."""
    for doc in DOCS:
        markdown = (ROOT / doc).read_text()
        lines = markdown.splitlines()
        for number, key in skip_comments(markdown):
            assert key in SKIP_REASONS, f"{doc}:{number}: no reason for `skip {key}`"
            assert lines[number].strip() == "```console", f"{doc}:{number}: opens no block"
        for command in extract(markdown):
            if command.skip:
                assert SKIPPABLE[command.skip].match(bare(command)), (
                    f"{doc}:{command.line}: `skip {command.skip}` cannot cover {bare(command)!r}"
                )


def test_what_ci_runs_on_its_own_is_a_step_of_ci():
    """A command the walkthrough leaves to CI is `make test` or its recipe, or an image that
    .ci/run's `make test-images` builds with the same function as the image's target."""
    steps = (ROOT / ".ci" / "run").read_text().splitlines()
    makefile = makefile_text(ROOT / "Makefile")

    assert {"make test", "make test-images", "make test-compose"} <= set(steps)
    assert "$(PY) -m pytest -n 2 --dist loadgroup" in makefile
    assert "$(PY) -m tools.images build 1" in makefile
    assert "$(PY) -m tools.images build 2" in makefile
    assert set(RUN_BY_CI) == {
        "make test",
        ".venv/bin/python -m pytest -n 2 --dist loadgroup",
        "make level1-image",
        "make level2-image",
        "make compose-up",
        "make compose-status",
        "make compose-down VOLUMES=1",
    }


def test_every_make_target_the_docs_name_exists():
    """Each `make TARGET` a doc shows, in a console block or in the prose, is a Makefile target."""
    targets = set(re.findall(r"^([a-zA-Z0-9_-]+):", makefile_text(ROOT / "Makefile"), re.M))
    named = {
        (doc, target)
        for doc in DOCS
        for target in re.findall(r"`make ([a-z][a-z0-9-]*)\b", (ROOT / doc).read_text())
        + [
            target
            for command in extract((ROOT / doc).read_text())
            if not command.text.startswith("cd ")  # a copied level's own Makefile
            for target in re.findall(r"(?:^|&& |; )make ([a-z][a-z0-9-]*)", command.text)
        ]
    }

    assert {(doc, target) for doc, target in named if target not in targets} == set()
