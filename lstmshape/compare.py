"""Compare two arrays over their valid steps, block by block along N (`lstmshape diff`).

Two elements are close as `numpy.isclose` has it: `|a - b| <= atol + rtol * |b|`, computed
in the wider of the two dtypes and at least float32 (float16 is widened, integers and bool go
through float); an infinite B is close only to the same infinity; NaN is close to nothing,
or to NaN with `equal_nan`. Only valid steps count: the mask (a mask file, lengths or a
padding value) is that of A, and padding is never compared.

A and B stream side by side in blocks of whole samples (`stream.iter_blocks`, each with its
read-ahead thread); the per-block statistics (`diffstats.DiffAccumulator`) merge into one
`DiffReport`, so memory stays bounded whatever the input size. Data without a time axis
((N, F) outputs of `reduce`, or any rank but 3) is compared element by element.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.blocks import DEFAULT_CHUNK_BYTES, iter_blocks
from lstmshape.diffparts import BlockParts
from lstmshape.diffreport import DiffReport, Tolerance
from lstmshape.diffstats import DiffAccumulator, comparison_dtype
from lstmshape.errors import InputError
from lstmshape.inputs import parse_float
from lstmshape.masks import MaskSpec, build_validity
from lstmshape.validity import Validity
from lstmshape.vocabulary import Layout, PadSide

__all__ = [
    "DiffReport",
    "Tolerance",
    "check_shapes",
    "comparison_dtype",
    "diff",
    "diff_sources",
    "mask_spec",
    "view_shape",
]

Array = npt.NDArray[Any]
Block = tuple[int, Array, Array, "Validity | None"]


def view_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, int, int]:
    """The (N, T, F) the comparison sees: 3-D data by its layout; any other rank as
    (N, 1, F) for (N, F), (N, 1, 1) for (N,), (1, 1, 1) for a scalar and
    (N, prod(middle axes), last axis) above three axes.

    >>> view_shape((40, 64, 16), "tnf"), view_shape((64, 16), "tnf")
    ((64, 40, 16), (64, 1, 16))
    """
    if len(shape) == 3:
        n, t, f = shape
        return (t, n, f) if layout == "tnf" else (n, t, f)
    if not shape:
        return (1, 1, 1)
    return (shape[0], math.prod(shape[1:-1]), shape[-1] if len(shape) > 1 else 1)


def check_shapes(
    shape_a: tuple[int, ...], shape_b: tuple[int, ...], layout_a: Layout, layout_b: Layout
) -> None:
    """Raise an InputError saying how the shapes differ (with a layout hint when B is A
    with N and T swapped).

    >>> try:
    ...     check_shapes((4, 5, 6), (5, 4, 6), "ntf", "ntf")
    ... except InputError as error:
    ...     print(str(error).split("; ")[1])
    B looks time-major (T, N, F): try --layout-b tnf
    """
    if len(shape_a) != len(shape_b):
        raise InputError(
            f"A has shape {tuple(shape_a)} ({len(shape_a)}-D) and B {tuple(shape_b)} "
            f"({len(shape_b)}-D); diff compares arrays of the same shape"
        )
    ntf_a, ntf_b = view_shape(shape_a, layout_a), view_shape(shape_b, layout_b)
    if ntf_a == ntf_b and (len(shape_a) == 3 or tuple(shape_a) == tuple(shape_b)):
        return
    message = f"A has shape {tuple(shape_a)} and B {tuple(shape_b)}: they differ in "
    if len(shape_a) != 3:
        axes = [str(i) for i, (x, y) in enumerate(zip(shape_a, shape_b, strict=True)) if x != y]
        raise InputError(message + f"axis {', '.join(axes)}")
    names = [
        f"{name} ({x} vs {y})" for name, x, y in zip("NTF", ntf_a, ntf_b, strict=True) if x != y
    ]
    message += " and ".join(names)
    if layout_a != layout_b:
        message += f" (A read as {layout_a}, B as {layout_b})"
    hint = _layout_hint(shape_a, shape_b, layout_a, layout_b)
    raise InputError(message + (f"; {hint}" if hint else ""))


def _layout_hint(
    shape_a: tuple[int, ...], shape_b: tuple[int, ...], layout_a: Layout, layout_b: Layout
) -> str | None:
    """`--layout-b` when reading B the other way round makes the shapes agree."""
    flip: Layout = "ntf" if layout_b == "tnf" else "tnf"
    if view_shape(shape_b, flip) != view_shape(shape_a, layout_a):
        return None
    looks = "time-major (T, N, F)" if flip == "tnf" else "batch-first (N, T, F)"
    return f"B looks {looks}: try --layout-b {flip}"


def mask_spec(
    shape: tuple[int, ...],
    layout: Layout,
    *,
    mask: npt.ArrayLike | None = None,
    lengths: npt.ArrayLike | None = None,
    mask_value: float | str | None = None,
    pad_side: PadSide = "post",
    include_padding: bool = False,
) -> MaskSpec:
    """The valid steps of A (shape as stored) from at most one mask source, for streaming.
    `include_padding`: compare every step (then no mask source may be given).

    >>> spec = mask_spec((2, 3, 4), "ntf", lengths=[3, 1])
    >>> spec.validity.counts().tolist()
    [3, 1]
    """
    given = [s for s in (mask, lengths, mask_value) if s is not None]
    if include_padding and given:
        raise InputError("--include-padding compares every step; it takes no mask source")
    if not given:
        return MaskSpec()
    if len(shape) != 3:
        raise InputError(f"a mask needs 3-D data (N, T, F); A has shape {tuple(shape)}")
    if mask_value is not None and len(given) == 1:
        return MaskSpec(mask_value=parse_float(str(mask_value), "--mask-value"))
    n, t, _ = view_shape(shape, layout)
    validity = build_validity(
        None,
        n=n,
        t=t,
        mask=mask,
        lengths=lengths,
        mask_value=mask_value,
        pad_side=pad_side,
        layout=layout,
    )
    return MaskSpec(validity=validity)


def diff_sources(
    source_a: Any,
    source_b: Any,
    *,
    layout: Layout = "ntf",
    layout_b: Layout | None = None,
    spec: MaskSpec | None = None,
    tolerance: Tolerance | None = None,
    worst: int = 5,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    on_block: Callable[[int], None] | None = None,
) -> DiffReport:
    """Compare two open sources (`io.open_array`, or anything with shape, dtype and
    `read(start, stop, axis)`) block by block; `spec` masks A's padding out.

    `on_block(nbytes)` is called as each block of either input is done (for progress).
    """
    layout_b = layout if layout_b is None else layout_b
    shape_a, shape_b = tuple(source_a.shape), tuple(source_b.shape)
    check_shapes(shape_a, shape_b, layout, layout_b)
    spec = MaskSpec() if spec is None else spec
    if len(shape_a) != 3 and (spec.validity is not None or spec.mask_value is not None):
        raise InputError(f"a mask needs 3-D data (N, T, F); A has shape {shape_a}")
    shape = view_shape(shape_a, layout)
    validity = spec.validity
    if validity is not None and (validity.n, validity.t) != shape[:2]:
        raise InputError(
            f"the mask covers N={validity.n}, T={validity.t}; A has N={shape[0]}, T={shape[1]}"
        )
    accumulators = [
        DiffAccumulator(
            shape,
            comparison_dtype(source_a.dtype, source_b.dtype),
            tolerance or Tolerance(),
            worst=worst,
            rank=len(shape_a),
            index_of=_index_function(shape_a, layout),
        )
        for _ in range(_threads())
    ]
    blocks = _paired_blocks(source_a, source_b, layout, layout_b, spec, chunk_bytes, on_block)
    with BlockParts(accumulators, _MIN_PART_ELEMENTS) as compare_block:
        for start, a, b, rows in blocks:
            compare_block(start, a, b, rows)
    accumulator = accumulators[0]
    for other in accumulators[1:]:
        accumulator.merge(other)
    inputs = {
        "a": {"shape": list(shape_a), "dtype": str(source_a.dtype), "layout": layout},
        "b": {"shape": list(shape_b), "dtype": str(source_b.dtype), "layout": layout_b},
    }
    return dataclasses.replace(accumulator.finish(), inputs=inputs)


#: At most this many threads compare the parts of a block (numpy releases the GIL).
_MAX_THREADS = 4
#: A block is split among threads only when each part holds at least this many elements.
_MIN_PART_ELEMENTS = 1 << 18


def _threads() -> int:
    """One comparing thread per core (at most `_MAX_THREADS`): the comparison is CPU-bound,
    and the read-ahead threads mostly wait (a cached block is mapped, not copied); on a
    busy machine `BlockParts` leaves the others idle."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_THREADS))


