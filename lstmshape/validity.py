"""Which timesteps are real data: `Validity`, the one mask model every kernel takes.

A `Validity` is the (N, T) truth of each timestep in batch-first order. When the valid steps
are a contiguous prefix (post-padding) or suffix (pre-padding) the lengths are kept as well,
so kernels can take per-row slices instead of scanning a full boolean mask. The checks of
masks and lengths against the data's shape live here too; `lstmshape.masks` turns the mask
sources a user gives into one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from lstmshape.errors import InputError
from lstmshape.vocabulary import Layout, PadSide

if TYPE_CHECKING:
    import numpy.typing as npt

# numpy.typing.NDArray[...] spelt out: importing numpy.typing costs every start-up.
BoolArray = np.ndarray[tuple[Any, ...], np.dtype[np.bool_]]
IndexArray = np.ndarray[tuple[Any, ...], np.dtype[np.intp]]


@dataclass(frozen=True)
class Validity:
    """The valid timesteps of an (N, T) batch.

    Exactly one representation is authoritative: `lengths` (contiguous valid steps, the
    first L with post-padding, the last L with pre-padding), else `mask`, else every step
    is valid.

    >>> v = Validity.from_lengths(np.array([2, 0]), t=3)
    >>> v.as_mask().astype(int).tolist(), v.counts().tolist()
    ([[1, 1, 0], [0, 0, 0]], [2, 0])
    """

    n: int
    t: int
    mask: BoolArray | None = None
    lengths: IndexArray | None = None
    pad_side: PadSide = "post"

    @classmethod
    def all_valid(cls, n: int, t: int) -> Validity:
        return cls(n=n, t=t)

    @classmethod
    def from_lengths(cls, lengths: npt.ArrayLike, t: int, pad_side: PadSide = "post") -> Validity:
        checked = validate_lengths(lengths, t)
        return cls(n=len(checked), t=t, lengths=checked, pad_side=pad_side)

    @classmethod
    def from_mask(cls, mask: npt.ArrayLike, n: int, t: int, layout: Layout = "ntf") -> Validity:
        return cls(n=n, t=t, mask=validate_mask(mask, n, t, layout))

    @property
    def is_all_valid(self) -> bool:
        return self.mask is None and self.lengths is None

    def as_mask(self) -> BoolArray:
        """The (N, T) boolean mask, materialised."""
        if self.lengths is not None:
            return mask_from_lengths(self.lengths, self.t, self.pad_side)
        if self.mask is not None:
            return self.mask
        return np.ones((self.n, self.t), dtype=bool)

    def counts(self) -> IndexArray:
        """Number of valid steps per sample, shape (N,)."""
        if self.lengths is not None:
            return self.lengths
        if self.mask is not None:
            return self._mask_counts
        return np.full(self.n, self.t, dtype=np.intp)

    @cached_property
    def _mask_counts(self) -> IndexArray:
        # Kernels ask for the counts several times (empty check, indices, means); counting
        # an (N, T) mask costs as much as reading the data when F is small.
        assert self.mask is not None
        return np.count_nonzero(self.mask, axis=1).astype(np.intp)

    def first_index(self) -> IndexArray:
        """Index of the first valid step per sample; -1 where a sample has none."""
        if self.mask is not None and self.lengths is None:
            return self._mask_first
        counts = self.counts()
        if self.lengths is not None and self.pad_side == "pre":
            first = self.t - counts
        else:
            first = np.zeros(self.n, np.intp)
        return np.where(counts > 0, first, -1)

    def last_index(self) -> IndexArray:
        """Index of the last valid step per sample; -1 where a sample has none."""
        if self.mask is not None and self.lengths is None:
            if self.t == 0:
                return np.full(self.n, -1, np.intp)
            last = self.t - 1 - np.argmax(self.mask[:, ::-1], axis=1).astype(np.intp)
            return np.where(self.mask[np.arange(self.n), last], last, -1)
        counts = self.counts()
        if self.lengths is not None and self.pad_side == "post":
            last = counts - 1
        else:
            last = np.full(self.n, self.t - 1, np.intp)
        return np.where(counts > 0, last, -1)

    @cached_property
    def _mask_first(self) -> IndexArray:
        # argmax finds a sample's first True; reading the mask there tells an empty sample
        # apart, 5x cheaper than counting every row.
        assert self.mask is not None
        if self.t == 0:
            return np.full(self.n, -1, np.intp)
        first = np.argmax(self.mask, axis=1).astype(np.intp)
        return np.where(self.mask[np.arange(self.n), first], first, -1)

    def empty_samples(self) -> IndexArray:
        """Indices of the samples that have no valid step.

        >>> Validity.from_lengths(np.array([2, 0, 1, 0]), t=3).empty_samples().tolist()
        [1, 3]
        """
        if self.mask is not None and self.lengths is None:
            return np.flatnonzero(self._mask_first < 0).astype(np.intp)
        return np.flatnonzero(self.counts() == 0).astype(np.intp)

    def compact(self) -> Validity:
        """The same validity in its cheapest form: all-valid, else lengths, else the mask.

        A mask whose valid steps form a prefix of every row becomes post-padding lengths, one
        whose valid steps form a suffix becomes pre-padding lengths; kernels then slice rows
        instead of scanning the mask.

        >>> v = Validity.from_mask(np.array([[0, 1, 1], [0, 0, 1]]), n=2, t=3).compact()
        >>> v.lengths.tolist(), v.pad_side
        ([2, 1], 'pre')
        """
        if self.lengths is not None:
            if bool(np.all(self.lengths == self.t)):
                return Validity.all_valid(self.n, self.t)
            return self
        if self.mask is None:
            return self
        counts = np.count_nonzero(self.mask, axis=1).astype(np.intp)
        if bool(np.all(counts == self.t)):
            return Validity.all_valid(self.n, self.t)
        for side in ("post", "pre"):
            if np.array_equal(self.mask, mask_from_lengths(counts, self.t, side)):
                return Validity(n=self.n, t=self.t, lengths=counts, pad_side=side)
        self.__dict__["_mask_counts"] = counts  # the cached_property's slot: no recount
        return self

    def rows(self, start: int, stop: int) -> Validity:
        """The validity of samples [start, stop), for block-wise processing."""
        stop = min(stop, self.n)
        return Validity(
            n=max(stop - start, 0),
            t=self.t,
            mask=None if self.mask is None else self.mask[start:stop],
            lengths=None if self.lengths is None else self.lengths[start:stop],
            pad_side=self.pad_side,
        )


def checked_mask(validity: Validity | None, n: int, t: int) -> BoolArray | None:
    """The (N, T) mask of `validity` checked against the data, or None when all is valid."""
    if validity is None:
        return None
    if not isinstance(validity, Validity):
        raise InputError(f"validity must be a validity.Validity; got {type(validity).__name__}")
    if (validity.n, validity.t) != (n, t):
        raise InputError(
            f"mask covers N={validity.n}, T={validity.t} but the data has N={n}, T={t}"
        )
    if validity.is_all_valid:
        return None
    return validity.as_mask()


def mask_from_lengths(lengths: IndexArray, t: int, pad_side: PadSide = "post") -> BoolArray:
    """(N, T) mask whose first (post) or last (pre) `lengths[i]` steps are valid.

    >>> mask_from_lengths(np.array([1, 3]), 3, "pre").astype(int).tolist()
    [[0, 0, 1], [1, 1, 1]]
    """
    # Comparing in the narrowest integer type that holds T is 4x faster than in intp.
    small: type[np.signedinteger[Any]] = (
        np.int16 if t < 2**15 else np.int32 if t < 2**31 else np.intp
    )
    steps: npt.NDArray[Any] = np.arange(t, dtype=small)
    # Clipping to [0, T] keeps the mask and rules out wrap-around in `small`.
    clipped: npt.NDArray[Any] = np.clip(np.asarray(lengths), 0, t)
    if pad_side == "post":
        return steps[None, :] < clipped.astype(small)[:, None]
    return steps[None, :] >= (t - clipped).astype(small)[:, None]


def validate_lengths(lengths: npt.ArrayLike, t: int) -> IndexArray:
    """Check per-sample lengths: 1-D, integral, 0 <= L <= T."""
    values = np.asarray(lengths)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise InputError(f"lengths must have shape (N,); got {values.shape}")
    if values.dtype == bool or not (
        np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
    ):
        raise InputError(f"lengths must be integers; got dtype {values.dtype}")
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            bad = values[~np.isfinite(values) | (values != np.round(values))]
            raise InputError(f"lengths must be whole numbers; got {bad[0].item()!r}")
    if values.size and values.min() < 0:
        raise InputError(f"lengths must be non-negative; got {values.min()}")
    if values.size and values.max() > t:
        worst = int(np.argmax(values))
        raise InputError(f"length {values[worst]} of sample {worst} exceeds T={t} timesteps")
    return values.astype(np.intp)


def validate_mask(mask: npt.ArrayLike, n: int, t: int, layout: Layout = "ntf") -> BoolArray:
    """Check a mask array and return it as an (N, T) bool array in batch-first order."""
    values = np.asarray(mask)
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[..., 0]
    expected = (n, t) if layout == "ntf" else (t, n)
    if values.shape != expected:
        raise InputError(
            f"mask has shape {values.shape}; expected {expected} for {layout} data "
            f"with N={n}, T={t}{layout_hint(values.shape, n, t, layout)}"
        )
    if values.dtype != bool:
        if not (
            np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
        ):
            raise InputError(f"mask must be bool or 0/1; got dtype {values.dtype}")
        bad = (values != 0) & (values != 1)
        if np.any(bad):
            raise InputError(
                f"mask must hold only 0/1 or bool values; found {values[bad].flat[0].item()!r}"
            )
        values = values != 0
    return values if layout == "ntf" else values.T


def require_nonempty(validity: Validity, *, offset: int = 0) -> None:
    """Raise `InputError` naming the samples that have no valid step, if any.

    offset: added to the reported indices, for a block of samples taken from a larger batch.

    >>> require_nonempty(Validity.from_lengths(np.array([0, 2, 0]), t=2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lstmshape.errors.InputError: 2 samples have no valid timestep (0, 2); use --empty ...
    """
    empty = validity.empty_samples()
    if empty.size:
        raise InputError(describe_empty(empty + offset))


def describe_empty(indices: IndexArray, *, limit: int = 5, count: int | None = None) -> str:
    """'3 samples have no valid timestep (0, 5, 9); ...' for the given sample indices.

    count: how many samples are empty when `indices` holds only the first few of them.
    """
    count = len(indices) if count is None else count
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    more = ", ..." if count > min(len(indices), limit) else ""
    noun = "sample has" if count == 1 else "samples have"
    return f"{count} {noun} no valid timestep ({shown}{more}); use --empty nan or --empty zero"


def layout_hint(shape: tuple[int, ...], n: int, t: int, layout: Layout) -> str:
    """A hint for a mask or lengths whose shape fits the data read the other way round.

    Lengths with one entry per timestep suggest the data's layout is the other one; a mask
    with its two axes swapped is batch-first against time-major data (or the reverse).

    >>> layout_hint((100,), n=30, t=100, layout="ntf")
    '; 100 is T here: is the data time-major? try --layout tnf'
    >>> layout_hint((30, 100), n=30, t=100, layout="tnf")
    '; it is batch-first (N, T): transpose it, or check --layout'
    """
    other = "tnf" if layout == "ntf" else "ntf"
    if len(shape) == 1 and shape[0] == t != n:
        major = "time-major" if other == "tnf" else "batch-first"
        return f"; {t} is T here: is the data {major}? try --layout {other}"
    expected = (n, t) if layout == "ntf" else (t, n)
    if len(shape) >= 2 and tuple(shape[:2]) == expected[::-1] and n != t:
        form = "batch-first (N, T)" if layout == "tnf" else "time-major (T, N)"
        return f"; it is {form}: transpose it, or check --layout"
    return ""
