"""The `lstmshape` group and how a run ends: usage errors as click shows them, every other
failure as one `Error:` line, an interrupt as `Interrupted`, each with its exit code."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from lstmshape import interrupts
from lstmshape._version import __version__
from lstmshape.cli.help import (
    CONTEXT_SETTINGS,
    HelpContext,
    SectionedCommand,
    format_full_commands,
)
from lstmshape.cli.lazy import LazyGroup
from lstmshape.errors import LstmShapeError, OutputError

#: Exit codes: 0 success, 1 a failure outside the input (a write), 2 usage errors and bad
#: input (refused overwrites included), 130 interrupted (Ctrl-C).
EXIT_INPUT, EXIT_OTHER = 2, 1

#: The variable click's shell completion reads (`prog_name` is always `lstmshape`).
_COMPLETE_VAR = "_LSTMSHAPE_COMPLETE"

#: Optional modules -> the extra that installs them (pyproject.toml).
_EXTRAS = {"dask": "dask", "distributed": "dask", "zarr": "dask", "numcodecs": "dask"}


class Terminal:
    """Which standard streams are terminals, read once; tests pass their own.

    A plain class, not a dataclass: creating one costs `--help` a few tenths of a ms.
    """

    def __init__(
        self,
        stdin_isatty: bool | None = None,
        stdout_isatty: bool | None = None,
        stderr_isatty: bool | None = None,
    ) -> None:
        self.stdin_isatty = _isatty(sys.stdin) if stdin_isatty is None else stdin_isatty
        self.stdout_isatty = _isatty(sys.stdout) if stdout_isatty is None else stdout_isatty
        self.stderr_isatty = _isatty(sys.stderr) if stderr_isatty is None else stderr_isatty

    def __repr__(self) -> str:
        return (
            f"Terminal(stdin_isatty={self.stdin_isatty}, stdout_isatty={self.stdout_isatty}, "
            f"stderr_isatty={self.stderr_isatty})"
        )


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LstmShapeGroup(LazyGroup):
    """Ends every run with an exit code and at most a usage block or one line on stderr."""

    command_class = SectionedCommand
    context_class = HelpContext

    def main(  # type: ignore[override]  # always exits, in every mode
        self, args: Any = None, prog_name: str | None = None, **extra: Any
    ) -> NoReturn:
        argv = list(sys.argv[1:] if args is None else args)
        extra.pop("standalone_mode", None)
        if _COMPLETE_VAR in os.environ:  # bash completion keeps FILE:KEY whole
            import lstmshape.cli.completion  # noqa: F401
        try:
            # Always `lstmshape`: usage lines and `_LSTMSHAPE_COMPLETE` name the console script.
            code = super().main(argv, "lstmshape", standalone_mode=False, **extra)
        except BaseException as error:
            code = _ending(error, debug="--debug" in argv)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # click would answer with a blank line and an Abort
            raise interrupts.Interrupted from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        format_full_commands(self.summaries(ctx), formatter)


def _ending(error: BaseException, *, debug: bool) -> int:
    """The exit code a failure ends the run with, after saying what went wrong."""
    if isinstance(error, SystemExit):
        raise error
    if interrupts.was_interrupted() or isinstance(
        error, interrupts.Interrupted | click.exceptions.Abort | KeyboardInterrupt
    ):
        return interrupts.say_interrupted(_isatty(sys.stderr))
    if isinstance(error, click.UsageError):  # as click shows it: usage, a hint, the error
        error.show()
        return error.exit_code
    if isinstance(error, click.ClickException):
        return _fail(error.format_message(), error.exit_code)
    if isinstance(error, BrokenPipeError):
        return _quiet_broken_pipe()
    extra = _missing_extra(error)
    if extra is not None:
        return _fail(extra, EXIT_INPUT)
    if debug or not isinstance(error, Exception):
        raise error
    if isinstance(error, LstmShapeError):
        return _fail(str(error), EXIT_OTHER if isinstance(error, OutputError) else EXIT_INPUT)
    return _fail(f"{type(error).__name__}: {error} (run with --debug for a traceback)", EXIT_OTHER)


def _missing_extra(error: BaseException) -> str | None:
    """The message for an optional dependency that is not installed, else None."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    extra = _EXTRAS.get(error.name.partition(".")[0])
    if extra is None:
        return None
    return (
        f"this needs the optional {extra} extra, which is not installed "
        f"(no module named {error.name!r}): pip install 'lstmshape[{extra}]'"
    )


def _fail(message: str, code: int) -> int:
    first_line = " ".join(message.split())
    click.echo(f"Error: {first_line}", err=True)
    return code


def _quiet_broken_pipe() -> int:
    """The reader went away (`| head`): stop without a traceback, as a failed write."""
    from lstmshape.io import silence_stdout

    silence_stdout()
    return EXIT_OTHER


@click.group(cls=LstmShapeGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="lstmshape")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Inspect and reshape saved LSTM/GRU outputs, padding-aware.

    Data goes to standard output or a file; tables, warnings and errors go to standard
    error. Run `lstmshape COMMAND --help` for a command's options.

    \b
    Example:
      lstmshape inspect samples/post_padded.npy
      lstmshape reduce samples/post_padded.npy -s last \\
          --lengths samples/post_lengths.npy -o last.npy
    """
    if ctx.obj is None:
        ctx.obj = Terminal()


def main() -> None:
    cli.main()