def _index_function(shape: tuple[int, ...], layout: Layout) -> Callable[[int, int, int], tuple]:
    """(sample, step, feature) of the comparison's view -> the index into A as stored."""
    if len(shape) == 3:
        if layout == "tnf":
            return lambda i, j, k: (j, i, k)
        return lambda i, j, k: (i, j, k)
    _, m, f = view_shape(shape, "ntf")

    def index(i: int, j: int, k: int) -> tuple[int, ...]:
        return tuple(int(x) for x in np.unravel_index(i * m * f + j * f + k, shape))

    return index


def _paired_blocks(
    source_a: Any,
    source_b: Any,
    layout_a: Layout,
    layout_b: Layout,
    spec: MaskSpec,
    chunk_bytes: int,
    on_block: Callable[[int], None] | None,
) -> Iterator[Block]:
    """`(start, a, b, validity)`: the same samples of A and B as (n, T, F) views.

    The two inputs may be read in blocks of different sizes (dtypes, stored chunks): the
    walk yields the overlap of the current blocks and advances whichever ends first, so a
    block is never needed after its iterator moved on.
    """
    if not source_a.shape:  # a scalar: one block of one sample
        a, b = np.asarray(source_a.read_all()), np.asarray(source_b.read_all())
        yield 0, a.reshape(1, 1, 1), b.reshape(1, 1, 1), None
        return
    shape = view_shape(tuple(source_a.shape), layout_a)
    # mapped, the comparison ran 2-3x faster than on copies (bench/RESULTS.md): no timing
    opts: dict[str, Any] = {"chunk_bytes": chunk_bytes, "on_block": on_block, "probe": False}
    with (
        contextlib.closing(iter_blocks(source_a, layout_a, spec, **opts)) as blocks_a,
        contextlib.closing(iter_blocks(source_b, layout_b, MaskSpec(), **opts)) as blocks_b,
    ):
        masked = spec.validity is not None or spec.mask_value is not None
        block_a, block_b = next(blocks_a, None), next(blocks_b, None)
        while block_a is not None and block_b is not None:
            start_a, stop_a, x_a, validity = block_a
            start_b, stop_b, x_b, _ = block_b
            lo, hi = max(start_a, start_b), min(stop_a, stop_b)
            if lo < hi:
                a = x_a[lo - start_a : hi - start_a].reshape(hi - lo, *shape[1:])
                b = x_b[lo - start_b : hi - start_b].reshape(hi - lo, *shape[1:])
                rows = validity.rows(lo - start_a, hi - start_a) if masked else None
                yield lo, a, b, rows
            if stop_a <= stop_b:
                block_a = next(blocks_a, None)
            if stop_b <= stop_a:
                block_b = next(blocks_b, None)


