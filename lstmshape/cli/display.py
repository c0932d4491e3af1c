"""What a run shows: the shape table before the work starts, warnings, progress bars and
the names lstmshape chose on standard error; the `--json` object on standard output.

Quiet levels: 0 shows everything; `-q` drops the table and the bars but keeps warnings
and chosen names; `-qq` leaves errors only. rich is imported only to draw.

On a terminal the table is drawn from the plan before the work starts, so a person sees
what a long run is doing (an error found during the work follows it). When standard error
is a file or a pipe, the same table is written once the run succeeds: a script reading a
failed run's standard error finds the one `Error:` line the contract promises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from lstmshape.cli.group import Terminal


class Display:
    """The hooks `run.execute` and `inspect` call while they work, for one command."""

    def __init__(self, term: Terminal, quiet: int = 0, as_json: bool = False) -> None:
        self.term = term
        self.quiet = quiet
        self.as_json = as_json
        self._table_shown = False

    def table(self, summary: Any) -> None:
        """The before/after table, from the plan (`on_plan`): drawn now on a terminal."""
        if self.term.stderr_isatty:
            self._draw_table(summary)

    def _draw_table(self, summary: Any) -> None:
        if not self.quiet and not self._table_shown:
            from lstmshape import render

            render.print_summary(summary)
        self._table_shown = True

    def warn(self, message: str) -> None:
        """One `Warning:` line; `-q` keeps it, `-qq` drops it."""
        if self.quiet < 2:
            click.echo(f"Warning: {message}", err=True)

    def notice(self, message: str) -> None:
        """A line the user needs even under `-q` (a name lstmshape chose)."""
        if self.quiet < 2:
            click.echo(message[:1].upper() + message[1:], err=True)

    @contextmanager
    def progress(self, total: int, label: str) -> Iterator[Any]:
        """A bar on a terminal's standard error for one pass over `total` bytes."""
        if not self.term.stderr_isatty or self.quiet:
            yield lambda _nbytes: None
            return
        from lstmshape import render

        with render.progress_bar(total, label, enabled=True) as advance:
            yield advance

    def finish(self, summary: Any) -> None:
        """After the run: the table (unless drawn already), the names chosen, the JSON."""
        self._draw_table(summary)
        for notice in summary.notices:
            self.notice(notice)
        if self.as_json:
            from lstmshape.report import print_json

            payload = summary.to_dict()
            payload["dry_run"] = summary.dry_run
            print_json(payload)
