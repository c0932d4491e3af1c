"""Which timesteps are real data: one mask model for every command.

A mask source (a boolean/0-1 array, per-sample lengths, or a padding value) becomes a
`Validity`: the (N, T) truth of each timestep in batch-first order. When the valid steps are
a contiguous prefix (post-padding) or suffix (pre-padding) the lengths are kept as well, so
kernels can take per-row slices instead of scanning a full boolean mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError

PadSide = Literal["post", "pre"]
Layout = Literal["ntf", "tnf"]

BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.intp]


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
            return np.count_nonzero(self.mask, axis=1).astype(np.intp)
        return np.full(self.n, self.t, dtype=np.intp)

    def first_index(self) -> IndexArray:
        """Index of the first valid step per sample; -1 where a sample has none."""
        counts = self.counts()
        if self.lengths is not None:
            first = np.zeros(self.n, np.intp) if self.pad_side == "post" else self.t - counts
        elif self.mask is not None:
            first = np.argmax(self.mask, axis=1).astype(np.intp)
        else:
            first = np.zeros(self.n, np.intp)
        return np.where(counts > 0, first, -1)

    def last_index(self) -> IndexArray:
        """Index of the last valid step per sample; -1 where a sample has none."""
        counts = self.counts()
        if self.lengths is not None:
            last = counts - 1 if self.pad_side == "post" else np.full(self.n, self.t - 1, np.intp)
        elif self.mask is not None:
            last = self.t - 1 - np.argmax(self.mask[:, ::-1], axis=1).astype(np.intp)
        else:
            last = np.full(self.n, self.t - 1, np.intp)
        return np.where(counts > 0, last, -1)

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


def mask_from_lengths(lengths: IndexArray, t: int, pad_side: PadSide = "post") -> BoolArray:
    """(N, T) mask whose first (post) or last (pre) `lengths[i]` steps are valid.

    >>> mask_from_lengths(np.array([1, 3]), 3, "pre").astype(int).tolist()
    [[0, 0, 1], [1, 1, 1]]
    """
    steps = np.arange(t)
    if pad_side == "post":
        return steps[None, :] < lengths[:, None]
    return steps[None, :] >= (t - lengths)[:, None]


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
            raise InputError(f"lengths must be whole numbers; got {bad[0]!r}")
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
            f"with N={n}, T={t}"
        )
    if values.dtype != bool:
        if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
            raise InputError(f"mask must be bool or 0/1; got dtype {values.dtype}")
        bad = (values != 0) & (values != 1)
        if np.any(bad):
            raise InputError(
                f"mask must hold only 0/1 or bool values; found {values[bad].flat[0]!r}"
            )
        values = values != 0
    return values if layout == "ntf" else values.T


def mask_from_value(x_ntf: npt.NDArray[np.generic], value: float) -> BoolArray:
    """Keras `Masking`: a step is padding when ALL its features equal `value` (NaN allowed).

    >>> x = np.array([[[1.0, 0.0], [0.0, 0.0]]])
    >>> mask_from_value(x, 0.0).tolist()
    [[True, False]]
    """
    if x_ntf.shape[-1] == 0:
        return np.zeros(x_ntf.shape[:2], dtype=bool)
    if np.isnan(value):
        return ~np.all(np.isnan(x_ntf), axis=-1)
    return np.any(x_ntf != value, axis=-1)
