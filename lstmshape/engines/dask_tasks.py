"""What a dask worker runs: one span of the input, streamed block by block.

A task opens its span's file (`dask_inputs.open_span`), reads it with the in-process
engine's block reader (`blocks.iter_blocks`) and applies the plan's kernel to each block,
as `stream.run_plan` does. It returns what the lstmshape process needs: the span's output
(or, when the workers write a Zarr output themselves, only the rows of output chunks that
the neighbouring span shares), its side output and its check tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from lstmshape.blocks import iter_blocks
from lstmshape.engines.dask_inputs import Span, open_span, span_chunk_bytes
from lstmshape.masks import MaskSpec
from lstmshape.plan import Plan
from lstmshape.strategies.pca import PcaAccumulator
from lstmshape.validity import Validity

Array = npt.NDArray[Any]


class SpanResult(NamedTuple):
    """A span's results. `pieces` are (first sample, output rows) in the input's order: the
    whole output of the span, or, when the span wrote to a Zarr array, the rows it left for
    the lstmshape process (chunks shared with the next or previous span). `tables` are the
    check tables as (first sample, table)."""

    pieces: list[tuple[int, Array]]
    extras: list[Array]
    tables: list[tuple[int, Array]]


def span_spec(spec: MaskSpec, span: Span) -> MaskSpec:
    """`spec` for the span's samples alone: a known validity cut to its rows (and copied,
    so that only those rows travel with the task)."""
    if spec.validity is None:
        return spec
    rows = spec.validity.rows(span.start, span.stop)
    own = Validity(
        n=rows.n,
        t=rows.t,
        mask=None if rows.mask is None else rows.mask.copy(),
        lengths=None if rows.lengths is None else rows.lengths.copy(),
        pad_side=rows.pad_side,
    )
    return dataclasses.replace(spec, validity=own)


def _blocks(span: Span, layout: str, spec: MaskSpec) -> Iterator[tuple[int, Array, Validity]]:
    """(first sample in the input, batch-first block, validity) of the span's blocks."""
    with open_span(span) as window:
        chunk_bytes = span_chunk_bytes(span, window)
        blocks = iter_blocks(window, layout, spec, chunk_bytes=chunk_bytes)  # type: ignore[arg-type]
        for start, _stop, x_ntf, validity in blocks:
            yield span.start + start, x_ntf, validity


def _along(axis: int, lo: int, hi: int) -> tuple[slice, ...]:
    return (slice(None),) * axis + (slice(lo, hi),)


def run_span(plan: Plan, span: Span, spec: MaskSpec, target: Any = None) -> SpanResult:
    """Apply `plan` to every block of the span (`spec`: the span's own, `span_spec`).

    With a Zarr `target` (chunked along the output's N axis), the output chunks that lie
    wholly in the span are written here; the rows of a chunk shared with another span come
    back as pieces, for the lstmshape process to write once every span is done.
    """
    axis = plan.out_axis
    shape = tuple(span.hi - span.lo if i == axis else s for i, s in enumerate(plan.out_shape))
    whole = np.empty(shape, plan.out_dtype)  # every block's output is copied in: one copy
    extras: list[Array] = []
    tables: list[tuple[int, Array]] = []
    for start, x_ntf, validity in _blocks(span, plan.layout, spec):
        out, extra, checks = plan.apply(x_ntf, validity)
        whole[_along(axis, start - span.start, start - span.start + out.shape[axis])] = out
        if extra is not None:
            extras.append(extra.copy() if np.may_share_memory(extra, x_ntf) else extra)
        if checks is not None:
            tables.append((start, checks))
    if target is None:
        return SpanResult([(span.start, whole)], extras, tables)
    return SpanResult(_write_inner_chunks(whole, span.start, axis, target), extras, tables)


def _write_inner_chunks(out: Array, start: int, axis: int, target: Any) -> list[tuple[int, Array]]:
    """Write the rows of `out` (input samples from `start`) that fill whole chunks of
    `target`; return the rest as (first sample, rows)."""
    stop = start + out.shape[axis]
    rows, total = int(target.chunks[axis]), int(target.shape[axis])
    inner_lo = min(-(-start // rows) * rows, stop)
    inner_hi = stop if stop == total else max(inner_lo, stop // rows * rows)

    def rows_of(lo: int, hi: int) -> Array:
        return out[_along(axis, lo - start, hi - start)]

    if inner_hi > inner_lo:
        target[_along(axis, inner_lo, inner_hi)] = rows_of(inner_lo, inner_hi)
    pieces = [(start, inner_lo), (inner_hi, stop)]
    return [(lo, rows_of(lo, hi)) for lo, hi in pieces if hi > lo]


def pca_span(span: Span, layout: str, spec: MaskSpec, f: int) -> PcaAccumulator:
    """The PCA statistics (count, mean, centred sum of squares) of the span's valid steps,
    accumulated block by block as `stream.fit_pca` does."""
    accumulator = PcaAccumulator(f)
    for _start, x_ntf, validity in _blocks(span, layout, spec):
        accumulator.update(x_ntf, None if validity.is_all_valid else validity)
    return accumulator
