"""Windowed pooling over time: Keras ``AveragePooling1D`` / ``MaxPooling1D`` placement.

Output length and window placement follow Keras on the TensorFlow and JAX backends
(``keras.src.ops.operation_utils.compute_pooling_output_shape`` and XLA ``SAME`` padding):

- ``padding="valid"``: ``T' = (T - P) // S + 1``; window ``j`` covers ``[j*S, j*S + P)``.
  The trailing steps that do not fill a whole window are dropped. ``P > T`` is an error.
- ``padding="same"``: ``T' = ceil(T / S)``; the window is shifted left by
  ``pad_before = pad_total // 2`` with ``pad_total = max((T' - 1)*S + P - T, 0)`` (the odd
  extra padding step goes after the sequence), so window ``j`` covers
  ``[j*S - pad_before, j*S - pad_before + P)`` clipped to ``[0, T)``.

Positions outside the sequence never count: an ``avg`` window at the edge averages only its
in-range positions (as Keras/TF/JAX do for ``same``), and ``max`` never sees them.

With a mask (`Validity`), a window averages / maxes over its *valid* steps only. The output
mask marks a window valid when it holds at least one valid step. A window without any valid
step (possible only with a mask) holds **0** (in the output dtype) and is marked invalid.

dtypes: float16/32/64 keep their dtype; integer ``avg`` gives float64; ``max`` keeps the input
dtype. Window sums accumulate in float64, except long windows of float16/32 data (P well above
S), which add pairwise in float32 (log2(P) deep, so a few float32 ulps at most).

Cost: short windows reduce a strided (N, T', F, P) view (~P/S passes over the data); long
ones use doubling, sums/maxes over 1, 2, 4, ... steps (~log2(P) passes). A NaN in a valid
step only reaches the windows that hold it.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from lstmshape.checks import apply_nan_policy, check_nan_policy
from lstmshape.errors import InputError
from lstmshape.validity import Validity, checked_mask
from lstmshape.vocabulary import PADDINGS, POOL_OPS, NanPolicy, Padding, PoolOp

__all__ = [
    "PADDINGS",
    "POOL_OPS",
    "pool_windows",
    "pool_windows_shape",
    "window_bounds",
    "window_shape",
]


def _positive_int(value: object, name: str) -> int:
    """`value` as an int >= 1, else InputError naming the option."""
    if isinstance(value, bool):
        raise InputError(f"{name} must be a positive integer; got {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InputError(f"{name} must be a positive integer; got {value!r}") from None
    if number < 1:
        raise InputError(f"{name} must be a positive integer (>= 1); got {number}")
    return number


def _check_padding(padding: str) -> str:
    mode = str(padding).lower()
    if mode not in PADDINGS:
        raise InputError(f"padding must be one of {', '.join(PADDINGS)}; got {padding!r}")
    return mode


def _resolve(
    t: int, pool_size: int, strides: int | None, padding: str
) -> tuple[int, int, str, int, int]:
    """Checked (P, S, padding, T', pad_before)."""
    p = _positive_int(pool_size, "pool size")
    s = p if strides is None else _positive_int(strides, "strides")
    mode = _check_padding(padding)
    t = operator.index(t)
    if t < 0:
        raise InputError(f"T must be non-negative; got {t}")
    if mode == "valid":
        if p > t:
            raise InputError(
                f"pool size {p} exceeds T={t} timesteps with --padding valid; use --padding same"
            )
        return p, s, mode, (t - p) // s + 1, 0
    t_out = -(-t // s)  # ceil(T / S); 0 when T == 0
    pad_total = max((t_out - 1) * s + p - t, 0)
    return p, s, mode, t_out, pad_total // 2


def window_shape(
    t: int, pool_size: int, strides: int | None = None, padding: Padding | str = "valid"
) -> int:
    """Number of windows T' along time, as Keras ``AveragePooling1D`` computes it.

    ``strides`` defaults to ``pool_size``.

    >>> window_shape(10, 3, 2), window_shape(10, 3, 2, "same"), window_shape(5, 2, 1, "same")
    (4, 5, 5)
    """
    return _resolve(t, pool_size, strides, padding)[3]


def pool_windows_shape(
    shape: tuple[int, ...],
    pool_size: int,
    strides: int | None = None,
    padding: Padding | str = "valid",
) -> tuple[int, int, int]:
    """Output shape (N, T', F) of `pool_windows` for an (N, T, F) input shape, without data.

    >>> pool_windows_shape((8, 10, 4), 3, 2, "same")
    (8, 5, 4)
    """
    if len(shape) != 3:
        raise InputError(f"windowed pooling needs (N, T, F) data; got shape {tuple(shape)}")
    n, t, f = (int(d) for d in shape)
    return n, window_shape(t, pool_size, strides, padding), f


def pool_windows_dtype(dtype: npt.DTypeLike, op: str) -> np.dtype[Any]:
    """Output dtype of `pool_windows`: the input's, but float64 for avg of integers.

    >>> str(pool_windows_dtype("int16", "avg")), str(pool_windows_dtype("int16", "max"))
    ('float64', 'int16')
    """
    dt = np.dtype(dtype)
    if not (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
        raise InputError(f"windowed pooling needs numeric data; got dtype {dt}")
    if op not in POOL_OPS:
        raise InputError(f"pool op must be one of {', '.join(POOL_OPS)}; got {op!r}")
    return dt if (op == "max" or np.issubdtype(dt, np.floating)) else np.dtype(np.float64)


def window_bounds(
    t: int, pool_size: int, strides: int | None = None, padding: Padding | str = "valid"
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """In-range ``[start, stop)`` of every window, each of shape (T',).

    >>> starts, stops = window_bounds(5, 2, 1, "same")
    >>> starts.tolist(), stops.tolist()
    ([0, 1, 2, 3, 4], [2, 3, 4, 5, 5])
    """
    p, s, _, t_out, pad_before = _resolve(t, pool_size, strides, padding)
    raw = np.arange(t_out, dtype=np.intp) * s - pad_before
    return np.clip(raw, 0, t), np.clip(raw + p, 0, t)


def pool_windows(
    x: npt.ArrayLike,
    validity: Validity | None = None,
    op: PoolOp | str = "avg",
    pool_size: int = 2,
    strides: int | None = None,
    padding: Padding | str = "valid",
    nan_policy: NanPolicy | str = "propagate",
) -> tuple[np.ndarray, npt.NDArray[np.bool_]]:
    """Windowed pooling over time of (N, T, F) data: returns ((N, T', F), (N, T') out-mask).

    Keras ``AveragePooling1D`` / ``MaxPooling1D`` placement (``pool_size`` defaults to 2 and
    ``strides`` to ``pool_size``, as in Keras); only in-range, valid steps count. A window
    with no valid step holds 0 and is False in the out-mask.

    ``nan_policy``: NaN in a valid step "propagate"s to the windows holding it; "omit"
    treats every step holding a NaN in any feature as padding (the out-mask shows windows
    left without a valid step); "raise" raises `InputError` counting NaN values and samples.

    >>> x = np.arange(5.0).reshape(1, 5, 1)
    >>> out, valid = pool_windows(x, None, "avg", 2, 1, "same")
    >>> out[0, :, 0].tolist(), bool(valid.all())
    ([0.5, 1.5, 2.5, 3.5, 4.0], True)
    >>> v = Validity.from_lengths([3], t=5)
    >>> out, valid = pool_windows(x, v, "max", 2)
    >>> out[0, :, 0].tolist(), valid.tolist()
    ([1.0, 2.0], [[True, True]])
    """
    data = np.asarray(x)
    if data.ndim != 3:
        raise InputError(f"windowed pooling needs (N, T, F) data; got shape {data.shape}")
    out_dtype = pool_windows_dtype(data.dtype, op)
    n, t, f = data.shape
    p, s, _, t_out, pad_before = _resolve(t, pool_size, strides, padding)
    check_nan_policy(nan_policy)
    if nan_policy != "propagate":
        validity = Validity.all_valid(n, t) if validity is None else validity
        checked_mask(validity, n, t)  # the shape check, before the data is scanned
        validity = apply_nan_policy(data, validity, nan_policy)
    mask = checked_mask(validity, n, t)

    is_float = np.issubdtype(data.dtype, np.floating)
    if t_out == 0 or n == 0:
        return np.zeros((n, t_out, f), out_dtype), np.zeros((n, t_out), bool)

    span = (t_out - 1) * s + p  # padded length the windows cover
    pad_after = max(span - pad_before - t, 0)
    if op == "avg":
        fill: int | float = 0
    elif is_float:
        fill = -np.inf
    else:
        fill = np.iinfo(data.dtype).min

    if mask is None and pad_before == 0 and pad_after == 0:
        padded = data
    else:
        # One (N, T + pad, F) copy in the input dtype: out-of-range and masked steps hold
        # the neutral element of the reduction (0 for sums, -inf / dtype min for max).
        padded = np.full((n, pad_before + t + pad_after, f), fill, dtype=data.dtype)
        inner = padded[:, pad_before : pad_before + t]
        if mask is None:
            inner[...] = data
        else:
            np.copyto(inner, data, where=mask[:, :, None])

    padded = padded[:, :span]

    # Per-window count of in-range valid steps.
    if mask is None:
        starts = np.arange(t_out) * s - pad_before
        counts = np.clip(starts + p, 0, t) - np.clip(starts, 0, t)  # (T',) always >= 1
        out_valid = np.ones((n, t_out), dtype=bool)
        has_any = None
    else:
        # Exact integer prefix sums of the padded mask.
        prefix = np.zeros((n, pad_before + t + pad_after + 1), dtype=np.intp)
        np.cumsum(mask, axis=1, out=prefix[:, pad_before + 1 : pad_before + t + 1])
        prefix[:, pad_before + t + 1 :] = prefix[:, pad_before + t : pad_before + t + 1]
        window_starts = np.arange(t_out) * s
        counts = prefix[:, window_starts + p] - prefix[:, window_starts]  # (N, T')
        out_valid = counts > 0
        has_any = out_valid[:, :, None]

    if op == "avg":
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is the data's own NaN
            sums = _window_sums(padded, p, s, t_out)
            denom = counts[:, :, None] if counts.ndim == 2 else counts[None, :, None]
            result = np.zeros_like(sums)
            np.divide(sums, denom, out=result, where=denom > 0)
            return result.astype(out_dtype, copy=False), out_valid

    result = _window_maxes(padded, p, s, t_out)
    if has_any is not None:
        result = np.where(has_any, result, np.zeros((), dtype=out_dtype))
    return result.astype(out_dtype, copy=False), out_valid


# Two vectorized ways to reduce every window of P consecutive steps (taken every S steps):
# - a strided (N, T', F, P) view reduced over its last axis: ~P/S passes over the data;
# - doubling: sums/maxes over 1, 2, 4, ... steps built from the previous level, so a window
#   of P costs ~log2(P) full passes whatever the stride. Sums keep pairwise-like float64
#   accuracy and a NaN only reaches the windows that hold it (unlike prefix sums).
# The cheaper one is picked from those pass counts.


def _use_doubling(p: int, s: int, passes: int) -> bool:
    return p > 2 * s and p / s > passes


def _window_sums(padded: np.ndarray, p: int, s: int, t_out: int) -> npt.NDArray[np.floating]:
    """Sums of padded[:, j*S : j*S + P] for j < T', shape (N, T', F).

    The strided view sums in float64. Doubling adds pairwise in float32 for float16/32 input
    (a depth of log2(P) additions keeps a few ulps of float32) and in float64 otherwise, in
    two ping-pong buffers so no level allocates.
    """
    span = padded.shape[1]
    if not _use_doubling(p, s, p.bit_length() - 1 + p.bit_count()):
        windows = sliding_window_view(padded, p, axis=1)[:, ::s]  # (N, T', F, P) view
        return windows.sum(axis=-1, dtype=np.float64)
    acc = np.float32 if padded.dtype in (np.float16, np.float32) else np.float64
    n_starts = span - p + 1
    level: npt.NDArray[np.floating] = padded.astype(
        acc
    )  # level[:, i] = sum of `width` steps from i, i < valid
    spare = np.empty_like(level)
    width, offset, remaining, valid = 1, 0, p, span
    total: npt.NDArray[np.floating] | None = None
    while True:
        if remaining & 1:
            piece = level[:, offset : offset + n_starts]
            total = piece.copy() if total is None else np.add(total, piece, out=total)
            offset += width
        remaining >>= 1
        if not remaining:
            break
        np.add(level[:, : valid - width], level[:, width:valid], out=spare[:, : valid - width])
        level, spare = spare, level
        valid -= width
        width *= 2
    assert total is not None
    return total[:, ::s][:, :t_out]


def _window_maxes(padded: np.ndarray, p: int, s: int, t_out: int) -> np.ndarray:
    """Maxes of padded[:, j*S : j*S + P] for j < T', shape (N, T', F), input dtype."""
    span = padded.shape[1]
    if not _use_doubling(p, s, p.bit_length()):
        return sliding_window_view(padded, p, axis=1)[:, ::s].max(axis=-1)
    n_starts = span - p + 1
    level, width = padded, 1  # level[:, i] = max of `width` steps from i
    while 2 * width <= p:
        level = np.maximum(level[:, :-width], level[:, width:])
        width *= 2
    # max is idempotent: two overlapping power-of-two windows cover P exactly.
    result = np.maximum(level[:, :n_starts], level[:, p - width : p - width + n_starts])
    return result[:, ::s][:, :t_out]
