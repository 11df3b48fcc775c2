"""A Makefile as make reads it: its own text and that of the files it includes."""

import re
from pathlib import Path


def makefile_text(makefile: Path) -> str:
    """The Makefile's text followed by each file it `include`s (paths relative to its folder)."""
    text = makefile.read_text()
    included = re.findall(r"^-?include\s+(\S+)", text, re.M)
    return "\n".join([text, *(makefile_text(makefile.parent / path) for path in included)])
