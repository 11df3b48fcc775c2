"""The commands of a doc's console blocks, and the lines of output it shows after them.

Read by `tests/test_readme_walkthrough.py`. A fenced block opened with ```` ```console ````
(indented or not) holds commands in one of two shapes:

- prompted: a line starting with `$ ` is a command; the lines after it, up to the next `$ `, are
  the output the doc shows for it (a line `...` alone stands for lines left out);
- bare: no line starts with `$ `, every line is a command and no output is shown.

A command goes on over the next lines while its line ends with `\\` or a quote is still open
(a JSON body spread over two lines), as in the shell.

What a reader sees is commands and their output, nothing else. A block the walkthrough cannot
run carries an HTML comment on the line before its fence, which Markdown does not show:
`<!-- walkthrough: skip cluster -->`. The word after `skip` is a key of the walkthrough's own
table of reasons (`SKIP_REASONS` in the test), so every reason is written once, beside the test.
"""

import re
import shlex
from dataclasses import dataclass

FENCE = re.compile(r"^(?P<indent>[ \t]*)```console[ \t]*$")
SKIP = re.compile(r"^[ \t]*<!--\s*walkthrough:\s*skip\s+(?P<key>[\w-]+)\s*-->[ \t]*$")
PROMPT = "$ "
ELISION = "..."


@dataclass(frozen=True)
class Command:
    """One command of a doc, as the doc shows it."""

    text: str  # continuation lines joined with newlines, comment included: bash reads it as is
    line: int  # where it starts in the doc (1-based)
    output: tuple[str, ...] = ()  # the lines shown after it (prompted blocks only)
    skip: str = ""  # the key of the block's `<!-- walkthrough: skip KEY -->` comment, if any


def extract(markdown: str) -> list[Command]:
    """Every command of every console block, in the order the doc gives them."""
    lines = markdown.splitlines()
    commands: list[Command] = []
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        before = lines[index - 1] if index else ""
        index += 1
        if not fence:
            continue
        skip = SKIP.match(before)
        indent = len(fence["indent"])
        body: list[tuple[int, str]] = []
        while index < len(lines) and lines[index].strip() != "```":
            text = lines[index]
            text = text[indent:] if not text[:indent].strip() else text.lstrip()
            body.append((index + 1, text.rstrip()))
            index += 1
        index += 1  # the closing fence
        commands += _block(body, skip["key"] if skip else "")
    return commands


def skip_comments(markdown: str) -> list[tuple[int, str]]:
    """Every `<!-- walkthrough: skip KEY -->` comment, as (line, key): each must open a block."""
    return [
        (number, found["key"])
        for number, line in enumerate(markdown.splitlines(), start=1)
        if (found := SKIP.match(line))
    ]


def _block(body: list[tuple[int, str]], skip: str) -> list[Command]:
    prompted = any(text.startswith(PROMPT) for _, text in body)
    found: list[tuple[int, list[str], list[str]]] = []  # (line, command lines, output lines)
    for number, text in body:
        if found and not _complete("\n".join(found[-1][1])):
            found[-1][1].append(text)
        elif prompted and text.startswith(PROMPT):
            found.append((number, [text[len(PROMPT) :]], []))
        elif not text.strip():
            continue
        elif prompted:
            if not found:
                raise ValueError(f"line {number}: output {text!r} before any `$ ` command")
            found[-1][2].append(text)
        else:
            found.append((number, [text], []))
    return [
        Command(text="\n".join(text), line=number, output=tuple(output), skip=skip)
        for number, text, output in found
    ]


def _complete(text: str) -> bool:
    """False while the shell would still read on: a trailing backslash or an open quote."""
    if text.endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # "No closing quotation"
        return False
    return True


def bare(command: Command) -> str:
    """The command as one line without its trailing comment: the key of the test's tables."""
    return re.sub(r"\s+#.*", "", " ".join(command.text.split("\\\n"))).strip()


# --- Expected output ----------------------------------------------------------------------------

# What changes from run to run, and how a shown line is matched against a real one:
# `...` stands for anything (elided text, an absolute path, a shortened float); a run of 7+
# hex digits holding a digit is any hex (versions, hashes, run ids: new on every run); any
# number is any number (timings, counts, versions like v2, Makefile line numbers); a run of
# spaces is any run of spaces. The rest of the line must be there, word for word.
_VARIABLE = re.compile(
    r"(?P<elision>\.\.\.)"
    r"|(?P<hex>(?=[0-9a-f]*\d)[0-9a-f]{7,})"
    r"|(?P<number>\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?)"
    r"|(?P<space>\s+)"
)
_ANY = {
    "elision": ".*?",
    "hex": "[0-9a-f]+",
    "number": r"\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?",
    "space": r"\s+",
}


def pattern(shown: str) -> re.Pattern[str]:
    """A regex that a real output line matches when it is the line shown, up to what varies."""
    parts, end = [], 0
    for variable in _VARIABLE.finditer(shown):
        parts += [re.escape(shown[end : variable.start()]), _ANY[variable.lastgroup]]
        end = variable.end()
    parts.append(re.escape(shown[end:]))
    return re.compile("".join(parts))


def checked_lines(command: Command) -> list[str]:
    """The shown lines the walkthrough looks for: all of them but a lone `...`."""
    return [line.strip() for line in command.output if line.strip() not in ("", ELISION)]


def missing_lines(shown: list[str], output: str) -> list[str]:
    """The shown lines not found in `output`, each searched after the one before it matched."""
    real = output.splitlines()
    missing, start = [], 0
    for line in shown:
        regex = pattern(line)
        found = next((i for i in range(start, len(real)) if regex.search(real[i])), None)
        if found is None:
            missing.append(line)
        else:
            start = found + 1
    return missing


def expects_failure(command: Command) -> bool:
    """The doc shows make failing (`make: *** [...] Error 1`): the walkthrough expects it."""
    return any(re.match(r"make: \*\*\* .*Error \d+", line) for line in checked_lines(command))
