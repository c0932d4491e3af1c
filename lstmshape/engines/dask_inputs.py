"""The input cut into spans: the unit of work of `--engine dask`.

A `Span` is a run of whole samples of one input file: a few hundred MiB that one task
streams block by block (`--chunk-mb` blocks) exactly as the in-process engine streams a
file, with the same reader (positioned reads into reused buffers, cached pages used in
place, the next block read while the kernel works on this one). Only the file's path and
the span's bounds travel with the task; the task opens the file itself, so no open handle,
lock or block of data is shipped, and a worker on another host reads the same path.

Spans never straddle two files, and their blocks follow each file's own grid (rounded to
whole stored chunks for chunked `.h5` and `.zarr` inputs), so no stored chunk is decoded by
two blocks. Results do not depend on where blocks start: every kernel works per sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.blocks import block_step, reader_of
from lstmshape.errors import InputError
from lstmshape.refs import ArrayRef

Array = npt.NDArray[Any]

#: About how many input bytes one task streams: large enough that the per-task costs
#: (scheduling, opening the file, the first block read without overlap) stay a few per cent.
SPAN_BYTES = 256 * 2**20
#: Spans per worker at least, so that workers finishing at different times stay busy.
SPANS_PER_WORKER = 4
# rows_per_block's floor on a sample's cost: a sample of fewer bytes still counts as this.
_MIN_SAMPLE_BYTES = 64


@dataclass(frozen=True)
class Span:
    """Samples `[lo, hi)` along `axis` (N) of the file `ref`, samples `[start, start + hi -
    lo)` of the joined input, streamed in blocks of `step` samples."""

    ref: ArrayRef
    lo: int
    hi: int
    start: int
    step: int
    axis: int
    allow_external: bool  # HDF5 external links: this process's --allow-external

    @property
    def stop(self) -> int:
        return self.start + self.hi - self.lo


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


def _sample_bytes(shape: tuple[int, ...], itemsize: int, axis: int) -> int:
    return itemsize * math.prod(s for i, s in enumerate(shape) if i != axis)


def plan_spans(
    source: Any, layout: str, chunk_bytes: int, n_workers: int, out_sample: int = 0
) -> list[Span]:
    """The input's spans in order: about `SPAN_BYTES` of input (or of output, when a sample
    makes `out_sample` bytes of output, more than it reads) each, at least
    `SPANS_PER_WORKER` per worker when the input has that many blocks."""
    from lstmshape import io

    ndim = len(source.shape)
    axis = 1 if layout == "tnf" and ndim == 3 else 0
    parts = [(_absolute(ref), part) for ref, part in _parts(source)]
    sizes = [int(part.shape[axis]) for _, part in parts]
    # Each file's own blocks, as a task will cut them (it refuses what does not fit memory)
    steps = [
        block_step(part, axis, n, chunk_bytes) for (_, part), n in zip(parts, sizes, strict=True)
    ]
    n_blocks = sum(-(-n // step) for n, step in zip(sizes, steps, strict=True))
    in_sample = _sample_bytes(tuple(source.shape), np.dtype(source.dtype).itemsize, axis)
    sample = max(in_sample, out_sample, 1)
    block_bytes = max(steps, default=1) * max(sample, _MIN_SAMPLE_BYTES)
    share = -(-n_blocks // (SPANS_PER_WORKER * n_workers))
    per_span = max(1, min(SPAN_BYTES // block_bytes, share))
    external = io.external_allowed()
    spans = []
    start = 0
    for (ref, _), n, step in zip(parts, sizes, steps, strict=True):
        for lo in range(0, n, per_span * step):
            hi = min(n, lo + per_span * step)
            spans.append(Span(ref, lo, hi, start + lo, step, axis, external))
        start += n
    return spans


# ----------------------------------------------------------------------------- reading


class _WindowReader:
    """A file's block reader (`io.blocks.Reader`) seen through a window `[lo, lo + n)` along
    `axis`: the same reads, mapped blocks and row gathers, shifted by `lo`."""

    def __init__(self, base: Any, lo: int, shape: tuple[int, ...], axis: int) -> None:
        self.base = base
        self.lo = lo
        self.shape = shape
        self.axis = axis
        self.dtype = np.dtype(base.dtype)
        self.background = bool(base.background)
        self.supports_rows = bool(base.supports_rows)
        self.maps = bool(getattr(base, "maps", False)) and axis == 0

    def align(self, axis: int) -> int:
        return int(self.base.align(axis))

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        self.base.read_into(self.lo + start, self.lo + stop, axis, out)

    def read_rows(self, rows: npt.NDArray[np.int64], out: Array) -> None:
        index = list(np.unravel_index(rows.astype(np.int64), self.shape[:-1]))
        index[self.axis] = index[self.axis] + self.lo
        flat = np.ravel_multi_index(tuple(index), self.base.shape[:-1]).astype(np.int64)
        self.base.read_rows(flat, out)

    def cached(self, start: int, stop: int, axis: int) -> bool:
        return bool(self.base.cached(self.lo + start, self.lo + stop, axis))

    def map_block(self, start: int, stop: int, axis: int) -> Array:
        return self.base.map_block(self.lo + start, self.lo + stop, axis)  # type: ignore[no-any-return]

    def unmap_block(self, start: int, stop: int, axis: int) -> None:
        self.base.unmap_block(self.lo + start, self.lo + stop, axis)

    def close(self) -> None:
        self.base.close()


class _Window:
    """Samples `[lo, hi)` along `axis` of an open source, read like a whole source (what
    `blocks.iter_blocks` streams)."""

    def __init__(self, source: Any, lo: int, hi: int, axis: int) -> None:
        self.source = source
        self.lo = lo
        self.info = source.info
        self.dtype = np.dtype(source.dtype)
        self.shape = tuple(hi - lo if i == axis else int(s) for i, s in enumerate(source.shape))
        base = reader_of(source)
        self.reader = None if base is None else _WindowReader(base, lo, self.shape, axis)

    def read(self, start: int, stop: int, axis: int = 0) -> Array:
        return np.asarray(self.source.read(self.lo + start, self.lo + stop, axis=axis))


@contextmanager
def open_span(span: Span) -> Iterator[_Window]:
    """The span's samples as a source of their own, its file open for the duration."""
    from lstmshape import io

    with io.allow_external(span.allow_external), io.open_array(span.ref) as source:
        yield _Window(source, span.lo, span.hi, span.axis)


def span_chunk_bytes(span: Span, window: _Window) -> int:
    """The `chunk_bytes` for which `blocks.iter_blocks` cuts the window into blocks of
    exactly `span.step` samples (the step already holds whole stored chunks)."""
    sample = _sample_bytes(window.shape, window.dtype.itemsize, span.axis)
    return span.step * max(sample, _MIN_SAMPLE_BYTES)
