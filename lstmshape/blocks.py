"""Blocks of whole samples along N, read with bounded memory.

Each block holds whole samples (every timestep of them), so any kernel that works
per sample gives the same result streamed as in memory. A block is sized in bytes
(`chunk_bytes`), not samples; one sample per block is the floor.

Reading. An `io.ArraySource` carries a `readers.Reader`, and the next block is fetched by a
background thread while the kernel works on the current one. A block that is not in the page
cache is read into one of two buffers allocated once and reused (positioned reads,
`read_direct` for filtered HDF5): the disk is the limit, and the kernel's read-ahead keeps
it busy. A batch-first block that is cached is either used in place through a map of the
file (its pages mapped ahead, then dropped from the resident set: no copy at all) or copied
into a buffer, which puts it in the CPU cache for a slow kernel; the first blocks are timed
both ways and the faster is kept (`_MapOrCopy`). Either way the resident set stays at a few
blocks plus the kernel's temporaries, whatever the input size. Any other source (several
files joined, Zarr) is read through its `read(start, stop, axis)`. Time-major means and
extremes over a mask known up front skip the blocks of samples: they read the file's time
rows in order (`lstmshape.timerows`, through `buffered_blocks`).

Kernels receive views of the reused buffers: they must return new arrays (they do; the
engine copies any output that would share memory with the buffer anyway).

Block size (`DEFAULT_CHUNK_BYTES`, `--chunk-mb`), measured on the 2-core machine of
bench/RESULTS.md: a float32 (32768, 128, 256) file of 4 GiB, page cache warm, in-process
engine time, best of 4 (a plain `readinto` loop over the file takes 0.49-0.53 s):

    block                        2M     4M     8M     16M    32M    64M
    mean, mapped                 0.66   0.54   0.43   0.39   0.37   0.38
    max, copied                  0.70   0.62   0.56   0.60   0.57   0.69
    mean, time-major, copied     1.40   1.05   0.83   0.72   0.64   0.71

Small blocks stay in the 2 MiB L2 cache but pay a Python round trip, a thread hand-off and
(time-major) T system calls per block; from 16 MiB on the curve is flat within the noise of
this shared machine. 16 MiB is the default: on the plateau for every layout, and two
buffers cost 32 MiB of the resident set.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lstmshape.io.blocks import Joined, Reader, aligned_buffer
from lstmshape.masks import Layout, MaskSpec
from lstmshape.validity import Validity

if TYPE_CHECKING:
    pass

DEFAULT_CHUNK_BYTES = 16 * 2**20

# numpy.typing.NDArray[...] spelt out: importing numpy.typing costs every start-up.
Array = np.ndarray[tuple[Any, ...], np.dtype[Any]]


class BlockReader(Protocol):
    """What the engine needs of an input: its shape and dtype, and slices of samples."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    def read(self, start: int, stop: int, axis: int = 0) -> Array: ...


class BlockWriter(Protocol):
    def write(self, start: int, block: Array, axis: int = 0) -> None: ...


