"""`.npy` files: the source, the reader of a C-order array stored at a byte offset of a
file (`FileArray`). The sink is `npy_sink`.

`FileArray` serves every array stored as one run of C-order bytes: `.npy` files, stored
(uncompressed) `.npz` members and contiguous unfiltered HDF5 datasets. A block along axis 0
is one `preadv` into the caller's buffer; along axis k it is one read per index of the axes
before k (T reads for a block of samples of a time-major (T, N, F) file). A block already
in the page cache can instead be used in place (`map_block`): its pages are mapped up front
and dropped from the process again by `unmap_block`. A map is never kept for the whole run,
as `np.load(mmap_mode="r")` does: every page it touches stays in the resident set (4 GiB of
RSS for a 4 GiB input), and a cold gather through a map reads the whole file (read-around
of each fault). Rows (`read_rows`, the `last`/`first` gathers) are copied out of a map
too when their pages are cached, by positioned reads otherwise.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import mmap
import os
from typing import Any

import numpy as np

from lstmshape.errors import InputError
from lstmshape.io.base import ArrayInfo, ArraySource, _one_line, _refuse_objects
from lstmshape.io.blocks import Array, IndexArray, InMemory, Reader, _bytes_of
from lstmshape.io.npyformat import (
    _check_length,
    _NpyHeader,
    _quiet_header_warnings,
    _read_npy_header,
)
from lstmshape.io.preads import _NOWAIT, _FileHandle, _pread_exact, scatter_reads
from lstmshape.refs import ArrayRef

_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux 5.14+; Python 3.13 names it
# A mapped row gather drops its pages every this many bytes of the file: each row's fault
# maps the (up to 2 MiB) folio around it, so the resident set grows by about this much.
_ROW_SPAN_BYTES = 16 * 2**20
_FOLIO = 2**21


def _refuse_key(ref: ArrayRef) -> None:
    if ref.key is not None:
        raise InputError(
            f"{ref.path} is a .npy file holding one array; drop ':{ref.key}' (KEY is for .npz/.h5)"
        )


def _open_npy(ref: ArrayRef) -> ArraySource:
    _refuse_key(ref)
    with open(ref.path, "rb") as fh:  # noqa: PTH123 (no pathlib: start-up time)
        header = _read_npy_header(fh, ref.path)
        size = os.fstat(fh.fileno()).st_size
    _refuse_objects(ref.path, header.dtype)
    _check_length(ref.path, size - header.offset, header)
    try:
        with _quiet_header_warnings():
            data = np.load(ref.path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read {ref.path}: {_one_line(exc)}") from None
    reader = _file_reader(ref.path, header.offset, header, data, ref.path)
    return ArraySource(ArrayInfo(ref, header.shape, header.dtype, "npy"), data, reader=reader)


def _file_reader(
    path: str, offset: int, header: _NpyHeader, data: np.ndarray, where: str
) -> Reader:
    """Positioned reads for C-order data at `offset`; the memory map for Fortran order."""
    if header.fortran and len(header.shape) > 1:
        return InMemory(data)
    return FileArray(path, offset, header.shape, header.dtype, where)


class FileArray:
    """A C-order array stored contiguously at byte `offset` of the file `path`."""

    background = True
    supports_rows = True

    def __init__(
        self, path: str, offset: int, shape: tuple[int, ...], dtype: Any, where: str
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.offset = int(offset)
        self.where = where
        self._file = _FileHandle(path)
        self._map: mmap.mmap | None = None
        # Mapped blocks need page-cache probes (RWF_NOWAIT) and aligned data.
        aligned = self.offset % max(self.dtype.alignment, 1) == 0
        self.maps = hasattr(mmap, "MADV_DONTNEED") and bool(_NOWAIT) and aligned

    def align(self, axis: int) -> int:
        return 1

    def flattened(self) -> FileArray:
        """The same bytes as a 2-D array (every index of the leading axes, the last axis).

        It shares this reader's descriptors (closed with it) and has a map of its own, which
        is unmapped once nothing uses it: closing a map under a live view would crash.
        """
        rows = math.prod(self.shape[:-1]) if len(self.shape) > 1 else 1
        flat = FileArray(
            self._file.path, self.offset, (rows, self.shape[-1]), self.dtype, self.where
        )
        flat._file = self._file
        flat.maps = self.maps
        return flat

    def _inner(self, axis: int) -> int:
        return math.prod(self.shape[axis + 1 :]) * self.dtype.itemsize

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        """One read per index of the axes before `axis` (one read for axis 0)."""
        dest = _bytes_of(out)
        inner = self._inner(axis)
        run = (stop - start) * inner
        if run == 0:
            return
        stride = self.shape[axis] * inner
        fd = self._file.fd()
        base = self.offset + start * inner
        for lead in range(math.prod(self.shape[:axis])):
            _pread_exact(fd, dest[lead * run : (lead + 1) * run], base + lead * stride, self.where)

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        """Rows through a map of the file when their pages are in the page cache (a page
        fault costs a fraction of a system call), else by positioned reads (a cold gather
        through a map would read around every fault)."""
        row_bytes = self._inner(len(self.shape) - 2) if len(self.shape) > 1 else 0
        m = rows.size
        if m == 0 or row_bytes == 0:
            return
        file_off = self.offset + rows.astype(np.int64) * row_bytes
        if self.maps and self._rows_cached(file_off, row_bytes):
            self._gather_mapped(file_off, row_bytes, out)
            return
        dest_off = np.arange(m, dtype=np.int64) * row_bytes
        length = np.full(m, row_bytes, dtype=np.int64)
        fd = self._file.fd("rows")
        scatter_reads(fd, file_off, dest_off, length, _bytes_of(out), self.where)

    # -- mapped blocks: pages already in the page cache are used where they are --------

    def _runs(self, start: int, stop: int, axis: int) -> list[tuple[int, int]]:
        """(file offset, bytes) of each contiguous run of a block along `axis`."""
        inner = self._inner(axis)
        run, stride = (stop - start) * inner, self.shape[axis] * inner
        base = self.offset + start * inner
        return [(base + lead * stride, run) for lead in range(math.prod(self.shape[:axis]))]

    def cached(self, start: int, stop: int, axis: int) -> bool:
        """Whether the block's pages are in the page cache (sampled without waiting).

        A file that shrank reads as not cached, so the block goes through `read_into`,
        which reports the truncation instead of faulting on a page past the end.
        """
        if not _NOWAIT or stop <= start:
            return False
        runs = self._runs(start, stop, axis)
        picks = runs if len(runs) <= 4 else [runs[0], runs[len(runs) // 2], runs[-1]]
        probes = [o + k * (n - 1) // 3 for o, n in picks for k in range(4)]
        fd, one = self._file.fd(), bytearray(1)
        try:
            return all(os.preadv(fd, [one], probe, _NOWAIT) == 1 for probe in probes)
        except OSError:  # would block, or the file system cannot say
            return False

    def _rows_cached(self, file_off: IndexArray, row_bytes: int) -> bool:
        """Whether rows at `file_off` are in the page cache: the first and last byte of
        up to 16 of them, the farthest one included (a file that shrank reads as not cached,
        so the positioned reads report the truncation)."""
        picks = np.linspace(0, file_off.size - 1, 15).astype(np.intp)
        ends = file_off[[*picks.tolist(), int(np.argmax(file_off))]]
        probes = [*ends.tolist(), *(ends + row_bytes - 1).tolist()]
        if max(probes) >= len(self._mapping()):
            return False
        fd, one = self._file.fd(), bytearray(1)
        try:
            return all(os.preadv(fd, [one], probe, _NOWAIT) == 1 for probe in probes)
        except OSError:
            return False

    def _gather_mapped(self, file_off: IndexArray, row_bytes: int, out: Array) -> None:
        """Copy rows out of the map in file order, dropping the pages mapped for them every
        `_ROW_SPAN_BYTES` of the file (a fault maps a whole 2 MiB folio around its row)."""
        mapping = self._mapping()
        shift = self.offset % row_bytes  # every row starts at shift + k * row_bytes
        grid = np.ndarray(
            ((len(mapping) - shift) // row_bytes, row_bytes), np.uint8, mapping, shift
        )
        dest = np.frombuffer(_bytes_of(out), np.uint8).reshape(file_off.size, row_bytes)
        order = None
        if bool(np.any(file_off[1:] < file_off[:-1])):
            order = np.argsort(file_off, kind="stable")
            file_off = file_off[order]
        cuts = np.flatnonzero(np.diff(file_off // _ROW_SPAN_BYTES)) + 1
        bounds = [0, *cuts.tolist(), file_off.size]
        for lo, hi in itertools.pairwise(bounds):
            part = file_off[lo:hi]
            if order is None:
                np.take(grid, part // row_bytes, axis=0, out=dest[lo:hi])
            else:
                dest[order[lo:hi]] = grid[part // row_bytes]
            first = int(part[0]) // _FOLIO * _FOLIO
            last = min(len(mapping), -(-(int(part[-1]) + row_bytes) // _FOLIO) * _FOLIO)
            mapping.madvise(mmap.MADV_DONTNEED, first, last - first)

    def _mapping(self) -> mmap.mmap:
        if self._map is None:
            self._map = mmap.mmap(self._file.fd(), 0, access=mmap.ACCESS_READ)
        return self._map

    def map_block(self, start: int, stop: int, axis: int) -> Array:
        """A read-only view of the block in a map of the file, its pages mapped up front.

        Costs a page-table update per page instead of a copy per byte; `unmap_block` drops
        the pages from the resident set again (they stay in the page cache).
        """
        mapping = self._mapping()
        self._advise(start, stop, axis, _POPULATE_READ)
        inner = self._inner(axis)
        shape = (*self.shape[:axis], stop - start, *self.shape[axis + 1 :])
        full = [math.prod(self.shape[k + 1 :]) * self.dtype.itemsize for k in range(len(shape))]
        return np.ndarray(
            shape, self.dtype, buffer=mapping, offset=self.offset + start * inner, strides=full
        )

    def unmap_block(self, start: int, stop: int, axis: int) -> None:
        """Drop a mapped block's pages from this process (not from the page cache)."""
        self._advise(start, stop, axis, mmap.MADV_DONTNEED)

    def _advise(self, start: int, stop: int, axis: int, advice: int) -> None:
        mapping, page = self._mapping(), mmap.PAGESIZE
        for offset, nbytes in self._runs(start, stop, axis):
            lo = offset - offset % page
            hi = min(len(mapping), -(-(offset + nbytes) // page) * page)
            if hi <= lo:
                continue
            try:
                mapping.madvise(advice, lo, hi - lo)
            except OSError:  # MADV_POPULATE_READ needs Linux 5.14: the kernel faults them in
                if advice != _POPULATE_READ:
                    raise
                return

    def close(self) -> None:
        mapping, self._map = self._map, None
        if mapping is not None:
            with contextlib.suppress(BufferError):  # views still alive unmap when collected
                mapping.close()
        self._file.close()
