"""The run of `lstmshape diff A B`: open both inputs, check their shapes, read A's mask
source and compare them block by block (`lstmshape.compare`)."""

from __future__ import annotations

from contextlib import nullcontext

from lstmshape.compare import check_shapes, diff_sources, mask_spec, view_shape
from lstmshape.diffreport import DiffReport, Tolerance
from lstmshape.errors import InputError
from lstmshape.inputs import MaskRequest, load_small
from lstmshape.progress import Progress
from lstmshape.refs import ArrayRef
from lstmshape.vocabulary import Layout


def run_diff(
    a_ref: ArrayRef,
    b_ref: ArrayRef,
    mask: MaskRequest,
    *,
    layout_b: Layout | None = None,
    tolerance: Tolerance | None = None,
    include_padding: bool = False,
    worst: int = 5,
    progress: Progress | None = None,
) -> tuple[DiffReport, str]:
    """`lstmshape diff A B`: open both, check their shapes, read A's mask source (an
    `inputs.MaskRequest`) and compare; the report and the mask in words."""
    from lstmshape import io

    if a_ref.is_stdio and b_ref.is_stdio:
        raise InputError("A and B cannot both be - (standard input holds one array)")
    layout = mask.layout
    with io.open_array(a_ref) as source_a, io.open_array(b_ref) as source_b:
        check_shapes(source_a.shape, source_b.shape, layout, layout_b or layout)
        n, t, _ = view_shape(source_a.shape, layout)
        n_axis = 1 if layout == "tnf" else 0
        spec = mask_spec(
            source_a.shape,
            layout,
            mask=None
            if mask.mask_ref is None
            else load_small(mask.mask_ref, "mask", n_axis, values=n * t),
            lengths=None
            if mask.lengths_ref is None
            else load_small(mask.lengths_ref, "lengths", values=n),
            mask_value=mask.mask_value,
            pad_side=mask.pad_side,
            include_padding=include_padding,
        )
        total = source_a.nbytes + source_b.nbytes
        with progress(total, "comparing") if progress else nullcontext(None) as advance:
            report = diff_sources(
                source_a,
                source_b,
                layout=layout,
                layout_b=layout_b or layout,
                spec=spec,
                tolerance=tolerance,
                worst=worst,
                on_block=advance,
            )
    if len(source_a.shape) != 3:
        return report, "none (no time axis: every element)"
    if include_padding and not mask.given:
        return report, "every step"
    return report, mask.describe()
