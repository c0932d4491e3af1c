"""Reductions over valid steps as running folds along the time rows of a (T, N, F) array.

A time-major file keeps each time step of every sample together: its time rows are one
contiguous run, while a block of whole samples is T short runs (a copy each). `TimeFold`
takes pieces of time rows in any order along N but in time order, keeps each sample's
running sum or extreme, and at the end gives what `reduce.reduce_steps` gives for the same
strategy: max/min bit for bit; a sum adds a sample's valid steps in time order starting
from zero, as the kernel's masked einsum does (its 0/1 weights add nothing else), so bit
for bit there too. The kernel's other sums (an unmasked input, F == 1, rows redone because
padding made them non-finite) may add in another order: the last bit may differ.

Padding never reaches a result, whatever it holds (NaN, inf): with lengths, a sample's
running value is copied out right after its last valid step (post-padding) or restarted
right before its first (pre-padding); with a mask with holes, a row piece is added only
where it is valid (`where=`, a plain add where every sample of the piece is valid).

Only float32 and float64 data and the "propagate" NaN policy are folded (`foldable`); every
other case keeps the kernels of `reduce`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.strategies.extremes import identity
from lstmshape.validity import Validity

Array = npt.NDArray[Any]

FOLDS = ("mean", "sum", "max", "min")
_UFUNCS = {"mean": np.add, "sum": np.add, "max": np.maximum, "min": np.minimum}


def foldable(strategy: str | None, dtype: npt.DTypeLike) -> bool:
    """Whether `TimeFold` gives `reduce_steps`'s result for this strategy and dtype.

    >>> foldable("mean", "float32"), foldable("mean", "int32"), foldable("last", "float64")
    (True, False, False)
    """
    dt = np.dtype(dtype)
    return strategy in FOLDS and dt.kind == "f" and dt.itemsize in (4, 8)


class TimeFold:
    """The running reduction of N samples' valid steps, fed time row by time row.

    `add(t, lo, rows)` takes rows (hi - lo, F) of time step t for samples lo..hi; every
    piece of step t must come before any of step t + 1. `finish` gives the (N, F) result.
    """

    def __init__(self, strategy: str, validity: Validity, f: int, dtype: npt.DTypeLike) -> None:
        self.strategy = strategy
        self.validity = validity
        self.dtype = np.dtype(dtype)
        self._ufunc = _UFUNCS[strategy]
        self._start = identity(self.dtype, strategy) if strategy in ("max", "min") else 0
        n, t = validity.n, validity.t
        self.acc = np.full((n, f), self._start, dtype=self.dtype)
        self.result = self.acc
        self._events: tuple[Array, Array] | None = None
        self._mask_tn: Array | None = None
        self._valid_per_step: Array | None = None
        if validity.lengths is not None:
            lengths = validity.lengths.astype(np.int64)
            # Post-padding: a sample's value is taken after step L - 1; pre: restarted at T - L.
            step = lengths - 1 if validity.pad_side == "post" else t - lengths
            order = np.argsort(step, kind="stable")  # by step, then by sample
            bounds = np.searchsorted(step[order], np.arange(t + 1))
            self._events = (order.astype(np.intp), bounds)
            if validity.pad_side == "post":
                self.result = np.zeros((n, f), dtype=self.dtype)
        elif validity.mask is not None:
            self._mask_tn = np.ascontiguousarray(validity.mask.T)

    def add(self, t: int, lo: int, rows: Array) -> None:
        with np.errstate(all="ignore"):  # inf/NaN results are the data's own
            self._add(t, lo, rows)

    def _add(self, t: int, lo: int, rows: Array) -> None:
        hi = lo + len(rows)
        acc = self.acc[lo:hi]
        if self._events is None:
            self._add_masked(t, lo, hi, acc, rows)
            return
        post = self.validity.pad_side == "post"
        picked = self._event_samples(t, lo, hi)
        if not post and picked.size:
            self.acc[picked] = self._start
        self._ufunc(acc, rows, out=acc)
        if post and picked.size:
            self.result[picked] = self.acc[picked]

    def _add_masked(self, t: int, lo: int, hi: int, acc: Array, rows: Array) -> None:
        if self._mask_tn is None:
            self._ufunc(acc, rows, out=acc)
            return
        valid = self._mask_tn[t, lo:hi]
        count = int(np.count_nonzero(valid))
        if count == hi - lo:
            self._ufunc(acc, rows, out=acc)
        elif count:
            self._ufunc(acc, rows, out=acc, where=valid[:, None])

    def _event_samples(self, t: int, lo: int, hi: int) -> Array:
        """The samples in lo..hi whose value is taken (post) or restarted (pre) at step t."""
        assert self._events is not None
        order, bounds = self._events
        at_t = order[bounds[t] : bounds[t + 1]]
        if not at_t.size:
            return at_t
        first, last = np.searchsorted(at_t, (lo, hi))
        return at_t[first:last]

    def finish(self, empty: str) -> Array:
        """The (N, F) result; samples without a valid step hold NaN (`empty` "nan") or 0."""
        out = self.result
        counts = self.validity.counts()
        if self.strategy == "mean":
            with np.errstate(all="ignore"):
                out /= np.maximum(counts, 1)[:, None].astype(out.dtype)
        empties = np.flatnonzero(counts == 0)
        if empties.size:
            out[empties] = np.nan if empty == "nan" else 0
        return out
