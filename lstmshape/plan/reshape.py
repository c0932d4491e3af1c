"""Plans that rearrange the whole array: presets, einops patterns, packing and padding."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError
from lstmshape.masks import Layout, PadSide
from lstmshape.plan.base import Array, Kernel, Plan, as_ntf, in_layout, ntf_shape
from lstmshape.strategies import reshape as reshape_kernels
from lstmshape.validity import Validity


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
        out_shape = in_layout((n, t, *features), layout)
        extra_name, extra_shape = "mask", in_layout((n, t), layout)
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
