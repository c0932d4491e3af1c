"""Time-major reductions read along time: the time rows of a (T, N, F) file, folded.

A block of whole samples of a time-major file is T short runs, each copied (or mapped page
by page); the file's time rows, though, follow each other in one run. When a reduction over
valid steps can be folded (`strategies.fold`), the engine reads the file as (T·N, F) rows
in blocks of about `chunk_bytes`, in order (used in place through a map when cached, like a
batch-first block), and feeds each block's pieces of time rows to a `TimeFold` that holds
every sample's running value: memory grows with N·F (the output), not with T, so the fold
is taken only while its accumulators fit `ACCUMULATOR_BLOCKS` blocks and the memory limit.

Measured (bench/RESULTS.md, issue #16; float32 (N, 128, 256), lengths, page cache warm):
masked means and maxima of the time-major file at 1.3-1.7x the batch-first engine's speed
on the same data, where blocks of samples ran at 0.3-0.8x.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy.typing as npt

from lstmshape.blocks import DEFAULT_CHUNK_BYTES, buffered_blocks, reader_of
from lstmshape.limits import memory_limit
from lstmshape.masks import MaskSpec
from lstmshape.plan import Plan
from lstmshape.strategies.fold import TimeFold, foldable
from lstmshape.validity import Validity

Array = npt.NDArray[Any]

#: A fold's accumulators (a running value and a result, (N, F) each) may take up to this
#: many blocks of `chunk_bytes`.
ACCUMULATOR_BLOCKS = 8


def can_fold(
    source: Any, plan: Plan, spec: MaskSpec, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> bool:
    """Whether `run_plan` will fold `plan` over the time rows of `source`."""
    if not (
        plan.layout == "tnf"
        and len(plan.in_shape) == 3
        and foldable(plan.fold, plan.in_dtype)
        and plan.nan_policy == "propagate"
        and not spec.per_block
        and math.prod(plan.in_shape) > 0
    ):
        return False
    reader = reader_of(source)
    if reader is None or not hasattr(reader, "flattened"):
        return False
    _, n, f = plan.in_shape
    need = 2 * n * f * plan.in_dtype.itemsize
    return need <= min(ACCUMULATOR_BLOCKS * chunk_bytes, memory_limit())


def fold_time_rows(
    source: Any,
    plan: Plan,
    spec: MaskSpec,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    on_block: Callable[[int], None] | None = None,
) -> Array:
    """The (N, F) result of `plan` (before keepdims) from the time rows of `source`."""
    t, n, f = plan.in_shape
    validity = spec.validity if spec.validity is not None else Validity.all_valid(n, t)
    fold = TimeFold(str(plan.fold), validity, f, plan.in_dtype)
    reader = reader_of(source)
    rows = reader.flattened()  # type: ignore[union-attr]
    step = max(1, chunk_bytes // (f * plan.in_dtype.itemsize))
    # Always in place when cached: a copy (~0.17 s a GiB) costs more than the fold itself.
    for start, stop, block in buffered_blocks(rows, 0, t * n, step, timed=False):
        _add_pieces(fold, start, stop, block, n)
        if on_block is not None:
            on_block(block.nbytes)
    return fold.finish(str(plan.empty))


def _add_pieces(fold: TimeFold, start: int, stop: int, block: Array, n: int) -> None:
    """Feed flat rows start..stop of (T·N, F) to `fold` as pieces of time rows."""
    at = start
    while at < stop:
        step, sample = divmod(at, n)
        take = min(n - sample, stop - at)
        fold.add(step, sample, block[at - start : at - start + take])
        at += take
