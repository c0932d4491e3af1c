"""What the streaming engine reads through: the `Reader` protocol, page-aligned buffers, an
array already in memory (`InMemory`) and several readers joined along one axis (`Joined`).

The engine (`lstmshape.stream`) reads an input in blocks of samples into buffers it
allocates once, and `last`/`first` read single (sample, timestep) rows. Each stored layout
has a reader that does this with as few copies and system calls as the format allows; each
sits with its format (`npy.FileArray`, `npz.ZipStream`, `h5_readers.ChunkedFile`,
`h5_readers.H5Direct`), over the positioned reads of `preads`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    pass

# numpy.typing.NDArray[...] spelt out: importing numpy.typing costs every start-up.
Array = np.ndarray[tuple[Any, ...], np.dtype[Any]]
IndexArray = np.ndarray[tuple[Any, ...], np.dtype[np.int64]]

_PAGE = 4096


class Reader(Protocol):
    """What the engine needs of a stored array beyond its shape: reads into given buffers.

    `read_into` fills the C-contiguous `out` (shape: the array's, `stop - start` along
    `axis`). `read_rows` fills `out` (m, shape[-1]) with rows of the array viewed as
    (prod(shape[:-1]), shape[-1]); `supports_rows` says whether it does so without reading
    the rest. `background` says whether reads may run in another thread while the caller
    computes (they release the GIL). `align[axis]` is the storage unit along each axis:
    blocks that are multiples of it read each stored chunk once.
    """

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    background: bool
    supports_rows: bool

    def align(self, axis: int) -> int: ...

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None: ...

    def read_rows(self, rows: IndexArray, out: Array) -> None: ...

    def close(self) -> None: ...


def aligned_buffer(nbytes: int) -> Array:
    """A page-aligned uint8 buffer of `nbytes` (reads into aligned memory copy fastest)."""
    raw = np.empty(nbytes + _PAGE, dtype=np.uint8)
    skip = (-raw.ctypes.data) % _PAGE
    return raw[skip : skip + nbytes]


def _bytes_of(out: Array) -> memoryview:
    if not out.flags.c_contiguous:
        raise ValueError("reads go into C-contiguous buffers")
    return out.reshape(-1).view(np.uint8).data


class InMemory:
    """An array already in memory or memory-mapped (standard input, Fortran order)."""

    background = False
    supports_rows = True

    def __init__(self, array: Array) -> None:
        self._array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)

    def align(self, axis: int) -> int:
        return 1

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        out[...] = self._array[(slice(None),) * axis + (slice(start, stop),)]

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        out[...] = self._array[np.unravel_index(rows.astype(np.int64), self.shape[:-1])]

    def close(self) -> None:
        self._array = None  # type: ignore[assignment]


class Joined:
    """Several readers joined along `axis` (sharded inputs, `sources.MultiSource`).

    Blocks are split among the parts they span; rows go to the part holding them. Nothing is
    mapped: every block is copied, so the resident set stays bounded for any number of parts.
    """

    maps = False

    def __init__(self, parts: Sequence[Reader], offsets: Sequence[int], axis: int) -> None:
        self.parts = list(parts)
        self.offsets = [int(o) for o in offsets]
        self.axis = axis
        first = self.parts[0]
        self.shape = (*first.shape[:axis], self.offsets[-1], *first.shape[axis + 1 :])
        self.dtype = np.dtype(first.dtype)
        self.background = all(part.background for part in self.parts)
        self.supports_rows = all(part.supports_rows for part in self.parts)

    def align(self, axis: int) -> int:
        units = {part.align(axis) for part in self.parts}
        return units.pop() if len(units) == 1 else 1

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        if axis != self.axis:
            for i, part in enumerate(self.parts):
                lo, hi = self.offsets[i], self.offsets[i + 1]
                piece = np.empty(np.take(out, range(lo, hi), axis=self.axis).shape, self.dtype)
                part.read_into(start, stop, axis, piece)
                out[(slice(None),) * self.axis + (slice(lo, hi),)] = piece
            return
        for i, part in enumerate(self.parts):
            lo, hi = max(start, self.offsets[i]), min(stop, self.offsets[i + 1])
            if lo >= hi:
                continue
            where = (slice(None),) * axis + (slice(lo - start, hi - start),)
            target = out[where]
            if target.flags.c_contiguous:
                part.read_into(lo - self.offsets[i], hi - self.offsets[i], axis, target)
            else:
                piece = np.empty(target.shape, self.dtype)
                part.read_into(lo - self.offsets[i], hi - self.offsets[i], axis, piece)
                out[where] = piece

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        index = list(np.unravel_index(rows.astype(np.int64), self.shape[:-1]))
        which = np.searchsorted(self.offsets, index[self.axis], side="right") - 1
        for i, part in enumerate(self.parts):
            mine = np.flatnonzero(which == i)
            if mine.size == 0:
                continue
            local = [idx[mine] for idx in index]
            local[self.axis] = local[self.axis] - self.offsets[i]
            part_rows = np.ravel_multi_index(tuple(local), part.shape[:-1])
            got = np.empty((mine.size, self.shape[-1]), self.dtype)
            part.read_rows(part_rows.astype(np.int64), got)
            out[mine] = got

    def close(self) -> None:
        for part in self.parts:
            part.close()
