"""Exception hierarchy: the CLI maps InputError to exit 2 and OutputError to exit 1."""

from __future__ import annotations


class LstmShapeError(Exception):
    """Base class of every error lstmshape raises on purpose."""


class InputError(LstmShapeError, ValueError):
    """Bad input: missing or unreadable file, wrong shape, bad mask, refused overwrite (exit 2)."""


class OutputError(LstmShapeError, OSError):
    """A write that failed for reasons outside the user's input (exit 1)."""
