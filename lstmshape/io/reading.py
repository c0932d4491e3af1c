"""Reading by format: `open_array`, `load` and `list_arrays` hand each reference to the module
of its format (`.npy`, `.npz`, `.h5`/`.hdf5`, `.nc`, `.safetensors`, `.keras`, `.zarr`, and
`-` for standard input).

Reading never loads more than asked for: `list_arrays` reads headers only, `open_array`
memory-maps `.npy` files and uncompressed `.npz` members and slices HDF5 datasets, and
pickled (object) arrays are refused before any of their bytes are interpreted.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from lstmshape.io.base import (
    ArrayInfo,
    ArraySource,
    RefLike,
    _as_ref,
    _check_input_file,
    _format_of,
    _is_zarr,
)
from lstmshape.refs import ArrayRef

# format -> (its module under lstmshape.io, the opener, the lister): a format's module is
# imported when a file of that format is first read, so a run pays only for its formats.
_READERS: dict[str, tuple[str, str, str]] = {
    "npy": ("npy", "_open_npy", ""),
    "npz": ("npz", "_open_npz", "_list_npz"),
    "h5": ("h5", "_open_h5", "_list_h5"),
    "nc": ("netcdf", "_open_nc", "_list_nc"),
    "safetensors": ("safetensors", "_open_safetensors", "_list_safetensors"),
    "keras": ("keras", "_open_keras", "_list_keras"),
    "zarr": ("zarr", "_open_zarr", "_list_zarr"),
    "-": ("stdio", "_open_stdin", ""),
}


def _reader(fmt: str, lister: bool = False) -> Callable[[ArrayRef], Any]:
    module, opener, listing = _READERS[fmt]
    return getattr(importlib.import_module(f"lstmshape.io.{module}"), listing if lister else opener)


def open_array(ref: RefLike) -> ArraySource:
    """Open one array for reading, without reading its data.

    Args:
        ref: `PATH`, `PATH:KEY`, `-` (a .npy stream on standard input) or an `ArrayRef`.
            KEY may be left out when the file holds exactly one candidate array.

    Raises:
        InputError: missing/unreadable/damaged file, unsupported format, pickled data,
            an ambiguous, missing or group KEY. The message is one line naming the path.

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(d / "x.npy", np.arange(6).reshape(3, 2))
    >>> with open_array(str(d / "x.npy")) as src: src.shape, src.read(1, 2).tolist()
    ((3, 2), [[2, 3]])
    """
    ref = _as_ref(ref)
    if ref.is_stdio:
        return _reader("-")(ref)
    if _is_zarr(ref):
        return _reader("zarr")(ref)
    fmt = _format_of(ref)
    _check_input_file(ref.path)
    return _reader(fmt)(ref)


def load(ref: RefLike) -> np.ndarray:
    """Read a whole array (a read-only memory map for .npy files).

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> np.savez(d / "r.npz", out=np.ones((2, 3), "f4"))
    >>> load(f"{d}/r.npz:out").shape
    (2, 3)
    """
    with open_array(ref) as src:
        return src.read_all()


def list_arrays(path: RefLike) -> list[ArrayInfo]:
    """Every candidate array in a file, described from headers only (no data read).

    `.npy` and `-` give one entry; `.npz` gives its members and `.h5` its datasets in tree
    order (pickled/object and empty-dataspace arrays are not candidates). A KEY narrows the
    listing to that array, or for HDF5 to the datasets inside that group.
    """
    ref = _as_ref(path)
    if _is_zarr(ref):
        return _reader("zarr", lister=True)(ref)
    fmt = "npy" if ref.is_stdio else _format_of(ref)
    if fmt == "npy":
        with open_array(ref) as src:
            return [src.info]
    _check_input_file(ref.path)
    return _reader(fmt, lister=True)(ref)


def iter_arrays(path: RefLike) -> Iterator[ArraySource]:
    """Every array `list_arrays` lists, opened in turn: an `.h5` or `.npz` file is opened
    once for all of them (opening it again per array would cost the square of their
    number). Each source is closed when the next one is asked for.

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> np.savez(d / "r.npz", a=np.zeros(2), b=np.ones((2, 3)))
    >>> [(src.info.ref.key, src.shape) for src in iter_arrays(str(d / "r.npz"))]
    [('a', (2,)), ('b', (2, 3))]
    """
    ref = _as_ref(path)
    fmt = "npy" if ref.is_stdio or _is_zarr(ref) else _format_of(ref)
    if fmt in ("npz", "h5"):
        _check_input_file(ref.path)
        module = importlib.import_module(f"lstmshape.io.{_READERS[fmt][0]}")
        yield from getattr(module, f"_iter_{fmt}")(ref)
        return
    for info in list_arrays(ref):
        with open_array(info.ref) as source:
            yield source
