"""A group that imports a command's module only when that command is looked up.

`lstmshape inspect x.npy` loads the inspect command and its options, not the other five
commands; the group's `--help` lists every command from `COMMANDS` without importing any.
`tests/test_cli_manners.py` holds the table to the commands (names, modules, summaries).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

#: Every command: the module whose import registers it, and its summary as the group's
#: `--help` lists it (the command's `get_short_help_str(limit=1000)`).
COMMANDS: dict[str, tuple[str, str]] = {
    "diff": (
        "lstmshape.cli.diff",
        "Compare two saved outputs over A's valid steps: exit 0 equal, 1 different, 2 trouble.",
    ),
    "inspect": (
        "lstmshape.cli.inspecting",
        "Show shape, dtype, size, padding, valid lengths and NaN/Inf counts.",
    ),
    "pool": (
        "lstmshape.cli.commands",
        "Pool over time: global (N, T, F) -> (N, F), or windowed -> (N, T', F) as Keras.",
    ),
    "project": (
        "lstmshape.cli.commands",
        "Change the feature axis: (N, T, F) -> (N, T, K) with saved weights or PCA.",
    ),
    "reduce": (
        "lstmshape.cli.commands",
        "Many-to-one: (N, T, F) -> (N, F), one vector per sample from its valid steps.",
    ),
    "reshape": (
        "lstmshape.cli.commands",
        "Rearrange axes: a preset (--to) or an einops pattern (--pattern).",
    ),
}


class LazyGroup(click.Group):
    """`click.Group` over `COMMANDS`: a command's module is imported on first lookup.

    `commands` (click's mapping of every command, also read for "Did you mean" on a
    misspelt name) imports them all; `get_command` only the one asked for.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._registered: dict[str, click.Command] = {}
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]  # click declares a plain attribute
    def commands(self) -> dict[str, click.Command]:
        for name in COMMANDS:
            self._load(name)
        return self._registered

    @commands.setter
    def commands(self, value: dict[str, click.Command]) -> None:
        self._registered = dict(value)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if name is None:
            raise TypeError("Command has no name.")
        self._registered[name] = cmd

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load(cmd_name)
        return self._registered.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self._registered})

    def summaries(self, ctx: click.Context) -> list[tuple[str, str]]:
        """(name, summary) of every visible command, from `COMMANDS` where it is listed."""
        rows = []
        for name in self.list_commands(ctx):
            if name in COMMANDS:
                rows.append((name, COMMANDS[name][1]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        return rows

    def _load(self, name: str) -> None:
        if name not in self._registered and name in COMMANDS:
            importlib.import_module(COMMANDS[name][0])
