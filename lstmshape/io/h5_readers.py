"""Readers for HDF5 datasets: unfiltered data straight from the file (contiguous through
`npy.FileArray`, chunked through `ChunkedFile`, the chunk byte offsets taken once from the
HDF5 chunk index), anything else through h5py's `read_direct` (`H5Direct`).

h5py's `read_direct` holds the GIL and reaches about 60% of a plain read (see
bench/RESULTS.md). h5py is never imported here: `h5` passes the dataset objects in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from lstmshape.errors import InputError
from lstmshape.io.base import _one_line
from lstmshape.io.blocks import Array, IndexArray, _bytes_of, aligned_buffer
from lstmshape.io.npy import FileArray
from lstmshape.io.preads import _FileHandle, _pread_exact, scatter_reads


class ChunkedFile:
    """An unfiltered chunked HDF5 dataset, its chunks read from the file at their offsets.

    `chunk_offsets()` gives the byte offset of every chunk, indexed by chunk grid position
    (-1 for a chunk never written, which reads as `fill`); it is called on first use.
    """

    background = True
    supports_rows = True

    def __init__(
        self,
        path: str,
        shape: tuple[int, ...],
        dtype: Any,
        chunks: tuple[int, ...],
        chunk_offsets: Callable[[], IndexArray],
        fill: Any,
        where: str,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.chunks = tuple(int(c) for c in chunks)
        self.where = where
        self._fill = fill
        self._offsets_of = chunk_offsets
        self._offsets: IndexArray | None = None
        self._file = _FileHandle(path)
        self._scratch: Array | None = None
        self._whole: FileArray | Literal[False] | None = False  # False: not looked at yet

    @property
    def contiguous(self) -> FileArray | None:
        """The dataset as one run of bytes, when its chunks hold whole samples and lie back
        to back in order (as h5py writes them): it then reads like a `.npy` file."""
        if self._whole is False:
            self._whole = self._as_file_array()
        return self._whole

    def _as_file_array(self) -> FileArray | None:
        if self.chunks[1:] != self.shape[1:] or math.prod(self.shape) == 0:
            return None
        flat = self.offsets.reshape(-1)
        expected = flat[0] + np.arange(flat.size, dtype=np.int64) * self.chunk_bytes
        if flat[0] < 0 or not np.array_equal(flat, expected):
            return None
        return FileArray(self._file.path, int(flat[0]), self.shape, self.dtype, self.where)

    @property
    def maps(self) -> bool:
        whole = self.contiguous
        return whole is not None and whole.maps

    @maps.setter
    def maps(self, value: bool) -> None:
        if self.contiguous is not None:
            self.contiguous.maps = value

    def cached(self, start: int, stop: int, axis: int) -> bool:
        whole = self.contiguous
        return whole is not None and whole.cached(start, stop, axis)

    def map_block(self, start: int, stop: int, axis: int) -> Array:
        assert self.contiguous is not None
        return self.contiguous.map_block(start, stop, axis)

    def unmap_block(self, start: int, stop: int, axis: int) -> None:
        assert self.contiguous is not None
        self.contiguous.unmap_block(start, stop, axis)

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks, strict=True))

    @property
    def offsets(self) -> IndexArray:
        if self._offsets is None:
            self._offsets = self._offsets_of()
        return self._offsets

    @property
    def chunk_bytes(self) -> int:
        return math.prod(self.chunks) * self.dtype.itemsize

    def align(self, axis: int) -> int:
        return self.chunks[axis]

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        if stop <= start:
            return
        if self.contiguous is not None:
            self.contiguous.read_into(start, stop, axis, out)
            return
        c = self.chunks[axis]
        along = range(start // c, -(-stop // c))
        grid = self.grid
        coords = np.ndindex(*grid[:axis], len(along), *grid[axis + 1 :])
        direct = axis == 0 and self.chunks[1:] == self.shape[1:]
        if direct:
            self._read_direct(start, stop, along, out)
            return
        for coord in coords:
            chunk = (*coord[:axis], coord[axis] + along.start, *coord[axis + 1 :])
            self._copy_chunk(chunk, start, stop, axis, out)

    def _read_direct(self, start: int, stop: int, along: range, out: Array) -> None:
        """Chunks holding whole samples: each is one run of `out`, read in place."""
        inner = math.prod(self.shape[1:]) * self.dtype.itemsize
        c = self.chunks[0]
        idx = np.arange(along.start, along.stop, dtype=np.int64)
        lo = np.maximum(idx * c, start)
        hi = np.minimum((idx + 1) * c, stop)
        base = self.offsets.reshape(-1)[idx]
        file_off = base + (lo - idx * c) * inner
        dest_off = (lo - start) * inner
        length = (hi - lo) * inner
        missing = base < 0
        if missing.any():
            flat = out.reshape(out.shape[0], -1)
            for a, b in zip(lo[missing] - start, hi[missing] - start, strict=True):
                flat[a:b] = self._fill
        keep = ~missing
        scatter_reads(
            self._file.fd(),
            file_off[keep],
            dest_off[keep],
            length[keep],
            _bytes_of(out),
            self.where,
            concurrent=False,
        )

    def _chunk_array(self, chunk: tuple[int, ...]) -> Array:
        """The whole stored chunk (edge chunks are stored at full size)."""
        if self._scratch is None:
            self._scratch = aligned_buffer(self.chunk_bytes)
        data = self._scratch.view(self.dtype).reshape(self.chunks)
        offset = int(self.offsets[chunk])
        if offset < 0:
            data[...] = self._fill
        else:
            _pread_exact(self._file.fd(), _bytes_of(data), offset, self.where)
        return data

    def _copy_chunk(
        self, chunk: tuple[int, ...], start: int, stop: int, axis: int, out: Array
    ) -> None:
        src, dst = [], []
        for k, (g, c, size) in enumerate(zip(chunk, self.chunks, self.shape, strict=True)):
            lo, hi = g * c, min((g + 1) * c, size)
            if k == axis:
                lo, hi = max(lo, start), min(hi, stop)
                dst.append(slice(lo - start, hi - start))
            else:
                dst.append(slice(lo, hi))
            src.append(slice(lo - g * c, hi - g * c))
        out[tuple(dst)] = self._chunk_array(chunk)[tuple(src)]

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        m = rows.size
        if m == 0:
            return
        if self.contiguous is not None:
            self.contiguous.read_rows(rows, out)
            return
        lead = np.unravel_index(rows.astype(np.int64), self.shape[:-1])
        cells = [idx // c for idx, c in zip(lead, self.chunks[:-1], strict=True)]
        inside = [idx % c for idx, c in zip(lead, self.chunks[:-1], strict=True)]
        strides = [math.prod(self.chunks[k + 1 :]) for k in range(len(self.chunks) - 1)]
        per_axis = (i.astype(np.int64) * s for i, s in zip(inside, strides, strict=True))
        within = sum(per_axis, np.zeros(m, dtype=np.int64))
        item, width, last = self.dtype.itemsize, self.shape[-1], self.chunks[-1]
        row_bytes = width * item
        pieces = []
        for p in range(self.grid[-1]):
            base = self.offsets[(*cells, np.full(m, p))]
            span = min(last, width - p * last) * item
            dest = np.arange(m, dtype=np.int64) * row_bytes + p * last * item
            missing = base < 0
            if missing.any():
                flat = out.reshape(-1).view(np.uint8)
                fill = np.full(span // item, self._fill, self.dtype).view(np.uint8)
                for d in dest[missing].tolist():
                    flat[d : d + span] = fill
            keep = ~missing
            count = int(keep.sum())
            pieces.append((base[keep] + within[keep] * item, dest[keep], np.full(count, span)))
        file_off, dest_off, length = (np.concatenate(parts) for parts in zip(*pieces, strict=True))
        scatter_reads(
            self._file.fd("rows"),
            file_off.astype(np.int64),
            dest_off,
            length.astype(np.int64),
            _bytes_of(out),
            self.where,
        )

    def close(self) -> None:
        if isinstance(self._whole, FileArray):
            self._whole.close()
        self._file.close()


class H5Direct:
    """Any HDF5 dataset through h5py's `read_direct` (filtered or external storage)."""

    background = False  # h5py holds the GIL while HDF5 reads
    supports_rows = False

    def __init__(self, dataset: Any, where: str) -> None:
        self._dset = dataset
        self.shape = tuple(int(s) for s in dataset.shape)
        self.dtype = np.dtype(dataset.dtype)
        self.where = where
        self._chunks = dataset.chunks

    def align(self, axis: int) -> int:
        return int(self._chunks[axis]) if self._chunks else 1

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        if out.size == 0:
            return
        selection = (slice(None),) * axis + (slice(start, stop),)
        try:
            self._dset.read_direct(out, source_sel=selection)
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"cannot read {self.where}: {_one_line(exc)}") from None

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        lead = np.unravel_index(rows.astype(np.int64), self.shape[:-1])
        for k, index in enumerate(zip(*(i.tolist() for i in lead), strict=True)):
            out[k] = self._dset[index]

    def close(self) -> None:
        self._dset = None
