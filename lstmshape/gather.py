"""Row gathers: `last`/`first` need one step per sample (two with `--bidirectional`).

When the validity is known before reading (a mask file, lengths, or no mask) and the reader
can fetch single rows, the engine reads just those rows (`Plan.gather`): time grows with
N·F, not N·T·F.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.blocks import DEFAULT_CHUNK_BYTES, reader_of
from lstmshape.masks import MaskSpec
from lstmshape.plan import Plan
from lstmshape.validity import Validity

Array = npt.NDArray[Any]


def can_gather(source: Any, plan: Plan, spec: MaskSpec) -> bool:
    """Whether `run_plan` will read only the rows `plan.gather` asks for."""
    reader = reader_of(source)
    return (
        plan.gather is not None
        and not spec.per_block
        and len(plan.in_shape) == 3
        and reader is not None
        and reader.supports_rows
    )


def validity_of(plan: Plan, spec: MaskSpec) -> Validity:
    if spec.validity is not None:
        return spec.validity
    n, t = (plan.in_shape[1], plan.in_shape[0]) if plan.layout == "tnf" else plan.in_shape[:2]
    return Validity.all_valid(n, t)


def _gathered_rows(plan: Plan, validity: Validity, start: int) -> tuple[Array, Array, Validity]:
    """File rows (flat over all axes but F) of the steps `plan.gather` picks for a block."""
    steps, picked = plan.gather(validity)  # type: ignore[misc]
    wanted = steps >= 0
    sample = np.arange(start, start + validity.n, dtype=np.int64)[:, None]
    if plan.layout == "tnf":
        flat = steps.astype(np.int64) * plan.in_shape[1] + sample
    else:
        flat = sample * plan.in_shape[1] + steps
    return flat[wanted], wanted, picked


def gather_blocks(
    source: Any, plan: Plan, spec: MaskSpec, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[tuple[int, Array, Validity, int]]:
    """Yield `(start, steps, validity, nbytes)`: per block of samples, the (n, k, F) steps
    `plan.gather` picks, read row by row, and the validity of those k steps (a new array
    each block)."""
    reader = reader_of(source)
    assert reader is not None and plan.gather is not None
    validity = validity_of(plan, spec)
    width, dtype = plan.in_shape[-1], np.dtype(source.dtype)
    step = max(1, chunk_bytes // max(2 * width * dtype.itemsize, 1))
    for start in range(0, validity.n, step):
        block_validity = validity.rows(start, start + step)
        rows, wanted, picked = _gathered_rows(plan, block_validity, start)
        staging = np.empty((rows.size, width), dtype)
        reader.read_rows(rows, staging)
        if wanted.all():  # every sample has its steps: the rows are already in (n, k) order
            steps = staging.reshape(*wanted.shape, width)
        else:
            steps = np.zeros((*wanted.shape, width), dtype)
            steps[wanted] = staging
        yield start, steps, picked, staging.nbytes


def as_result(plan: Plan, steps: Array, picked: Validity) -> Array | None:
    """The gathered steps themselves as the plan's output block, when they are it: one step
    per sample and every sample has it (the last or first of one step is that step; the
    kernel would copy it). None otherwise: the kernel then takes them."""
    if steps.shape[1] != 1 or picked.lengths is None or not bool(picked.lengths.all()):
        return None
    return steps if plan.options.get("keepdims") else steps[:, 0]
