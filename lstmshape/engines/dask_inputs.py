"""Inputs as dask arrays chunked along N only: `.zarr` through `da.from_zarr`, other
formats through `da.from_array` over a reader that opens the file inside the task that
reads (no open handle or lock is shipped; a worker on another host reads the same path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.blocks import DEFAULT_CHUNK_BYTES, rows_per_block
from lstmshape.errors import InputError
from lstmshape.refs import ArrayRef

Array = npt.NDArray[Any]


class _FileBlocks:
    """One stored array as dask sees it (`shape`, `dtype`, `x[selection]`), opening the
    file in the task that reads and closing it before returning the block."""

    def __init__(self, ref: ArrayRef, shape: tuple[int, ...], dtype: Any, axis: int) -> None:
        self.ref = ref
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)
        self.axis = axis
        # --allow-external (HDF5 external links) is a context variable of this process;
        # the worker that reads needs the same answer.
        from lstmshape import io

        self.allow_external = io.external_allowed()

    def __getitem__(self, selection: Any) -> Array:
        from lstmshape import io

        sel = selection if isinstance(selection, tuple) else (selection,)
        sel = sel + (slice(None),) * (self.ndim - len(sel))
        along = sel[self.axis]
        with io.allow_external(self.allow_external), io.open_array(self.ref) as source:
            block = source.read(along.start or 0, along.stop, axis=self.axis)
        rest = tuple(slice(None) if i == self.axis else s for i, s in enumerate(sel))
        return np.asarray(block[rest])


def _parts(source: Any) -> list[tuple[ArrayRef, Any]]:
    """(ref, open source) of every file behind `source` (a MultiSource has several)."""
    sources = getattr(source, "sources", None)
    refs = getattr(source, "refs", None)
    if sources is not None and refs is not None:
        return list(zip(refs, sources, strict=True))
    return [(source.info.ref, source)]


def _absolute(ref: ArrayRef) -> ArrayRef:
    if ref.is_stdio:
        raise InputError("--engine dask needs input files the workers can open, not standard input")
    return ArrayRef(str(Path(ref.path).absolute()), ref.key)


def _part_array(ref: ArrayRef, part: Any, axis: int, rows: int) -> Any:
    import dask.array as da
    from dask.base import tokenize

    shape = tuple(int(s) for s in part.shape)
    ref = _absolute(ref)
    if getattr(part.info, "format", None) == "zarr":
        rows = _zarr_rows(rows, part.info.chunks, axis)
        chunks = tuple(rows if i == axis else max(s, 1) for i, s in enumerate(shape))
        # The array opened through lstmshape's store: links inside it are checked as here.
        return da.from_zarr(part.array, chunks=chunks, inline_array=True)
    chunks = tuple(rows if i == axis else max(s, 1) for i, s in enumerate(shape))
    try:
        stamp = Path(ref.path).stat().st_mtime_ns
    except OSError:
        stamp = 0
    reader = _FileBlocks(ref, shape, part.dtype, axis)
    name = "lstmshape-read-" + tokenize(str(ref), stamp, shape, str(part.dtype), chunks)
    return da.from_array(
        reader,
        chunks=chunks,
        name=name,
        lock=False,
        asarray=False,
        inline_array=True,
        meta=np.empty((0,) * len(shape), dtype=part.dtype),
    )


def _zarr_rows(rows: int, stored: tuple[int, ...] | None, axis: int) -> int:
    """Block rows aligned with the store's chunks along N, so no task decompresses a chunk
    that another task reads too: a multiple of the stored chunk, or one stored chunk."""
    if not stored or axis >= len(stored) or stored[axis] < 1:
        return rows
    per_chunk = int(stored[axis])
    return max(1, rows // per_chunk) * per_chunk


def input_array(source: Any, layout: str, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Any:
    """The input as a batch-first dask array, chunked along N only (about `chunk_bytes`
    per chunk, every T and F whole; chunks never straddle two files)."""
    import dask.array as da

    from lstmshape.limits import refuse_huge_reads

    ndim = len(source.shape)
    axis = 1 if layout == "tnf" and ndim == 3 else 0
    refuse_huge_reads(source, axis)
    shape = tuple(int(s) for s in source.shape)
    shape_ntf = (shape[1], shape[0], *shape[2:]) if axis == 1 else shape
    rows = rows_per_block(shape_ntf, np.dtype(source.dtype).itemsize, chunk_bytes)
    arrays = [_part_array(ref, part, axis, rows) for ref, part in _parts(source)]
    x = arrays[0] if len(arrays) == 1 else da.concatenate(arrays, axis=axis)
    return x.transpose(1, 0, 2) if axis == 1 else x
