"""The statistics of a comparison, gathered block by block: `DiffAccumulator` -> `DiffReport`.

Each block of whole samples is cut into pieces of about `_PIECE_ELEMENTS` elements, small
enough that the few passes over them (difference, tolerance, per-sample maxima) stay in the
CPU cache. A piece whose elements are all close and finite takes the fast path; any other
(a difference, a NaN, an infinity) is compared again element by element with the exact
rules (`_exact`). Whatever the input size, the state is a few numbers, a histogram of fixed
bins and the `worst` largest differences.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.diffreport import Difference, DiffReport, Tolerance
from lstmshape.errors import InputError

Array = npt.NDArray[Any]
IndexFunction = Callable[[int, int, int], tuple]

_PIECE_ELEMENTS = 1 << 16
#: Upper edges of the per-sample histogram: "0", then (0, 1e-12], (1e-12, 1e-11], ...,
#: (1e11, 1e12], then "> 1e12", "inf", "nan" (a NaN against a number).
_EDGES = np.array([10.0**k for k in range(-12, 13)])
_LABELS = (
    ["0", "(0, 1e-12]"] + [f"(1e{k - 1}, 1e{k}]" for k in range(-11, 13)] + ["> 1e12", "inf", "nan"]
)


def comparison_dtype(dtype_a: npt.DTypeLike, dtype_b: npt.DTypeLike) -> np.dtype[Any]:
    """The dtype both sides are compared in: the wider one, at least float32.

    >>> str(comparison_dtype("float16", "float32")), str(comparison_dtype("int64", "f4"))
    ('float32', 'float64')
    """
    kinds = (np.dtype(dtype_a), np.dtype(dtype_b))
    for dtype in kinds:
        if dtype.kind not in "biuf":
            raise InputError(f"diff compares real numbers; got dtype {dtype}")
    return np.result_type(*kinds, np.float32)


@dataclass(slots=True)
class _Piece:
    """What the kernel found in one piece (s samples): per-sample maxima and flags, the
    counts, and views of its difference buffers (valid until the next piece)."""

    max_abs: Array  # (s,) NaN where no pair of numbers was compared
    max_rel: float  # the piece's largest relative difference (NaN: none)
    max_key: Array  # (s,) like max_abs, +inf where a NaN met a number
    peak: float  # the largest key (NaN: none)
    # key, rel: (s, t, F) |a - b| (+inf for NaN mismatches; padding: 0 or NaN) and
    # |a - b| / |b|, or, from the fast path, a - b and (a - b) / b: signs to drop
    key: Array
    rel: Array
    differs: Array | None = None  # (s,) bool; None: nothing differs
    has_nan: Array | None = None
    counts: tuple[int, int, int] = (0, 0, 0)  # differing elements, steps, NaN mismatches


# The fast path's screen `max(|a - b| / |b|) <= rtol * (1 - _MARGIN)` proves every element
# close without computing the tolerance: the division and the product `rtol * |b|` each
# round by at most 2**-24 (float32), so the margin covers them with room to spare.
_MARGIN = 1e-4


class _Kernel:
    """Compares pieces of (s, t, F) in the comparison dtype, in buffers allocated once.

    Call it under `np.errstate(all="ignore")`: infinities and NaN are expected here.
    """

    def __init__(self, width: int, dtype: np.dtype[Any], tolerance: Tolerance) -> None:
        self.dtype, self.tol = dtype, tolerance
        size = max(_PIECE_ELEMENTS, width)
        self._buffers = [np.empty(size, dtype) for _ in range(5)]  # d, t, r, a, b
        self._ok = np.empty(size, bool)
        self._shaped: dict[tuple[int, ...], list[Array]] = {}
        self._rel_bound = tolerance.rtol * (1 - _MARGIN) if tolerance.rtol > 1e-30 else -1.0

    def _views(self, shape: tuple[int, ...]) -> list[Array]:
        """d, t, r, a, b buffers and the `ok` mask in `shape` (a few shapes recur: cached)."""
        views = self._shaped.get(shape)
        if views is None:
            size = math.prod(shape)
            views = [buf[:size].reshape(shape) for buf in [*self._buffers, self._ok]]
            if len(self._shaped) > 8:
                self._shaped.clear()
            self._shaped[shape] = views
        return views

    def run(self, a: Array, b: Array, invalid: Array | None) -> _Piece:
        """The fast path: every element finite (then close, the usual case, or `_beyond`),
        else `_exact`.

        It makes two passes that write (a - b, then (a - b) / b) and reads each result
        twice (largest and smallest): |x| is the larger of x and -x, and the rounded
        quotient of a - b by b is, but for its sign, that of |a - b| by |b|.
        """
        shape = a.shape
        d, t, r, cast_a, cast_b, ok = self._views(shape)
        if a.dtype != self.dtype:
            np.copyto(cast_a, a, casting="unsafe")
            a = cast_a
        if b.dtype != self.dtype:
            np.copyto(cast_b, b, casting="unsafe")
            b = cast_b
        # the padded steps, as rows of F: assigning rows costs a seventh of a `where=`
        pad = None if invalid is None or not invalid.any() else invalid.reshape(-1)
        np.subtract(a, b, out=d)
        if pad is not None:
            _rows(d)[pad] = 0
        max_abs = _largest_magnitude(d.reshape(shape[0], -1))
        peak = float(max_abs.max())
        if not peak < math.inf:  # NaN or an infinity somewhere
            return self._exact(a, b, d, t, r, pad)
        np.divide(d, b, out=r)  # NaN: 0 / 0 only (padding: 0 / anything)
        largest, smallest = float(np.fmax.reduce(r, axis=None)), float(np.fmin.reduce(r, axis=None))
        max_rel = max(largest, -smallest) + 0.0  # NaN if both are (+ 0.0: never -0.0)
        piece = _Piece(max_abs, max_rel, max_abs, peak, d, r)
        if peak <= self.tol.atol or max_rel <= self._rel_bound:
            return piece
        np.less_equal(np.abs(d, out=d), self._tolerance(np.abs(b, out=t)), out=ok)
        if pad is not None:
            _rows(ok)[pad] = True
        return piece if ok.all() else self._beyond(piece, ok)

    @staticmethod
    def _beyond(piece: _Piece, ok: Array) -> _Piece:
        """Finite values, some beyond the tolerance: which elements, steps and samples."""
        differ: Array = np.logical_not(ok, out=ok)
        steps: Array = np.any(differ, axis=2)
        piece.differs = np.any(steps, axis=1)
        piece.counts = (int(np.count_nonzero(differ)), int(np.count_nonzero(steps)), 0)
        return piece

    def _tolerance(self, t: Array) -> Array:
        """atol + rtol * |b|, in place of |b| (numpy.isclose's expression)."""
        np.multiply(t, self.tol.rtol, out=t)
        return np.add(t, self.tol.atol, out=t)

    def _exact(self, a: Array, b: Array, d: Array, t: Array, r: Array, pad: Array | None) -> _Piece:
        """The rules for a piece holding NaN or infinities: an infinity is close only to
        itself, NaN to nothing (or NaN, with equal_nan)."""
        s = a.shape[0]
        np.abs(np.subtract(a, b, out=d), out=d)
        close = (d <= self._tolerance(np.abs(b, out=t))) & np.isfinite(b)
        same = a == b
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if self.tol.equal_nan:
            same |= nan_a & nan_b
        close |= same
        d[same] = 0
        np.divide(d, np.abs(b), out=r)
        r[same] = 0
        r[np.isinf(d)] = np.inf
        mismatch = (nan_a | nan_b) & ~close
        if pad is not None:
            _rows(close)[pad], _rows(mismatch)[pad] = True, False
            _rows(d)[pad], _rows(r)[pad] = np.nan, np.nan
        key = d.copy()
        key[mismatch] = np.inf
        differ: Array = np.logical_not(close)
        steps: Array = np.any(differ, axis=2)
        max_abs, max_key = (np.fmax.reduce(x.reshape(s, -1), axis=1) for x in (d, key))
        max_rel = float(np.fmax.reduce(r, axis=None))
        counts = (
            int(np.count_nonzero(differ)),
            int(np.count_nonzero(steps)),
            int(np.count_nonzero(mismatch)),
        )
        has_nan: Array = np.any(mismatch.reshape(s, -1), axis=1)
        peak = float(np.fmax.reduce(max_key))
        differs: Array = np.any(steps, axis=1)
        return _Piece(
            max_abs, max_rel, max_key, peak, key, r, differs=differs, has_nan=has_nan, counts=counts
        )


def _largest_magnitude(d: Array) -> Array:
    """max |d| along axis 1 of (s, m) from its largest and smallest values (NaN if any
    is); it may be -0.0 (`DiffAccumulator._add_samples` makes it 0.0)."""
    largest = np.maximum.reduce(d, axis=1)
    smallest = np.minimum.reduce(d, axis=1)
    return np.maximum(largest, np.negative(smallest, out=smallest), out=largest)


def _rows(x: Array) -> Array:
    """(s, t, F) -> (s * t, F): one row per step (a view of the contiguous buffer)."""
    return x.reshape(-1, x.shape[-1])


class _Samples:
    """Per-sample results of one block, folded over its pieces (several along T when a
    sample is larger than a piece), and the block's largest relative difference."""

    def __init__(self, n: int) -> None:
        self.max_abs, self.max_rel = np.full(n, np.nan), math.nan
        self.differs, self.has_nan = np.zeros(n, bool), np.zeros(n, bool)

    def fold(self, lo: int, piece: _Piece, first: bool) -> None:
        hi = lo + len(piece.max_abs)
        if first:
            self.max_abs[lo:hi] = piece.max_abs
        else:
            np.fmax(self.max_abs[lo:hi], piece.max_abs, out=self.max_abs[lo:hi])
        if piece.max_rel > self.max_rel or math.isnan(self.max_rel):
            self.max_rel = piece.max_rel
        if piece.differs is not None:
            self.differs[lo:hi] |= piece.differs
        if piece.has_nan is not None:
            self.has_nan[lo:hi] |= piece.has_nan


class DiffAccumulator:
    """Merges the statistics of blocks of samples into one `DiffReport`.

    shape: the (N, T, F) the comparison sees; dtype: the comparison dtype; worst: how many
    of the largest differences to keep; rank: A's number of axes (3: N, T, F; 2: N, F);
    index_of: (sample, step, feature) of the view -> index into A as stored.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        dtype: np.dtype[Any],
        tolerance: Tolerance,
        *,
        worst: int = 5,
        rank: int = 3,
        index_of: IndexFunction | None = None,
    ) -> None:
        if worst < 0:
            raise InputError(f"--worst must be >= 0; got {worst}")
        self.shape, self.dtype, self.tolerance = shape, np.dtype(dtype), tolerance
        self.rank, self.keep = rank, worst
        self.index_of = index_of or (lambda i, j, k: (i, j, k))
        self._kernel = _Kernel(shape[2], self.dtype, tolerance)
        self.totals = np.zeros(7, np.int64)  # see _TOTALS
        self.max_abs = self.max_rel = math.nan
        self.bins = np.zeros(len(_LABELS), np.int64)
        self.worst: list[tuple[Any, ...]] = []  # (-key, sample, step, feature, a, b, rel)

    def update(self, a: Array, b: Array, validity: Any, start: int) -> None:
        """Compare one block: `a`, `b` (n, T, F) batch-first, samples `start` on;
        `validity` (a masks.Validity of the block, or None: every step is valid)."""
        n, t, f = a.shape
        if f == 0 or t == 0 or n == 0:
            return
        if validity is None or validity.is_all_valid:
            counts, invalid = np.full(n, t, np.intp), None
            first, last = np.zeros(n, np.intp), counts - 1
        else:
            counts, invalid = validity.counts(), ~validity.as_mask()
            first, last = validity.first_index(), validity.last_index()
        self.totals[:3] += (np.count_nonzero(counts), counts.sum(), counts.sum() * f)
        rows, steps = max(1, _PIECE_ELEMENTS // (t * f)), max(1, _PIECE_ELEMENTS // f)
        first = np.where(first < 0, t, first)  # a sample without valid steps spans nothing
        samples = _Samples(n)
        with np.errstate(all="ignore"):
            for lo in range(0, n, rows):
                hi = min(n, lo + rows)
                # only the steps between the first and last valid one of these samples
                span = range(int(first[lo:hi].min()), int(last[lo:hi].max()) + 1)
                for j in range(span.start, span.stop, steps):
                    box = (lo, hi, j, min(span.stop, j + steps))
                    samples.fold(lo, self._piece(a, b, invalid, box, start), j == span.start)
        self._add_samples(samples, counts > 0)

    def _piece(
        self, a: Array, b: Array, invalid: Array | None, box: tuple[int, int, int, int], start: int
    ) -> _Piece:
        lo, hi, j0, j1 = box
        a_piece, b_piece = a[lo:hi, j0:j1], b[lo:hi, j0:j1]
        pad = None if invalid is None else invalid[lo:hi, j0:j1]
        piece = self._kernel.run(a_piece, b_piece, pad)
        if piece.differs is not None:
            self.totals[3:6] += piece.counts
        if self.keep and piece.peak > self._threshold():
            self._update_worst(piece, a_piece, b_piece, start + lo, j0)
        return piece

    def _add_samples(self, samples: _Samples, compared: Array) -> None:
        """The block's per-sample results: maxima, histogram, differing samples."""
        peaks = samples.max_abs[compared] + 0.0  # + 0.0: -0.0 (0 - 0) as 0.0
        self.max_abs = float(np.fmax(self.max_abs, np.fmax.reduce(peaks, initial=np.nan)))
        # samples without a compared step hold no relative difference above 0 (their
        # differences are 0 or NaN), and the report's is at least 0
        self.max_rel = float(np.fmax(self.max_rel, samples.max_rel))
        self.totals[6] += np.count_nonzero(samples.differs & compared)
        bins = np.where(peaks == 0, 0, np.searchsorted(_EDGES, peaks, side="left") + 1)
        bins[np.isinf(peaks)] = len(_LABELS) - 2
        bins[samples.has_nan[compared]] = len(_LABELS) - 1
        self.bins += np.bincount(bins, minlength=len(_LABELS))

    def _threshold(self) -> float:
        """What a difference must exceed to be listed (equal elements never are)."""
        return -self.worst[-1][0] if len(self.worst) >= self.keep else 0.0

    def _update_worst(self, piece: _Piece, a: Array, b: Array, first: int, step0: int) -> None:
        """Keep the `keep` largest nonzero differences: larger first, then by position."""
        threshold = self._threshold()
        samples = np.flatnonzero(piece.max_key > threshold)
        if not samples.size:
            return
        keys = np.abs(piece.key[samples].reshape(-1))
        found = np.flatnonzero(keys > threshold)
        if found.size > self.keep:
            kth = np.partition(keys[found], found.size - self.keep)[found.size - self.keep]
            found = found[keys[found] >= kth]
        order = found[np.lexsort((found, -keys[found]))][: self.keep]
        _, t, f = piece.key.shape
        for flat in order.tolist():
            i, j, k = samples[flat // (t * f)], flat // f % t, flat % f
            entry = (-float(keys[flat]), first + int(i), step0 + j, k)
            values = (float(a[i, j, k]), float(b[i, j, k]), abs(float(piece.rel[i, j, k])))
            self.worst.append((*entry, *values))
        self.worst.sort(key=lambda e: e[:4])
        del self.worst[self.keep :]

    def merge(self, other: DiffAccumulator) -> None:
        """Add the statistics of another accumulator (of other samples) to this one."""
        self.totals += other.totals
        self.bins += other.bins
        self.max_abs = float(np.fmax(self.max_abs, other.max_abs))
        self.max_rel = float(np.fmax(self.max_rel, other.max_rel))
        self.worst = sorted(self.worst + other.worst, key=lambda e: e[:4])[: self.keep]

    def finish(self) -> DiffReport:
        samples, steps, elements, diff_elements, diff_steps, nans, diff_samples = (
            int(x) for x in self.totals
        )
        decades = np.flatnonzero(self.bins[1:-2]) + 1
        span = range(decades[0], decades[-1] + 1) if decades.size else range(0)
        special = [i for i in (0, len(_LABELS) - 2, len(_LABELS) - 1) if self.bins[i]]
        shown = sorted({*span, *special})
        return DiffReport(
            tolerance=self.tolerance,
            compared_dtype=str(self.dtype),
            has_time=self.rank == 3,
            samples=samples,
            steps=steps,
            elements=elements,
            differing_samples=diff_samples,
            differing_steps=diff_steps,
            differing_elements=diff_elements,
            nan_mismatches=nans,
            max_abs_diff=None if math.isnan(self.max_abs) else self.max_abs,
            # NaN: every pair of numbers was 0 and 0 (0 / 0), a relative difference of 0
            max_rel_diff=None if math.isnan(self.max_abs) else float(np.fmax(self.max_rel, 0)),
            worst=tuple(self._difference(entry) for entry in self.worst),
            histogram=tuple((_LABELS[i], int(self.bins[i])) for i in shown),
        )

    def _difference(self, entry: tuple[Any, ...]) -> Difference:
        negative_key, i, j, k, a, b, rel = entry
        nan_mismatch = math.isnan(a) or math.isnan(b)  # its key is +inf unless equal_nan
        return Difference(
            sample=i,
            step=j if self.rank == 3 else None,
            feature=k if self.rank in (2, 3) else None,
            index=self.index_of(i, j, k),
            a=a,
            b=b,
            abs_diff=math.nan if nan_mismatch and negative_key else -negative_key,
            rel_diff=rel,
        )
