"""The console blocks of README.md: parsed, run for real, compared (`test_readme.py`) or
written back (`python tests/readme_blocks.py --update`, after a change of output).

A block is a `console` code block of `$ COMMAND` lines (continued with a trailing `\\`), each
followed by what the command prints, standard error and standard output merged as a terminal
shows them. The blocks run in order in one scratch folder holding a copy of samples/, so
later blocks may read what earlier ones wrote, and nothing lands in the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
_BLOCK = re.compile(r"^```console\n(.*?)^```$", re.S | re.M)
#: The width tables are drawn at (rich reads COLUMNS when standard error is not a terminal).
COLUMNS = "100"


@dataclass
class Example:
    command: str  # as typed, continuation lines included
    output: str  # as shown in the README


def parse_block(text: str) -> list[Example]:
    examples: list[Example] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            raise ValueError(f"a console block must start with '$ ': {lines[i]!r}")
        command = [lines[i][2:]]
        while command[-1].endswith("\\"):
            i += 1
            command.append(lines[i])
        i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        examples.append(Example("\n".join(command), "\n".join(output)))
    return examples


def blocks(readme: str) -> list[list[Example]]:
    return [parse_block(match.group(1)) for match in _BLOCK.finditer(readme)]


def scratch_folder(parent: Path) -> Path:
    """A new folder holding a copy of samples/ (the data files only)."""
    folder = parent / "scratch"
    shutil.copytree(ROOT / "samples", folder / "samples", ignore=shutil.ignore_patterns("*.py"))
    return folder


def run(command: str, folder: Path) -> str:
    """What `command` prints in `folder`, as the README shows it: stderr and stdout merged,
    trailing spaces dropped, the scratch folder's path written as `.`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSTMSHAPE_")}
    env.update(COLUMNS=COLUMNS, PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    env.pop("NO_COLOR", None)
    done = subprocess.run(
        ["bash", "-c", "{ " + command + "\n} 2>&1"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    return normalise(done.stdout, folder)


def normalise(text: str, folder: Path) -> str:
    text = text.replace(str(folder), ".")
    return "\n".join(line.rstrip() for line in text.rstrip("\n").splitlines())


def update(readme_path: Path = README) -> None:
    """Rewrite every console block of the README with what its commands print now."""
    text = readme_path.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        folder = scratch_folder(Path(tmp))

        def rerun(match: re.Match[str]) -> str:
            parts = []
            for example in parse_block(match.group(1)):
                output = run(example.command, folder)
                parts.append(f"$ {example.command}" + (f"\n{output}" if output else ""))
            return "```console\n" + "\n".join(parts) + "\n```"

        readme_path.write_text(_BLOCK.sub(rerun, text))


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/readme_blocks.py --update")
    update()
