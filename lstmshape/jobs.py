"""Jobs: an open input, its plan and its mask, for each command that writes data.

Each builder opens the input (headers only), plans from its shape and dtype, reads the mask
source and returns a `run.Job` for `run.execute`. The caller closes `job.source`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from lstmshape.errors import InputError
from lstmshape.inputs import MaskRequest, load_mask_spec, load_small
from lstmshape.masks import MaskSpec
from lstmshape.plan import Plan, ntf_shape, plan_pool, plan_project, plan_reduce, plan_reshape
from lstmshape.refs import ArrayRef
from lstmshape.run import Job
from lstmshape.sources import MultiRef, open_sources


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
    spec = load_mask_spec(mask, shape_ntf, source, data=input_ref)
    return Job(input_ref, source, plan, spec, mask, **extra)


def reduce_job(input_ref: ArrayRef, mask: MaskRequest, **options: Any) -> Job:
    """`options`: strategy, bidirectional, keepdims, empty, nan_policy (as `plan_reduce`)."""
    with _opened(input_ref, mask.layout) as source:
        plan = plan_reduce(source.shape, source.dtype, layout=mask.layout, **options)
        return _job(input_ref, source, plan, mask)


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
    if weights_ref is not None and bias_ref is None:
        from lstmshape.io import paired_bias

        bias_ref = paired_bias(weights_ref)  # a .keras Dense layer's own bias
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
            spec = load_mask_spec(mask, shape_ntf, source, data=input_ref)
        if preset == "padded":
            mask = _with_stored_lengths(input_ref, mask)
            if mask.lengths_ref is not None:
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


def _with_stored_lengths(input_ref: ArrayRef, mask: MaskRequest) -> MaskRequest:
    """Without --lengths, `--to padded` reads the lengths that packing stored beside the
    data in its container (`run.lengths_beside`: KEY_lengths)."""
    from lstmshape import io
    from lstmshape.run import lengths_beside

    if mask.lengths_ref is not None or not input_ref.key or isinstance(input_ref, MultiRef):
        return mask
    beside = lengths_beside(input_ref)
    stored = {(info.ref.key or "").strip("/") for info in io.list_arrays(ArrayRef(input_ref.path))}
    if beside.key is None or beside.key.strip("/") not in stored:
        return mask
    return replace(mask, lengths_ref=beside)