class _ArrayBlocks:
    """An in-memory array as a block source (blocks are views: nothing is copied)."""

    def __init__(self, array: Array) -> None:
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype

    def read(self, start: int, stop: int, axis: int = 0) -> Array:
        return self.array[(slice(None),) * axis + (slice(start, stop),)]

    def read_all(self) -> Array:
        return self.array


def diff(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    mask: npt.ArrayLike | None = None,
    lengths: npt.ArrayLike | None = None,
    mask_value: float | str | None = None,
    pad_side: PadSide = "post",
    layout: Layout = "ntf",
    layout_b: Layout | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    equal_nan: bool = False,
    include_padding: bool = False,
    worst: int = 5,
) -> DiffReport:
    """Compare two arrays over A's valid steps, as `lstmshape diff` does with files.

    >>> x = np.zeros((2, 3, 1), np.float32); y = x.copy(); y[1, 2] = 5
    >>> diff(x, y).equal, diff(x, y, lengths=[3, 2]).equal
    (False, True)
    """
    x, y = np.asarray(a), np.asarray(b)
    spec = mask_spec(
        x.shape,
        layout,
        mask=mask,
        lengths=lengths,
        mask_value=mask_value,
        pad_side=pad_side,
        include_padding=include_padding,
    )
    return diff_sources(
        _ArrayBlocks(x),
        _ArrayBlocks(y),
        layout=layout,
        layout_b=layout_b,
        spec=spec,
        tolerance=Tolerance(rtol=rtol, atol=atol, equal_nan=equal_nan),
        worst=worst,
    )
