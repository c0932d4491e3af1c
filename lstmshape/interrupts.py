"""Ctrl-C (SIGINT): the run stops, removes what it started writing, and exits 130.

The console script installs `on_sigint` as its first act. It raises `Interrupted`, which
derives from `BaseException` but not from `KeyboardInterrupt`: `except Exception` never
swallows it, click does not turn it into an `Abort`, and every `finally` and abort path on
the way out (temporary files, locks, dask clusters) still runs. Later interrupts are only
noted, so a second Ctrl-C cannot break that clean-up half way.

An interrupt that some library swallowed (one raised inside a `__del__` is printed and
dropped by Python) is still noted: `commit_point`, which every sink calls right before its
output takes its name, raises it there, and `exit_code` turns a run that ended anyway into
exit 130. From the first commit point on the run is past return: later interrupts are
ignored, so every output of the run lands and the run exits 0. A library caller, which never
installs the handler, is unaffected.

No imports beyond the standard library: this runs before click and numpy are loaded.
"""

from __future__ import annotations

import sys

try:  # the C module: `signal` builds its enums on import, a millisecond with Ctrl-C unhandled
    import _signal as signal
except ImportError:  # not CPython
    import signal  # type: ignore[no-redef]

TYPE_CHECKING = False  # not typing's: this module loads before anything else
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

#: The exit code of an interrupted run (128 + SIGINT), as shells report a Ctrl-C.
EXIT_CODE = 130


class Interrupted(BaseException):
    """SIGINT arrived: unwind, dropping partial outputs, and exit 130."""


class _State:
    installed = False
    seen = False  # a SIGINT arrived
    committed = False  # an output took its name: the run is past return


_state = _State()


def install() -> None:
    """Handle SIGINT as described above (the console script only; never on import)."""
    signal.signal(signal.SIGINT, on_sigint)
    sys.unraisablehook = _quiet_about_interrupts(sys.unraisablehook)
    _state.installed = True


def _quiet_about_interrupts(hook: Any) -> Any:
    """An unraisablehook that drops an `Interrupted` Python could not raise (in a `__del__`
    or an import lock's callback): it is noted already, and its traceback is no message."""

    def quiet(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Interrupted):
            hook(unraisable)

    return quiet


def on_sigint(_signum: int, _frame: FrameType | None) -> None:
    first = not _state.seen
    _state.seen = True
    if first and not _state.committed:
        raise Interrupted


def commit_point() -> None:
    """An output is about to take its name: stop here if an interrupt came (and was
    swallowed), else let the run finish whatever arrives from now on."""
    if not _state.installed:
        return
    if _state.seen and not _state.committed:
        raise Interrupted
    _state.committed = True


def was_interrupted() -> bool:
    """An interrupt came before the run was past return (it ends with exit 130)."""
    return _state.seen and not _state.committed


def say_interrupted(stderr_is_terminal: bool = False) -> int:
    """Print the one line an interrupted run ends with; returns the exit code.

    On a terminal the line starts fresh after the `^C` the terminal echoed.
    """
    sys.stderr.write(("\n" if stderr_is_terminal else "") + "Interrupted\n")
    sys.stderr.flush()
    return EXIT_CODE


def settle(code: int) -> int:
    """The exit code of a run that ended with `code`: from here on SIGINT is ignored (a
    handler left in place would be reset to the default during interpreter shutdown), and an
    interrupt that was swallowed on the way makes it 130."""
    if _state.installed:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if code != EXIT_CODE and was_interrupted():
        return say_interrupted()
    return code
