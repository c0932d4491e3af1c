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
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from lstmshape.checks import check_nan_policy, screen
from lstmshape.errors import InputError
from lstmshape.masks import Layout, PadSide, Validity, describe_empty
from lstmshape.strategies import project as project_kernels
from lstmshape.strategies import reduce as reduce_kernels
from lstmshape.strategies import reshape as reshape_kernels
from lstmshape.strategies import window as window_kernels

Array = npt.NDArray[Any]
Kernel = Callable[[Array, Validity], "Array | tuple[Array, Array]"]
Gather = Callable[[Validity], "tuple[Array, Validity]"]

_SHOWN = 5  # sample indices named in an error


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
    until `with_weights` binds the fitted basis.
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

    @property
    def rejects_empty(self) -> bool:
        """True when a sample without valid steps is an error (`--empty error`): the kernel
        then fills such rows with zeros and the run's tally raises, naming each empty sample
        by its index in the input, not in its block."""
        return self.empty == "error"

    def check_empty(self, validity: Validity) -> None:
        """Fail before reading any data when a mask known up front leaves a sample empty."""
        if self.rejects_empty:
            empty = validity.empty_samples()
            if empty.size:
                raise InputError(describe_empty(empty))

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

    def with_weights(self, weights: Array, bias: Array | None) -> Plan:
        """The projection plan with its (fitted) weights bound, Keras (F, K) layout."""
        activation = self.options["activation"]
        return replace(self, kernel=_projection(weights, bias, activation, "keras", self.masked))

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


