"""The names of a plan's output axes, for formats that name them (netCDF dimensions).

`sample`, `time` and `feature` where the output keeps them, in the order the output holds
them; `step` for rows of (sample, time) pairs, `direction` for the split of a bidirectional
feature axis, the axis names of an einops pattern (`(t f)` -> `t_f`). None where no name
fits (the format then numbers the axes).
"""

from __future__ import annotations

import re

from lstmshape.plan.base import Plan

_NTF = ("sample", "time", "feature")
_PRESETS: dict[str, tuple[str, ...]] = {
    "flatten": ("sample", "time_feature"),
    "steps": ("step", "feature"),
    "time-major": ("time", "sample", "feature"),
    "batch-first": _NTF,
    "split-directions": ("sample", "time", "direction", "feature"),
    "merge-directions": _NTF,
}


def _in_layout(names: tuple[str, str, str], layout: str) -> tuple[str, ...]:
    return (names[1], names[0], names[2]) if layout == "tnf" else names


def pattern_dims(pattern: str) -> tuple[str, ...] | None:
    """The output axes of an einops pattern as names (None with an ellipsis).

    >>> pattern_dims("n t (d h) -> n t d h"), pattern_dims("n t f -> (t f) n 1")
    (('n', 't', 'd', 'h'), ('t_f', 'n', 'dim_2'))
    """
    _, _, right = pattern.partition("->")
    if "..." in right or "…" in right:
        return None
    tokens = re.findall(r"\([^)]*\)|\S+", right)
    names = []
    for i, token in enumerate(tokens):
        parts = token.strip("()").split()
        name = "_".join(p for p in parts if not p.isdigit())
        names.append(name or f"dim_{i}")
    return tuple(names) if len(set(names)) == len(names) else None


def output_dims(plan: Plan) -> tuple[str, ...] | None:
    """The names of the axes of `plan.out_shape`, or None."""
    names: tuple[str, ...] | None
    if plan.operation == "reshape":
        names = _reshape_dims(plan)
    elif len(plan.out_shape) == 2:
        names = ("sample", "feature")
    elif plan.keeps_time:
        names = _in_layout(_NTF, plan.layout)
    else:
        names = _NTF  # reduce --keepdims: (N, 1, F)
    return names if names is not None and len(names) == len(plan.out_shape) else None


def _reshape_dims(plan: Plan) -> tuple[str, ...] | None:
    pattern, preset = plan.options.get("pattern"), plan.options.get("to")
    if pattern:
        return pattern_dims(str(pattern))
    if preset == "padded":
        return _in_layout(_NTF, plan.layout)
    return _PRESETS.get(str(preset))


def extra_dims(plan: Plan) -> tuple[str, ...] | None:
    """The names of the axes of the side output (a window or padded mask, packed lengths)."""
    if plan.extra_name == "lengths":
        return ("sample",)
    if plan.extra_name == "mask" and plan.extra_shape is not None:
        # pool's window mask is (N, T') in either layout; reshape's padded mask follows it
        time_major = plan.operation == "reshape" and plan.layout == "tnf"
        names = ("time", "sample") if time_major else ("sample", "time")
        return names if len(plan.extra_shape) == 2 else None
    return None