def rows_per_block(shape_ntf: tuple[int, ...], itemsize: int, chunk_bytes: int) -> int:
    """How many samples fit in one block of about `chunk_bytes` (at least one).

    >>> rows_per_block((1000, 100, 10), 4, 2**20), rows_per_block((10**9, 0, 6), 4, 2**20)
    (262, 16384)
    """
    row_bytes = itemsize * math.prod(shape_ntf[1:])
    return max(1, chunk_bytes // max(row_bytes, _MIN_SAMPLE_BYTES))


def reader_of(source: Any) -> Reader | None:
    """The source's block reader; for several files joined along N, one over their readers
    (their `read` would hand out memory-map views whose pages pile up in the resident set)."""
    reader = getattr(source, "reader", None)
    if reader is not None and hasattr(reader, "read_into"):
        return reader
    parts = [reader_of(part) for part in getattr(source, "sources", ())]
    if parts and all(part is not None for part in parts) and hasattr(source, "offsets"):
        return Joined(parts, source.offsets, source.axis)  # type: ignore[arg-type]
    return None


def read_copy(source: Any, start: int, stop: int, axis: int) -> Array:
    """Indices `start:stop` along `axis` as a new array, read by the source's reader when it
    has one: a view of a memory map would keep every page it touches mapped (2 MiB folios
    around each time row of a time-major block) until the source is closed."""
    reader = reader_of(source)
    if reader is None:
        return np.array(source.read(start, stop, axis=axis))
    shape = (*reader.shape[:axis], stop - start, *reader.shape[axis + 1 :])
    out = np.empty(shape, reader.dtype)
    reader.read_into(start, stop, axis, out)
    return out


# What a sample costs besides its data (its valid count and indices, an output row): a
# (0, 2**31, 6) time-major header holds no data bytes, yet two billion samples.
_MIN_SAMPLE_BYTES = 64


def block_step(source: Any, axis: int, n: int, chunk_bytes: int) -> int:
    """Samples per block: about `chunk_bytes`, rounded to whole stored chunks when chunked.
    A sample or a stored chunk that alone does not fit in memory is refused first."""
    from lstmshape.limits import refuse_huge_chunk_rows, refuse_huge_reads

    refuse_huge_reads(source, axis)
    per_sample = source.dtype.itemsize * math.prod(source.shape) // max(n, 1)
    shape_ntf = (n, *(size for i, size in enumerate(source.shape) if i != axis))
    step = rows_per_block(shape_ntf, source.dtype.itemsize, chunk_bytes)
    unit = _stored_unit(source, axis)
    if unit > 1:
        refuse_huge_chunk_rows(source, unit, per_sample)
    return max(unit, step // unit * unit) if unit > 1 else step


def _stored_unit(source: Any, axis: int) -> int:
    """The storage unit along `axis`: the reader's, or the stored chunks' (Zarr sources,
    read by slicing, decompress whole chunks)."""
    reader = reader_of(source)
    if reader is not None:
        return reader.align(axis)
    chunks = getattr(getattr(source, "info", None), "chunks", None)
    return int(chunks[axis]) if chunks and len(chunks) > axis and chunks[axis] > 0 else 1


def buffered_blocks(
    reader: Reader, axis: int, n: int, step: int, *, timed: bool = True
) -> Iterator[tuple[int, int, Array]]:
    """Blocks `[start, stop)` along `axis`, the next one fetched while the consumer works.

    A block whose pages are in the page cache is used in place through a map of the file
    (when the reader `maps`); any other is read into one of two reused buffers. With
    `timed`, the first cached blocks are also copied, and the faster way kept (`_MapOrCopy`);
    else cached blocks are always mapped. A block stays valid until the consumer asks for
    the next one. Fetches run in one background thread when the reader releases the GIL.
    """
    shape, dtype = reader.shape, reader.dtype
    per_index = dtype.itemsize * math.prod(shape) // max(shape[axis], 1)
    count = -(-n // step)
    depth = 2 if reader.background and count > 1 else 1
    buffers: list[Array] = []
    # Only along axis 0: a time-major block is T short runs, and the kernel maps the pages
    # around each fault too (fault-around, large folios), rows of other blocks that would
    # pile up in the resident set (measured: 450 MiB for a 4 GiB file).
    maps = bool(getattr(reader, "maps", False)) and axis == 0

    timer = _MapOrCopy(count if maps and depth > 1 and timed else 0)

    def fill(k: int, use_map: bool = maps) -> tuple[int, int, Array, bool]:
        start, stop = k * step, min(n, (k + 1) * step)
        if use_map and reader.cached(start, stop, axis):  # type: ignore[attr-defined]
            return start, stop, reader.map_block(start, stop, axis), True  # type: ignore[attr-defined]
        while len(buffers) <= k % depth:
            buffers.append(aligned_buffer(min(step, n) * per_index))
        flat = buffers[k % depth][: (stop - start) * per_index]
        block = flat.view(dtype).reshape(*shape[:axis], stop - start, *shape[axis + 1 :])
        reader.read_into(start, stop, axis, block)
        return start, stop, block, False

    def release(fetched: tuple[int, int, Array, bool] | None) -> None:
        if fetched is not None and fetched[3]:
            reader.unmap_block(fetched[0], fetched[1], axis)  # type: ignore[attr-defined]

    current = None
    if depth == 1:
        try:
            for k in range(count):
                release(current)
                current = fill(k)
                yield current[:3]
        finally:
            release(current)
        return
    from concurrent.futures import Future, ThreadPoolExecutor

    ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmshape-read")
    pending: Future[tuple[int, int, Array, bool]] | None = ahead.submit(fill, 0)
    try:
        for k in range(count):
            release(current)
            current = None
            timer.mark(k)
            assert pending is not None
            fetched, pending = pending, None
            if k + 1 < count:
                # The buffer of block k + 1 held block k - 1, which the consumer is done with.
                pending = ahead.submit(fill, k + 1, maps and timer.use_map(k + 1))
            current = fetched.result()
            yield current[:3]
    finally:
        release(current)
        if pending is not None:  # a consumer that stopped early: let the read finish
            with contextlib.suppress(Exception):
                release(pending.result())
        ahead.shutdown()


class _MapOrCopy:
    """Whether cached blocks are used in place (mapped) or copied into a buffer, by timing.

    Mapping costs no copy, but the kernel then reads from memory; a copy made by the
    background thread lands in the cache, where a slow kernel (max/min) runs faster. The
    first blocks are timed both ways (what the consumer waits for plus its own work) and
    the faster way is kept. Measured on 4 GiB: mean 0.39 s mapped vs 0.57 s copied, max
    0.80 s mapped vs 0.56 s copied.
    """

    SPAN = 6  # blocks timed each way

    def __init__(self, count: int) -> None:
        self.active = count >= 2 * self.SPAN + 4
        self._marks: dict[int, float] = {}
        self._map = True

    def use_map(self, k: int) -> bool:
        if not self.active or k <= self.SPAN:
            return True
        return self._map if k > 2 * self.SPAN else False

    def mark(self, k: int) -> None:
        """The consumer asks for block k (it is done with block k - 1)."""
        if self.active and k in (1, self.SPAN + 1, 2 * self.SPAN + 1):
            self._marks[k] = time.perf_counter()
            if k == 2 * self.SPAN + 1:
                first, middle = self._marks[1], self._marks[self.SPAN + 1]
                self._map = middle - first <= self._marks[k] - middle


def _plain_blocks(source: Any, axis: int, n: int, step: int) -> Iterator[tuple[int, int, Array]]:
    for start in range(0, n, step):
        stop = min(start + step, n)
        yield start, stop, source.read(start, stop, axis=axis)


def iter_blocks(
    source: BlockReader,
    layout: Layout,
    spec: MaskSpec,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    on_block: Callable[[int], None] | None = None,
    probe: bool = True,
) -> Generator[tuple[int, int, Array, Validity], None, None]:
    """Yield `(start, stop, x_ntf, validity)` for consecutive blocks of samples.

    `x_ntf` may be a view of a reused buffer: it is valid until the next block is asked for.
    `probe=False`: cached blocks are mapped, never timed against copies (`_MapOrCopy`).
    """
    time_major = layout == "tnf" and len(source.shape) == 3
    if time_major:  # the plans import every kernel: not for inspect, nor a batch-first diff
        from lstmshape.plan import as_ntf
    axis = 1 if time_major else 0
    n = source.shape[axis]
    step = block_step(source, axis, n, chunk_bytes)
    reader = reader_of(source)
    if reader is not None and math.prod(source.shape) > 0:
        blocks = buffered_blocks(reader, axis, n, step, timed=probe)
    else:
        blocks = _plain_blocks(source, axis, n, step)
    for start, stop, block in blocks:
        x_ntf = as_ntf(block, "tnf") if time_major else block
        yield start, stop, x_ntf, spec.for_block(x_ntf, start, stop)
        if on_block is not None:
            on_block(block.nbytes)
