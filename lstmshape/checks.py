"""Checks that only the whole input can settle: NaN policies and empty samples.

A kernel sees one block of samples at a time, so it cannot know how many NaN values the
whole input holds or which samples in it are empty. `screen` looks at one block before its
kernel runs and gives the validity the kernel should use plus a small (n, 3) table of
per-sample facts; the engine that owns the run adds every block's table to a `RunTally`
and calls `RunTally.check` once, after the last block and before the output is published.
Both engines (in-process and Dask) do exactly this, so every option works in both.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError
from lstmshape.masks import BLOCK_ELEMENTS
from lstmshape.validity import BoolArray, IndexArray, Validity, describe_empty
from lstmshape.vocabulary import NAN_POLICIES


def check_nan_policy(policy: str) -> None:
    if policy not in NAN_POLICIES:
        raise InputError(f"unknown NaN policy {policy!r}; choose from {', '.join(NAN_POLICIES)}")


def nan_steps(x_ntf: npt.NDArray[np.generic]) -> BoolArray:
    """(N, T): True where a step holds NaN in ANY of its features (real or imaginary part).

    Works through blocks of samples, like `mask_from_value`.

    >>> nan_steps(np.array([[[1.0, np.nan], [0.0, 0.0]]])).tolist()
    [[True, False]]
    """
    n, t, f = np.shape(x_ntf)
    found = np.zeros((n, t), dtype=bool)
    if f == 0 or np.dtype(x_ntf.dtype).kind not in "fc":
        return found
    rows = max(1, BLOCK_ELEMENTS // max(t * f, 1))
    for start in range(0, n, rows):
        block = np.asarray(x_ntf[start : start + rows])
        np.any(np.isnan(block), axis=-1, out=found[start : start + rows])
    return found


def omit_nan_steps(x_ntf: npt.NDArray[np.generic], validity: Validity) -> Validity:
    """`validity` with every step that holds a NaN (in any feature) turned into padding.

    Masks stay per step, so every feature of a sample is reduced over the same steps. A
    sample whose valid steps all hold NaN becomes empty (the `--empty` policy decides).

    >>> x = np.array([[[1.0], [np.nan], [3.0]]])
    >>> omit_nan_steps(x, Validity.all_valid(1, 3)).as_mask().tolist()
    [[True, False, True]]
    """
    bad = nan_steps(x_ntf)
    if not bad.any():
        return validity
    return Validity(n=validity.n, t=validity.t, mask=validity.as_mask() & ~bad).compact()


def nan_counts(x_ntf: npt.NDArray[np.generic], validity: Validity) -> IndexArray:
    """(N,): NaN values in the VALID steps of each sample (padding is never read).

    >>> x = np.array([[[np.nan, np.nan]], [[0.0, 1.0]], [[np.nan, 1.0]]])
    >>> nan_counts(x, Validity.all_valid(3, 1)).tolist()
    [2, 0, 1]
    """
    n, t, f = np.shape(x_ntf)
    per_sample = np.zeros(n, dtype=np.intp)
    if f and np.dtype(x_ntf.dtype).kind in "fc":
        valid = None if validity.is_all_valid else validity.as_mask()
        rows = max(1, BLOCK_ELEMENTS // max(t * f, 1))
        for start in range(0, n, rows):
            block = np.isnan(np.asarray(x_ntf[start : start + rows]))
            if valid is not None:
                block &= valid[start : start + rows, :, None]
            per_sample[start : start + rows] = np.count_nonzero(block, axis=(1, 2))
    return per_sample


def count_nans(x_ntf: npt.NDArray[np.generic], validity: Validity) -> tuple[int, IndexArray]:
    """NaN values in the valid steps and the samples holding them.

    >>> x = np.array([[[np.nan, np.nan]], [[0.0, 1.0]], [[np.nan, 1.0]]])
    >>> values, samples = count_nans(x, Validity.all_valid(3, 1))
    >>> values, samples.tolist()
    (3, [0, 2])
    """
    per_sample = nan_counts(x_ntf, validity)
    return int(per_sample.sum()), np.flatnonzero(per_sample).astype(np.intp)


def describe_nans(values: int, samples: npt.ArrayLike, n_samples: int, *, limit: int = 5) -> str:
    """'3 NaN values in 2 samples (0, 2) ...' for `--nan-policy raise`.

    samples: the first few sample indices (at most `limit` are shown); n_samples: how many.
    """
    shown = [str(int(i)) for i in np.asarray(samples)[:limit]]
    more = ", ..." if n_samples > len(shown) else ""
    value_noun = "NaN value" if values == 1 else "NaN values"
    sample_noun = "sample" if n_samples == 1 else "samples"
    return (
        f"{values} {value_noun} in the valid steps of {n_samples} {sample_noun} "
        f"({', '.join(shown)}{more}); use --nan-policy omit to treat steps holding NaN as "
        "padding, or --nan-policy propagate"
    )


def apply_nan_policy(x_ntf: npt.NDArray[np.generic], validity: Validity, policy: str) -> Validity:
    """The validity a kernel should use under `policy`; "raise" raises `InputError` when a
    valid step holds NaN, "omit" turns such steps into padding, "propagate" changes nothing.

    >>> x = np.array([[[np.nan], [1.0]]])
    >>> apply_nan_policy(x, Validity.all_valid(1, 2), "omit").as_mask().tolist()
    [[False, True]]
    """
    check_nan_policy(policy)
    if policy == "omit":
        return omit_nan_steps(x_ntf, validity)
    if policy == "raise":
        values, samples = count_nans(x_ntf, validity)
        if values:
            raise InputError(describe_nans(values, samples, len(samples)))
    return validity


# -- whole-run tally ---------------------------------------------------------------------

#: Columns of a block's check table.
NAN_VALUES, EMPTIED, EMPTY = 0, 1, 2
#: Sample indices named in an error.
SHOWN = 5


def screen(
    x_ntf: npt.NDArray[np.generic],
    validity: Validity,
    nan_policy: str,
    *,
    rejects_empty: bool,
) -> tuple[Validity, npt.NDArray[np.int64] | None]:
    """The validity a kernel should use for this block, and the block's check table.

    The table has one row per sample: NaN values in its valid steps (under "raise"),
    whether NaN omission left it without a valid step, and whether it had none to begin
    with (both only when empty samples are an error). None when nothing needs checking.

    >>> x = np.array([[[np.nan]], [[1.0]]])
    >>> kept, table = screen(x, Validity.all_valid(2, 1), "omit", rejects_empty=True)
    >>> kept.counts().tolist(), table.tolist()
    ([0, 1], [[0, 1, 0], [0, 0, 0]])
    """
    check_nan_policy(nan_policy)
    if nan_policy == "propagate" and not rejects_empty:
        return validity, None
    table = np.zeros((validity.n, 3), dtype=np.int64)
    kept = validity
    if nan_policy == "raise":
        table[:, NAN_VALUES] = nan_counts(x_ntf, validity)
    elif nan_policy == "omit":
        kept = omit_nan_steps(x_ntf, validity)
    if rejects_empty:
        had_steps = validity.counts() > 0
        table[:, EMPTY] = ~had_steps
        if kept is not validity:
            table[:, EMPTIED] = had_steps & (kept.counts() == 0)
    return kept, table


class RunTally:
    """The check tables of every block of a run, kept as counts and the first few sample
    indices (a list of them all could outgrow memory)."""

    def __init__(self) -> None:
        self.totals = np.zeros(3, dtype=np.int64)
        self.samples = np.zeros(3, dtype=np.int64)
        self.first: list[list[int]] = [[], [], []]

    def add(self, table: npt.NDArray[np.int64] | None, offset: int) -> None:
        """Add the table of the block whose first sample is `offset` in the input."""
        if table is None or not table.size:
            return
        self.totals += table.sum(axis=0)
        for column in range(3):
            hits = np.flatnonzero(table[:, column])
            self.samples[column] += hits.size
            room = SHOWN - len(self.first[column])
            self.first[column] += (hits[:room] + offset).tolist()

    def check(self) -> None:
        """Raise for what the whole run showed: empty samples, NaN under "raise", samples
        that NaN omission emptied."""
        if self.samples[EMPTY]:
            raise InputError(
                describe_empty(np.array(self.first[EMPTY]), count=int(self.samples[EMPTY]))
            )
        if self.totals[NAN_VALUES]:
            raise InputError(
                describe_nans(
                    int(self.totals[NAN_VALUES]),
                    self.first[NAN_VALUES],
                    int(self.samples[NAN_VALUES]),
                )
            )
        if self.samples[EMPTIED]:
            count = int(self.samples[EMPTIED])
            shown = ", ".join(str(i) for i in self.first[EMPTIED])
            more = ", ..." if count > len(self.first[EMPTIED]) else ""
            noun = "sample has" if count == 1 else "samples have"
            raise InputError(
                f"{count} {noun} no valid timestep once steps holding NaN are "
                f"omitted ({shown}{more}); use --empty nan or --empty zero"
            )
