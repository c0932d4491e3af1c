"""Per-sample facts at the two ends of every sample, and how they are gathered (see the package
docstring): `summarise` for blocks of whole samples, `TimeScan` for slabs of timesteps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from lstmshape.validity import Validity

# numpy.typing.NDArray[...] spelt out: importing numpy.typing costs every start-up.
BoolArray = np.ndarray[tuple[Any, ...], np.dtype[np.bool_]]
IndexArray = np.ndarray[tuple[Any, ...], np.dtype[np.intp]]
Array = np.ndarray[tuple[Any, ...], np.dtype[Any]]

PROBE_STEPS = 2  # steps counted from each end when a summary is not exact


# A NamedTuple, not a frozen dataclass: as immutable, and created ~7x faster (start-up).
class Given(NamedTuple):
    """Where a given mask puts each sample's first/last valid step, and what the data holds there.

    `first`/`last` are -1 for a sample with no valid step. `at_last` says step `last` equals
    the sample's final step, `after_last`/`before_last` the steps beside it (False off the
    ends); `at_first`/`before_first` likewise against step 0.
    """

    first: IndexArray
    last: IndexArray
    at_first: BoolArray
    before_first: BoolArray
    at_last: BoolArray
    after_last: BoolArray
    before_last: BoolArray


@dataclass(frozen=True)
class Ends:
    """Per-sample facts at both ends of each sample; merge blocks with `Ends.concat`."""

    t: int
    f: int
    exact: bool
    head_run: IndexArray
    tail_run: IndexArray
    head_const: BoolArray
    tail_const: BoolArray
    head_value: Array
    tail_value: Array
    middle: BoolArray
    given: Given | None = None

    @property
    def n(self) -> int:
        return len(self.head_run)

    @classmethod
    def concat(cls, parts: Sequence[Ends]) -> Ends:
        """The summary of consecutive blocks of samples, in order.

        >>> a, b = summarise(np.zeros((2, 3, 2))), summarise(np.ones((1, 3, 2)))
        >>> Ends.concat([a, b]).head_value.tolist()
        [0.0, 0.0, 1.0]
        """
        first = parts[0]
        if any((p.t, p.f, p.exact, p.given is None) != (first.t, first.f, first.exact,
               first.given is None) for p in parts):  # fmt: skip
            raise ValueError("summaries to merge must share T, F, exactness and a given mask")
        given = None
        if first.given is not None:
            given = Given(
                *(_join([getattr(p.given, name) for p in parts]) for name in Given._fields)
            )
        arrays = {k: _join([getattr(p, k) for p in parts]) for k in _PER_SAMPLE}
        return cls(t=first.t, f=first.f, exact=first.exact, given=given, **arrays)

    def repeated(self, n: int) -> Ends:
        """This summary of one sample, for `n` identical samples (no given mask).

        >>> summarise(np.ones((1, 3, 2)), exact=True).repeated(4).tail_run.tolist()
        [3, 3, 3, 3]
        """
        if self.n != 1 or self.given is not None:
            raise ValueError("only the summary of one sample without a given mask repeats")
        arrays: dict[str, Any] = {k: np.repeat(getattr(self, k), n) for k in _PER_SAMPLE}
        return replace(self, **arrays)


_GIVEN = Given._fields
_PER_SAMPLE = (
    "head_run",
    "tail_run",
    "head_const",
    "tail_const",
    "head_value",
    "tail_value",
    "middle",
)


def _join(arrays: list[Any]) -> Any:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


# --- summarising a block -------------------------------------------------------------------


def summarise(x_ntf: Any, validity: Validity | None = None, *, exact: bool = False) -> Ends:
    """Per-sample facts at the ends of a batch-first block (N, T, F); see the module docstring.

    validity: the given mask for these samples (`Validity.rows` of a block), to be judged by
        `audit`; None when no mask was given.
    exact: follow every run to its end (cost grows with the padding) instead of 2 steps.

    >>> x = np.zeros((2, 4, 2)); x[0, :3] = 1.0, 2.0; x[1] = 5.0
    >>> e = summarise(x, exact=True)
    >>> e.tail_run.tolist(), e.tail_const.tolist(), e.tail_value.tolist()
    ([1, 4], [True, True], [0.0, 5.0])
    """
    n, t, f = np.shape(x_ntf)
    if exact:
        head = tail = np.asarray(x_ntf)
    else:
        head = np.asarray(x_ntf[:, :PROBE_STEPS])
        tail = np.asarray(x_ntf[:, max(t - PROBE_STEPS, 0) :])
    if f == 0 or t == 0:
        none = np.zeros(n, bool)
        runs = np.full(n, min(t, 1), np.intp)
        values = np.zeros(n, np.asarray(x_ntf[:0]).dtype)
        return Ends(t, f, exact, runs, runs.copy(), none, none, values, values.copy(), none)
    if exact:
        head_run, tail_run = _end_run(head, tail=False), _end_run(tail, tail=True)
    elif t > 1:  # runs of 1 or 2 steps: does step 1 repeat step 0, step T-2 step T-1?
        head_run = np.where(_same_steps(head[:, -1], head[:, 0]), 2, 1)
        tail_run = np.where(_same_steps(tail[:, 0], tail[:, -1]), 2, 1)
    else:
        head_run, tail_run = np.ones(n, np.intp), np.ones(n, np.intp)
    ends = Ends(
        t=t,
        f=f,
        exact=exact,
        head_run=head_run,
        tail_run=tail_run,
        head_const=_constant(head[:, 0]),
        tail_const=_constant(tail[:, -1]),
        head_value=head[:, 0, 0].copy(),
        tail_value=tail[:, -1, 0].copy(),
        middle=head_run > t // 2 if exact else _middle(x_ntf, head, tail, head_run, tail_run),
    )
    if validity is None:
        return ends
    return replace(ends, given=_probe(x_ntf, validity, ends, head[:, 0], tail[:, -1]))


def _middle(x: Any, head: Array, tail: Array, head_run: IndexArray, tail_run: IndexArray) -> Any:
    """Step T//2 equals step 0, looked at only where both ends show one repeated step.

    Tells an empty sample (one step throughout) from one padded at both ends, such as a row
    of time-major data read as batch-first.
    """
    t = x.shape[1]
    middle = np.zeros(len(head_run), bool)
    rows = ((head_run >= min(PROBE_STEPS, t)) & (tail_run >= min(PROBE_STEPS, t))).nonzero()[0]
    if rows.size:
        rows = rows[_same_steps(head[rows, 0], tail[rows, -1])]
    if rows.size:
        middle[rows] = _same_steps(np.asarray(x[rows, t // 2]), head[rows, 0])
    return middle


def _end_run(x: Array, *, tail: bool) -> IndexArray:
    """Steps at the start (or end) of each row of x equal to its first (or last) step.

    Looks at windows of 1, 2, 4, ... steps and keeps only the samples whose run is unbroken,
    so the cost follows the runs, not T.
    """
    n, t, _ = x.shape
    ref = x[:, -1] if tail else x[:, 0]
    run = np.ones(n, np.intp)
    active = np.arange(n)
    done, width = 1, 1
    while active.size and done < t:
        width = min(width, t - done)
        window = slice(t - done - width, t - done) if tail else slice(done, done + width)
        rows = x[:, window] if active.size == n else x[active, window]
        if width == 1:  # mostly the first step off the end, often unequal: screen feature 0
            equal = _same_steps(rows[:, 0], ref[active])[:, None]
        else:
            equal = _all_same(rows, ref[active, None])
        steps = leading_true(equal[:, ::-1] if tail else equal)
        run[active] += steps
        active = active[steps == width]
        done, width = done + width, width * 2
    return run


def _probe(x: Any, validity: Validity, ends: Ends, first_step: Array, last_step: Array) -> Given:
    """Compare the steps at and beside each given first/last valid step with the end steps."""
    t = ends.t
    first, last = validity.first_index(), validity.last_index()
    if ends.exact:  # the runs already say it
        tail_from, head_to = t - ends.tail_run, ends.head_run
        return Given(
            first=first,
            last=last,
            at_first=(first >= 0) & (first < head_to),
            before_first=(first >= 1) & (first - 1 < head_to),
            at_last=(last >= 0) & (last >= tail_from),
            after_last=(last >= 0) & (last + 1 < t) & (last + 1 >= tail_from),
            before_last=(last >= 1) & (last - 1 >= tail_from),
        )
    data = np.asarray(x) if not isinstance(x, np.ndarray) else x
    head = (first_step, ends.head_const, ends.head_value)
    tail = (last_step, ends.tail_const, ends.tail_value)
    at_last = (last == t - 1) | _equal_at(data, last, tail, (last >= 0) & (last < t - 1))
    return Given(
        first=first,
        last=last,
        at_first=(first == 0) | _equal_at(data, first, head, first > 0),
        before_first=_equal_at(data, first - 1, head, first >= 1),
        at_last=at_last,
        after_last=_equal_at(data, last + 1, tail, (last >= 0) & (last + 1 < t)),
        # only under repeat padding (the last valid step equals the final one) does the step
        # before it matter
        before_last=_equal_at(data, last - 1, tail, at_last & (last >= 1)),
    )


def _equal_at(
    x: Array, steps: IndexArray, end: tuple[Array, BoolArray, Array], where: BoolArray
) -> BoolArray:
    """For the samples in `where`: does step `steps[i]` of sample i equal its end step?

    end: the end steps (N, F), whether each is constant, and its value. Feature 0 is gathered
    first, and only steps that match there are gathered whole; a constant end step is
    compared as its one value, which saves gathering it.
    """
    ref, constant, value = end
    out = np.zeros(len(steps), bool)
    rows = where.nonzero()[0]
    if not rows.size:
        return out
    rows = rows[same(x[rows, steps[rows], 0], value[rows])]
    if rows.size:
        const = constant[rows]
        refs = value[rows, None]
        if not const.all():
            refs = np.where(const[:, None], refs, ref[rows])
        out[rows] = _all_same(x[rows, steps[rows]], refs)
    return out


def _constant(steps: Array) -> BoolArray:
    """(N,): all features of each (N, F) step hold one value (NaN equal to NaN)."""
    if steps.shape[-1] < 2:
        return np.ones(steps.shape[0], bool)
    return _same_steps(steps[:, 1:], steps[:, :1])  # screens feature 1 against feature 0


def _same_steps(a: Array, b: Array) -> BoolArray:
    """a == b over the last axis, every feature, NaN equal to NaN.

    Feature 0 is compared first and the others only where it matched: real steps rarely
    share a value exactly, so most comparisons cost one element instead of F.
    """
    equal = same(a[..., 0], b[..., 0])
    if a.shape[-1] == 1:
        return equal
    hits = equal.nonzero()
    if 2 * hits[0].size > equal.size:  # mostly equal (padding): compare every step whole
        return _all_same(a, b)
    if hits[0].size:
        equal[hits] = _all_same(a[hits], np.broadcast_to(b, a.shape)[hits])
    return equal


def _all_same(a: Array, b: Array) -> BoolArray:
    equal: BoolArray = (a == b).all(axis=-1)
    if a.dtype.kind not in "fc":
        return equal
    # NaN != NaN: look again, NaN-aware, only where the plain comparison failed
    misses = (~equal).nonzero()
    if misses[0].size:
        b_full = np.broadcast_to(b, np.broadcast_shapes(a.shape, np.shape(b)))
        b_missed = b_full[misses]
        if np.isnan(b_missed).any():
            a_missed = np.broadcast_to(a, b_full.shape)[misses]
            equal[misses] = np.all(same(a_missed, b_missed), axis=-1)
    return equal


def same(a: Any, b: Any) -> BoolArray:
    """a == b elementwise, NaN equal to NaN."""
    a = np.asarray(a)
    equal = np.asarray(a == b)
    if a.dtype.kind not in "fc":
        return equal
    if equal.ndim:
        nan_b = b != b  # a NaN in `a` can only match a NaN in `b`
        if np.any(nan_b):
            equal |= (a != a) & nan_b
        return equal
    return np.asarray(equal | (np.isnan(a) & np.isnan(b)))


def leading_true(flags: BoolArray) -> IndexArray:
    """Length of the leading run of True in each row of a 2-D bool array.

    >>> leading_true(np.array([[True, True, False], [True, True, True], [False, True, True]]))
    array([2, 3, 0])
    """
    if flags.shape[1] == 0:
        return np.zeros(flags.shape[0], np.intp)
    first_false = np.argmin(flags, axis=1)
    return np.where(flags.all(axis=1), flags.shape[1], first_false).astype(np.intp)


class TimeScan:
    """An exact `Ends` built from consecutive slabs of timesteps of every sample.

    For time-major data read in blocks of timesteps: `add` each (N, steps, F) batch-first view
    in time order, then `result()`. Keeps step 0 and the latest step of every sample.

    >>> scan = TimeScan(1, 4, 2, np.dtype(float))
    >>> scan.add(np.array([[[1.0, 2.0], [0.0, 0.0]]])); scan.add(np.zeros((1, 2, 2)))
    >>> scan.result().tail_run.tolist()
    [3]
    """

    def __init__(self, n: int, t: int, f: int, dtype: np.dtype[Any]) -> None:
        self.n, self.t, self.f = n, t, f
        self.head_run = np.zeros(n, np.intp)
        self.tail_run = np.zeros(n, np.intp)
        self._open = np.ones(n, bool)
        self._first: Array | None = None
        self._last: Array | None = None
        self._dtype = dtype

    def add(self, slab: Array) -> None:
        if slab.shape[1] == 0 or self.f == 0:
            return
        if self._first is None:
            self._first = slab[:, 0].copy()
        width = slab.shape[1]
        rows = np.flatnonzero(self._open)
        if rows.size:
            steps = leading_true(_same_steps(slab[rows], self._first[rows, None]))
            self.head_run[rows] += steps
            self._open[rows] = steps == width
        steps = leading_true(_same_steps(slab, slab[:, -1:])[:, ::-1])
        if self._last is not None:
            joins = (steps == width) & _same_steps(self._last, slab[:, -1])
            steps = np.where(joins, self.tail_run + steps, steps)
        self.tail_run = steps
        self._last = slab[:, -1].copy()

    def result(self) -> Ends:
        if self._first is None or self._last is None:
            return summarise(np.zeros((self.n, self.t, self.f), self._dtype), exact=True)
        first, last = self._first, self._last
        return Ends(
            t=self.t,
            f=self.f,
            exact=True,
            head_run=self.head_run,
            tail_run=self.tail_run,
            head_const=_constant(first),
            tail_const=_constant(last),
            head_value=first[:, 0].copy(),
            tail_value=last[:, 0].copy(),
            middle=self.head_run > self.t // 2,
        )
