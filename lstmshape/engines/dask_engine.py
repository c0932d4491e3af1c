"""`--engine dask`: the plan's kernel per block of samples on a dask cluster.

The input becomes a dask array chunked along N only (every timestep and feature of a
sample in one chunk, about `chunk_bytes` per chunk, one array per input file joined with
`da.concatenate`): `.zarr` inputs through `da.from_zarr`, `.npy`/`.npz`/`.h5` inputs
through `da.from_array` over a reader that opens the file inside the task that reads (so no
open file handle or lock is shipped, and a worker on another host reads the same path).
Masks and lengths become dask arrays chunked the same way along N, and `da.blockwise`
applies `plan.apply` — the very kernel of the in-process engine — to each block.

The output goes to the sink the CLI opened:
- a Zarr sink: the workers write their blocks into its temporary store themselves
  (`da.store`, chunks aligned with the blocks, no lock), then the sink publishes it;
- any other sink (`.npy`, `.npz`, `.h5`, standard output): blocks are computed on the
  cluster a few at a time and written here in order.

PCA is fitted in a distributed pass: each block reduces its valid steps to a
`PcaAccumulator` (count, mean, centred sum of squares), partial accumulators are merged
in a tree (`merge_accumulators`, Chan et al.'s pairwise update), and only the final F x F
statistics reach this process.

Paths are made absolute before they go into the graph; with `--scheduler` on other hosts,
inputs and a Zarr output's directory must be visible to every worker under the same path.
Masks and lengths are read by this process (as the in-process engine does) and shipped to
the workers in blocks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.blocks import DEFAULT_CHUNK_BYTES
from lstmshape.checks import RunTally
from lstmshape.engines.dask_inputs import input_array
from lstmshape.engines.dask_session import Session
from lstmshape.limits import refuse_huge_sample_output
from lstmshape.masks import MaskSpec
from lstmshape.plan import Plan
from lstmshape.strategies.pca import PcaAccumulator, PcaBasis
from lstmshape.stream import join_extras
from lstmshape.validity import Validity

Array = npt.NDArray[Any]

__all__ = ["Session", "fit_pca", "input_array", "merge_accumulators", "run_plan"]

#: Partial PCA accumulators merged per task of the tree reduction.
MERGE_EVERY = 8


# ----------------------------------------------------------------------------- masks


def _mask_arrays(spec: MaskSpec, n_chunks: tuple[int, ...]) -> tuple[str, list[Any]]:
    """The validity as dask arrays chunked like the data along N: (kind, [array, index]...)."""
    import dask.array as da

    validity = spec.validity
    if validity is None or validity.is_all_valid:
        return ("value" if spec.per_block else "none"), []
    if validity.lengths is not None:
        return "lengths", [da.from_array(validity.lengths, chunks=(n_chunks,)), "n"]
    assert validity.mask is not None
    mask = da.from_array(validity.mask, chunks=(n_chunks, max(validity.t, 1)))
    return "mask", [mask, "nt"]


def _block_validity(
    x_ntf: Array, masks: tuple[Array, ...], kind: str, spec: MaskSpec, pad_side: str
) -> Validity:
    n = x_ntf.shape[0]
    t = x_ntf.shape[1] if x_ntf.ndim == 3 else 0
    if kind == "lengths":
        return Validity(n=n, t=t, lengths=masks[0], pad_side=pad_side)  # type: ignore[arg-type]
    if kind == "mask":
        return Validity(n=n, t=t, mask=masks[0])
    return spec.for_block(x_ntf, 0, n)


def _block(
    x_ntf: Array,
    *args: Any,
    what: str,
    kind: str,
    spec: MaskSpec,
    pad_side: str,
) -> Array:
    """One block: the plan's output ('out'), its side output ('extra') or its check table
    ('checks', see `checks.screen`). The plan is the last positional argument."""
    *masks, plan = args
    validity = _block_validity(x_ntf, tuple(masks), kind, spec, pad_side)
    if what == "extra":  # the window mask needs no features: a kernel run on F = 0
        return plan.apply(x_ntf[..., :0], validity).extra  # type: ignore[no-any-return]
    result = plan.apply(x_ntf, validity)
    if what == "checks":
        return np.zeros((x_ntf.shape[0], 3), np.int64) if result.checks is None else result.checks
    return result.out  # type: ignore[no-any-return]


def _blockwise(
    x_ntf: Any,
    plan_arg: Any,
    mask_args: list[Any],
    *,
    what: str,
    out_shape: tuple[int, ...],
    out_axis: int,
    dtype: Any,
    kind: str,
    spec: MaskSpec,
    pad_side: str,
) -> Any:
    """`da.blockwise` of `_block`: N (index 'n') is the only axis shared with the input;
    every other output axis is new and whole, every other input axis whole and contracted."""
    import dask.array as da

    letters = "ABCDEFGH"
    out_ind = "".join("n" if i == out_axis else letters[i] for i in range(len(out_shape)))
    new_axes = {letters[i]: int(s) for i, s in enumerate(out_shape) if i != out_axis}
    in_ind = "n" + "tf"[: x_ntf.ndim - 1] if x_ntf.ndim <= 3 else None
    assert in_ind is not None
    return da.blockwise(
        _block,
        out_ind,
        x_ntf,
        in_ind,
        *mask_args,
        plan_arg,
        None,
        new_axes=new_axes,
        concatenate=True,
        dtype=dtype,
        meta=np.empty((0,) * len(out_shape), dtype=dtype),
        what=what,
        kind=kind,
        spec=spec,
        pad_side=pad_side,
    )


# ----------------------------------------------------------------------------- running


def _delayed_plan(plan: Plan) -> Any:
    """The plan as one graph key, sent to each worker once rather than with every task."""
    import dask

    return dask.delayed(plan, name=f"lstmshape-plan-{uuid.uuid4().hex}", pure=True)


def run_plan(
    source: Any,
    plan: Plan,
    spec: MaskSpec,
    sink: Any,
    *,
    session: Session,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    on_block: Callable[[int], None] | None = None,
) -> Array | None:
    """`stream.run_plan` on a dask cluster: same arguments, same results (the padding
    audit of a dask run looks at its first samples: `audit.sample_findings`).

    Returns the (N, T') output mask of windowed pooling, or None.
    """
    layout = plan.layout if len(plan.in_shape) == 3 else "ntf"
    shape = plan.in_shape
    refuse_huge_sample_output(plan, shape[1] if layout == "tnf" else shape[0] if shape else 1)
    x_ntf = input_array(source, layout, chunk_bytes)
    n_chunks = x_ntf.chunks[0]
    if spec.validity is not None:
        plan.check_empty(spec.validity)  # fail before any data is read
    kind, mask_args = _mask_arrays(spec, n_chunks)
    pad_side = spec.validity.pad_side if spec.validity is not None else "post"
    common: dict[str, Any] = {"kind": kind, "spec": spec, "pad_side": pad_side}
    plan_arg = _delayed_plan(plan)

    def blockwise(what: str, shape: tuple[int, ...], axis: int, dtype: Any) -> Any:
        return _blockwise(
            x_ntf,
            plan_arg,
            mask_args,
            what=what,
            out_shape=shape,
            out_axis=axis,
            dtype=dtype,
            **common,
        )

    out = blockwise("out", plan.out_shape, plan.out_axis, plan.out_dtype)
    extra = None
    if plan.extra_shape is not None:
        extra = blockwise("extra", plan.extra_shape, 0, bool)
    checks = None
    if plan.nan_policy != "propagate" or (plan.rejects_empty and spec.validity is None):
        checks = blockwise("checks", (x_ntf.shape[0], 3), 0, np.int64)
    if hasattr(sink, "zarr_array"):
        extras, tables = _store_to_zarr(session, sink, out, extra, checks, plan.out_axis)
        if on_block is not None:
            on_block(int(source.nbytes))
    else:
        extras, tables = _write_in_order(
            session, sink, out, extra, checks, plan.out_axis, source, on_block
        )
    tally = RunTally()
    for start, table in zip(np.cumsum((0, *n_chunks)), tables, strict=False):
        tally.add(table, int(start))
    tally.check()
    return join_extras(plan, extras)


def _store_to_zarr(
    session: Session,
    sink: Any,
    out: Any,
    extra: Any,
    flags: Any,
    out_axis: int,
) -> tuple[list[Array], list[Array]]:
    """The workers write their blocks into the sink's temporary Zarr store."""
    import dask.array as da

    rows = max(max(out.chunks[out_axis], default=1), 1)
    regular = out.rechunk({out_axis: rows})  # zarr chunks are regular; blocks must match
    chunks = tuple(rows if i == out_axis else max(s, 1) for i, s in enumerate(out.shape))
    target = sink.zarr_array(chunks=chunks)
    stored = da.store([regular], [target], lock=False, compute=False)
    wanted = [stored] + [c for c in (extra, flags) if c is not None]
    results = session.compute(wanted)[1:]
    sink.mark_written()
    extras = [results.pop(0)] if extra is not None else []
    tables = [results.pop(0)] if flags is not None else []
    return extras, tables


def _write_in_order(
    session: Session,
    sink: Any,
    out: Any,
    extra: Any,
    flags: Any,
    out_axis: int,
    source: Any,
    on_block: Callable[[int], None] | None,
) -> tuple[list[Array], list[Array]]:
    """Blocks computed on the cluster a few at a time, written here in order."""
    n_blocks = len(out.chunks[out_axis])
    lead = (slice(None),) * out_axis
    block_bytes = [
        int(c) * int(source.nbytes) // max(int(sum(out.chunks[out_axis])), 1)
        for c in out.chunks[out_axis]
    ]

    def items() -> Iterator[list[Any]]:
        for i in range(n_blocks):
            item = [out.blocks[(*lead, i)]]
            if extra is not None:
                item.append(extra.blocks[i])
            if flags is not None:
                item.append(flags.blocks[i])
            yield item

    extras: list[Array] = []
    empties: list[Array] = []
    start = 0
    for i, result in enumerate(session.ordered(items())):
        block = result[0]
        sink.write(start, block, axis=out_axis)
        start += block.shape[out_axis]
        if extra is not None:
            extras.append(result[1])
        if flags is not None:
            empties.append(result[-1])
        if on_block is not None:
            on_block(block_bytes[i])
    return extras, empties


# ----------------------------------------------------------------------------- PCA


def merge_accumulators(*accumulators: PcaAccumulator) -> PcaAccumulator:
    """One accumulator holding the steps of all of them (Chan et al.'s pairwise update).

    >>> a, b, both = PcaAccumulator(2), PcaAccumulator(2), PcaAccumulator(2)
    >>> x = np.arange(12.0).reshape(6, 2) ** 2
    >>> a.update(x[:2]); b.update(x[2:]); both.update(x)
    >>> merged = merge_accumulators(a, b)
    >>> merged.count, np.allclose(merged.m2, both.m2), np.allclose(merged.mean, both.mean)
    (6, True, True)
    """
    if not accumulators:
        raise ValueError("merge_accumulators needs at least one accumulator")
    merged = PcaAccumulator(accumulators[0].f)
    for acc in accumulators:
        if acc.count == 0:
            continue
        total = merged.count + acc.count
        delta = acc.mean - merged.mean
        merged.m2 = merged.m2 + acc.m2 + np.outer(delta, delta) * (merged.count * acc.count / total)
        merged.mean = merged.mean + delta * (acc.count / total)
        merged.count = total
    return merged


def _pca_partial(x_ntf: Array, validity: Validity | None, spec: MaskSpec, f: int) -> PcaAccumulator:
    """The accumulator of one block's valid steps (`validity` None: found from the block)."""
    acc = PcaAccumulator(f)
    if validity is None and x_ntf.ndim == 3:
        validity = spec.for_block(x_ntf, 0, x_ntf.shape[0])
    acc.update(x_ntf, None if validity is None or validity.is_all_valid else validity)
    return acc


def fit_pca(
    source: Any,
    layout: str,
    spec: MaskSpec,
    k: int,
    *,
    session: Session,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    on_block: Callable[[int], None] | None = None,
) -> PcaBasis:
    """Fit K principal components on the valid steps with a distributed pass: statistics
    per block, merged in a tree; no block of data comes back to this process."""
    import dask

    x_ntf = input_array(source, layout if len(source.shape) == 3 else "ntf", chunk_bytes)
    f = int(source.shape[-1])
    blocks = x_ntf.to_delayed().ravel().tolist()
    partial = dask.delayed(_pca_partial, pure=True)
    level = []
    start = 0
    for block, rows in zip(blocks, x_ntf.chunks[0], strict=True):
        rows_validity = None
        if spec.validity is not None:
            rows_validity = spec.validity.rows(start, start + rows)
        level.append(partial(block, rows_validity, spec, f))
        start += rows
    if not level:
        return PcaAccumulator(f).finish(k)
    merge = dask.delayed(merge_accumulators, pure=True)
    while len(level) > 1:
        level = [merge(*level[i : i + MERGE_EVERY]) for i in range(0, len(level), MERGE_EVERY)]
    (accumulator,) = session.compute([level[0]])
    if on_block is not None:
        on_block(int(source.nbytes))
    return accumulator.finish(k)  # type: ignore[no-any-return]