def _in_layout(shape_ntf: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """A batch-first 3-D output shape in the input's layout."""
    if layout == "tnf" and len(shape_ntf) == 3:
        return (shape_ntf[1], shape_ntf[0], shape_ntf[2])
    return shape_ntf


def _kernel_empty(empty: str) -> reduce_kernels.EmptyPolicy:
    """The kernels' policy: `error` is checked by the run's tally over the whole input."""
    if empty not in reduce_kernels.EMPTY_POLICIES:
        choices = ", ".join(reduce_kernels.EMPTY_POLICIES)
        raise InputError(f"unknown empty {empty!r}; choose from {choices}")
    return "zero" if empty == "error" else cast(reduce_kernels.EmptyPolicy, empty)


def _refuse_no_timesteps(shape_ntf: tuple[int, int, int], empty: str) -> None:
    """With no timestep at all every sample is empty: under `--empty error` that is known
    from the shape (a header can declare billions of such samples, none of them stored)."""
    n, t, _ = shape_ntf
    if empty == "error" and t == 0 and n > 0:
        raise InputError(describe_empty(np.arange(min(n, _SHOWN)), count=n))


def plan_reduce(
    shape: tuple[int, ...],
    dtype: npt.DTypeLike,
    strategy: str,
    *,
    layout: Layout = "ntf",
    bidirectional: bool = False,
    keepdims: bool = False,
    empty: str = "error",
    nan_policy: str = "propagate",
) -> Plan:
    """Plan a many-to-one reduction, (N, T, F) -> (N, F) or (N, 1, F).

    >>> plan = plan_reduce((10, 8, 4), "float32", "mean", layout="tnf")
    >>> plan.out_shape, str(plan.out_dtype)
    ((8, 4), 'float32')
    """
    options = {
        "strategy": strategy,
        "bidirectional": bidirectional,
        "keepdims": keepdims,
        "empty": empty,
        "nan_policy": nan_policy,
        "layout": layout,
    }
    gathers = strategy in ("last", "first") and nan_policy == "propagate"
    return replace(
        _reduction("reduce", shape, dtype, strategy, layout, empty, nan_policy, options),
        gather=_step_gather(strategy, bidirectional) if gathers else None,
    )


def _reduction(
    operation: str,
    shape: tuple[int, ...],
    dtype: npt.DTypeLike,
    strategy: str,
    layout: Layout,
    empty: str,
    nan_policy: str,
    options: dict[str, Any],
) -> Plan:
    """The plan of a reduction over time, shared by reduce and global pooling (`options`
    holds reduce's `bidirectional` and `keepdims`)."""
    shape_ntf = ntf_shape(tuple(shape), layout, command=operation)
    out_dtype = reduce_kernels.reduce_dtype(dtype, cast(reduce_kernels.Strategy, strategy))
    kernel_empty = _kernel_empty(empty)
    check_nan_policy(nan_policy)
    bidirectional, keepdims = options.get("bidirectional", False), options.get("keepdims", False)
    if bidirectional and shape_ntf[2] % 2:
        raise InputError(f"--bidirectional needs an even number of features; got F={shape_ntf[2]}")
    _refuse_no_timesteps(shape_ntf, empty)
    return Plan(
        operation=operation,
        in_shape=tuple(shape),
        in_dtype=np.dtype(dtype),
        layout=layout,
        out_shape=reduce_kernels.reduce_shape(shape_ntf, keepdims=keepdims),
        out_dtype=out_dtype,
        keeps_time=False,
        kernel=_reduce_kernel(strategy, bidirectional, keepdims, kernel_empty),
        options=options,
        nan_policy=nan_policy,
        empty=empty,
    )


def _reduce_kernel(
    strategy: str, bidirectional: bool, keepdims: bool, empty: reduce_kernels.EmptyPolicy
) -> Kernel:
    def kernel(x: Array, validity: Validity) -> Array:
        return reduce_kernels.reduce_steps(
            x,
            validity,
            cast(reduce_kernels.Strategy, strategy),
            bidirectional=bidirectional,
            keepdims=keepdims,
            empty=empty,
        )

    return kernel


def _step_gather(strategy: str, bidirectional: bool) -> Gather:
    """The steps last/first read: the picked one, or the first and last valid ones when
    bidirectional (the kernel then takes the forward half of one, the backward of the other).
    """

    def gather(validity: Validity) -> tuple[Array, Validity]:
        if bidirectional:
            steps = np.stack([validity.first_index(), validity.last_index()], axis=1)
        elif strategy == "last":
            steps = validity.last_index()[:, None]
        else:
            steps = validity.first_index()[:, None]
        k = steps.shape[1]
        lengths = np.where(steps[:, 0] >= 0, k, 0).astype(np.intp)
        return steps, Validity(n=validity.n, t=k, lengths=lengths)

    return gather


def plan_pool(
    shape: tuple[int, ...],
    dtype: npt.DTypeLike,
    op: str = "avg",
    *,
    pool_size: int | None = None,
    strides: int | None = None,
    padding: str = "valid",
    layout: Layout = "ntf",
    empty: str = "error",
    nan_policy: str = "propagate",
) -> Plan:
    """Plan global pooling (no `pool_size`) or Keras-style windowed pooling.

    With windows, "omit" can leave a window without a valid step (0, and False in the
    output mask).

    >>> plan_pool((2, 10, 3), "float64", "max", pool_size=4, padding="same").out_shape
    (2, 3, 3)
    """
    if strides is not None and strides < 1:
        raise InputError(f"--strides must be at least 1; got {strides}")
    if pool_size is None:
        if strides is not None:
            raise InputError("--strides needs --pool-size")
        options = {"op": op, "layout": layout, "nan_policy": nan_policy, "empty": empty}
        strategy = reduce_kernels.pool_strategy(op)
        return _reduction("pool", shape, dtype, strategy, layout, empty, nan_policy, options)
    shape_ntf = ntf_shape(tuple(shape), layout, command="pool")
    out_ntf = window_kernels.pool_windows_shape(shape_ntf, pool_size, strides, padding)
    check_nan_policy(nan_policy)

    def kernel(x: Array, validity: Validity) -> tuple[Array, Array]:
        return window_kernels.pool_windows(x, validity, op, pool_size, strides, padding)

    return Plan(
        operation="pool",
        in_shape=tuple(shape),
        in_dtype=np.dtype(dtype),
        layout=layout,
        out_shape=_in_layout(out_ntf, layout),
        out_dtype=window_kernels.pool_windows_dtype(dtype, op),
        keeps_time=True,
        kernel=kernel,
        options={
            "op": op,
            "layout": layout,
            "nan_policy": nan_policy,
            "pool_size": pool_size,
            "strides": strides or pool_size,
            "padding": padding,
        },
        nan_policy=nan_policy,
        extra_name="mask",
        extra_shape=out_ntf[:2],
    )


def _projection(
    weights: Array, bias: Array | None, activation: str, weights_layout: str, masked: bool
) -> Kernel:
    def kernel(x: Array, validity: Validity) -> Array:
        return project_kernels.project_linear(
            x,
            weights,
            bias,
            activation,
            weights_layout=weights_layout,
            validity=validity if masked and x.ndim == 3 else None,
        )

    return kernel


def plan_project(
    shape: tuple[int, ...],
    dtype: npt.DTypeLike,
    weights: Array | None = None,
    bias: Array | None = None,
    *,
    pca: int | None = None,
    activation: str = "linear",
    weights_layout: str = "keras",
    layout: Layout = "ntf",
    masked: bool = False,
) -> Plan:
    """Plan a projection of the feature axis: (N, T, F) -> (N, T, K), or (N, F) -> (N, K).

    Give `weights` (and `bias`), or `pca=K` for a basis that the run fits first (see
    `Plan.with_weights`). With `masked` the padded steps of the output hold 0.

    >>> plan_project((2, 5, 8), "float16", pca=3).out_shape
    (2, 5, 3)
    """
    shape = tuple(shape)
    if len(shape) not in (2, 3):
        raise InputError(f"project needs (N, F) or 3-D data; got shape {shape}")
    if (weights is None) == (pca is None):
        raise InputError("give exactly one of --weights or --pca")
    if bias is not None and weights is None:
        raise InputError("--bias goes with --weights")
    if masked and len(shape) == 2:
        raise InputError("a mask needs 3-D data (N, T, F); this input is 2-D")
    shape_ntf = ntf_shape(shape, layout, command="project") if len(shape) == 3 else shape
    if pca is not None:
        out_ntf = project_kernels.pca_shape(shape_ntf, pca)
        weights_layout, weights_shape = "keras", [shape_ntf[-1], out_ntf[-1]]
        kernel = None
    else:
        assert weights is not None  # exactly one of weights and pca
        out_ntf = project_kernels.project_shape(shape_ntf, np.shape(weights), weights_layout)
        project_kernels.check_parameters(weights, bias, out_ntf[-1], activation)
        weights_shape = list(np.shape(weights))
        kernel = _projection(weights, bias, activation, weights_layout, masked)
    options: dict[str, Any] = {
        "activation": activation,
        "weights_layout": weights_layout,
        "layout": layout,
        "weights_shape": weights_shape,
    }
    if pca is not None:
        options["pca"] = pca
    return Plan(
        operation="project",
        in_shape=shape,
        in_dtype=np.dtype(dtype),
        layout=layout,
        out_shape=_in_layout(out_ntf, layout),
        out_dtype=project_kernels.project_dtype(dtype),
        keeps_time=len(shape) == 3,
        kernel=kernel,
        options=options,
        pca=pca,
        masked=masked,
    )


def plan_reshape(
    shape: tuple[int, ...],
    dtype: npt.DTypeLike,
    preset: str | None = None,
    *,
    pattern: str | None = None,
    sizes: Mapping[str, int] | None = None,
    layout: Layout = "ntf",
    drop_padding: bool = False,
    validity: Validity | None = None,
    lengths: Array | None = None,
    timesteps: int | None = None,
    pad_side: PadSide = "post",
) -> Plan:
    """Plan a rearrangement: a preset, an einops pattern, packing (`--to steps
    --drop-padding`, which needs `validity`, or computes it per run from a padding value
    when it is None: the row count is then -1) or padding (`--to padded` with `lengths`).

    The kernel takes the whole array as stored (not batch-first).

    >>> plan_reshape((4, 10, 6), "float32", "flatten").out_shape
    (4, 60)
    """
    shape, sizes = tuple(shape), dict(sizes or {})
    if (preset is None) == (pattern is None):
        raise InputError("give exactly one of --to or --pattern")
    if drop_padding and preset != "steps":
        raise InputError("--drop-padding goes with --to steps")
    options = {
        "to": preset,
        "pattern": pattern,
        "sizes": sizes,
        "drop_padding": drop_padding,
        "layout": layout,
    }
    extra_name: str | None = None
    extra_shape: tuple[int, ...] | None = None
    kernel: Kernel
    if pattern is not None:
        out_shape = reshape_kernels.pattern_shape(shape, pattern, sizes)
        kernel = _pattern_kernel(pattern, sizes)
    elif preset == "padded":
        if lengths is None:
            raise InputError("--to padded needs --lengths (the lengths of the packed samples)")
        n, t, *features = reshape_kernels.pad_shape(shape, lengths, timesteps)
        out_shape = _in_layout((n, t, *features), layout)
        extra_name, extra_shape = "mask", _in_layout((n, t), layout)
        kernel = _pad_kernel(lengths, timesteps, pad_side, layout)
    elif drop_padding:
        shape_ntf = ntf_shape(shape, layout, command="reshape --drop-padding")
        if validity is None:
            out_shape = (-1, shape_ntf[2])
        else:
            out_shape = reshape_kernels.pack_shape(shape_ntf, validity)
        extra_name, extra_shape = "lengths", (shape_ntf[0],)
        kernel = _pack_kernel(layout)
    else:
        assert preset is not None  # exactly one of preset and pattern
        out_shape = reshape_kernels.preset_shape(shape, preset, layout)
        kernel = _preset_kernel(preset, layout)
    return Plan(
        operation="reshape",
        in_shape=shape,
        in_dtype=np.dtype(dtype),
        layout=layout,
        out_shape=tuple(out_shape),
        out_dtype=np.dtype(dtype),
        keeps_time=False,
        kernel=kernel,
        options=options,
        extra_name=extra_name,
        extra_shape=extra_shape,
    )


def _pattern_kernel(pattern: str, sizes: dict[str, int]) -> Kernel:
    return lambda data, _validity: reshape_kernels.rearrange_pattern(data, pattern, sizes)


def _preset_kernel(preset: str, layout: Layout) -> Kernel:
    return lambda data, _validity: reshape_kernels.reshape_preset(data, preset, layout=layout)


def _pack_kernel(layout: Layout) -> Kernel:
    def kernel(data: Array, validity: Validity) -> tuple[Array, Array]:
        return reshape_kernels.pack_steps(as_ntf(data, layout), validity)

    return kernel


def _pad_kernel(lengths: Array, t: int | None, pad_side: PadSide, layout: Layout) -> Kernel:
    def kernel(data: Array, _validity: Validity) -> tuple[Array, Array]:
        padded, mask = reshape_kernels.pad_steps(data, lengths, t=t, pad_side=pad_side)
        if layout == "tnf":
            return padded.transpose(1, 0, 2), mask.T
        return padded, mask

    return kernel
