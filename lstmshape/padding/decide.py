"""From a merged `Ends` summary to the padding that explains it (see the package docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from lstmshape.padding.ends import PROBE_STEPS, Array, BoolArray, Ends, IndexArray, same

if TYPE_CHECKING:
    import numpy.typing as npt

    from lstmshape.validity import Validity

Kind = Literal["value", "repeat", "none"]
Side = Literal["post", "pre", "mixed", "none"]

# Per-sample flags in `Detection.flags`: what each end of a sample shows, whatever side wins.
TAIL, HEAD, EMPTY = 1, 2, 4
_MIXED_SHARE = 10  # the rarer side needs 1/_MIXED_SHARE of the commoner one (and 2 samples)


# A NamedTuple, not a frozen dataclass: as immutable, and created ~7x faster (start-up).
class Detection(NamedTuple):
    """The padding that explains a summary.

    kind/side/value: what was found (`value` only for kind "value"; a Python scalar, NaN ok).
    flags: (N,) per-sample bits TAIL (ends in padding), HEAD (starts with it), EMPTY.
    pad_run: (N,) padding steps found per sample on the decided side(s) (at least that many
        when the summary is not exact); T for empty samples.
    lead: (N,) padding steps before the valid ones; lengths: (N,) valid steps. Both None
        unless the summary was exact.
    agree: (N,) whether the given mask's ends match the padding, when a mask was summarised.
    stray: samples whose other end shows the pad value, taken as real data.
    """

    kind: Kind
    side: Side
    value: float | int | None
    t: int
    exact: bool
    flags: npt.NDArray[np.uint8]
    pad_run: IndexArray
    lead: IndexArray | None = None
    lengths: IndexArray | None = None
    agree: BoolArray | None = None
    stray: int = 0

    @property
    def n(self) -> int:
        return len(self.flags)

    @property
    def empty(self) -> BoolArray:
        return (self.flags & EMPTY) > 0

    @property
    def padded(self) -> BoolArray:
        """Samples with some padding on the decided side(s) and some valid steps."""
        return (self.pad_run > 0) & ~self.empty

    def validity(self) -> Validity:
        """The detected padding as a `validity.Validity` (needs an exact summary).

        >>> from lstmshape.padding.ends import summarise
        >>> x = np.zeros((2, 3, 2)); x[0, :2] = 1.0, 2.0; x[1, :1] = 3.0, 4.0
        >>> infer(summarise(x, exact=True)).validity().lengths.tolist()
        [2, 1]
        """
        from lstmshape.validity import Validity

        if self.lengths is None or self.lead is None:
            raise ValueError("lengths need an exact summary: summarise(x, exact=True)")
        if self.side == "pre":
            return Validity.from_lengths(self.lengths, self.t, "pre")
        if self.side != "mixed":
            return Validity.from_lengths(self.lengths, self.t, "post")
        steps = np.arange(self.t)[None, :]
        mask = (steps >= self.lead[:, None]) & (steps < (self.lead + self.lengths)[:, None])
        return Validity(n=self.n, t=self.t, mask=mask).compact()


# --- deciding what the summary shows -------------------------------------------------------


def infer(ends: Ends, *, like: Detection | None = None) -> Detection:
    """The padding that explains `ends` (see the module docstring for the rules).

    like: a decision made earlier (say on a stream's first block): its kind, value and side
        are kept and only the per-sample results are worked out for `ends`.

    >>> from lstmshape.padding.ends import summarise
    >>> x = np.zeros((3, 4, 2)); x[0, :3] = 1.0, 2.0; x[1, :1] = 3.0, 4.0; x[2] = 5.0, 6.0
    >>> d = infer(summarise(x, exact=True))
    >>> d.kind, d.side, d.value, d.lengths.tolist()
    ('value', 'post', 0.0, [3, 1, 4])
    """
    whole = _whole(ends)
    if like is not None:
        kind, value, side = like.kind, like.value, like.side
    else:
        kind, value = _decide(ends, whole)
        side = None
    if ends.t == 0:
        kind = "none"
    if kind == "repeat":
        return _repeat(ends, whole)
    if kind == "value":
        return _value(ends, whole, value, side)
    zero = np.zeros(ends.n, np.intp)
    return _detection(ends, "none", "none", None, np.zeros(ends.n, np.uint8), zero, zero)


def _whole(ends: Ends) -> BoolArray:
    """Samples that are one constant step throughout (the middle unseen when not exact)."""
    if ends.exact:
        return (ends.head_run >= ends.t) & ends.head_const
    both = min(PROBE_STEPS, ends.t)
    return (
        ends.head_const
        & ends.tail_const
        & same(ends.head_value, ends.tail_value)
        & (ends.head_run >= both)
        & (ends.tail_run >= both)
        & ends.middle
    )


def _decide(ends: Ends, whole: BoolArray) -> tuple[Kind, Any]:
    """Kind and value: the value most samples end in, unless more samples repeat their end."""
    need = 2 if ends.f == 1 else 1
    head = ends.head_const & ~whole
    tail = ends.tail_const & ~whole
    counted_twice = head & tail & same(ends.head_value, ends.tail_value)
    value, support = _most_common(
        np.concatenate([ends.head_value[head], ends.tail_value[tail & ~counted_twice]])
    )
    if support < need:
        value, support = None, 0
    repeats = (ends.tail_run >= 2) & ~whole
    if value is not None:
        repeats &= ~(ends.tail_const & same(ends.tail_value, value))
    repeat_support = int(np.count_nonzero(repeats))
    if repeat_support >= need and repeat_support > support:
        return "repeat", None
    if value is not None:
        return "value", value
    value, support = _most_common(ends.head_value[whole])
    return ("value", value) if support >= need else ("none", None)


def _most_common(values: Array) -> tuple[Any, int]:
    """The most common value (NaN counts as one value; ties go to the smallest) and its count."""
    if values.size == 0:
        return None, 0
    unique, counts = np.unique(values, return_counts=True, equal_nan=True)
    best = int(np.argmax(counts))
    return unique[best].item(), int(counts[best])


def _value(ends: Ends, whole: BoolArray, value: Any, side: Side | None) -> Detection:
    empty = whole & same(ends.head_value, value)
    head = ends.head_const & same(ends.head_value, value) & ~empty
    tail = ends.tail_const & same(ends.tail_value, value) & ~empty
    if side is None:
        side = _side(int(np.count_nonzero(head)), int(np.count_nonzero(tail)), bool(empty.any()))
    use_head, use_tail = side in ("pre", "mixed"), side in ("post", "mixed")
    lead = np.where(head & use_head, ends.head_run, 0)
    pad_run = np.where(empty, ends.t, lead + np.where(tail & use_tail, ends.tail_run, 0))
    flags = (tail * TAIL | head * HEAD | empty * EMPTY).astype(np.uint8)
    stray = int(np.count_nonzero((head & ~use_head) | (tail & ~use_tail)))
    return _detection(ends, "value", side, value, flags, pad_run, lead, stray=stray)


def _side(pre: int, post: int, any_empty: bool) -> Side:
    if pre == post == 0:
        return "post" if any_empty else "none"
    low, high = min(pre, post), max(pre, post)
    if low >= 2 and low * _MIXED_SHARE >= high:
        return "mixed"
    return "pre" if pre > post else "post"


def _repeat(ends: Ends, whole: BoolArray) -> Detection:
    empty = whole & same(ends.head_value, 0)  # a masked Keras RNN starts from a zero output
    tail = (ends.tail_run >= 2) & ~empty
    pad_run = np.where(empty, ends.t, np.where(tail, ends.tail_run - 1, 0))
    flags = (tail * TAIL | empty * EMPTY).astype(np.uint8)
    return _detection(ends, "repeat", "post", None, flags, pad_run, np.zeros(ends.n, np.intp))


def _detection(
    ends: Ends,
    kind: Kind,
    side: Side,
    value: Any,
    flags: npt.NDArray[np.uint8],
    pad_run: IndexArray,
    lead: IndexArray,
    *,
    stray: int = 0,
) -> Detection:
    pad_run = pad_run.astype(np.intp)
    exact = ends.exact
    return Detection(
        kind=kind,
        side=side,
        value=value,
        t=ends.t,
        exact=exact,
        flags=flags,
        pad_run=pad_run,
        lead=lead.astype(np.intp) if exact else None,
        lengths=(ends.t - pad_run) if exact else None,
        agree=_agreement(ends, kind, side, flags),
        stray=stray,
    )


def _agreement(ends: Ends, kind: Kind, side: Side, flags: npt.NDArray[np.uint8]) -> Any:
    """Per sample: do the given mask's ends sit where the data's padding starts and stops?

    A sample padded at the end must have its last given valid step just before the padding
    (value) or on the first repeat (repeat); one not padded there must be valid to step T-1.
    Likewise at the start. A sample is empty in the mask exactly when it is in the data.
    """
    g = ends.given
    if g is None:
        return None
    if kind == "none":
        return np.ones(ends.n, bool)
    tail, head, empty = (flags & TAIL) > 0, (flags & HEAD) > 0, (flags & EMPTY) > 0
    end_ok = g.last == ends.t - 1
    if kind == "repeat":
        post_ok = np.where(tail, g.at_last & (~g.before_last | (g.last == 0)), end_ok)
    else:
        post_ok = np.where(tail, g.after_last & ~g.at_last, end_ok)
    pre_ok = np.where(head, g.before_first & ~g.at_first, g.first == 0)
    check = {"pre": pre_ok, "mixed": post_ok & pre_ok}.get(side, post_ok)
    given_empty = g.last < 0
    return np.where(empty | given_empty, empty == given_empty, check)
