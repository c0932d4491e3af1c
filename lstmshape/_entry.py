"""The console script (and `python -m lstmshape`).

Its first act is to take over Ctrl-C (`lstmshape.interrupts`), so an interrupt while click,
numpy or h5py are still being imported ends the run like any other: exit 130, one line.
`--version` is answered before click is even imported: scripts call it to check what they
run, and it should cost no more than starting Python. Its last act spares the process the
collection Python runs at exit (`_spare_the_last_collection`).
"""

from __future__ import annotations

import gc
import sys

from lstmshape import interrupts

VERSION_FLAGS = (["--version"], ["-V"])


def main() -> None:
    interrupts.install()
    try:
        try:
            _run()
            code = 0
        except SystemExit as done:  # how click ends
            code = _as_code(done.code)
    except interrupts.Interrupted:
        code = interrupts.say_interrupted(_stderr_is_terminal())
    code = interrupts.settle(code)
    _spare_the_last_collection()
    if code:
        sys.exit(code)


def _run() -> None:
    if sys.argv[1:] in VERSION_FLAGS:
        from lstmshape._version import __version__

        sys.stdout.write(f"lstmshape, version {__version__}\n")
        sys.stdout.flush()
        return
    from lstmshape.cli import main as cli_main

    cli_main()


def _spare_the_last_collection() -> None:
    """Python ends with a full garbage collection over every object still alive: numpy's,
    click's and rich's modules, ~15-20 ms, as long as a fifth of `import numpy`. The run is
    over (its outputs were published or removed inside their `with` blocks, standard
    streams are still flushed and atexit handlers still run), so the objects alive now are
    frozen out of that collection: the memory goes back to the system with the process."""
    gc.freeze()


def _as_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
