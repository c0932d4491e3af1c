"""Many-to-one kernels: (N, T, F) -> (N, F) over each sample's valid timesteps.

`reduce_steps` takes the last/first valid step or the mean/max/min/sum of the valid steps;
`global_pool` is the masked global average/max pooling built on it. `x` is batch-first and
may be a non-contiguous view (a transposed time-major array) or a `np.memmap`; the
`validity.Validity` says which steps are real data. Padding never reaches a result, even when it
holds NaN or inf.

dtypes (`reduce_dtype`):

- float16/32/64 keep their dtype. Sums and means accumulate in at least float32, so a float16
  mean is right whenever the mean itself fits in float16; a float16 *sum* that exceeds 65504
  is inf, as float16 arithmetic would give.
- integers: mean gives float64; sum, max, min, last and first keep the dtype. A sum is
  accumulated in 64 bits and raises `InputError` if it does not fit the input dtype
  (it never wraps around silently).
- bool is treated as 0/1: mean gives float64, sum int64 (the count of true valid steps),
  max (any), min (all), last and first stay bool.
- complex: last, first, mean and sum keep the dtype; max and min raise `InputError`
  (complex numbers have no order).
- Any other dtype (object, string, datetime) raises `InputError`.

Speed (numbers from bench/bench_kernels.py, float32 (4096, 128, 256), 30% padding): no kernel
makes an (N, T, F) temporary.

- mean/sum: one single-threaded `np.einsum('ntf,nt->nf')` pass (BLAS is not used), ~1.3x
  the speed of an unmasked `x.sum(axis=1)`; a time-major view runs in blocks of samples
  with its mask laid out time-major too (0.9-1.0x the batch-first kernel). Rows whose sum
  is not finite are redone reading valid steps only, so NaN or inf in padding cannot leak in
  through 0 * inf.
- last/first: one index gather, x[arange(N), idx], ~100x faster than a pass over the data.
- max/min, chosen by shape: per-row slices of the valid steps (lengths, F >= 32, thousands of
  elements per row), copied into a small buffer first (~1.6x an unmasked `x.max(axis=1)`);
  per-row boolean compression (holey mask, large rows, ~1.3x); one feature at a time (lengths,
  F <= 8); padding filled block-wise (holey mask, F == 1); else one `where=` reduction.
- float16 is converted to float32 a few rows at a time (float16 arithmetic has no SIMD loops).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.checks import apply_nan_policy
from lstmshape.errors import InputError
from lstmshape.strategies import extremes
from lstmshape.validity import Validity, describe_empty
from lstmshape.vocabulary import (
    EMPTY_POLICIES,
    POOL_OPS,
    STRATEGIES,
    EmptyPolicy,
    NanPolicy,
    PoolOp,
    Strategy,
)

Array = npt.NDArray[Any]
Scalar = bool | int | float


def reduce_shape(shape_ntf: tuple[int, ...], *, keepdims: bool = False) -> tuple[int, ...]:
    """Output shape of `reduce_steps` (and `global_pool`) for a batch-first input shape.

    >>> reduce_shape((8, 10, 4)), reduce_shape((8, 10, 4), keepdims=True)
    ((8, 4), (8, 1, 4))
    """
    shape = tuple(int(size) for size in shape_ntf)
    if len(shape) != 3:
        raise InputError(f"reducing over time needs (N, T, F) data; got shape {shape}")
    n, _, f = shape
    return (n, 1, f) if keepdims else (n, f)


def reduce_dtype(dtype: npt.DTypeLike, strategy: Strategy) -> np.dtype[np.generic]:
    """Output dtype of `reduce_steps` for an input dtype (the rules in the module docstring).

    >>> [str(reduce_dtype(np.int32, s)) for s in ("mean", "sum", "max")]
    ['float64', 'int32', 'int32']
    """
    _check_choice("strategy", strategy, STRATEGIES)
    dt = np.dtype(dtype)
    if dt.kind not in "biufc":
        raise InputError(f"cannot reduce data of dtype {dt}; expected numbers or bool")
    if dt.kind == "c" and strategy in ("max", "min"):
        raise InputError(f"--strategy {strategy} is undefined for complex data ({dt})")
    if strategy == "mean" and dt.kind in "biu":
        return np.dtype(np.float64)
    if strategy == "sum" and dt.kind == "b":
        return np.dtype(np.int64)
    return dt


def reduce_steps(
    x: npt.ArrayLike,
    validity: Validity,
    strategy: Strategy,
    *,
    bidirectional: bool = False,
    keepdims: bool = False,
    empty: EmptyPolicy = "error",
    nan_policy: NanPolicy = "propagate",
) -> Array:
    """Reduce each sample's valid timesteps: (N, T, F) -> (N, F), or (N, 1, F) with keepdims.

    strategy: "last"/"first" take the last/first valid step (the mask may have holes);
        "mean"/"max"/"min"/"sum" reduce over the valid steps only.
    bidirectional: F is even, features [:F/2] are the forward direction and [F/2:] the
        backward one. "last" then takes the forward half at the last valid step and the
        backward half at the FIRST valid step (PyTorch's `h_n` of a packed batch); "first"
        the mirror. mean/max/min/sum act per feature, so for them it changes nothing
        (F must still be even).
    empty: a sample with no valid step raises `InputError` ("error"), or its row is filled
        with NaN ("nan"; float and complex output only) or 0 ("zero").
    nan_policy: NaN in a valid step "propagate"s into the result as arithmetic gives it;
        "omit" treats every step holding a NaN in any feature as padding (so it may empty
        a sample, see `empty`); "raise" raises `InputError` counting the NaN values and
        samples. Padding is never read, whatever it holds. Inf is a number, not NaN.

    >>> x = np.arange(12.0).reshape(2, 3, 2)
    >>> reduce_steps(x, Validity.from_lengths([2, 3], t=3), "last").tolist()
    [[2.0, 3.0], [10.0, 11.0]]
    """
    data = _as_batch(x)
    n, t, f = data.shape
    _check_choice("empty", empty, EMPTY_POLICIES)
    out_dtype = reduce_dtype(data.dtype, strategy)
    _check_validity(validity, n, t)
    if bidirectional and f % 2:
        raise InputError(f"--bidirectional needs an even number of features; got F={f}")
    validity = apply_nan_policy(data, validity, nan_policy)

    empties = validity.empty_samples()
    if empties.size:
        if empty == "error":
            raise InputError(describe_empty(empties))
        if empty == "nan" and out_dtype.kind not in "fc":
            raise InputError(
                f"--empty nan cannot fill {out_dtype} output ({len(empties)} empty samples); "
                "use --empty zero"
            )

    with np.errstate(all="ignore"):  # inf/NaN results are the data's own, not our bugs
        if n == 0 or f == 0 or empties.size == n:
            out = np.zeros((n, f), dtype=out_dtype)
        elif strategy in ("last", "first"):
            out = _take_step(data, validity, strategy, bidirectional)
        elif strategy in ("mean", "sum"):
            out = _mean_or_sum(data, validity, strategy, out_dtype)
        else:
            out = extremes.masked_extreme(data, validity, strategy)
    if empties.size:
        out[empties] = np.nan if empty == "nan" else 0
    return out[:, None, :] if keepdims else out


def global_pool(
    x: npt.ArrayLike,
    validity: Validity,
    op: PoolOp = "avg",
    *,
    empty: EmptyPolicy = "error",
    nan_policy: NanPolicy = "propagate",
) -> Array:
    """Global pooling over valid timesteps: (N, T, F) -> (N, F).

    "avg" equals Keras `GlobalAveragePooling1D` with a mask (sum of valid steps / number of
    valid steps); "max" takes the maximum over valid steps only, so padding never wins
    (Keras's `GlobalMaxPooling1D` ignores masks). dtypes and `empty` as `reduce_steps` with
    strategy "mean" / "max"; `nan_policy` as `reduce_steps`.

    >>> x = np.array([[[1.0], [3.0], [-9.0]]])
    >>> global_pool(x, Validity.from_lengths([2], t=3), "max").tolist()
    [[3.0]]
    """
    return reduce_steps(x, validity, pool_strategy(op), empty=empty, nan_policy=nan_policy)


def pool_strategy(op: str) -> Strategy:
    """The reduction a global pooling op is: avg -> mean, max -> max.

    >>> pool_strategy("avg")
    'mean'
    """
    _check_choice("pooling op", op, POOL_OPS)
    return "mean" if op == "avg" else "max"


def global_pool_shape(shape_ntf: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape of `global_pool`: (N, F).

    >>> global_pool_shape((8, 10, 4))
    (8, 4)
    """
    return reduce_shape(shape_ntf)


# -- checks -------------------------------------------------------------------------------


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")


def _as_batch(x: npt.ArrayLike) -> Array:
    # np.asarray keeps views and memory maps as they are (a memmap becomes a plain view).
    data = np.asarray(x)
    if data.ndim != 3:
        raise InputError(f"reducing over time needs (N, T, F) data; got shape {data.shape}")
    return data


def _check_validity(validity: Validity, n: int, t: int) -> None:
    if (validity.n, validity.t) != (n, t):
        raise InputError(
            f"the mask covers N={validity.n}, T={validity.t} but the data has N={n}, T={t}"
        )


# -- last / first -------------------------------------------------------------------------


def _take_step(data: Array, validity: Validity, strategy: str, bidirectional: bool) -> Array:
    """Gather one step per sample: x[i, idx[i]], with the backward half mirrored if asked."""
    n, _, f = data.shape
    pick, mirror = (
        (validity.last_index, validity.first_index)
        if strategy == "last"
        else (validity.first_index, validity.last_index)
    )
    forward = pick()
    rows = np.arange(n)
    # Empty samples hold -1 (a valid index); their rows are filled afterwards.
    if not bidirectional:
        if data.shape[1] == 1:  # one step (a row gather's): a plain copy, 2x a fancy index
            return data[:, 0].copy()
        return data[rows, forward]
    backward = mirror()
    half = f // 2
    out = np.empty((n, f), dtype=data.dtype)
    out[:, :half] = data[rows, forward, :half]
    out[:, half:] = data[rows, backward, half:]
    return out


# -- mean / sum ---------------------------------------------------------------------------


def _mean_or_sum(data: Array, validity: Validity, strategy: str, out_dtype: np.dtype) -> Array:
    kind = data.dtype.kind
    if kind in "fc":
        acc = np.promote_types(data.dtype, np.float32)
    elif strategy == "mean":
        acc = np.dtype(np.float64)
    else:
        acc = np.dtype(np.uint64 if kind == "u" else np.int64)
    total = _masked_sum(data, validity, acc)
    if strategy == "mean":
        counts = validity.counts()
        total /= np.maximum(counts, 1)[:, None].astype(total.real.dtype)
        return total.astype(out_dtype, copy=False)
    if kind in "iu":
        _check_int_sum(data, validity, total, out_dtype)
    return total.astype(out_dtype, copy=False)


def _masked_sum(data: Array, validity: Validity, acc: np.dtype) -> Array:
    """Sum over valid steps in dtype `acc`, one einsum pass without a full-size temporary."""
    if validity.is_all_valid:
        return np.einsum("ntf->nf", data, dtype=acc)
    valid = validity.as_mask()
    # einsum's inner loop runs along F: with F == 1 casting the mask on the fly is free and
    # saves converting it, otherwise a float mask is 2.5x faster than casting inside.
    weights = valid.view(np.uint8) if data.shape[2] == 1 else _weights_like(data, valid, acc)
    total = _weighted_sum(data, weights, acc)
    if acc.kind in "fc":
        # 0 * NaN and 0 * inf are NaN: padding holding them would poison the einsum, so
        # rows with a non-finite sum are redone reading valid steps only.
        # (`--mask-value nan` makes that every padded row.)
        redo = np.flatnonzero(~np.isfinite(total).all(axis=1))
        if redo.size and extremes.slices_pay(data, validity):

            def add_rows(steps: Array, dest: Array) -> None:
                np.add.reduce(steps, axis=0, dtype=acc, out=dest)

            extremes.row_loop(
                data, redo, extremes.row_slicer(validity), add_rows, total, copy_rows=True
            )
            return total
        _, t, f = data.shape
        rows = max(1, extremes.CACHE_BLOCK_ELEMENTS // max(t * f, 1))
        for start in range(0, len(redo), rows):  # blocks: gathering rows copies them
            idx = redo[start : start + rows]
            total[idx] = np.sum(data[idx], axis=1, where=valid[idx][:, :, None], dtype=acc)
    return total


def _weighted_sum(data: Array, weights: Array, acc: np.dtype) -> Array:
    """einsum('ntf,nt->nf'); a time-major view in blocks of samples whose sums stay in the
    L2 cache: einsum walks it time step by time step, over the whole output each time."""
    n, _, f = data.shape
    rows = max(1, extremes.CACHE_BLOCK_ELEMENTS // max(f, 1))
    if data.strides[0] >= data.strides[1] or n <= rows:
        return np.einsum("ntf,nt->nf", data, weights, dtype=acc)
    total = np.empty((n, f), dtype=acc)
    for start in range(0, n, rows):
        part = slice(start, start + rows)
        np.einsum("ntf,nt->nf", data[part], weights[part], dtype=acc, out=total[part])
    return total


def _weights_like(data: Array, valid: Array, acc: np.dtype) -> Array:
    """The (N, T) mask as `acc` numbers, laid out as `data` is: for a time-major view,
    (T, N) in memory, so einsum walks both in storage order (1.15x on a holey mask)."""
    if data.strides[0] < data.strides[1]:
        return np.ascontiguousarray(valid.T, dtype=acc).T
    return valid.astype(acc)


def _check_int_sum(data: Array, validity: Validity, total: Array, out_dtype: np.dtype) -> None:
    """Refuse integer sums that do not fit the output dtype instead of wrapping around."""
    info = np.iinfo(out_dtype)
    if out_dtype.itemsize == 8:
        # The 64-bit accumulator itself may have wrapped: check with a float64 sum.
        approx = _masked_sum(data, validity, np.dtype(np.float64))
        overflow = bool(np.any(approx > float(info.max)) or np.any(approx < float(info.min)))
    else:
        overflow = bool(total.size) and (total.max() > info.max or total.min() < info.min)
    if overflow:
        raise InputError(
            f"the sum of the valid steps overflows {out_dtype}; use --strategy mean, "
            "or convert the data to a wider dtype first"
        )
