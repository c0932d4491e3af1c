"""How `--help` reads: options in sections (input, mask, operation, output, engine) and the
group's command summaries whole, never cut short with `...`."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: The help section of each shared option; a command's own options are "Operation".
SECTION_OF = {
    "layout": "Input",
    "allow_external": "Input",
    "mask_ref": "Mask",
    "lengths_ref": "Mask",
    "mask_value": "Mask",
    "pad_side": "Mask",
    "output_ref": "Output",
    "force": "Output",
    "dry_run": "Output",
    "mask_out": "Output",
    "lengths_out": "Output",
    "save_basis": "Output",
    "chunk_mb": "Output",
    "as_json": "Output",
    "quiet": "Output",
    "engine": "Engine",
    "scheduler": "Engine",
    "workers": "Engine",
    "debug": "Other",
}
SECTIONS = ("Input", "Mask", "Operation", "Output", "Engine", "Other")


class HelpContext(click.Context):
    """click's context, with the help width found without importing shutil (whose
    compression modules cost `--help` a few milliseconds); the same width click finds."""

    def make_formatter(self) -> click.HelpFormatter:
        width = self.terminal_width
        if width is None and click.formatting.FORCED_WIDTH is None:
            width = max(min(terminal_columns(), self.max_content_width or 80) - 2, 50)
        return self.formatter_class(width=width, max_width=self.max_content_width)


def terminal_columns() -> int:
    """`shutil.get_terminal_size().columns`: $COLUMNS when it is a positive number, else
    standard output's terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class SectionedCommand(click.Command):
    """A command whose `--help` lists its options by section."""

    context_class = HelpContext

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {section: [] for section in SECTIONS}
        help_option = self.get_help_option(ctx)
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or not isinstance(param, click.Option):
                continue  # arguments are in the usage line and the description
            section = "Other" if param is help_option else SECTION_OF.get(param.name or "")
            rows[section or "Operation"].append(record)
        for section in SECTIONS:
            if rows[section]:
                with formatter.section(f"{section} options"):
                    formatter.write_dl(rows[section])


def format_full_commands(rows: list[tuple[str, str]], formatter: click.HelpFormatter) -> None:
    """The `Commands:` section with each command's whole first sentence (wrapped)."""
    if rows:
        with formatter.section("Commands"):
            formatter.write_dl(rows)
