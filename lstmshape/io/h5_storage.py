"""How an HDF5 dataset is stored, asked of HDF5 once: which reader reads it fastest, where
its chunks are, and which rows along the first axis were never written.

A chunk (or a contiguous dataset) that was never written holds no bytes: reading it gives
the fill value. `_h5_unwritten` tells `inspect` which rows are so, from the list of chunks
that are stored (as long as the file's real content, whatever shape it declares), so a
1.4 KB file declaring a terabyte is reported without reading a terabyte of fill values.

h5py is passed in as objects; `h5d` is imported where used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lstmshape.io.blocks import Reader
from lstmshape.io.h5_readers import ChunkedFile, H5Direct
from lstmshape.io.npy import FileArray

#: Chunk grids larger than this many chunks are read through HDF5's own chunk index: a table
#: of every chunk's offset would cost 8 bytes per declared chunk, stored or not.
_MAX_CHUNK_TABLE = 1 << 22


def _h5_raw_layout(dset: Any) -> str | None:
    """'contiguous' or 'chunked' when the dataset's bytes can be read from the file as they
    are (plain numbers, no filters, no external or virtual storage); None otherwise."""
    from h5py import h5d

    if dset.dtype.kind not in "biufc" or dset.size == 0 or dset.external or dset.is_virtual:
        return None
    plist = dset.id.get_create_plist()
    if plist.get_nfilters():
        return None
    layout = plist.get_layout()
    if layout == h5d.CONTIGUOUS and dset.id.get_offset() is not None:
        return "contiguous"
    return "chunked" if layout == h5d.CHUNKED else None


def _h5_chunk_offsets(dset: Any, grid: tuple[int, ...]) -> np.ndarray:
    """The byte offset of every chunk by grid position; -1 for chunks never written."""
    offsets = np.full(grid, -1, dtype=np.int64)
    chunks = dset.chunks

    def visit(info: Any) -> None:
        cell = tuple(c // k for c, k in zip(info.chunk_offset, chunks, strict=True))
        offsets[cell] = info.byte_offset

    _each_chunk(dset, visit)
    return offsets


def _h5_reader(path: str, dset: Any, where: str) -> Reader:
    """Plain positioned reads for unfiltered data (h5py holds the GIL and copies through
    HDF5's own buffers); h5py's `read_direct` for everything else."""
    shape = tuple(int(s) for s in dset.shape)
    try:
        layout = _h5_raw_layout(dset)
    except (OSError, RuntimeError, ValueError, TypeError):
        layout = None
    if layout == "contiguous":
        return FileArray(path, dset.id.get_offset(), shape, dset.dtype, where)
    if layout != "chunked":
        return H5Direct(dset, where)
    grid = tuple(-(-s // c) for s, c in zip(shape, dset.chunks, strict=True))
    if float(np.prod(grid, dtype=np.float64)) <= _MAX_CHUNK_TABLE:
        fill = dset.fillvalue
        return ChunkedFile(
            path,
            shape,
            dset.dtype,
            dset.chunks,
            lambda: _h5_chunk_offsets(dset, grid),
            fill,
            where,
        )
    return H5Direct(dset, where)


def _each_chunk(dset: Any, visit: Callable[[Any], None]) -> None:
    """Call `visit(info)` for every stored chunk (chunk_offset, byte_offset, size)."""
    if hasattr(dset.id, "chunk_iter"):
        dset.id.chunk_iter(visit)
    else:
        for index in range(dset.id.get_num_chunks()):
            visit(dset.id.get_chunk_info(index))


def _h5_unwritten(dset: Any) -> Callable[[int, int], Any]:
    """`unwritten(start, stop)`: the fill value when no byte of rows `start:stop` along the
    first axis was ever written (they read as the fill value), else None."""
    from h5py import h5d

    state: dict[str, Any] = {}

    def starts() -> np.ndarray | None:
        """Sorted first rows of the stored chunks; None when everything is stored."""
        if "starts" not in state:
            state["starts"] = _stored_starts(dset, h5d)
        return state["starts"]

    def unwritten(start: int, stop: int) -> Any:
        if not dset.shape or stop <= start:
            return None
        found = starts()
        if found is None:
            return None
        if dset.chunks is None:  # contiguous, never allocated
            return dset.fillvalue if found.size == 0 else None
        first = np.searchsorted(found, start - dset.chunks[0] + 1)
        return dset.fillvalue if first >= found.size or found[first] >= stop else None

    return unwritten


def _stored_starts(dset: Any, h5d: Any) -> np.ndarray | None:
    """The first rows (axis 0) of the stored chunks, or None when the dataset is stored
    some other way (compact, external, virtual: treated as written)."""
    try:
        if dset.external or dset.is_virtual:
            return None
        layout = dset.id.get_create_plist().get_layout()
        if layout == h5d.CONTIGUOUS:
            return np.zeros(0 if dset.id.get_offset() is None else 1, np.int64)
        if layout != h5d.CHUNKED:
            return None
        rows: list[int] = []
        _each_chunk(dset, lambda info: rows.append(int(info.chunk_offset[0])))
    except (OSError, RuntimeError, ValueError, TypeError):  # damage: read it as it is
        return None
    return np.unique(np.asarray(rows, np.int64))
