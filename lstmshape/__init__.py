"""lstmshape: inspect and reshape saved recurrent-network outputs.

The names below are imported on first use, so `import lstmshape` (and the CLI's
`--help` and `--version`) stay free of numpy, h5py and rich.
"""

from __future__ import annotations

from lstmshape._version import __version__

# Not `typing.TYPE_CHECKING`: importing typing costs milliseconds before the console script
# can take over Ctrl-C (`lstmshape.interrupts`). Type checkers treat this name the same.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from lstmshape.api import make_mask, pool, project, reduce, reshape
    from lstmshape.io import load, save

__all__ = ["__version__", "load", "make_mask", "pool", "project", "reduce", "reshape", "save"]

_HOMES = {
    "load": "lstmshape.io",
    "save": "lstmshape.io",
    "make_mask": "lstmshape.api",
    "pool": "lstmshape.api",
    "project": "lstmshape.api",
    "reduce": "lstmshape.api",
    "reshape": "lstmshape.api",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'lstmshape' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
