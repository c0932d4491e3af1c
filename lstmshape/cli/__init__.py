"""The command line: parse, call the library, render. The only package that imports click.

`group` holds the group and its error handling, `lazy` the table of commands (each
command's module is imported when that command runs), `options` the shared options and
their parameter types, `inspecting`, `commands` and `diff` the commands (each a few lines:
build a job, run it, report). numpy, h5py and rich are imported inside the commands, so
`--help` and `--version` start fast.
"""

from __future__ import annotations

from lstmshape.cli.group import Terminal, cli, main

__all__ = ["Terminal", "cli", "main"]
