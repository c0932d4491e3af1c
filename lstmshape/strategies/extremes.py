"""Masked max/min over valid steps, and the row-loop machinery the reductions share.

The thresholds below pick a kernel by shape (measured on float32, see bench/): per-row
slices of valid steps, compressed rows, a loop over features, a filled copy, or one
`where=` reduction. Tests force each path by patching them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.validity import BoolArray, Validity

Array = npt.NDArray[Any]
Scalar = bool | int | float

# Elements per block when float16 rows are converted to float32 (1 MB of float32: stays in
# the L2 cache between the conversion and the reduction).
F16_BLOCK_ELEMENTS = 1 << 18
# Per-row loops pay a few us of Python per sample; slicing wins over one `where=` reduction
# once a row holds this many valid elements (measured on float32, see bench/).
ROW_SLICE_MIN_ELEMENTS = 4096
ROW_SLICE_MIN_F = 32
# Below this F, masked max/min over lengths loops over features instead.
FEATURE_LOOP_MAX_F = 8
# Up to this F, masked max/min over a holey mask fills the padding instead of `where=`.
FILLED_MAX_F = 1
# Elements per block of rows for loops that revisit a block (256 KB of float32: L2-resident).
CACHE_BLOCK_ELEMENTS = 1 << 16
# Boolean compression copies the valid steps of a row, so it needs larger rows to win.
ROW_COMPRESS_MIN_ELEMENTS = 16384
ROW_COMPRESS_MIN_F = 128


def masked_extreme(data: Array, validity: Validity, strategy: str) -> Array:
    if data.dtype == np.float16:
        # float16 max/min has no SIMD loop (about 5x slower than float32); float32 holds
        # every float16 exactly, so converting a few rows at a time gives identical results.
        return by_row_blocks(
            data, validity, np.float32, lambda b, v: masked_extreme(b, v, strategy)
        )
    f = data.shape[2]
    reducer = np.maximum if strategy == "max" else np.minimum
    if validity.is_all_valid:
        return reducer.reduce(data, axis=1)
    initial = identity(data.dtype, strategy)
    counts = validity.counts()

    def reduce_row(steps: Array, dest: Array) -> None:
        reducer.reduce(steps, axis=0, out=dest)

    # Kernel choice by shape, measured with bench/bench_kernels.py and its --f/--n variants.
    out = np.empty((len(counts), f), dtype=data.dtype)  # empty samples' rows stay unset
    nonempty = np.flatnonzero(counts)
    if slices_pay(data, validity):
        row_loop(data, nonempty, row_slicer(validity), reduce_row, out, copy_rows=True)
        return out
    if validity.lengths is not None and f <= FEATURE_LOOP_MAX_F:
        # x.max(axis=1) itself is slow for tiny F (a short inner loop); reducing one
        # feature at a time over blocks of rows is 2-6x faster than it.
        return feature_loop(data, validity.as_mask(), reducer, initial)
    if validity.lengths is None:
        mask = validity.as_mask()
        if f >= ROW_COMPRESS_MIN_F and float(counts.mean()) * f >= ROW_COMPRESS_MIN_ELEMENTS:
            # Boolean indexing already copies the valid steps into a fresh compact array.
            row_loop(data, nonempty, lambda i: data[i][mask[i]], reduce_row, out, copy_rows=False)
            return out
        if f <= FILLED_MAX_F:
            # A `where=` reduction branches on every element: with random holes and nothing
            # to amortise the branch over, filling the padding first is 2x faster.
            return filled_blocks(data, mask, reducer, initial)
    where = validity.as_mask()[:, :, None]
    return reducer.reduce(data, axis=1, where=where, initial=initial)


def feature_loop(data: Array, mask: BoolArray, reducer: np.ufunc, initial: Scalar) -> Array:
    n, t, f = data.shape
    out = np.empty((n, f), dtype=data.dtype)
    rows = max(1, CACHE_BLOCK_ELEMENTS // max(t * f, 1))
    for start in range(0, n, rows):
        block, where = data[start : start + rows], mask[start : start + rows]
        for j in range(f):
            reducer.reduce(
                block[:, :, j],
                axis=1,
                where=where,
                initial=initial,
                out=out[start : start + rows, j],
            )
    return out


def filled_blocks(data: Array, mask: BoolArray, reducer: np.ufunc, initial: Scalar) -> Array:
    n, t, f = data.shape
    out = np.empty((n, f), dtype=data.dtype)
    rows = max(1, CACHE_BLOCK_ELEMENTS // max(t * f, 1))
    for start in range(0, n, rows):
        filled = np.where(mask[start : start + rows, :, None], data[start : start + rows], initial)
        reducer.reduce(filled.astype(data.dtype, copy=False), axis=1, out=out[start : start + rows])
    return out


def slices_pay(data: Array, validity: Validity) -> bool:
    """Whether a Python loop over per-row slices of valid steps has enough work per row."""
    f = data.shape[2]
    if validity.lengths is None or f < ROW_SLICE_MIN_F or not len(validity.lengths):
        return False
    return float(validity.lengths.mean()) * f >= ROW_SLICE_MIN_ELEMENTS


def row_slicer(validity: Validity) -> Callable[[int], slice]:
    """i -> the slice bounds of sample i's valid steps, for lengths-based validity."""
    assert validity.lengths is not None
    counts = validity.lengths
    start = np.zeros_like(counts) if validity.pad_side == "post" else validity.t - counts
    starts, stops = start.tolist(), (start + counts).tolist()
    return lambda i: slice(starts[i], stops[i])


def row_loop(
    data: Array,
    rows: npt.NDArray[np.intp],
    valid_steps: Callable[[int], Array | slice],
    reduce_row: Callable[[Array, Array], None],
    out: Array,
    *,
    copy_rows: bool,
) -> None:
    """reduce_row(valid steps of row i, out[i]) for each i in rows; (L_i, F) -> (F,).

    valid_steps gives row i's steps as an array or as a slice of data[i]. copy_rows: copy
    them into a (T, F) buffer first. A reduction over axis 0 walks down the columns, which
    is cache-hostile inside a big array (worse in a time-major one) but cheap in the small
    buffer: 1.2x faster batch-first, 1.5x time-major, copy included.
    """
    _, t, f = data.shape
    buffer = np.empty((t, f), dtype=data.dtype) if copy_rows else None
    for i in rows.tolist():
        where = valid_steps(i)
        steps = data[i, where] if isinstance(where, slice) else where
        if buffer is not None:
            np.copyto(buffer[: len(steps)], steps)
            steps = buffer[: len(steps)]
        reduce_row(steps, out[i])


def identity(dtype: np.dtype, strategy: str) -> Scalar:
    """The start value of a masked max/min: it loses to every value of the dtype."""
    if dtype.kind == "b":
        return strategy == "min"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.min if strategy == "max" else info.max
    return -np.inf if strategy == "max" else np.inf


def by_row_blocks(
    data: Array,
    validity: Validity,
    work_dtype: npt.DTypeLike,
    kernel: Callable[[Array, Validity], Array],
) -> Array:
    """Run `kernel` on blocks of rows converted to `work_dtype`; results in data.dtype."""
    n, t, f = data.shape
    out = np.empty((n, f), dtype=data.dtype)
    rows = max(1, F16_BLOCK_ELEMENTS // max(t * f, 1))
    for start in range(0, n, rows):
        block = data[start : start + rows].astype(work_dtype)
        out[start : start + rows] = kernel(block, validity.rows(start, start + rows))
    return out
