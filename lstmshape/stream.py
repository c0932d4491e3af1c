"""The in-process engine: run a plan block by block along N with bounded memory.

Each block holds whole samples (every timestep of them), so any kernel that works per
sample gives the same result streamed as in memory (`lstmshape.blocks` reads them);
`last`/`first` read only the rows they pick (`lstmshape.gather`), and time-major means and
extremes read the file's time rows in order (`lstmshape.timerows`). The engine owns the run's
`checks.RunTally` and raises what the whole input shows before the sink is committed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape import gather, timerows
from lstmshape.audit import PaddingAudit
from lstmshape.blocks import DEFAULT_CHUNK_BYTES, BlockReader, BlockWriter, iter_blocks
from lstmshape.checks import RunTally
from lstmshape.masks import Layout, MaskSpec
from lstmshape.plan import Plan
from lstmshape.strategies.pca import PcaAccumulator, PcaBasis

Array = npt.NDArray[Any]


def run_plan(
    source: BlockReader,
    plan: Plan,
    spec: MaskSpec,
    sink: BlockWriter,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    on_block: Callable[[int], None] | None = None,
    audit: PaddingAudit | None = None,
) -> Array | None:
    """Apply `plan` to every block, writing each output block to `sink` as it comes; raise
    (before the sink is committed) for what the whole input shows (`checks.RunTally`).
    `audit` is given every block read (not the rows of a gather or the time rows of a fold).

    Returns the side output of windowed pooling (the (N, T') output mask), or None.
    """
    if spec.validity is not None:
        plan.check_empty(spec.validity)  # fail before reading any data
    chunk_bytes = output_bounded(source, plan, chunk_bytes)
    tally = RunTally()
    if gather.can_gather(source, plan, spec):
        _run_gather(source, plan, spec, sink, tally, chunk_bytes, on_block)
        tally.check()
        return None
    if timerows.can_fold(source, plan, spec, chunk_bytes):
        _run_fold(source, plan, spec, sink, chunk_bytes, on_block)
        return None
    extras: list[Array] = []
    blocks = iter_blocks(source, plan.layout, spec, chunk_bytes=chunk_bytes, on_block=on_block)
    for start, _stop, x_ntf, validity in blocks:
        if audit is not None:
            audit.add(x_ntf, validity)
        out, extra, checks = plan.apply(x_ntf, validity)
        tally.add(checks, start)
        sink.write(start, _detached(out, x_ntf), axis=plan.out_axis)
        if extra is not None:
            extras.append(_detached(extra, x_ntf))
    tally.check()
    return join_extras(plan, extras)


def fit_pca(
    source: BlockReader,
    layout: Layout,
    spec: MaskSpec,
    k: int,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    on_block: Callable[[int], None] | None = None,
) -> PcaBasis:
    """Fit K principal components on the valid steps, accumulating block by block."""
    accumulator = PcaAccumulator(source.shape[-1])
    blocks = iter_blocks(source, layout, spec, chunk_bytes=chunk_bytes, on_block=on_block)
    for _start, _stop, x_ntf, validity in blocks:
        accumulator.update(x_ntf, None if validity.is_all_valid else validity)
    return accumulator.finish(k)


def output_bounded(source: BlockReader, plan: Plan, chunk_bytes: int) -> int:
    """`chunk_bytes` for input blocks whose output blocks stay about `chunk_bytes` too (a
    projection to many more features makes more output than it reads); an output of
    one sample that alone does not fit in memory is refused."""
    from lstmshape.limits import output_bytes_per_sample, refuse_huge_sample_output

    axis = 1 if plan.layout == "tnf" and len(source.shape) == 3 else 0
    n = source.shape[axis] if source.shape else 1
    refuse_huge_sample_output(plan, n)
    in_sample = source.dtype.itemsize * math.prod(source.shape) // max(n, 1)
    out_sample = output_bytes_per_sample(plan, n)
    if out_sample <= in_sample or in_sample == 0:
        return chunk_bytes
    return max(1, chunk_bytes * in_sample // out_sample)


def join_extras(plan: Plan, extras: list[Array]) -> Array | None:
    """The side output of a run from its blocks' pieces (the plan's shape when none came)."""
    if plan.extra_shape is None:
        return None
    if not extras:
        return np.zeros(plan.extra_shape, dtype=bool)
    return np.concatenate(extras, axis=0)


def _run_gather(
    source: Any,
    plan: Plan,
    spec: MaskSpec,
    sink: BlockWriter,
    tally: RunTally,
    chunk_bytes: int,
    on_block: Callable[[int], None] | None,
) -> None:
    """run_plan for last/first: read the picked rows only. Progress counts the input bytes
    the rows stand for, so a progress bar sized to the input ends at 100%."""
    n = max(gather.validity_of(plan, spec).n, 1)
    blocks = gather.gather_blocks(source, plan, spec, chunk_bytes=chunk_bytes)
    for start, steps, picked, _nbytes in blocks:
        out = gather.as_result(plan, steps, picked)
        if out is None:
            out, _, checks = plan.apply(steps, picked)
            tally.add(checks, start)
        sink.write(start, out, axis=0)
        if on_block is not None:
            on_block(int(source.nbytes) * len(steps) // n)


def _run_fold(
    source: Any,
    plan: Plan,
    spec: MaskSpec,
    sink: BlockWriter,
    chunk_bytes: int,
    on_block: Callable[[int], None] | None,
) -> None:
    """run_plan for a reduction folded over time rows. Its whole-run checks are settled
    before reading (a mask known up front, `NaN` propagated): no tally."""
    out = timerows.fold_time_rows(source, plan, spec, chunk_bytes=chunk_bytes, on_block=on_block)
    if plan.options.get("keepdims"):
        out = out[:, None, :]
    step = max(1, chunk_bytes // max(out[0].nbytes if len(out) else 1, 1))
    for start in range(0, len(out), step):
        sink.write(start, out[start : start + step], axis=0)


def _detached(out: Array, block: Array) -> Array:
    """`out`, copied if it shares memory with the (reused) input buffer."""
    return out.copy() if np.may_share_memory(out, block) else out
