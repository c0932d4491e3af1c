"""Every word an option accepts, defined once; no numpy, so the command line's `--help`
stays fast. The kernels check their arguments against these same tuples."""

from __future__ import annotations

from typing import Literal, get_args

Layout = Literal["ntf", "tnf"]
PadSide = Literal["post", "pre"]
Strategy = Literal["last", "first", "mean", "max", "min", "sum"]
EmptyPolicy = Literal["error", "nan", "zero"]
NanPolicy = Literal["propagate", "omit", "raise"]
PoolOp = Literal["avg", "max"]
Padding = Literal["valid", "same"]
Activation = Literal["linear", "relu", "tanh", "sigmoid", "softmax"]
WeightsLayout = Literal["keras", "torch"]
Preset = Literal[
    "flatten", "steps", "time-major", "batch-first", "split-directions", "merge-directions"
]
Engine = Literal["inprocess", "dask"]

LAYOUTS: tuple[str, ...] = get_args(Layout)
PAD_SIDES: tuple[str, ...] = get_args(PadSide)
STRATEGIES: tuple[str, ...] = get_args(Strategy)
EMPTY_POLICIES: tuple[str, ...] = get_args(EmptyPolicy)
NAN_POLICIES: tuple[str, ...] = get_args(NanPolicy)
POOL_OPS: tuple[str, ...] = get_args(PoolOp)
PADDINGS: tuple[str, ...] = get_args(Padding)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
WEIGHTS_LAYOUTS: tuple[str, ...] = get_args(WeightsLayout)
PRESETS: tuple[str, ...] = get_args(Preset)
#: `reshape --to`: the presets, and `padded` (the inverse of packing, which needs lengths).
RESHAPE_TARGETS: tuple[str, ...] = (*PRESETS, "padded")
ENGINES: tuple[str, ...] = get_args(Engine)
