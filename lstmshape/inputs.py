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

from lstmshape import padding
from lstmshape.errors import InputError
from lstmshape.limits import refuse_over_memory
from lstmshape.masks import Layout, MaskSpec, PadSide, build_validity, check_one_source
from lstmshape.padding import Detection
from lstmshape.refs import ArrayRef
from lstmshape.sources import describe_matches, open_sources, parts_of

#: `--lengths auto` decides the padding on about this many bytes of the first samples.
AUTO_SAMPLE_BYTES = 16 * 2**20
#: The `--lengths` value that asks for the detected padding (a file named so: `./auto`).
AUTO = "auto"

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
    def auto(self) -> bool:
        """`--lengths auto`: the mask comes from the padding the data shows."""
        ref = self.lengths_ref
        return ref is not None and ref.path == AUTO and ref.key is None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.mask_ref, self.lengths_ref, self.mask_value))

    def inputs(self) -> list[ArrayRef]:
        """Every file the mask source reads (for the input-is-not-the-output checks)."""
        refs = (self.mask_ref, None if self.auto else self.lengths_ref)
        return [part for ref in refs for part in parts_of(ref)]

    def describe(self, spec: MaskSpec | None = None) -> str:
        """The mask source in words, for the table and the provenance attributes; with
        `--lengths auto`, what the detector found in `spec`."""
        if self.auto and spec is not None and spec.detected is not None:
            return f"lengths auto ({describe_detection(spec.detected)})"
        if self.mask_ref is not None:
            return f"mask {self.mask_ref}"
        if self.lengths_ref is not None:
            return f"lengths {self.lengths_ref} ({self.pad_side}-padded)"
        if self.mask_value is not None:
            return f"padding value {self.mask_value}"
        return "none (every step valid)"


def load_mask_spec(
    request: MaskRequest,
    shape_ntf: tuple[int, ...],
    source: Any = None,
    data: ArrayRef | None = None,
) -> MaskSpec:
    """Read the mask source (small arrays, read whole) into a MaskSpec for the engine; for
    `--lengths auto`, decide the padding on the first samples of `source`.

    When the data (`data`) or the mask source is several files or a glob, an error says
    what each matched, with its count of samples.
    """
    if request.auto:
        return MaskSpec(detected=_detect_first(source, request.layout, shape_ntf))
    try:
        return _load_mask_spec(request, shape_ntf)
    except InputError as error:
        n_axis = 1 if request.layout == "tnf" else 0
        matches = [
            describe_matches(ref, what, axis)
            for ref, what, axis in (
                (data, "the input", None),
                (request.mask_ref, "--mask", n_axis),
                (request.lengths_ref, "--lengths", 0),
            )
            if ref is not None
        ]
        found = "; ".join(m for m in matches if m)
        if not found:
            raise
        raise InputError(f"{error} ({found})") from None


def _load_mask_spec(request: MaskRequest, shape_ntf: tuple[int, ...]) -> MaskSpec:
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


def _detect_first(source: Any, layout: Layout, shape_ntf: tuple[int, ...]) -> Detection:
    """The padding of the first samples (about `AUTO_SAMPLE_BYTES`), which every later block
    is read with; a clear error when they show none."""
    from lstmshape.blocks import rows_per_block
    from lstmshape.plan import as_ntf

    if len(shape_ntf) != 3:
        raise InputError("--lengths auto needs 3-D data (N, T, F)")
    rows = min(shape_ntf[0], rows_per_block(shape_ntf, source.dtype.itemsize, AUTO_SAMPLE_BYTES))
    from lstmshape.limits import refuse_huge_reads

    refuse_huge_reads(source, 1 if layout == "tnf" else 0)
    sample = as_ntf(np.asarray(source.read(0, rows, axis=1 if layout == "tnf" else 0)), layout)
    detected = padding.infer(padding.summarise(sample, exact=True))
    if detected.kind == "none" or not np.any(detected.padded | detected.empty):
        raise InputError(
            f"--lengths auto: the first {rows} samples show no padding (no run of one value or "
            "of a repeated step at the ends of the samples); give --lengths FILE, --mask or "
            "--mask-value"
        )
    if detected.side == "mixed":
        raise InputError(
            "--lengths auto: the first samples are padded at both ends; give --mask (or "
            "--lengths with --pad-side) to say which steps are real"
        )
    return detected


def describe_detection(detected: Detection) -> str:
    """'post-padded with 0.0, lengths 3/7/9 in the first 64 samples' for the footer."""
    how = "repeating the last step" if detected.kind == "repeat" else f"with {detected.value!r}"
    lengths = detected.lengths if detected.lengths is not None else np.zeros(0, np.intp)
    spread = "-"
    if lengths.size:
        spread = f"{lengths.min()}/{np.median(lengths):g}/{lengths.max()}"
    return (
        f"detected {detected.side}-padded {how}; lengths min/median/max {spread} in the first "
        f"{detected.n} samples"
    )


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
