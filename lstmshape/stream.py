"""The chunked engine: run a plan block by block along N with bounded memory.

Each block holds whole samples (every timestep of them), so any kernel that works
per sample gives the same result streamed as in memory. A block is sized in bytes
(`chunk_bytes`), not samples; one sample per block is the floor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lstmshape.api import Plan, as_ntf
from lstmshape.errors import InputError
from lstmshape.masks import Layout, Validity, describe_empty, mask_from_value

DEFAULT_CHUNK_BYTES = 16 * 2**20

Array = npt.NDArray[Any]


class BlockReader(Protocol):
    """What the engine needs of an input: its shape and dtype, and slices of samples."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    def read(self, start: int, stop: int, axis: int = 0) -> Array: ...


class BlockWriter(Protocol):
    def write(self, start: int, block: Array, axis: int = 0) -> None: ...


@dataclass(frozen=True)
class MaskSpec:
    """A mask known up front (mask file, lengths, or none), or one computed per block."""

    validity: Validity | None = None
    mask_value: float | None = None

    def for_block(self, x_ntf: Array, start: int, stop: int) -> Validity:
        if self.validity is not None:
            return self.validity.rows(start, stop)
        if self.mask_value is not None:
            mask = mask_from_value(x_ntf, self.mask_value)
            return Validity(n=mask.shape[0], t=mask.shape[1], mask=mask).compact()
        return Validity.all_valid(x_ntf.shape[0], x_ntf.shape[1] if x_ntf.ndim > 1 else 0)


def rows_per_block(shape_ntf: tuple[int, ...], itemsize: int, chunk_bytes: int) -> int:
    """How many samples fit in one block of about `chunk_bytes` (at least one)."""
    row_bytes = itemsize * int(np.prod(shape_ntf[1:], dtype=np.int64))
    return max(1, chunk_bytes // max(row_bytes, 1))


def iter_blocks(
    source: BlockReader,
    layout: Layout,
    spec: MaskSpec,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    on_block: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, int, Array, Validity]]:
    """Yield `(start, stop, x_ntf, validity)` for consecutive blocks of samples."""
    time_major = layout == "tnf" and len(source.shape) == 3
    n = source.shape[1] if time_major else source.shape[0]
    shape_ntf = (n, source.shape[0], *source.shape[2:]) if time_major else tuple(source.shape)
    step = rows_per_block(shape_ntf, source.dtype.itemsize, chunk_bytes)
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = source.read(start, stop, axis=1 if time_major else 0)
        x_ntf = as_ntf(block, "tnf") if time_major else block
        yield start, stop, x_ntf, spec.for_block(x_ntf, start, stop)
        if on_block is not None:
            on_block(block.nbytes)


def _raise_if_empty(empty_blocks: list[Array]) -> None:
    """Name every empty sample of a run whose mask was found block by block."""
    empty = np.concatenate(empty_blocks) if empty_blocks else np.zeros(0, np.intp)
    if empty.size:
        raise InputError(describe_empty(empty))


def run_plan(
    source: BlockReader,
    plan: Plan,
    spec: MaskSpec,
    sink: BlockWriter,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    on_block: Callable[[int], None] | None = None,
) -> Array | None:
    """Apply `plan` to every block, writing each output block to `sink` as it comes.

    Returns the (N, T') output mask of windowed pooling, which is small, or None.
    """
    out_axis = 1 if plan.keeps_time and plan.layout == "tnf" and len(plan.out_shape) == 3 else 0
    if spec.validity is not None:
        plan.check_empty(spec.validity)  # fail before reading any data
    mask_blocks: list[Array] = []
    empty_blocks: list[Array] = []
    blocks = iter_blocks(source, plan.layout, spec, chunk_bytes=chunk_bytes, on_block=on_block)
    for start, _stop, x_ntf, validity in blocks:
        if plan.rejects_empty and spec.validity is None:
            empty_blocks.append(validity.empty_samples() + start)
        out, extra = plan.apply(x_ntf, validity)
        sink.write(start, out, axis=out_axis)
        if extra is not None:
            mask_blocks.append(extra)
    _raise_if_empty(empty_blocks)
    if plan.mask_out_shape is None:
        return None
    if not mask_blocks:
        return np.zeros(plan.mask_out_shape, dtype=bool)
    return np.concatenate(mask_blocks, axis=0)
