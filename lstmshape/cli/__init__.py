"""The command line: parse, call the library, render. The only package that imports click.

`group` holds the group and its error handling, `options` the shared options and their
parameter types, `commands` the commands (each a few lines: build a job, run it, report).
numpy, h5py and rich are imported inside the commands, so `--help` and `--version` start
fast.
"""

from __future__ import annotations

from lstmshape.cli import commands as _commands  # noqa: F401  (registers the commands)
from lstmshape.cli import completion as _completion  # noqa: F401  (bash completion of FILE:KEY)
from lstmshape.cli import diff as _diff  # noqa: F401  (registers diff)
from lstmshape.cli.group import Terminal, cli, main

__all__ = ["Terminal", "cli", "main"]
