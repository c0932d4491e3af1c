"""`PATH[:KEY]` text -> `ArrayRef`, without touching numpy or the file's contents.

A reference names one array: a `.npy` file, a member of a `.npz` archive, a dataset of
an `.h5`/`.hdf5` file, a netCDF variable, a `.safetensors` tensor, a weight of a `.keras`
archive, an array of a `.zarr` store, or `-` for a `.npy` stream on standard
input/output. Splitting is
purely textual (plus one `exists` check); opening the file and finding the key is the job
of `lstmshape.io`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from lstmshape.errors import InputError

__all__ = ["KNOWN_SUFFIXES", "STDIO", "ArrayRef", "parse_ref"]

#: File suffixes split off a KEY (compared lowercased): the formats lstmshape reads and
#: writes, and PyTorch's pickles, which are refused by name (`model.pt:fc.weight`).
KNOWN_SUFFIXES: tuple[str, ...] = (
    ".npy",
    ".npz",
    ".h5",
    ".hdf5",
    ".zarr",
    ".nc",
    ".safetensors",
    ".keras",
    ".pt",
    ".pth",
    ".ckpt",
)

#: The path that means standard input (when reading) or standard output (when writing).
STDIO = "-"


@dataclass(frozen=True)
class ArrayRef:
    """One array: `path` (`"-"` for stdin/stdout) and an optional `key` inside the file.

    >>> ref = ArrayRef("run.H5", "/lstm/output")
    >>> str(ref), ref.suffix, ref.is_stdio
    ('run.H5:/lstm/output', '.h5', False)
    """

    path: str
    key: str | None = None

    def __str__(self) -> str:
        return self.path if self.key is None else f"{self.path}:{self.key}"

    @property
    def is_stdio(self) -> bool:
        """True for `-`: a `.npy` stream on standard input or output."""
        return self.path == STDIO

    @property
    def suffix(self) -> str:
        """The lowercased file suffix (`".npy"` for `-`, `""` when there is none)."""
        if self.is_stdio:
            return ".npy"
        return path_suffix(self.path).lower()

    @property
    def display(self) -> str:
        """How messages name this reference (`standard input` style names for `-`)."""
        return "standard input" if self.is_stdio else str(self)


def _has_known_suffix(path: str) -> bool:
    return path_suffix(path).lower() in KNOWN_SUFFIXES


def path_suffix(path: str) -> str:
    """`pathlib.PurePath(path).suffix` without importing pathlib (milliseconds of every
    start-up): the last component's final `.xxx`, unless the dot starts or ends the name.

    >>> path_suffix("runs/a.tar.h5"), path_suffix("a.npy/."), path_suffix(".npy"), path_suffix("a.")
    ('.h5', '.npy', '', '')
    """
    text = path.replace(os.altsep, os.sep) if os.altsep else path
    parts = text.split(os.sep)  # noqa: PTH206 (this is PurePath.parts, without pathlib)
    name = next((part for part in reversed(parts) if part not in ("", ".")), "")
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def parse_ref(
    text: str | os.PathLike[str], *, exists: Callable[[str], bool] = os.path.exists
) -> ArrayRef:
    """Split `PATH[:KEY]` text into an `ArrayRef`.

    A path that exists as written is never split. Otherwise the text is split at a `:`
    whose left part ends in a known suffix (`KNOWN_SUFFIXES`); if several qualify,
    one whose left part exists wins, else the rightmost (so `run.h5:/a:b` keeps the key
    `/a:b`). Text with no such `:` is a plain path, even `a:b`; an unsupported format is
    reported when the file is opened.

    Args:
        text: the reference as the user typed it; `-` means stdin/stdout.
        exists: the existence test (injectable for tests).

    Raises:
        InputError: the text is empty, or the KEY after the `:` is empty.

    >>> parse_ref("run.h5:/lstm/output", exists=lambda p: False)
    ArrayRef(path='run.h5', key='/lstm/output')
    >>> parse_ref("a:b", exists=lambda p: False)
    ArrayRef(path='a:b', key=None)
    """
    text = os.fspath(text)
    if not text:
        raise InputError("empty array reference; expected PATH or PATH:KEY")
    if text == STDIO or exists(text):
        return ArrayRef(text)
    splits = [i for i, ch in enumerate(text) if ch == ":" and _has_known_suffix(text[:i])]
    if not splits:
        return ArrayRef(text)
    existing = [i for i in splits if exists(text[:i])]
    cut = (existing or splits)[-1]
    path, key = text[:cut], text[cut + 1 :]
    if not key:
        raise InputError(f"{text!r} has an empty KEY after ':'; write {path} or {path}:KEY")
    return ArrayRef(path, key)
