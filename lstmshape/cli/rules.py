"""Options that act only together with another: given without it they would be silently
ignored, so they are a usage error instead (`--pad-side` with `--mask`, `--padding`
without `--pool-size`, ...).

Only the command line knows whether an option was typed or left at its default, so these
checks live here; the plans check what they can see (`--strides needs --pool-size`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

Params = Mapping[str, Any]


@dataclass(frozen=True)
class Needs:
    """`option` (a parameter name) acts only when `applies(params)`; `partner` says when."""

    option: str
    applies: Callable[[Params], bool]
    partner: str


def _packs(p: Params) -> bool:
    return p.get("preset") == "steps" and bool(p.get("drop_padding"))


def _pads(p: Params) -> bool:
    return p.get("preset") == "padded"


_PAD_SIDE = Needs("pad_side", lambda p: p.get("lengths_ref") is not None, "--lengths")
_BY_COMMAND: dict[str, tuple[Needs, ...]] = {
    "reduce": (_PAD_SIDE,),
    "pool": (
        _PAD_SIDE,
        Needs("padding", lambda p: p.get("pool_size") is not None, "--pool-size"),
        Needs(  # `zero` says what windows do anyway
            "empty",
            lambda p: p.get("pool_size") is None or p.get("empty") == "zero",
            "global pooling (without --pool-size; a window with no valid step holds 0)",
        ),
    ),
    "project": (
        _PAD_SIDE,
        Needs("weights_layout", lambda p: p.get("weights_ref") is not None, "--weights"),
    ),
    "reshape": (
        Needs("pad_side", lambda p: p.get("lengths_ref") is not None or _pads(p), "--lengths"),
        Needs("axis_sizes", lambda p: p.get("pattern") is not None, "--pattern"),
        Needs("timesteps", _pads, "--to padded"),
        Needs("mask_ref", _packs, "--to steps --drop-padding"),
        Needs("mask_value", _packs, "--to steps --drop-padding"),
        Needs(
            "lengths_ref",
            lambda p: _packs(p) or _pads(p),
            "--to steps --drop-padding or --to padded",
        ),
        Needs(
            "chunk_mb", lambda p: False, "reduce, pool and project (reshape reads its input whole)"
        ),
    ),
}


def refuse_ignored(ctx: click.Context, params: Params) -> None:
    """A usage error for the first option given that would have no effect."""
    for need in _BY_COMMAND.get(ctx.command.name or "", ()):
        source = ctx.get_parameter_source(need.option)
        if source in (None, ParameterSource.DEFAULT) or need.applies(params):
            continue
        flag = _flag(ctx, need.option)
        raise click.UsageError(f"{flag} goes with {need.partner}; here it would be ignored", ctx)


def _flag(ctx: click.Context, name: str) -> str:
    for param in ctx.command.params:
        if param.name == name:
            return max(param.opts, key=len)
    return name
