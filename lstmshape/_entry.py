"""The console script: `--version` is answered before click is even imported.

Scripts call `lstmshape --version` to check what they run; it should cost no more than
starting Python.
"""

from __future__ import annotations

import sys

VERSION_FLAGS = (["--version"], ["-V"])


def main() -> None:
    if sys.argv[1:] in VERSION_FLAGS:
        from lstmshape._version import __version__

        sys.stdout.write(f"lstmshape, version {__version__}\n")
        return
    from lstmshape.cli import main as cli_main

    cli_main()
