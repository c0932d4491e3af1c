"""What `inspect` reports about one array: shape, dtype, size, padding, valid lengths, NaN/Inf.

What it reads: every element exactly once, in one pass, as blocks `x[i:j]` along axis 0 of
about 16 MiB each (`block_bytes`): blocks of samples for ntf data, blocks of timesteps for
tnf data (never less than one timestep, N*F elements). Arrays with nothing to find in their
values (integer or bool data that is not a 3-D integer output) are not read at all. It
touches nothing but `x.shape`, `x.dtype` and `x[i:j]` (or `x.read(i, j)`, as `io.ArraySource`
offers), so an `np.ndarray`, an `np.memmap`, an `h5py.Dataset` or an open `ArraySource` all
work. Memory stays bounded on multi-GB input: one block, a few boolean temporaries of the
block's size, and O(N) per-sample counters (for tnf also the previous timestep, N*F values).
About 1 GB/s on one core for float32 (measured on a 1 GiB memory-mapped file: ~40 MiB of
heap for either layout).

How padding is found, for 3-D integer or float data:

- value padding: a *constant* step has all its features equal to one value (NaN equals NaN).
  Each sample's leading and trailing runs of constant steps with one value are counted; the
  pad value is the most common value among those runs. A sample padded only at the end is
  "post", only at the start "pre"; a batch with both is "mixed". Keras `Masking` semantics.
- repeat padding (when no value padding is found): trailing steps equal to the sample's last
  step, all features exactly, as a masked Keras LSTM writes its previous output into padded
  slots. A sample whose real last outputs repeat exactly cannot be told apart.

With a single feature every step is constant, so a value needs runs in two samples to count.
Bool data and arrays of another rank get shape, dtype, size and NaN/Inf counts only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, cast

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError
from lstmshape.refs import ArrayRef

Side = Literal["post", "pre", "mixed", "none"]
Kind = Literal["value", "repeat", "none"]
IndexArray = npt.NDArray[np.intp]

BLOCK_BYTES = 16 * 2**20
HISTOGRAM_BINS = 8
NO_TIMESTEPS = "no timesteps: every sample is empty"


class Sliceable(Protocol):
    """What `inspect_array` needs: a shape, a dtype, and `x[i:j]` or `x.read(i, j)`."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype[Any]: ...


Compare = Callable[[Any, Any], npt.NDArray[np.bool_]]


# --- the report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Padding:
    """Detected padding. `value` is the pad value (kind "value"), NaN included."""

    kind: Kind
    side: Side
    value: float | int | None = None
    padded_samples: int = 0
    padded_steps: int = 0
    empty_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "side": self.side,
            "value": json_scalar(self.value),
            "padded_samples": self.padded_samples,
            "padded_steps": self.padded_steps,
            "empty_samples": self.empty_samples,
        }


@dataclass(frozen=True)
class Lengths:
    """Valid steps per sample: summary, an 8-bin histogram over [0, T], and every length.

    >>> s = Lengths.of(np.array([1, 3, 3, 4]), t=4)
    >>> s.min, s.median, s.max, s.histogram
    (1, 3.0, 4, (0, 1, 0, 2, 1))
    """

    min: int
    median: float
    max: int
    histogram: tuple[int, ...]
    histogram_edges: tuple[float, ...]
    values: IndexArray = field(repr=False, compare=False)

    @classmethod
    def of(cls, values: IndexArray, t: int) -> Lengths:
        counts, edges = length_histogram(values, t)
        return cls(
            min=int(values.min()),
            median=float(np.median(values)),
            max=int(values.max()),
            histogram=tuple(int(c) for c in counts),
            histogram_edges=tuple(float(e) for e in edges),
            values=values,
        )

    def to_dict(self, *, include_values: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "min": self.min,
            "median": self.median,
            "max": self.max,
            "histogram": list(self.histogram),
            "histogram_edges": list(self.histogram_edges),
        }
        if include_values:
            out["values"] = self.values.tolist()
        return out


