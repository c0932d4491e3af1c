"""`--engine dask`: the plan's kernel over spans of the input on a dask cluster.

The input is cut into spans (`dask_inputs.plan_spans`): runs of whole samples of one file,
a few hundred MiB each. One task per span opens the file, streams the span block by block
with the in-process engine's reader and applies `plan.apply` — the very kernel of the
in-process engine — to each block (`dask_tasks.run_span`). The graph holds only paths,
bounds, the plan (once) and each span's own rows of the mask or lengths: no block of data
is shipped to a worker.

The output goes to the sink the CLI opened:
- a Zarr sink: the workers write the output chunks that lie wholly inside their span into
  its temporary store themselves; the few rows of a chunk two spans share come back here
  and are written once every span is done; then the sink publishes the store;
- any other sink (`.npy`, `.npz`, `.h5`, standard output): each span's output comes back
  here as soon as it is ready (a few spans per worker in flight) and is written in order.

PCA is fitted in a distributed pass: each span reduces its valid steps to a
`PcaAccumulator` (count, mean, centred sum of squares), partial accumulators are merged
in a tree (`merge_accumulators`, Chan et al.'s pairwise update), and only the final F x F
statistics reach this process.

Paths are made absolute before they go into the graph; with `--scheduler` on other hosts,
inputs and a Zarr output's directory must be visible to every worker under the same path.
Masks and lengths are read by this process (as the in-process engine does) and each span
carries its own rows of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.blocks import DEFAULT_CHUNK_BYTES
from lstmshape.checks import RunTally
from lstmshape.engines.dask_inputs import Span, plan_spans
from lstmshape.engines.dask_session import Session
from lstmshape.engines.dask_tasks import SpanResult, pca_span, run_span, span_spec
from lstmshape.limits import output_bytes_per_sample
from lstmshape.masks import MaskSpec
from lstmshape.plan import Plan
from lstmshape.strategies.pca import PcaAccumulator, PcaBasis
from lstmshape.stream import join_extras, output_bounded

Array = npt.NDArray[Any]

__all__ = ["Session", "fit_pca", "merge_accumulators", "run_plan"]

#: Partial PCA accumulators merged per task of the tree reduction.
MERGE_EVERY = 8


def _delayed_plan(plan: Plan) -> Any:
    """The plan as one graph key, sent to each worker once rather than with every task."""
    import dask

    return dask.delayed(plan, name=f"lstmshape-plan-{uuid.uuid4().hex}", pure=True)


def _layout(plan_layout: str, shape: tuple[int, ...]) -> str:
    return plan_layout if len(shape) == 3 else "ntf"


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
    if spec.validity is not None:
        plan.check_empty(spec.validity)  # fail before any data is read
    chunk_bytes = output_bounded(source, plan, chunk_bytes)  # refuses a huge sample output
    layout = _layout(plan.layout, tuple(plan.in_shape))
    n = plan.in_shape[1] if layout == "tnf" else plan.in_shape[0] if plan.in_shape else 1
    out_sample = output_bytes_per_sample(plan, n)
    spans = plan_spans(source, layout, chunk_bytes, session.n_workers, out_sample)
    if hasattr(sink, "zarr_array"):
        results = _store_to_zarr(session, sink, plan, spec, spans)
        if on_block is not None:
            on_block(int(source.nbytes))
    else:
        results = _write_in_order(session, sink, plan, spec, spans, source, on_block)
    tally = RunTally()
    extras: list[Array] = []
    for result in results:
        for start, table in result.tables:
            tally.add(table, start)
        extras += result.extras
    tally.check()
    return join_extras(plan, extras)


def _span_tasks(plan: Plan, spec: MaskSpec, spans: list[Span], target: Any = None) -> list[Any]:
    import dask

    plan_arg = _delayed_plan(plan)
    task = dask.delayed(run_span, pure=False)
    return [task(plan_arg, span, span_spec(spec, span), target) for span in spans]


def _along(axis: int, lo: int, hi: int) -> tuple[slice, ...]:
    return (slice(None),) * axis + (slice(lo, hi),)


def _store_to_zarr(
    session: Session, sink: Any, plan: Plan, spec: MaskSpec, spans: list[Span]
) -> list[SpanResult]:
    """The workers write their spans' whole output chunks into the sink's temporary Zarr
    store; the rows of chunks two spans share are written here afterwards."""
    axis = plan.out_axis
    rows = max((span.step for span in spans), default=1)
    chunks = tuple(rows if i == axis else max(s, 1) for i, s in enumerate(plan.out_shape))
    target = sink.zarr_array(chunks=chunks)
    results: list[SpanResult] = session.compute(_span_tasks(plan, spec, spans, target))
    for result in results:
        for start, piece in result.pieces:
            target[_along(axis, start, start + piece.shape[axis])] = piece
    sink.mark_written()
    return results


def _write_in_order(
    session: Session,
    sink: Any,
    plan: Plan,
    spec: MaskSpec,
    spans: list[Span],
    source: Any,
    on_block: Callable[[int], None] | None,
) -> list[SpanResult]:
    """Each span's output written here, in order, as soon as it and those before it are
    done; only its check tables and side output are kept."""
    n = max(sum(span.hi - span.lo for span in spans), 1)
    kept: list[SpanResult] = []
    tasks = _span_tasks(plan, spec, spans)
    for span, (result,) in zip(spans, session.ordered([task] for task in tasks), strict=True):
        for start, piece in result.pieces:
            sink.write(start, piece, axis=plan.out_axis)
        kept.append(SpanResult([], result.extras, result.tables))
        if on_block is not None:
            on_block(int(source.nbytes) * (span.hi - span.lo) // n)
    return kept


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
    per span, merged in a tree; no block of data comes back to this process."""
    import dask

    f = int(source.shape[-1])
    layout = _layout(layout, tuple(source.shape))
    spans = plan_spans(source, layout, chunk_bytes, session.n_workers)
    partial = dask.delayed(pca_span, pure=False)
    level = [partial(span, layout, span_spec(spec, span), f) for span in spans]
    if not level:
        return PcaAccumulator(f).finish(k)
    merge = dask.delayed(merge_accumulators, pure=False)
    while len(level) > 1:
        level = [merge(*level[i : i + MERGE_EVERY]) for i in range(0, len(level), MERGE_EVERY)]
    (accumulator,) = session.compute([level[0]])
    if on_block is not None:
        on_block(int(source.nbytes))
    return accumulator.finish(k)  # type: ignore[no-any-return]
