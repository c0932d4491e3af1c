"""Plans over time: reductions (reduce, global pooling) and windowed pooling."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from lstmshape.checks import check_nan_policy
from lstmshape.errors import InputError
from lstmshape.masks import Layout
from lstmshape.plan.base import Array, Gather, Kernel, Plan, in_layout, ntf_shape
from lstmshape.strategies import reduce as reduce_kernels
from lstmshape.strategies import window as window_kernels
from lstmshape.strategies.fold import FOLDS
from lstmshape.validity import Validity, describe_empty

_SHOWN = 5  # sample indices named in an error


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
        fold=strategy if strategy in FOLDS else None,
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
        out_shape=in_layout(out_ntf, layout),
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
