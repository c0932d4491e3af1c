"""How `inspect` reads an array: blocks along axis 0 (`x[i:j]` or `x.read(i, j)`), runs of
blocks that storage never wrote handed over unread (`Unwritten`), and NaN/Inf counts."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from lstmshape.blocks import buffered_blocks, reader_of


# A NamedTuple, not a frozen dataclass: as immutable, and created ~7x faster (start-up).
class Unwritten(NamedTuple):
    """A block that storage never wrote (it reads as `value` throughout), not read."""

    shape: tuple[int, ...]
    value: Any

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


Block = np.ndarray | Unwritten


def blocks(x: Any, rows: int) -> Iterator[tuple[int, Block]]:
    """(start, block) along axis 0; a 0-d array is one block. Blocks the source says were
    never written (`unwritten`, e.g. HDF5 chunks never allocated) are not read."""
    if len(x.shape) == 0:
        yield 0, _read(x, None)
        return
    reader = reader_of(x)
    if reader is not None and getattr(reader, "maps", False) and math.prod(x.shape) > 0:
        yield from _mapped_blocks(x, reader, rows)
        return
    unwritten = getattr(x, "unwritten", None) or (lambda _start, _stop: None)
    n, start = x.shape[0], 0
    while start < n:
        stop = min(start + rows, n)
        fill = unwritten(start, stop)
        if fill is None:
            yield start, _read(x, slice(start, stop))
        else:  # one block for the whole run of unwritten blocks that follows
            while stop < n and _same_fill(unwritten(stop, min(stop + rows, n)), fill):
                stop = min(stop + rows, n)
            yield start, Unwritten((stop - start, *x.shape[1:]), fill)
        start = stop


def _mapped_blocks(x: Any, reader: Any, rows: int) -> Iterator[tuple[int, Block]]:
    """Blocks of a file read through its map as the engine reads them: cached pages used in
    place and let go block by block (a view of the whole map would keep every page it touched
    in the resident set), the next block fetched ahead; `x.advance` counts them, if it can."""
    advance = getattr(x, "advance", None)
    for start, _stop, block in buffered_blocks(reader, 0, x.shape[0], rows):
        if advance is not None:
            advance(block.nbytes)
        yield start, block


def _same_fill(a: Any, b: Any) -> bool:
    """Two fill values (None: written) are the same, NaN included."""
    return a is not None and np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def _read(x: Any, rows: slice | None) -> np.ndarray:
    """`x[rows]` (`x[()]` for None), or `x.read(i, j)`/`x.read_all()` on an `io.ArraySource`."""
    if hasattr(x, "__getitem__"):
        return np.asarray(x[() if rows is None else rows])
    return np.asarray(x.read_all() if rows is None else x.read(rows.start, rows.stop))


def count_nonfinite(x: Any, rows: int, dtype: np.dtype[Any]) -> tuple[int, int]:
    """NaN and Inf counts over the whole array; only float/complex data is read."""
    if dtype.kind not in "fc":
        return 0, 0
    nan = inf = 0
    for _, block in blocks(x, rows):
        block_nan, block_inf = nonfinite_counts(block)
        nan, inf = nan + block_nan, inf + block_inf
    return nan, inf


def nonfinite_counts(block: Block) -> tuple[int, int]:
    """(NaN count, Inf count) of a float block; one read-only pass when everything is
    finite (a finite sum has no NaN or Inf in it; one that overflowed is counted exactly).

    >>> nonfinite_counts(np.array([1.0, np.nan, -np.inf, np.inf]))
    (1, 2)
    >>> nonfinite_counts(np.array([3e38, 3e38], np.float32))  # the sum overflows
    (0, 0)
    """
    if isinstance(block, Unwritten):
        one = np.asarray(block.value)
        nan, inf = nonfinite_counts(one.reshape(1)) if one.dtype.kind in "fc" else (0, 0)
        return nan * block.size, inf * block.size
    if block.dtype.kind not in "fc":
        return 0, 0
    with np.errstate(all="ignore"):
        if np.isfinite(np.add.reduce(block, axis=None)):
            return 0, 0
    nonfinite = block.size - int(np.count_nonzero(np.isfinite(block)))
    if nonfinite == 0:
        return 0, 0
    nan = int(np.count_nonzero(np.isnan(block)))
    return nan, nonfinite - nan
