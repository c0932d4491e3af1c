"""The `lstmshape` group: every failure becomes one `Error:` line and an exit code."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click

from lstmshape._version import __version__
from lstmshape.errors import LstmShapeError, OutputError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass
class Terminal:
    """Which standard streams are terminals, read once; tests pass their own."""

    stdin_isatty: bool = field(default_factory=lambda: _isatty(sys.stdin))
    stdout_isatty: bool = field(default_factory=lambda: _isatty(sys.stdout))
    stderr_isatty: bool = field(default_factory=lambda: _isatty(sys.stderr))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LstmShapeGroup(click.Group):
    """Turns every failure into one `Error:` line and an exit code (2 input, 1 other)."""

    def main(  # type: ignore[override]  # always exits, in every mode
        self, args: Any = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        extra.pop("standalone_mode", None)
        try:
            code = super().main(argv, prog_name or "lstmshape", standalone_mode=False, **extra)
        except click.exceptions.Abort:
            _fail("aborted", 1)
        except click.ClickException as error:
            _fail(error.format_message(), error.exit_code)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except LstmShapeError as error:
            if "--debug" in argv:
                raise
            _fail(str(error), 1 if isinstance(error, OutputError) else 2)
        except Exception as error:
            if "--debug" in argv:
                raise
            _fail(f"{type(error).__name__}: {error} (run with --debug for a traceback)", 1)
        sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    first_line = " ".join(message.split())
    click.echo(f"Error: {first_line}", err=True)
    sys.exit(code)


def _quiet_broken_pipe() -> None:
    """The reader went away (`| head`): stop without a traceback, as a failed write."""
    from lstmshape.io import silence_stdout

    silence_stdout()
    sys.exit(1)


@click.group(cls=LstmShapeGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="lstmshape")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Inspect and reshape saved LSTM/GRU outputs, padding-aware.

    Data goes to standard output or a file; tables go to standard error.
    """
    if ctx.obj is None:
        ctx.obj = Terminal()


def main() -> None:
    cli.main()
