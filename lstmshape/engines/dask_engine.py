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

import contextlib
import logging
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.blocks import DEFAULT_CHUNK_BYTES, rows_per_block
from lstmshape.checks import RunTally
from lstmshape.errors import InputError
from lstmshape.masks import MaskSpec, Validity
from lstmshape.plan import Plan
from lstmshape.refs import ArrayRef
from lstmshape.strategies.pca import PcaAccumulator, PcaBasis
from lstmshape.stream import join_extras

Array = npt.NDArray[Any]

__all__ = ["Session", "fit_pca", "input_array", "merge_accumulators", "run_plan"]

#: How many blocks per worker are in flight when results come back here in order.
BLOCKS_PER_WORKER = 2
#: Partial PCA accumulators merged per task of the tree reduction.
MERGE_EVERY = 8
#: How long to try reaching a --scheduler address.
CONNECT_TIMEOUT = "10s"


# ----------------------------------------------------------------------------- the cluster


class Session:
    """Where the work runs: a `dask.distributed` Client (`scheduler` address, or a
    LocalCluster of `workers` processes, one thread each), else dask's threaded scheduler
    in this process. Started on first use; `close()` stops what it started."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None) -> None:
        self.scheduler = scheduler
        self.workers = workers
        self._client: Any = None
        self._cluster: Any = None

    @property
    def client(self) -> Any:
        """The distributed Client, connected on first use; None for the threaded scheduler."""
        if self._client is None and (self.scheduler or self.workers):
            self._connect()
        return self._client

    def _connect(self) -> None:
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                self._client = Client(self.scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise InputError(
                    f"cannot reach the dask scheduler at {self.scheduler}: {reason}"
                ) from None
            return
        saved = dict(os.environ)
        try:
            self._cluster = LocalCluster(
                n_workers=self.workers,
                processes=True,
                threads_per_worker=1,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            )
        finally:  # distributed sets MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS, ... for its
            os.environ.clear()  # workers in this process's environment; keep ours as it was
            os.environ.update(saved)
        self._client = Client(self._cluster, set_as_default=False)

    @property
    def n_workers(self) -> int:
        client = self.client
        if client is None:
            return os.cpu_count() or 1
        return max(1, len(client.scheduler_info().get("workers", {})))

    def compute(self, collections: Sequence[Any]) -> list[Any]:
        """Compute dask collections together (shared inputs are read once)."""
        if not collections:
            return []
        client = self.client
        if client is None:
            import dask

            return list(dask.compute(*collections, scheduler="threads"))
        futures = client.compute(list(collections))
        try:
            return list(client.gather(futures))
        finally:
            client.cancel(futures)

    def ordered(self, items: Iterable[Sequence[Any]]) -> Iterator[list[Any]]:
        """Compute each item (a list of collections) and yield the results in order, with
        at most `BLOCKS_PER_WORKER * n_workers` items in flight."""
        window = BLOCKS_PER_WORKER * self.n_workers
        client = self.client
        if client is None:
            batch: list[Sequence[Any]] = []
            for item in items:
                batch.append(item)
                if len(batch) >= window:
                    yield from self._threaded(batch)
                    batch = []
            yield from self._threaded(batch)
            return
        pending: deque[Any] = deque()
        try:
            for item in items:
                pending.append(client.compute(list(item)))
                if len(pending) >= window:
                    yield list(client.gather(pending.popleft()))
            while pending:
                yield list(client.gather(pending.popleft()))
        finally:
            for futures in pending:
                client.cancel(futures)

    @staticmethod
    def _threaded(batch: list[Sequence[Any]]) -> Iterator[list[Any]]:
        if not batch:
            return
        import dask

        flat = [c for item in batch for c in item]
        results = iter(dask.compute(*flat, scheduler="threads"))
        for item in batch:
            yield [next(results) for _ in item]

    def close(self) -> None:
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- inputs


class _FileBlocks:
    """One stored array as dask sees it (`shape`, `dtype`, `x[selection]`), opening the
    file in the task that reads and closing it before returning the block."""

    def __init__(self, ref: ArrayRef, shape: tuple[int, ...], dtype: Any, axis: int) -> None:
        self.ref = ref
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)
        self.axis = axis
        # --allow-external (HDF5 external links) is a context variable of this process;
        # the worker that reads needs the same answer.
        from lstmshape import io

        flag = getattr(io, "_allow_external", None)
        self.allow_external = bool(flag.get()) if flag is not None else False

    def __getitem__(self, selection: Any) -> Array:
        from lstmshape import io

        sel = selection if isinstance(selection, tuple) else (selection,)
        sel = sel + (slice(None),) * (self.ndim - len(sel))
        along = sel[self.axis]
        allowing = getattr(io, "allow_external", None)
        scope = allowing(self.allow_external) if allowing else contextlib.nullcontext()
        with scope, io.open_array(self.ref) as source:
            block = source.read(along.start or 0, along.stop, axis=self.axis)
        rest = tuple(slice(None) if i == self.axis else s for i, s in enumerate(sel))
        return np.asarray(block[rest])


def _parts(source: Any) -> list[tuple[ArrayRef, Any]]:
    """(ref, open source) of every file behind `source` (a MultiSource has several)."""
    sources = getattr(source, "sources", None)
    refs = getattr(source, "refs", None)
    if sources is not None and refs is not None:
        return list(zip(refs, sources, strict=True))
    return [(source.info.ref, source)]


def _absolute(ref: ArrayRef) -> ArrayRef:
    if ref.is_stdio:
        raise InputError("--engine dask needs input files the workers can open, not standard input")
    return ArrayRef(str(Path(ref.path).absolute()), ref.key)


def _part_array(ref: ArrayRef, part: Any, axis: int, rows: int) -> Any:
    import dask.array as da
    from dask.base import tokenize

    shape = tuple(int(s) for s in part.shape)
    ref = _absolute(ref)
    if getattr(part.info, "format", None) == "zarr":
        rows = _zarr_rows(rows, part.info.chunks, axis)
        chunks = tuple(rows if i == axis else max(s, 1) for i, s in enumerate(shape))
        key = (ref.key or "").strip("/") or None
        return da.from_zarr(ref.path, component=key, chunks=chunks, inline_array=True)
    chunks = tuple(rows if i == axis else max(s, 1) for i, s in enumerate(shape))
    try:
        stamp = Path(ref.path).stat().st_mtime_ns
    except OSError:
        stamp = 0
    reader = _FileBlocks(ref, shape, part.dtype, axis)
    name = "lstmshape-read-" + tokenize(str(ref), stamp, shape, str(part.dtype), chunks)
    return da.from_array(
        reader,
        chunks=chunks,
        name=name,
        lock=False,
        asarray=False,
        inline_array=True,
        meta=np.empty((0,) * len(shape), dtype=part.dtype),
    )


def _zarr_rows(rows: int, stored: tuple[int, ...] | None, axis: int) -> int:
    """Block rows aligned with the store's chunks along N, so no task decompresses a chunk
    that another task reads too: a multiple of the stored chunk, or one stored chunk."""
    if not stored or axis >= len(stored) or stored[axis] < 1:
        return rows
    per_chunk = int(stored[axis])
    return max(1, rows // per_chunk) * per_chunk


def input_array(source: Any, layout: str, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Any:
    """The input as a batch-first dask array, chunked along N only (about `chunk_bytes`
    per chunk, every T and F whole; chunks never straddle two files)."""
    import dask.array as da

    ndim = len(source.shape)
    axis = 1 if layout == "tnf" and ndim == 3 else 0
    shape = tuple(int(s) for s in source.shape)
    shape_ntf = (shape[1], shape[0], *shape[2:]) if axis == 1 else shape
    rows = rows_per_block(shape_ntf, np.dtype(source.dtype).itemsize, chunk_bytes)
    arrays = [_part_array(ref, part, axis, rows) for ref, part in _parts(source)]
    x = arrays[0] if len(arrays) == 1 else da.concatenate(arrays, axis=axis)
    return x.transpose(1, 0, 2) if axis == 1 else x


# ----------------------------------------------------------------------------- masks


def _mask_arrays(spec: MaskSpec, n_chunks: tuple[int, ...]) -> tuple[str, list[Any]]:
    """The validity as dask arrays chunked like the data along N: (kind, [array, index]...)."""
    import dask.array as da

    validity = spec.validity
    if validity is None or validity.is_all_valid:
        return ("value" if spec.mask_value is not None else "none"), []
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
    """`stream.run_plan` on a dask cluster: same arguments, same results.

    Returns the (N, T') output mask of windowed pooling, or None.
    """
    layout = plan.layout if len(plan.in_shape) == 3 else "ntf"
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
    session: Session, sink: Any, out: Any, extra: Any, flags: Any, out_axis: int
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


def _pca_partial(
    x_ntf: Array, validity: Validity | None, mask_value: float | None, f: int
) -> PcaAccumulator:
    """The accumulator of one block's valid steps."""
    acc = PcaAccumulator(f)
    if validity is None and mask_value is not None:
        validity = MaskSpec(mask_value=mask_value).for_block(x_ntf, 0, x_ntf.shape[0])
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
        level.append(partial(block, rows_validity, spec.mask_value, f))
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
