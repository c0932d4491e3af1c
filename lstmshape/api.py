"""The library API: the commands' operations on in-memory arrays.

Each function plans from the array's shape and dtype (`lstmshape.plan`), builds the
validity from the mask source and applies the plan to the whole array as one block, with
the same whole-run checks as the streaming engines.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.checks import RunTally
from lstmshape.errors import InputError
from lstmshape.masks import Layout, PadSide, build_validity
from lstmshape.plan import (
    Plan,
    as_ntf,
    ntf_shape,
    plan_pool,
    plan_project,
    plan_reduce,
    plan_reshape,
    with_basis,
)
from lstmshape.strategies import pca as pca_kernels
from lstmshape.validity import Validity

Array = npt.NDArray[Any]

__all__ = [
    "Plan",
    "make_mask",
    "plan_pool",
    "plan_project",
    "plan_reduce",
    "plan_reshape",
    "pool",
    "project",
    "reduce",
    "reshape",
]


def make_mask(
    x: Array | None = None,
    *,
    shape: tuple[int, ...] | None = None,
    mask: npt.ArrayLike | None = None,
    lengths: npt.ArrayLike | None = None,
    mask_value: float | None = None,
    pad_side: PadSide = "post",
    layout: Layout = "ntf",
) -> npt.NDArray[np.bool_]:
    """The (N, T) batch-first boolean mask of valid steps, from any one mask source.

    >>> make_mask(shape=(2, 3, 4), lengths=[1, 3]).astype(int).tolist()
    [[1, 0, 0], [1, 1, 1]]
    """
    return _validity(x, shape, mask, lengths, mask_value, pad_side, layout).as_mask()


def _validity(
    x: Array | None,
    shape: tuple[int, ...] | None,
    mask: npt.ArrayLike | None,
    lengths: npt.ArrayLike | None,
    mask_value: float | None,
    pad_side: PadSide,
    layout: Layout,
) -> Validity:
    shape = tuple(np.shape(x)) if x is not None else shape
    if shape is None:
        raise InputError("make_mask needs the data or its shape")
    n, t, _ = ntf_shape(shape, layout, command="a mask")
    x_ntf = None if x is None else as_ntf(np.asarray(x), layout)
    return build_validity(
        x_ntf,
        n=n,
        t=t,
        mask=mask,
        lengths=lengths,
        mask_value=mask_value,
        pad_side=pad_side,
        layout=layout,
    )


def _run(plan: Plan, x: Array, validity: Validity) -> tuple[Array, Array | None]:
    """Apply a plan to a whole array as one block; raise what the whole input shows."""
    plan.check_empty(validity)
    x_ntf = as_ntf(np.asarray(x), plan.layout) if len(plan.in_shape) == 3 else np.asarray(x)
    out, extra, checks = plan.apply(x_ntf, validity)
    tally = RunTally()
    tally.add(checks, 0)
    tally.check()
    return out, extra


def reduce(
    x: npt.ArrayLike,
    strategy: str = "last",
    *,
    mask: npt.ArrayLike | None = None,
    lengths: npt.ArrayLike | None = None,
    mask_value: float | None = None,
    pad_side: PadSide = "post",
    layout: Layout = "ntf",
    bidirectional: bool = False,
    keepdims: bool = False,
    empty: str = "error",
    nan_policy: str = "propagate",
) -> Array:
    """Many-to-one: one vector per sample from its valid steps.

    >>> x = np.arange(12.0).reshape(2, 3, 2)
    >>> reduce(x, "last", lengths=[2, 3]).tolist()
    [[2.0, 3.0], [10.0, 11.0]]
    """
    data = np.asarray(x)
    plan = plan_reduce(
        data.shape,
        data.dtype,
        strategy,
        layout=layout,
        bidirectional=bidirectional,
        keepdims=keepdims,
        empty=empty,
        nan_policy=nan_policy,
    )
    validity = _validity(data, None, mask, lengths, mask_value, pad_side, layout)
    return _run(plan, data, validity)[0]


def pool(
    x: npt.ArrayLike,
    op: str = "avg",
    *,
    pool_size: int | None = None,
    strides: int | None = None,
    padding: str = "valid",
    mask: npt.ArrayLike | None = None,
    lengths: npt.ArrayLike | None = None,
    mask_value: float | None = None,
    pad_side: PadSide = "post",
    layout: Layout = "ntf",
    empty: str = "error",
    nan_policy: str = "propagate",
    return_mask: bool = False,
) -> Array | tuple[Array, npt.NDArray[np.bool_]]:
    """Global (no `pool_size`) or windowed pooling over valid steps only.

    >>> x = np.array([[[1.0], [3.0], [100.0]]])
    >>> pool(x, "avg", lengths=[2]).tolist()
    [[2.0]]
    """
    data = np.asarray(x)
    plan = plan_pool(
        data.shape,
        data.dtype,
        op,
        pool_size=pool_size,
        strides=strides,
        padding=padding,
        layout=layout,
        empty=empty,
        nan_policy=nan_policy,
    )
    validity = _validity(data, None, mask, lengths, mask_value, pad_side, layout)
    out, out_mask = _run(plan, data, validity)
    if return_mask:
        if out_mask is None:  # global pooling: a sample is valid when it had a valid step
            out_mask = validity.counts() > 0
        return out, out_mask
    return out


def project(
    x: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
    bias: npt.ArrayLike | None = None,
    *,
    pca: int | None = None,
    activation: str = "linear",
    weights_layout: str = "keras",
    mask: npt.ArrayLike | None = None,
    lengths: npt.ArrayLike | None = None,
    mask_value: float | None = None,
    pad_side: PadSide = "post",
    layout: Layout = "ntf",
) -> Array:
    """Change the feature axis with saved weights (Keras (F, K) layout) or PCA on valid steps.

    With a mask the padded steps of the output hold 0.

    >>> x = np.ones((1, 2, 3))
    >>> project(x, np.ones((3, 2)), np.array([0.0, 1.0])).tolist()
    [[[3.0, 4.0], [3.0, 4.0]]]
    """
    data = np.asarray(x)
    masked = any(source is not None for source in (mask, lengths, mask_value))
    plan = plan_project(
        data.shape,
        data.dtype,
        None if weights is None else np.asarray(weights),
        None if bias is None else np.asarray(bias),
        pca=pca,
        activation=activation,
        weights_layout=weights_layout,
        layout=layout,
        masked=masked,
    )
    if data.ndim == 3:
        validity = _validity(data, None, mask, lengths, mask_value, pad_side, layout)
    else:
        validity = Validity.all_valid(data.shape[0], 0)
    if plan.pca is not None:
        basis = pca_kernels.fit_pca(
            as_ntf(data, layout) if data.ndim == 3 else data, validity, plan.pca
        )
        plan = with_basis(plan, basis.components, basis.bias)
    return _run(plan, data, validity)[0]


def reshape(
    x: npt.ArrayLike,
    to: str | None = None,
    *,
    pattern: str | None = None,
    sizes: dict[str, int] | None = None,
    layout: Layout = "ntf",
    mask: npt.ArrayLike | None = None,
    lengths: npt.ArrayLike | None = None,
    mask_value: float | None = None,
    pad_side: PadSide = "post",
    drop_padding: bool = False,
    timesteps: int | None = None,
) -> Array:
    """Rearrange by preset (`flatten`, `steps`, `time-major`, ...) or an einops pattern.

    `to="steps"` with `drop_padding=True` and a mask packs the valid steps only;
    `to="padded"` with `lengths` is its inverse (packed (sum of lengths, F) -> (N, T, F)).

    >>> reshape(np.zeros((2, 3, 4)), "flatten").shape
    (2, 12)
    """
    data = np.asarray(x)
    validity = None
    if drop_padding and to == "steps":  # the plan refuses it with any other preset
        validity = _validity(data, None, mask, lengths, mask_value, pad_side, layout)
    plan = plan_reshape(
        data.shape,
        data.dtype,
        to,
        pattern=pattern,
        sizes=sizes,
        layout=layout,
        drop_padding=drop_padding,
        validity=validity,
        lengths=None if lengths is None or to != "padded" else np.asarray(lengths),
        timesteps=timesteps,
        pad_side=pad_side,
    )
    assert plan.kernel is not None  # reshape plans always carry theirs
    result = plan.kernel(data, validity)  # type: ignore[arg-type]
    return result[0] if isinstance(result, tuple) else result
