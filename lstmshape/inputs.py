"""What a command reads besides its data: the mask source, weights and other small arrays.

A `MaskRequest` is the mask source as the user gave it (a file, lengths, a padding value or
none); `load_mask_spec` turns it into the engine's `masks.MaskSpec`, reading the small
arrays whole after checking from their headers that they fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstmshape.errors import InputError
from lstmshape.limits import refuse_over_memory
from lstmshape.masks import Layout, MaskSpec, PadSide, build_validity, check_one_source
from lstmshape.refs import ArrayRef
from lstmshape.sources import open_sources, parts_of

# Below this size a mask or lengths array is read and checked in full (the messages say
# what is wrong with it); above it, one holding the wrong number of values is refused unread.
_CHECK_UNREAD_BYTES = 1 << 24


@dataclass(frozen=True)
class MaskRequest:
    """The mask source of a command, as given: at most one of the three."""

    layout: Layout = "ntf"
    mask_ref: ArrayRef | None = None
    lengths_ref: ArrayRef | None = None
    mask_value: str | None = None
    pad_side: PadSide = "post"

    def __post_init__(self) -> None:
        check_one_source(self.mask_ref, self.lengths_ref, self.mask_value)

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.mask_ref, self.lengths_ref, self.mask_value))

    def inputs(self) -> list[ArrayRef]:
        """Every file the mask source reads (for the input-is-not-the-output checks)."""
        return [part for ref in (self.mask_ref, self.lengths_ref) for part in parts_of(ref)]

    def describe(self) -> str:
        """The mask source in words, for the table and the provenance attributes."""
        if self.mask_ref is not None:
            return f"mask {self.mask_ref}"
        if self.lengths_ref is not None:
            return f"lengths {self.lengths_ref} ({self.pad_side}-padded)"
        if self.mask_value is not None:
            return f"padding value {self.mask_value}"
        return "none (every step valid)"


def load_mask_spec(request: MaskRequest, shape_ntf: tuple[int, ...]) -> MaskSpec:
    """Read the mask source (small arrays, read whole) into a MaskSpec for the engine."""
    if request.mask_value is not None:
        return MaskSpec(mask_value=parse_float(request.mask_value, "--mask-value"))
    if not request.given:
        return MaskSpec()
    if len(shape_ntf) != 3:
        raise InputError("a mask needs 3-D data (N, T, F); this input is 2-D")
    n, t = shape_ntf[0], shape_ntf[1]
    n_axis = 1 if request.layout == "tnf" else 0
    mask = lengths = None
    if request.mask_ref is not None:
        mask = load_small(request.mask_ref, "mask", n_axis, values=n * t)
    if request.lengths_ref is not None:
        lengths = load_small(request.lengths_ref, "lengths", values=n)
    validity = build_validity(
        None, n=n, t=t, mask=mask, lengths=lengths, pad_side=request.pad_side, layout=request.layout
    )
    if len(validity.counts()) != n:
        raise InputError(
            f"lengths have {len(validity.counts())} entries; the data has N={n} samples"
        )
    return MaskSpec(validity=validity)


def load_small(ref: ArrayRef, what: str, axis: int = 0, *, values: int | None = None) -> Any:
    """A mask, lengths, weights or bias array, read whole; several files are joined along
    `axis`. `values`: how many it must hold."""
    with open_sources(ref, axis=axis) as source:
        if len(parts_of(ref)) == 1:
            _refuse_unread(source, what, values)
        return np.asarray(source.read_all())


def _refuse_unread(source: Any, what: str, values: int | None) -> None:
    """Refuse an array that is read whole before reading it: a header can declare any size,
    and a compressed one can inflate far beyond its file."""
    size = math.prod(source.shape)
    if values is not None and size != values and source.nbytes > _CHECK_UNREAD_BYTES:
        raise InputError(
            f"{what} {source.info.ref} has shape {tuple(source.shape)} ({size} values); "
            f"the data needs {values}"
        )
    refuse_over_memory(source, f"{what} {source.info.ref}", "it is read whole")


def parse_float(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{option} takes a number or nan; got {text!r}") from None
