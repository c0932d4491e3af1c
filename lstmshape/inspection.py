"""What `inspect` reports about one array: shape, dtype, size, padding, valid lengths, NaN/Inf.

What it reads: every element exactly once, in one pass, as blocks `x[i:j]` along axis 0 of
about 16 MiB each (`block_bytes`): blocks of samples for ntf data, blocks of timesteps for
tnf data (never less than one timestep, N*F elements). Arrays with nothing to find in their
values (integer or bool data that is not a 3-D integer output) are not read at all. It
touches nothing but `x.shape`, `x.dtype` and `x[i:j]` (or `x.read(i, j)`, as `io.ArraySource`
offers, or the block reader of a mapped file, as the engine reads it: `inspect_reads`), so
an `np.ndarray`, an `np.memmap`, an `h5py.Dataset` or an open `ArraySource` all work.
Memory stays bounded on multi-GB input: one block, a few boolean temporaries of the block's
size, and O(N) per-sample counters (for tnf also the previous timestep, N*F values). About
1.2-1.7 GB/s on one core for float32 (bench/bench_inspect.py: 1 GiB `.npy`, peak RSS 113
MiB).

How padding is found, for 3-D integer or float data: by the one detector, `lstmshape.padding`
(value padding at the start or end, NaN included; trailing steps repeating the last valid
step, as a masked Keras RNN writes; empty samples), from exact runs at the ends of every
sample: `padding.summarise(block, exact=True)` per block of samples, or `padding.TimeScan`
over the blocks of timesteps of time-major data. The report's kind is "value", "repeat" or
"none", its side "post", "pre", "mixed" or "none".
Bool data and arrays of another rank get shape, dtype, size and NaN/Inf counts only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import numpy as np

from lstmshape import padding
from lstmshape.blocks import rows_per_block
from lstmshape.errors import InputError
from lstmshape.inspect_reads import Unwritten, blocks, count_nonfinite, nonfinite_counts

if TYPE_CHECKING:
    import numpy.typing as npt

Side = Literal["post", "pre", "mixed", "none"]
Kind = Literal["value", "repeat", "none"]
# numpy.typing.NDArray[...] spelt out: importing numpy.typing costs every start-up.
IndexArray = np.ndarray[tuple[Any, ...], np.dtype[np.intp]]

BLOCK_BYTES = 16 * 2**20
HISTOGRAM_BINS = 8
NO_TIMESTEPS = "no timesteps: every sample is empty"


class Sliceable(Protocol):
    """What `inspect_array` needs: a shape, a dtype, and `x[i:j]` or `x.read(i, j)`."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype[Any]: ...


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
        nan, inf = count_nonfinite(source, rows, dtype)
        return Report(**base, nan_count=nan, inf_count=inf)
    return _inspect_3d(source, shape, dtype, layout, rows, base)


def _base_fields(shape: tuple[int, ...], dtype: np.dtype[Any]) -> dict[str, Any]:
    size = int(np.prod(shape, dtype=np.int64))
    return {
        "shape": shape,
        "dtype": str(dtype),
        "ndim": len(shape),
        "size": size,
        "nbytes": size * dtype.itemsize,
    }


# --- 3-D: one pass, the padding from the one detector ----------------------------------------


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
        nan, inf = count_nonfinite(x, rows, dtype)
        report = Report(**base, **dims, nan_count=nan, inf_count=inf, notes=(skip,))
        if skip == NO_TIMESTEPS:  # every sample is empty, which is a definite answer
            lengths = Lengths.of(np.zeros(n, np.intp), t)
            return replace(report, padding=Padding("none", "none"), lengths=lengths)
        return report
    scan = padding.TimeScan(n, t, f, dtype) if layout == "tnf" else None
    parts: list[padding.Ends] = []
    nan = inf = 0
    for _, block in blocks(x, rows):
        block_nan, block_inf = nonfinite_counts(block)
        nan, inf = nan + block_nan, inf + block_inf
        if isinstance(block, Unwritten):  # never written: a zero-stride view, nothing read
            if scan is None:  # every sample alike: summarise one
                one = np.broadcast_to(np.asarray(block.value, dtype), (1, *block.shape[1:]))
                parts.append(padding.summarise(one, exact=True).repeated(block.shape[0]))
                continue
            block = np.broadcast_to(np.asarray(block.value, dtype), block.shape)
        if scan is not None:
            scan.add(block.transpose(1, 0, 2))
        else:
            parts.append(padding.summarise(block, exact=True))
    ends = scan.result() if scan is not None else padding.Ends.concat(parts)
    detected = padding.infer(ends)
    found, valid = _report_padding(detected)
    notes = _notes(found, f, detected, layout)
    return Report(
        **base, **dims, nan_count=nan, inf_count=inf, padding=found,
        lengths=Lengths.of(valid, t), notes=notes,
    )  # fmt: skip


def _report_padding(detected: padding.Detection) -> tuple[Padding, IndexArray]:
    """The report's `Padding` and every sample's valid length, from an exact detection."""
    assert detected.lengths is not None
    valid = detected.lengths
    found = Padding(
        kind=detected.kind,
        side=detected.side,
        value=detected.value,
        padded_samples=int(np.count_nonzero(valid < detected.t)),
        padded_steps=int((detected.t - valid).sum()),
        empty_samples=int(np.count_nonzero(detected.empty)),
    )
    return found, valid


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


def _notes(found: Padding, f: int, detected: padding.Detection, layout: str) -> tuple[str, ...]:
    notes = []
    if found.kind == "repeat":
        notes.append("repeat padding: real outputs that repeat exactly would count as padding")
    if found.side == "post" and found.padded_samples == found.empty_samples > 0:
        notes.append("only all-padding samples: pre or post cannot be told apart")
    if f == 1 and found.kind != "none":
        notes.append("one feature: a real step equal to the pad value counts as padding")
    if detected.stray:
        where = "start" if found.side == "post" else "end"
        noun = "sample also holds" if detected.stray == 1 else "samples also hold"
        notes.append(f"{detected.stray} {noun} the pad value at the {where}, taken as data")
    if padding.looks_time_major(detected):
        other = "tnf" if layout == "ntf" else "ntf"
        notes.append(f"the padding forms a staircase along the first axis: try --layout {other}")
    return tuple(notes)
