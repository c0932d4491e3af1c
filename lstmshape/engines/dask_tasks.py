"""What a dask worker runs: one span of the input, streamed block by block.

A task opens its span's file (`dask_inputs.open_span`), reads it with the in-process
engine's block reader (`blocks.iter_blocks`) and applies the plan's kernel to each block,
as `stream.run_plan` does. It returns what the lstmshape process needs: the span's output
(or, when the workers write a Zarr output themselves, only the rows of output chunks that
the neighbouring span shares), its side output and its check tables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
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

    pieces: list[tuple[int, Array]]  # a block's output each, or a Zarr span's shared rows
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


# glibc's mallopt parameters, and the defaults it uses once they are set.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _GLIBC_DEFAULT = -1, -3, 128 * 1024
#: The largest M_MMAP_THRESHOLD glibc takes on 64-bit hosts.
_HEAP_BLOCKS = 32 * 2**20
#: Free memory a heap keeps while tasks run: a few blocks' worth of kernel temporaries.
_HEAP_KEEP = 64 * 2**20
_heap_lock = threading.Lock()
_heap_users = [0]


def _libc() -> Any:
    """glibc, when this worker fixed its malloc thresholds (a dask nanny starts workers
    with MALLOC_TRIM_THRESHOLD_ set), else None."""
    fixed = {"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"} & set(os.environ)
    if not sys.platform.startswith("linux") or not fixed:
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def _env_bytes(name: str) -> int:
    try:
        return int(os.environ.get(name, _GLIBC_DEFAULT))
    except ValueError:
        return _GLIBC_DEFAULT


@contextlib.contextmanager
def _heap_reuse() -> Iterator[None]:
    """While tasks run, let freed blocks and kernel temporaries be reused from the heap.

    With fixed thresholds (a dask worker's MALLOC_TRIM_THRESHOLD_) every array over 128 KiB
    is a fresh memory map, faulted in page by page and unmapped when freed: pooling 4 GiB
    took 700,000 page faults and twice the system time of the same run without them. The
    worker's own thresholds are put back, and the memory kept handed back, when the last
    running task ends.
    """
    libc = _libc()
    if libc is None:
        yield
        return
    with _heap_lock:
        _heap_users[0] += 1
        if _heap_users[0] == 1:
            libc.mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCKS)
            libc.mallopt(_M_TRIM_THRESHOLD, _HEAP_KEEP)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users[0] -= 1
            if _heap_users[0] == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _env_bytes("MALLOC_MMAP_THRESHOLD_"))
                libc.mallopt(_M_TRIM_THRESHOLD, _env_bytes("MALLOC_TRIM_THRESHOLD_"))
                libc.malloc_trim(0)


def _blocks(span: Span, layout: str, spec: MaskSpec) -> Iterator[tuple[int, Array, Validity]]:
    """(first sample in the input, batch-first block, validity) of the span's blocks; the
    block is valid until the next one is asked for."""
    with _heap_reuse(), open_span(span) as window:
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
    pieces: list[tuple[int, Array]] = []
    extras: list[Array] = []
    tables: list[tuple[int, Array]] = []
    for start, x_ntf, validity in _blocks(span, plan.layout, spec):
        out, extra, checks = plan.apply(x_ntf, validity)
        pieces.append((start, _detached(out, x_ntf)))
        if extra is not None:
            extras.append(_detached(extra, x_ntf))
        if checks is not None:
            tables.append((start, checks))
    if target is None or not pieces:
        return SpanResult(pieces, extras, tables)
    axis = plan.out_axis
    whole = np.concatenate([out for _, out in pieces], axis=axis)
    return SpanResult(_write_inner_chunks(whole, span.start, axis, target), extras, tables)


def _detached(out: Array, block: Array) -> Array:
    """`out`, copied if it shares memory with the block (a reused buffer or a mapped file)."""
    return out.copy() if np.may_share_memory(out, block) else out


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
