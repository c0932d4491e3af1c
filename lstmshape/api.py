"""The library API: plan an operation from shapes, then apply it to data.

A `Plan` holds the output shape and a kernel `(x_ntf, validity) -> out` that works on any
block of samples, so the same plan serves a whole in-memory array (the functions below) and
the chunked streaming engine (`lstmshape.stream`). Arrays in time-major layout are viewed
batch-first on the way in, and outputs that keep a time axis are given back time-major.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError
from lstmshape.masks import (
    Layout,
    PadSide,
    Validity,
    build_validity,
    check_nan_policy,
    count_nans,
    describe_empty,
    describe_nans,
    omit_nan_steps,
    require_nonempty,
)
from lstmshape.strategies import project as project_kernels
from lstmshape.strategies import reduce as reduce_kernels
from lstmshape.strategies import reshape as reshape_kernels
from lstmshape.strategies import window as window_kernels

Array = npt.NDArray[Any]
Kernel = Callable[[Array, Validity], "Array | tuple[Array, Array]"]


@dataclass(frozen=True)
class Plan:
    """What an operation will produce, known before any data is read.

    `out_shape` is in the input's layout when `keeps_time`, else (N, ...). The kernel may
    return a second array, the (N, T') output mask of windowed pooling.
    """

    operation: str
    in_shape: tuple[int, ...]
    layout: Layout
    out_shape: tuple[int, ...]
    out_dtype: np.dtype[Any]
    keeps_time: bool
    kernel: Kernel = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    mask_out_shape: tuple[int, ...] | None = None
    on_finish: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    #: For last/first: `validity -> (steps, picked)`, the (n, k) step indices each sample
    #: needs (-1: none) and the validity of those k steps, so that `kernel` applied to the
    #: (n, k, F) gathered steps gives the same result as on the whole block. The streaming
    #: engine then reads only those rows (`stream.run_plan`).
    gather: Callable[[Validity], tuple[Array, Validity]] | None = field(
        default=None, repr=False, compare=False
    )

    def finish(self) -> None:
        """Raise for what only the whole input shows: NaN under `--nan-policy raise`, and
        samples that `--nan-policy omit` emptied under `--empty error`. Call it once, after
        every block went through `apply` (and before the output is published)."""
        if self.on_finish is not None:
            self.on_finish()

    @property
    def rejects_empty(self) -> bool:
        """True when a sample without valid steps is an error (`--empty error`).

        The kernel itself then fills such rows with zeros; the caller checks the whole
        validity (`check_empty`), so a streamed run names every empty sample by its index
        in the file, not in its block.
        """
        return self.options.get("empty") == "error"

    def check_empty(self, validity: Validity, *, offset: int = 0) -> None:
        if self.rejects_empty:
            require_nonempty(validity, offset=offset)

    def apply(self, x: Array, validity: Validity) -> tuple[Array, Array | None]:
        """Run the kernel on batch-first `x` (a block of samples); output in the plan's layout."""
        result = self.kernel(x, validity)
        out, extra = result if isinstance(result, tuple) else (result, None)
        if self.keeps_time and self.layout == "tnf" and out.ndim == 3:
            out = out.transpose(1, 0, 2)
        return out, extra


def ntf_shape(shape: tuple[int, ...], layout: Layout, *, command: str) -> tuple[int, int, int]:
    """(N, T, F) of a 3-D shape given its layout; other ranks are an InputError."""
    if len(shape) != 3:
        order = "(N, T, F)" if layout == "ntf" else "(T, N, F)"
        raise InputError(f"{command} needs a 3-D array {order}; got shape {tuple(shape)}")
    if layout == "tnf":
        return (shape[1], shape[0], shape[2])
    return (shape[0], shape[1], shape[2])


def as_ntf(x: Array, layout: Layout) -> Array:
    """A batch-first view of a 3-D array (no copy)."""
    return x.transpose(1, 0, 2) if layout == "tnf" else x


def _probe(kernel: Kernel, shape_ntf: tuple[int, ...], dtype: npt.DTypeLike) -> tuple[Array, Any]:
    """Run a kernel on zero samples: output shape and dtype at no cost."""
    empty = np.zeros((0, *shape_ntf[1:]), dtype=dtype)
    result = kernel(empty, Validity.all_valid(0, shape_ntf[1] if len(shape_ntf) > 1 else 0))
    return result if isinstance(result, tuple) else (result, None)


def _finish_plan(
    operation: str,
    shape: tuple[int, ...],
    dtype: npt.DTypeLike,
    layout: Layout,
    kernel: Kernel,
    *,
    keeps_time: bool,
    options: dict[str, Any],
    shape_ntf: tuple[int, ...] | None = None,
    on_finish: Callable[[], None] | None = None,
) -> Plan:
    shape_ntf = shape_ntf or ntf_shape(shape, layout, command=operation)
    probe_out, probe_extra = _probe(kernel, shape_ntf, dtype)
    out_ntf = (shape_ntf[0], *probe_out.shape[1:])
    if keeps_time and layout == "tnf" and len(out_ntf) == 3:
        out_shape = (out_ntf[1], out_ntf[0], out_ntf[2])
    else:
        out_shape = out_ntf
    mask_out_shape = None if probe_extra is None else (shape_ntf[0], *probe_extra.shape[1:])
    return Plan(
        operation=operation,
        in_shape=tuple(shape),
        layout=layout,
        out_shape=tuple(int(n) for n in out_shape),
        out_dtype=probe_out.dtype,
        keeps_time=keeps_time,
        kernel=kernel,
        options=options,
        mask_out_shape=mask_out_shape,
        on_finish=on_finish,
    )


def _kernel_empty(empty: str) -> reduce_kernels.EmptyPolicy:
    """The kernels' policy: `error` is checked by the caller over the whole batch."""
    return "zero" if empty == "error" else cast(reduce_kernels.EmptyPolicy, empty)


_SHOWN = 5  # sample indices named in an error


@dataclass
class _NanTally:
    """Applies a NaN policy block by block and remembers what the whole input showed.

    Blocks reach a plan's kernel in order, so the samples seen so far give each block's
    offset and errors name samples by their index in the file.
    """

    policy: str
    empty_error: bool = False
    seen: int = 0
    values: int = 0
    samples: list[int] = field(default_factory=list)
    n_samples: int = 0
    emptied: list[int] = field(default_factory=list)
    n_emptied: int = 0

    def validity(self, x_ntf: Array, validity: Validity) -> Validity:
        """The validity the kernel should use for this block."""
        offset, self.seen = self.seen, self.seen + x_ntf.shape[0]
        if self.policy == "raise":
            values, samples = count_nans(x_ntf, validity)
            self.values += values
            self.n_samples += len(samples)
            self.samples += (samples[:_SHOWN] + offset).tolist()[: _SHOWN - len(self.samples)]
            return validity
        if self.policy == "omit":
            kept = omit_nan_steps(x_ntf, validity)
            if self.empty_error and kept is not validity:
                before = validity.counts() > 0
                lost = np.flatnonzero(before & (kept.counts() == 0))
                self.n_emptied += len(lost)
                self.emptied += (lost[:_SHOWN] + offset).tolist()[: _SHOWN - len(self.emptied)]
            return kept
        return validity

    def finish(self) -> None:
        if self.values:
            raise InputError(describe_nans(self.values, self.samples, self.n_samples))
        if self.n_emptied:
            shown = ", ".join(str(i) for i in self.emptied)
            more = ", ..." if self.n_emptied > len(self.emptied) else ""
            noun = "sample has" if self.n_emptied == 1 else "samples have"
            raise InputError(
                f"{self.n_emptied} {noun} no valid timestep once steps holding NaN are "
                f"omitted ({shown}{more}); use --empty nan or --empty zero"
            )


def _refuse_no_timesteps(shape: tuple[int, ...], layout: Layout, empty: str) -> None:
    """With no timestep at all every sample is empty: under `--empty error` that is known
    from the shape (a header can declare billions of such samples, none of them stored)."""
    if empty != "error" or len(shape) != 3:
        return
    n, t, _ = ntf_shape(shape, layout, command="reduce")
    if t == 0 and n > 0:
        raise InputError(describe_empty(np.arange(min(n, _SHOWN)), count=n))


def _nan_tally(policy: str, *, empty: str | None = None) -> _NanTally | None:
    check_nan_policy(policy)
    return None if policy == "propagate" else _NanTally(policy, empty_error=empty == "error")


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

    nan_policy: "propagate", "omit" (steps holding NaN are padding) or "raise"; see
    `Plan.finish` for the checks that need the whole input.
    """
    _refuse_no_timesteps(shape, layout, empty)
    tally = _nan_tally(nan_policy, empty=empty)

    def kernel(x: Array, validity: Validity) -> Array:
        return reduce_kernels.reduce_steps(
            x,
            validity if tally is None else tally.validity(x, validity),
            cast(reduce_kernels.Strategy, strategy),
            bidirectional=bidirectional,
            keepdims=keepdims,
            empty=_kernel_empty(empty),
        )

    options = {
        "strategy": strategy,
        "bidirectional": bidirectional,
        "keepdims": keepdims,
        "empty": empty,
        "nan_policy": nan_policy,
        "layout": layout,
    }
    plan = _finish_plan(
        "reduce",
        shape,
        dtype,
        layout,
        kernel,
        keeps_time=False,
        options=options,
        on_finish=None if tally is None else tally.finish,
    )
    if strategy in ("last", "first") and tally is None:
        plan = dataclasses.replace(plan, gather=_step_gather(strategy, bidirectional))
    return plan


def _step_gather(
    strategy: str, bidirectional: bool
) -> Callable[[Validity], tuple[Array, Validity]]:
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

    nan_policy: as `plan_reduce`; with windows, "omit" can leave a window without a valid
    step (0, and False in the output mask).
    """
    options: dict[str, Any] = {"op": op, "layout": layout, "nan_policy": nan_policy}
    if pool_size is None:
        if strides is not None:
            raise InputError("--strides needs --pool-size")
        _refuse_no_timesteps(shape, layout, empty)
        tally = _nan_tally(nan_policy, empty=empty)

        def global_kernel(x: Array, validity: Validity) -> Array:
            if tally is not None:
                validity = tally.validity(x, validity)
            return reduce_kernels.global_pool(
                x, validity, cast(reduce_kernels.PoolOp, op), empty=_kernel_empty(empty)
            )

        options["empty"] = empty
        return _finish_plan(
            "pool",
            shape,
            dtype,
            layout,
            global_kernel,
            keeps_time=False,
            options=options,
            on_finish=None if tally is None else tally.finish,
        )
    window_tally = _nan_tally(nan_policy)

    def window_kernel(x: Array, validity: Validity) -> tuple[Array, Array]:
        if window_tally is not None:
            validity = window_tally.validity(x, validity)
        return window_kernels.pool_windows(x, validity, op, pool_size, strides, padding)

    options.update(pool_size=pool_size, strides=strides or pool_size, padding=padding)
    return _finish_plan(
        "pool",
        shape,
        dtype,
        layout,
        window_kernel,
        keeps_time=True,
        options=options,
        on_finish=None if window_tally is None else window_tally.finish,
    )


def plan_project(
    shape: tuple[int, ...],
    dtype: npt.DTypeLike,
    weights: Array,
    bias: Array | None = None,
    *,
    activation: str = "linear",
    weights_layout: str = "keras",
    layout: Layout = "ntf",
    zero_padding: bool = False,
) -> Plan:
    """Plan a projection of the feature axis: (N, T, F) -> (N, T, K), or (N, F) -> (N, K).

    With `zero_padding` the padded steps of the output hold 0.
    """
    if len(shape) not in (2, 3):
        raise InputError(f"project needs (N, F) or 3-D data; got shape {tuple(shape)}")

    def kernel(x: Array, validity: Validity) -> Array:
        out = project_kernels.project_linear(
            x, weights, bias, activation, weights_layout=weights_layout
        )
        if zero_padding and out.ndim == 3 and not validity.is_all_valid:
            out[~validity.as_mask()] = 0
        return out

    options = {
        "activation": activation,
        "weights_layout": weights_layout,
        "layout": layout,
        "weights_shape": list(np.shape(weights)),
    }
    shape_ntf = ntf_shape(shape, layout, command="project") if len(shape) == 3 else tuple(shape)
    return _finish_plan(
        "project",
        shape,
        dtype,
        layout,
        kernel,
        keeps_time=len(shape) == 3,
        options=options,
        shape_ntf=shape_ntf,
    )


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


def _run(plan: Plan, x: Array, validity: Validity) -> Array:
    plan.check_empty(validity)
    x_ntf = as_ntf(np.asarray(x), plan.layout) if len(plan.in_shape) == 3 else np.asarray(x)
    out, _ = plan.apply(x_ntf, validity)
    plan.finish()
    return out


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
    return _run(plan, data, validity)


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
    plan.check_empty(validity)
    out, out_mask = plan.apply(as_ntf(data, layout), validity)
    plan.finish()
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
    has_mask = any(source is not None for source in (mask, lengths, mask_value))
    if data.ndim == 3:
        validity = _validity(data, None, mask, lengths, mask_value, pad_side, layout)
    else:
        if has_mask:
            raise InputError("a mask needs 3-D data")
        validity = Validity.all_valid(data.shape[0] if data.ndim else 0, 0)
    if (weights is None) == (pca is None):
        raise InputError("give either weights or pca=K")
    if pca is not None:
        basis = project_kernels.fit_pca(
            as_ntf(data, layout) if data.ndim == 3 else data, validity, pca
        )
        weights, bias, weights_layout = basis.components, basis.bias, "keras"
    plan = plan_project(
        data.shape,
        data.dtype,
        np.asarray(weights),
        None if bias is None else np.asarray(bias),
        activation=activation,
        weights_layout=weights_layout,
        layout=layout,
        zero_padding=has_mask,
    )
    return _run(plan, data, validity)


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
) -> Array:
    """Rearrange by preset (`flatten`, `steps`, `time-major`, ...) or an einops pattern.

    `to="steps"` with `drop_padding=True` and a mask packs the valid steps only.

    >>> reshape(np.zeros((2, 3, 4)), "flatten").shape
    (2, 12)
    """
    data = np.asarray(x)
    if (to is None) == (pattern is None):
        raise InputError("give either a preset (to=...) or an einops pattern")
    if pattern is not None:
        return reshape_kernels.rearrange_pattern(data, pattern, sizes or {})
    if drop_padding:
        if to != "steps":
            raise InputError("--drop-padding goes with --to steps")
        validity = _validity(data, None, mask, lengths, mask_value, pad_side, layout)
        packed, _ = reshape_kernels.pack_steps(as_ntf(data, layout), validity)
        return packed
    assert to is not None  # exactly one of `to` and `pattern` was given
    return reshape_kernels.reshape_preset(data, to, layout=layout)