@dataclass(frozen=True)
class Report:
    """Everything `inspect` says about one array.

    `layout`, `n`, `t`, `f`, `padding` and `lengths` are None unless the array is 3-D
    (`padding`/`lengths` also for bool data, no samples or no features). NaN/Inf counts are 0
    for non-float data.

    >>> r = inspect_array(np.array([[[1.0, 2.0], [0.0, 0.0]]]))
    >>> r.padding.side, r.padding.value, r.lengths.values.tolist()
    ('post', 0.0, [1])
    """

    shape: tuple[int, ...]
    dtype: str
    ndim: int
    size: int
    nbytes: int
    layout: str | None = None
    n: int | None = None
    t: int | None = None
    f: int | None = None
    nan_count: int = 0
    inf_count: int = 0
    padding: Padding | None = None
    lengths: Lengths | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self, *, include_lengths: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (non-finite pad values as "nan", "inf", "-inf").

        `include_lengths` adds every sample's valid length under `lengths.values`.
        """
        return {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "ndim": self.ndim,
            "size": self.size,
            "nbytes": self.nbytes,
            "layout": self.layout,
            "n": self.n,
            "t": self.t,
            "f": self.f,
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
            "padding": None if self.padding is None else self.padding.to_dict(),
            "lengths": None
            if self.lengths is None
            else self.lengths.to_dict(include_values=include_lengths),
            "notes": list(self.notes),
        }


def json_scalar(value: float | int | None) -> float | int | str | None:
    """A number JSON can hold: NaN and infinities become strings.

    >>> json_scalar(float("nan")), json_scalar(-np.inf), json_scalar(0.5)
    ('nan', '-inf', 0.5)
    """
    if isinstance(value, float) and not np.isfinite(value):
        return "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def length_histogram(values: IndexArray, t: int, bins: int = HISTOGRAM_BINS) -> tuple[Any, Any]:
    """Counts of `values` in up to `bins` equal bins over [0, T] (the last bin includes T)."""
    if t == 0:
        return np.array([values.size]), np.array([0.0, 0.0])
    return np.histogram(values, bins=min(bins, t + 1), range=(0, t))


# --- the public entry point ----------------------------------------------------------------


def inspect_array(
    x: Sliceable | npt.ArrayLike,
    *,
    layout: str = "ntf",
    block_rows: int | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> Report:
    """Inspect `x` in one bounded-memory pass (see the module docstring for what is read).

    Args:
        x: an array, memory map, h5py Dataset or `io.ArraySource`; only its shape, dtype and
            `x[i:j]` (or `x.read(i, j)`) are used. Anything else goes through `np.asarray`.
        layout: "ntf" (batch-first) or "tnf" (time-major); used for 3-D arrays only.
        block_rows: entries along axis 0 per block; by default as many as fit `block_bytes`.
        block_bytes: target block size when `block_rows` is not given.

    >>> inspect_array(np.zeros((2, 3), np.int8)).to_dict()["shape"]
    [2, 3]
    """
    if layout not in ("ntf", "tnf"):
        raise InputError(f"layout must be 'ntf' or 'tnf'; got {layout!r}")
    source = cast(Sliceable, x) if hasattr(x, "shape") and hasattr(x, "dtype") else np.asarray(x)
    shape = tuple(int(s) for s in source.shape)
    dtype = np.dtype(source.dtype)
    rows = block_rows or rows_per_block(shape, dtype.itemsize, block_bytes)
    if rows < 1:
        raise InputError(f"block_rows must be at least 1; got {rows}")
    base = _base_fields(shape, dtype)
    if len(shape) != 3:
        nan, inf = _count_nonfinite(source, rows, dtype)
        return Report(**base, nan_count=nan, inf_count=inf)
    return _inspect_3d(source, shape, dtype, layout, rows, base)


def rows_per_block(shape: tuple[int, ...], itemsize: int, block_bytes: int = BLOCK_BYTES) -> int:
    """How many entries along axis 0 make a block of about `block_bytes` (at least 1).

    >>> rows_per_block((1000, 40, 16), 4, 2**20)
    409
    """
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * itemsize if shape else itemsize
    if row_bytes == 0:
        return max(shape[0], 1)
    return max(block_bytes // row_bytes, 1)


def _base_fields(shape: tuple[int, ...], dtype: np.dtype[Any]) -> dict[str, Any]:
    size = int(np.prod(shape, dtype=np.int64))
    return {
        "shape": shape,
        "dtype": str(dtype),
        "ndim": len(shape),
        "size": size,
        "nbytes": size * dtype.itemsize,
    }


@dataclass(frozen=True)
class Unwritten:
    """A block that storage never wrote (it reads as `value` throughout), not read."""

    shape: tuple[int, ...]
    value: Any

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


Block = np.ndarray | Unwritten


def _blocks(x: Sliceable, rows: int) -> Iterator[tuple[int, Block]]:
    """(start, block) along axis 0; a 0-d array is one block. Blocks the source says were
    never written (`unwritten`, e.g. HDF5 chunks never allocated) are not read."""
    if len(x.shape) == 0:
        yield 0, _read(x, None)
        return
    unwritten = getattr(x, "unwritten", None)
    for start in range(0, x.shape[0], rows):
        stop = min(start + rows, x.shape[0])
        fill = unwritten(start, stop) if unwritten is not None else None
        if fill is not None:
            yield start, Unwritten((stop - start, *x.shape[1:]), fill)
        else:
            yield start, _read(x, slice(start, stop))


def _read(x: Any, rows: slice | None) -> np.ndarray:
    """`x[rows]` (`x[()]` for None), or `x.read(i, j)`/`x.read_all()` on an `io.ArraySource`."""
    if hasattr(x, "__getitem__"):
        return np.asarray(x[() if rows is None else rows])
    return np.asarray(x.read_all() if rows is None else x.read(rows.start, rows.stop))


def _count_nonfinite(x: Sliceable, rows: int, dtype: np.dtype[Any]) -> tuple[int, int]:
    """NaN and Inf counts over the whole array; only float/complex data is read."""
    if dtype.kind not in "fc":
        return 0, 0
    nan = inf = 0
    for _, block in _blocks(x, rows):
        block_nan, block_inf = nonfinite_counts(block)
        nan, inf = nan + block_nan, inf + block_inf
    return nan, inf


def nonfinite_counts(block: Block) -> tuple[int, int]:
    """(NaN count, Inf count) of a float block; one pass when everything is finite.

    >>> nonfinite_counts(np.array([1.0, np.nan, -np.inf, np.inf]))
    (1, 2)
    """
    if isinstance(block, Unwritten):
        one = np.asarray(block.value)
        nan, inf = nonfinite_counts(one.reshape(1)) if one.dtype.kind in "fc" else (0, 0)
        return nan * block.size, inf * block.size
    if block.dtype.kind not in "fc":
        return 0, 0
    nonfinite = block.size - int(np.count_nonzero(np.isfinite(block)))
    if nonfinite == 0:
        return 0, 0
    nan = int(np.count_nonzero(np.isnan(block)))
    return nan, nonfinite - nan


# --- 3-D: one pass collecting per-sample runs ----------------------------------------------


def _inspect_3d(
    x: Sliceable,
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    layout: str,
    rows: int,
    base: dict[str, Any],
) -> Report:
    n, t, f = (shape[1], shape[0], shape[2]) if layout == "tnf" else shape
    dims: dict[str, Any] = {"layout": layout, "n": n, "t": t, "f": f}
    skip = _why_no_padding(dtype, n, t, f)
    if skip is not None:
        nan, inf = _count_nonfinite(x, rows, dtype)
        report = Report(**base, **dims, nan_count=nan, inf_count=inf, notes=(skip,))
        if skip == NO_TIMESTEPS:  # every sample is empty, which is a definite answer
            lengths = Lengths.of(np.zeros(n, np.intp), t)
            return replace(report, padding=Padding("none", "none"), lengths=lengths)
        return report
    scan = RunScan(n, dtype, carry=layout == "tnf")
    nan = inf = 0
    for start, block in _blocks(x, rows):
        block_nan, block_inf = nonfinite_counts(block)
        nan, inf = nan + block_nan, inf + block_inf
        if isinstance(block, Unwritten):
            count = block.shape[0]
            if layout == "tnf":
                scan.update_constant(slice(0, n), count, block.value, f, t0=start)
            else:
                scan.update_constant(slice(start, start + count), t, block.value, f)
        elif layout == "tnf":
            scan.update(slice(0, n), block.transpose(1, 0, 2), t0=start, has_nan=nan > 0)
        else:
            scan.update(slice(start, start + len(block)), block, t0=0, has_nan=nan > 0)
    padding, valid = infer_padding(scan, t, f)
    found: dict[str, Any] = {
        "padding": padding,
        "lengths": Lengths.of(valid, t),
        "notes": _notes(padding, f),
    }
    return Report(**base, **dims, nan_count=nan, inf_count=inf, **found)


def _why_no_padding(dtype: np.dtype[Any], n: int, t: int, f: int) -> str | None:
    """A note saying why padding is not looked for, or None when it is."""
    if dtype.kind not in "iuf":
        return f"padding detection skipped for {dtype} data"
    if n == 0:
        return "no samples"
    if t == 0:
        return NO_TIMESTEPS
    if f == 0:
        return "no features: padding cannot be detected"
    return None


def _notes(padding: Padding, f: int) -> tuple[str, ...]:
    notes = []
    if padding.kind == "repeat":
        notes.append("repeat padding: real outputs that repeat exactly would count as padding")
    if padding.side == "post" and padding.padded_samples == padding.empty_samples > 0:
        notes.append("only all-padding samples: pre or post cannot be told apart")
    if f == 1 and padding.kind != "none":
        notes.append("one feature: a real step equal to the pad value counts as padding")
    return tuple(notes)


class RunScan:
    """Per-sample runs at the ends of each sample, gathered block by block.

    For every sample: the leading and trailing runs of constant steps sharing one value
    (`lead_len`/`lead_val`, `trail_len`/`trail_val`), and the trailing run of steps equal to
    the last step (`rep_len`, at least 1 when T > 0). Blocks are (rows, steps, F) in
    batch-first order: whole samples (`t0` = 0), or for time-major data every sample over
    steps `t0`.. (`carry=True` keeps the previous block's last step to join runs across blocks).

    >>> s = RunScan(1, np.dtype(float), carry=False)
    >>> s.update(slice(0, 1), np.array([[[0.0, 0.0], [1.0, 2.0], [0.0, 0.0], [0.0, 0.0]]]))
    >>> s.lead_len.tolist(), s.trail_len.tolist(), s.rep_len.tolist()
    ([1], [2], [2])
    """

    def __init__(self, n: int, dtype: np.dtype[Any], *, carry: bool) -> None:
        self.lead_len = np.zeros(n, np.intp)
        self.lead_val = np.zeros(n, dtype)
        self.lead_open = np.ones(n, bool)
        self.trail_len = np.zeros(n, np.intp)
        self.trail_val = np.zeros(n, dtype)
        self.rep_len = np.zeros(n, np.intp)
        self.carry = carry
        self._last_step: np.ndarray | None = None

    def update(self, rows: slice, block: np.ndarray, t0: int = 0, has_nan: bool = True) -> None:
        """Fold in `block` (rows, steps, F) holding steps t0.. of samples `rows`.

        `has_nan=False` (no NaN seen so far) skips the NaN-equals-NaN comparisons.
        """
        if block.shape[1] == 0:
            return
        cmp: Compare = _same if has_nan else _equal
        values = block[..., 0]
        constant = np.all(cmp(block, block[..., :1]), axis=-1)
        if t0 == 0:
            self.lead_val[rows] = values[:, 0]
        self._update_lead(rows, constant & cmp(values, self.lead_val[rows, None]))
        self._update_trail(rows, constant, values, t0, cmp)
        self._update_repeat(rows, np.all(cmp(block, block[:, -1:]), axis=-1), block, t0, cmp)

    def update_constant(
        self, rows: slice, steps: int, value: Any, features: int, t0: int = 0
    ) -> None:
        """What `update` does with a block of `steps` steps t0.. of samples `rows` that hold
        `value` in every feature (storage never written), without building the block.

        >>> a, b = (RunScan(2, np.dtype(float), carry=True) for _ in range(2))
        >>> a.update(slice(0, 2), np.zeros((2, 3, 4))); b.update_constant(slice(0, 2), 3, 0.0, 4)
        >>> [a.lead_len.tolist(), a.trail_len.tolist()] == [b.lead_len.tolist(), [3, 3]]
        True
        """
        if steps == 0:
            return
        count = len(range(*rows.indices(self.lead_len.size)))
        filled = np.full(count, value, self.lead_val.dtype)
        if t0 == 0:
            self.lead_val[rows] = filled
        same = _same(self.lead_val[rows], filled)
        self.lead_len[rows] += np.where(self.lead_open[rows] & same, steps, 0)
        self.lead_open[rows] &= same
        trail, repeat = np.full(count, steps, np.intp), np.full(count, steps, np.intp)
        if t0 > 0:
            joins = (self.trail_len[rows] > 0) & _same(self.trail_val[rows], filled)
            trail = np.where(joins, self.trail_len[rows] + steps, trail)
            if self._last_step is not None:
                repeats = np.all(_same(self._last_step, filled[:, None]), axis=-1)
                repeat = np.where(repeats, self.rep_len[rows] + steps, repeat)
        self.trail_len[rows], self.trail_val[rows] = trail, filled
        self.rep_len[rows] = repeat
        if self.carry:
            self._last_step = np.full((count, features), value, self.lead_val.dtype)

    def _update_lead(self, rows: slice, run: np.ndarray) -> None:
        steps = leading_true(run)
        self.lead_len[rows] += np.where(self.lead_open[rows], steps, 0)
        self.lead_open[rows] &= steps == run.shape[1]

    def _update_trail(
        self, rows: slice, constant: np.ndarray, values: np.ndarray, t0: int, cmp: Compare
    ) -> None:
        last = values[:, -1]
        steps = leading_true((constant & cmp(values, last[:, None]))[:, ::-1])
        if t0 > 0:
            joins = (steps == values.shape[1]) & (self.trail_len[rows] > 0)
            joins &= cmp(self.trail_val[rows], last)
            steps = np.where(joins, self.trail_len[rows] + steps, steps)
        self.trail_len[rows] = steps
        self.trail_val[rows] = last

    def _update_repeat(
        self, rows: slice, equal_last: np.ndarray, block: np.ndarray, t0: int, cmp: Compare
    ) -> None:
        steps = leading_true(equal_last[:, ::-1])
        if t0 > 0 and self._last_step is not None:
            joins = (steps == block.shape[1]) & cmp(self._last_step, block[:, -1]).all(axis=-1)
            steps = np.where(joins, self.rep_len[rows] + steps, steps)
        self.rep_len[rows] = steps
        if self.carry:
            self._last_step = block[:, -1].copy()


def _equal(a: Any, b: Any) -> npt.NDArray[np.bool_]:
    return np.asarray(np.equal(a, b))


def _same(a: Any, b: Any) -> npt.NDArray[np.bool_]:
    """Elementwise equality where NaN equals NaN."""
    equal = _equal(a, b)
    if np.asarray(a).dtype.kind == "f":
        equal |= np.isnan(a) & np.isnan(b)
    return equal


def leading_true(flags: npt.NDArray[np.bool_]) -> IndexArray:
    """Length of the leading run of True in each row of a 2-D bool array.

    >>> leading_true(np.array([[True, True, False], [True, True, True], [False, True, True]]))
    array([2, 3, 0])
    """
    if flags.shape[1] == 0:
        return np.zeros(flags.shape[0], np.intp)
    first_false = np.argmin(flags, axis=1)
    return np.where(flags.all(axis=1), flags.shape[1], first_false).astype(np.intp)


# --- from runs to padding ------------------------------------------------------------------


def infer_padding(scan: RunScan, t: int, f: int) -> tuple[Padding, IndexArray]:
    """The padding that explains the runs, and every sample's valid length.

    Value padding first (most common value of the end runs), then repeat padding, else
    none (every step valid).
    """
    value = _pad_value(scan, f)
    if value is not None:
        return _value_padding(scan, value, t)
    repeated = np.maximum(scan.rep_len - 1, 0)
    if np.any(repeated):
        return _summarise("repeat", "post", None, t - repeated, np.zeros_like(repeated), t)
    return Padding("none", "none"), np.full(scan.rep_len.shape, t, np.intp)


def _pad_value(scan: RunScan, f: int) -> Any:
    """Most common value of the leading/trailing constant runs (NaN counted as one value)."""
    candidates = np.concatenate(
        [scan.lead_val[scan.lead_len > 0], scan.trail_val[scan.trail_len > 0]]
    )
    if candidates.size == 0:
        return None
    nan_count = int(np.count_nonzero(np.isnan(candidates))) if candidates.dtype.kind == "f" else 0
    values, counts = np.unique(candidates[~_isnan(candidates)], return_counts=True)
    best = int(np.argmax(counts)) if counts.size else -1
    top_count = int(counts[best]) if counts.size else 0
    value = candidates.dtype.type(np.nan) if nan_count > top_count else values[best]
    if f == 1 and max(nan_count, top_count) < 2:
        return None
    return value


def _isnan(a: np.ndarray) -> np.ndarray:
    return np.isnan(a) if a.dtype.kind == "f" else np.zeros(a.shape, bool)


def _value_padding(scan: RunScan, value: Any, t: int) -> tuple[Padding, IndexArray]:
    lead = np.where((scan.lead_len > 0) & _same(scan.lead_val, value), scan.lead_len, 0)
    trail = np.where((scan.trail_len > 0) & _same(scan.trail_val, value), scan.trail_len, 0)
    empty = lead == t
    lead, trail = np.where(empty, t, lead), np.where(empty, 0, trail)
    pre, post = (lead > 0) & ~empty, (trail > 0) & ~empty
    side: Side = "mixed" if pre.any() and post.any() else "pre" if pre.any() else "post"
    return _summarise("value", side, value.item(), t - lead - trail, empty, t)


def _summarise(
    kind: Kind, side: Side, value: Any, valid: IndexArray, empty: np.ndarray, t: int
) -> tuple[Padding, IndexArray]:
    valid = valid.astype(np.intp)
    padding = Padding(
        kind=kind,
        side=side,
        value=value,
        padded_samples=int(np.count_nonzero(valid < t)),
        padded_steps=int((t - valid).sum()),
        empty_samples=int(np.count_nonzero(empty)),
    )
    return padding, valid


# --- helpers for in-memory arrays ----------------------------------------------------------


def detect_padding(x_ntf: np.ndarray) -> tuple[Padding, IndexArray]:
    """Padding and valid lengths of an in-memory (N, T, F) array, as `inspect` finds them.

    >>> x = np.zeros((2, 3, 2)); x[0, :2] = 1.5, 2.5; x[1, :1] = 3.0, 4.0
    >>> pad, lengths = detect_padding(x)
    >>> pad.side, pad.value, lengths.tolist()
    ('post', 0.0, [2, 1])
    """
    n, t, f = x_ntf.shape
    scan = RunScan(n, x_ntf.dtype, carry=False)
    scan.update(slice(0, n), np.asarray(x_ntf))
    return infer_padding(scan, t, f)


def detect_lengths(
    x_ntf: np.ndarray, value: float, side: Literal["post", "pre"] = "post"
) -> IndexArray:
    """Valid lengths when padding with `value` (NaN allowed) sits at `side` of each sample.

    A step is padding when ALL its features equal `value` (Keras `Masking`); only the run at
    the given end counts, so a padding-like step inside a sequence stays valid.

    >>> x = np.array([[[1.0], [0.0], [2.0], [0.0]], [[0.0], [0.0], [0.0], [0.0]]])
    >>> detect_lengths(x, 0.0).tolist(), detect_lengths(x, 0.0, "pre").tolist()
    ([3, 0], [4, 0])
    """
    padded = np.all(_same(np.asarray(x_ntf), value), axis=-1)
    run = leading_true(padded[:, ::-1] if side == "post" else padded)
    return (x_ntf.shape[1] - run).astype(np.intp)


def _first_axis_entry(ndim: int, layout: str) -> str:
    """What one index along the first axis is, in words (inspect reads whole ones)."""
    if ndim != 3:
        return "row"
    return "timestep" if layout == "tnf" else "sample"


def inspect_refs(refs: Iterable[ArrayRef], *, layout: str = "ntf") -> list[dict[str, Any]]:
    """The inspect report of every array behind `refs` (each array of a file without KEY)."""
    from lstmshape import io
    from lstmshape.limits import refuse_huge_reads

    reports = []
    for ref in refs:
        for source in io.iter_arrays(ref):
            info = source.info
            refuse_huge_reads(source, 0, _first_axis_entry(len(source.shape), layout))
            report = inspect_array(source, layout=layout).to_dict()
            report.update(ref=str(info.ref), key=info.ref.key, format=info.format)
            if info.format == "h5" and ref.key is None:
                report["file_tree_of"] = info.ref.path
            reports.append(report)
    return reports
