"""Jobs: an open input, its plan and its mask, for each command that writes data.

Each builder opens the input (headers only), plans from its shape and dtype, reads the mask
source and returns a `run.Job` for `run.execute`. The caller closes `job.source`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from lstmshape.errors import InputError
from lstmshape.inputs import MaskRequest, load_mask_spec, load_small
from lstmshape.masks import MaskSpec
from lstmshape.plan import Plan, ntf_shape, plan_pool, plan_project, plan_reduce, plan_reshape
from lstmshape.refs import ArrayRef
from lstmshape.run import Job
from lstmshape.sources import open_sources

# What the unmasked `last` warning looks at: the first few MB of samples.
_WARNING_SAMPLE_BYTES = 4 * 2**20


@contextmanager
def _opened(input_ref: ArrayRef, layout: str) -> Iterator[Any]:
    source = open_sources(input_ref, layout)
    try:
        yield source
    except BaseException:
        source.close()
        raise


def _job(input_ref: ArrayRef, source: Any, plan: Plan, mask: MaskRequest, **extra: Any) -> Job:
    shape = tuple(source.shape)
    shape_ntf = ntf_shape(shape, mask.layout, command=plan.operation) if len(shape) == 3 else shape
    return Job(input_ref, source, plan, load_mask_spec(mask, shape_ntf), mask, **extra)


def reduce_job(input_ref: ArrayRef, mask: MaskRequest, **options: Any) -> Job:
    """`options`: strategy, bidirectional, keepdims, empty, nan_policy (as `plan_reduce`)."""
    with _opened(input_ref, mask.layout) as source:
        plan = plan_reduce(source.shape, source.dtype, layout=mask.layout, **options)
        job = _job(input_ref, source, plan, mask)
        if options.get("strategy") == "last" and not mask.given:
            job.warnings += _last_step_warnings(source, plan)
        return job


def _last_step_warnings(source: Any, plan: Plan) -> list[str]:
    """Look at the first few MB of samples for trailing padding that `last` would return."""
    from lstmshape.blocks import rows_per_block
    from lstmshape.limits import refuse_huge_reads
    from lstmshape.masks import padding_warning
    from lstmshape.plan import as_ntf

    shape_ntf = ntf_shape(plan.in_shape, plan.layout, command="reduce")
    refuse_huge_reads(source, 1 if plan.layout == "tnf" else 0)
    rows = min(
        shape_ntf[0], rows_per_block(shape_ntf, source.dtype.itemsize, _WARNING_SAMPLE_BYTES)
    )
    sample = source.read(0, rows, axis=1 if plan.layout == "tnf" else 0)
    warning = padding_warning(as_ntf(sample, plan.layout)) if sample.size else None
    return [] if warning is None else [warning]


def pool_job(
    input_ref: ArrayRef, mask: MaskRequest, mask_out: ArrayRef | None = None, **options: Any
) -> Job:
    """`options`: op, pool_size, strides, padding, empty, nan_policy (as `plan_pool`)."""
    if mask_out is not None and options.get("pool_size") is None:
        raise InputError("--mask-out needs --pool-size (global pooling has no time axis)")
    with _opened(input_ref, mask.layout) as source:
        plan = plan_pool(source.shape, source.dtype, layout=mask.layout, **options)
        outs = {} if mask_out is None else {"mask": mask_out}
        return _job(input_ref, source, plan, mask, extra_outs=outs)


def project_job(
    input_ref: ArrayRef,
    mask: MaskRequest,
    *,
    weights_ref: ArrayRef | None = None,
    bias_ref: ArrayRef | None = None,
    pca: int | None = None,
    save_basis: ArrayRef | None = None,
    **options: Any,
) -> Job:
    """`options`: activation, weights_layout (as `plan_project`)."""
    if pca is None and save_basis is not None:
        raise InputError("--save-basis goes with --pca")
    with _opened(input_ref, mask.layout) as source:
        weights = None if weights_ref is None else load_small(weights_ref, "weights")
        bias = None if bias_ref is None else load_small(bias_ref, "bias")
        plan = plan_project(
            source.shape,
            source.dtype,
            weights,
            bias,
            pca=pca,
            layout=mask.layout,
            masked=mask.given,
            **options,
        )
        read = tuple(ref for ref in (weights_ref, bias_ref) if ref is not None)
        return _job(input_ref, source, plan, mask, extra_inputs=read, basis_out=save_basis)


def reshape_job(
    input_ref: ArrayRef,
    mask: MaskRequest,
    *,
    preset: str | None = None,
    pattern: str | None = None,
    sizes: Mapping[str, int] | None = None,
    drop_padding: bool = False,
    timesteps: int | None = None,
    extra_outs: Mapping[str, ArrayRef | None] | None = None,
) -> Job:
    """A preset, an einops pattern, packing (`--drop-padding`) or padding (`--to padded`)."""
    if drop_padding and not mask.given:
        raise InputError("--drop-padding needs --mask, --lengths or --mask-value")
    with _opened(input_ref, mask.layout) as source:
        shape = tuple(source.shape)
        spec, lengths = MaskSpec(), None
        if drop_padding and preset == "steps":  # the plan refuses it with any other preset
            shape_ntf = ntf_shape(shape, mask.layout, command="reshape --drop-padding")
            spec = load_mask_spec(mask, shape_ntf)
        if preset == "padded" and mask.lengths_ref is not None:
            lengths = load_small(mask.lengths_ref, "lengths")
        plan = plan_reshape(
            shape,
            source.dtype,
            preset,
            pattern=pattern,
            sizes=sizes,
            layout=mask.layout,
            drop_padding=drop_padding,
            validity=spec.validity,
            lengths=lengths,
            timesteps=timesteps,
            pad_side=mask.pad_side,
        )
        outs = {name: ref for name, ref in (extra_outs or {}).items() if ref is not None}
        return Job(input_ref, source, plan, spec, mask, extra_outs=outs)
