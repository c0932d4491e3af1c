"""Plans: what an operation will produce, from shapes and dtypes alone.

A `Plan` is made by `plan_reduce`, `plan_pool`, `plan_project` or `plan_reshape` from the
input's shape and dtype (a header), using the kernels' `*_shape` / `*_dtype` companions; no
data is read and no kernel runs, so `--dry-run` and the shape table cost nothing. A plan
holds no state: `Plan.apply` runs its kernel on any block of samples, and the checks that
need the whole input (NaN policies, empty samples) come back as a table per block for the
engine's `checks.RunTally`. The same plan serves a whole in-memory array (`api`), the
streaming engine (`stream`) and the Dask engine alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from lstmshape.checks import screen
from lstmshape.errors import InputError
from lstmshape.masks import Layout
from lstmshape.validity import Validity, require_nonempty

Array = npt.NDArray[Any]
Kernel = Callable[[Array, Validity], "Array | tuple[Array, Array]"]
Gather = Callable[[Validity], "tuple[Array, Validity]"]


class BlockResult(NamedTuple):
    out: Array
    extra: Array | None  # the side output (window or padded mask, packed lengths), or None
    checks: npt.NDArray[np.int64] | None  # per-sample check table (`checks.screen`)


@dataclass(frozen=True)
class Plan:
    """What an operation will produce, known before any data is read.

    `out_shape` is in the input's layout when `keeps_time`, else (N, ...). `extra_name`
    names a second output the kernel gives beside the data (`extra_shape`). A PCA
    projection is planned before its basis is fitted: `pca` is then K and `kernel` None
    until `plan.project.with_basis` binds the fitted basis.
    """

    operation: str
    in_shape: tuple[int, ...]
    in_dtype: np.dtype[Any]
    layout: Layout
    out_shape: tuple[int, ...]
    out_dtype: np.dtype[Any]
    keeps_time: bool
    kernel: Kernel | None = field(repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)
    nan_policy: str = "propagate"
    empty: str | None = None
    extra_name: str | None = None
    extra_shape: tuple[int, ...] | None = None
    pca: int | None = None
    masked: bool = False  # projections: padded output steps hold 0
    #: For last/first: `validity -> (steps, picked)`, the (n, k) step indices each sample
    #: needs (-1: none) and the validity of those k steps, so that `kernel` applied to the
    #: (n, k, F) gathered steps gives the same result as on the whole block. The streaming
    #: engine then reads only those rows.
    gather: Gather | None = field(default=None, repr=False, compare=False)
    #: For reductions over valid steps (mean/sum/max/min): the strategy, which the engine
    #: may fold along the time rows of a time-major input (`lstmshape.timerows`).
    fold: str | None = field(default=None, compare=False)

    @property
    def rejects_empty(self) -> bool:
        """True when a sample without valid steps is an error (`--empty error`): the kernel
        then fills such rows with zeros and the run's tally raises, naming each empty sample
        by its index in the input, not in its block."""
        return self.empty == "error"

    def check_empty(self, validity: Validity) -> None:
        """Fail before reading any data when a mask known up front leaves a sample empty."""
        if self.rejects_empty:
            require_nonempty(validity)

    def apply(self, x: Array, validity: Validity) -> BlockResult:
        """Run the kernel on batch-first `x` (a block of samples); output in the plan's layout."""
        if self.kernel is None:
            raise InputError("the PCA basis must be fitted before the projection runs")
        kept, checks = screen(x, validity, self.nan_policy, rejects_empty=self.rejects_empty)
        result = self.kernel(x, kept)
        out, extra = result if isinstance(result, tuple) else (result, None)
        if self.keeps_time and self.layout == "tnf" and out.ndim == 3:
            out = out.transpose(1, 0, 2)
        return BlockResult(out, extra, checks)

    @property
    def out_axis(self) -> int:
        """The axis of N in the output: 1 for time-major outputs that keep time."""
        time_major = self.keeps_time and self.layout == "tnf" and len(self.out_shape) == 3
        return 1 if time_major else 0

    @property
    def label(self) -> str:
        """`reduce-last`, `pool-avg`, `project`: the operation in a default output name."""
        for key in ("strategy", "op"):
            if key in self.options:
                return f"{self.operation}-{self.options[key]}"
        return self.operation


def ntf_shape(shape: tuple[int, ...], layout: Layout, *, command: str) -> tuple[int, int, int]:
    """(N, T, F) of a 3-D shape given its layout; other ranks are an InputError.

    >>> ntf_shape((10, 4, 3), "tnf", command="reduce")
    (4, 10, 3)
    """
    if len(shape) != 3:
        order = "(N, T, F)" if layout == "ntf" else "(T, N, F)"
        raise InputError(f"{command} needs a 3-D array {order}; got shape {tuple(shape)}")
    if layout == "tnf":
        return (shape[1], shape[0], shape[2])
    return (shape[0], shape[1], shape[2])


def as_ntf(x: Array, layout: Layout) -> Array:
    """A batch-first view of a 3-D array (no copy)."""
    return x.transpose(1, 0, 2) if layout == "tnf" else x


def in_layout(shape_ntf: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """A batch-first 3-D output shape in the input's layout."""
    if layout == "tnf" and len(shape_ntf) == 3:
        return (shape_ntf[1], shape_ntf[0], shape_ntf[2])
    return shape_ntf
