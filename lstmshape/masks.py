"""Mask sources -> `Validity`: a boolean/0-1 array, per-sample lengths, or a padding value.

`build_validity` checks that at most one source is given and turns it into a checked,
compact `validity.Validity`; `MaskSpec` is what the engines take: a validity known up front,
or a padding value that gives one block by block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lstmshape.errors import InputError
from lstmshape.padding import Detection, infer, summarise
from lstmshape.validity import (
    BoolArray,
    Validity,
    layout_hint,
    validate_lengths,
)
from lstmshape.vocabulary import Layout, PadSide

if TYPE_CHECKING:
    import numpy.typing as npt


def mask_from_value(x_ntf: npt.NDArray[np.generic], value: float) -> BoolArray:
    """Keras `Masking`: a step is padding when ALL its features equal `value` (NaN allowed).

    Works through blocks of samples, so a memory-mapped input needs no full-size temporary.

    >>> x = np.array([[[1.0, 0.0], [0.0, 0.0]]])
    >>> mask_from_value(x, 0.0).tolist()
    [[True, False]]
    """
    n, t, f = x_ntf.shape
    valid = np.zeros((n, t), dtype=bool)
    if f == 0:
        return valid
    if np.dtype(x_ntf.dtype).kind not in "biufc":
        raise InputError(f"--mask-value needs numeric data; got dtype {x_ntf.dtype}")
    is_nan = bool(np.isnan(value))
    if not is_nan and _beyond_dtype(value, x_ntf.dtype):
        # No element can equal a value its dtype cannot hold (comparing would cast it to inf).
        valid[...] = True
        return valid
    rows = max(1, BLOCK_ELEMENTS // max(t * f, 1))
    for start in range(0, n, rows):
        block = np.asarray(x_ntf[start : start + rows])
        if is_nan:
            if block.dtype.kind in "fc":
                np.logical_not(np.all(np.isnan(block), axis=-1), out=valid[start : start + rows])
            else:
                valid[start : start + rows] = True
        else:
            np.any(block != value, axis=-1, out=valid[start : start + rows])
    return valid


def _beyond_dtype(value: float, dtype: np.dtype[Any]) -> bool:
    """True when a finite `value` is outside the range of the float/complex `dtype`."""
    if dtype.kind not in "fc" or not np.isfinite(value):
        return False
    return abs(value) > float(np.finfo(dtype).max)


BLOCK_ELEMENTS = 1 << 22  # elements per block of samples when scanning data (16 MB of float32)


def check_one_source(mask: object, lengths: object, mask_value: object) -> None:
    """At most one mask source is given (None stands for not given).

    >>> check_one_source(None, [3], 0.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lstmshape.errors.InputError: give at most one of ...; got --lengths and --mask-value
    """
    sources = (("--mask", mask), ("--lengths", lengths), ("--mask-value", mask_value))
    given = [name for name, source in sources if source is not None]
    if len(given) > 1:
        raise InputError(
            f"give at most one of --mask, --lengths, --mask-value; got {' and '.join(given)}"
        )


def build_validity(
    x_ntf: npt.NDArray[np.generic] | None = None,
    *,
    n: int | None = None,
    t: int | None = None,
    mask: npt.ArrayLike | None = None,
    lengths: npt.ArrayLike | None = None,
    mask_value: float | str | None = None,
    pad_side: PadSide = "post",
    layout: Layout = "ntf",
) -> Validity:
    """Turn at most one mask source into a checked, compact `Validity`.

    x_ntf: the data, batch-first (N, T, F) (a transposed view of time-major data is fine);
        gives N and T, and is scanned for `mask_value`.
    n, t: the batch size and number of timesteps when `x_ntf` is not given.
    mask: (N, T) for layout "ntf", (T, N) for "tnf" (a trailing axis of size 1 is accepted);
        bool or 0/1, nonzero = valid.
    lengths: (N,) whole numbers 0 <= L <= T; `pad_side` "post" makes the first L steps valid,
        "pre" (Keras `pad_sequences` default) the last L.
    mask_value: a step is padding when all its features equal it (Keras `Masking`); "nan" ok.
    With no source every step is valid. A mask that is in fact a prefix or suffix mask is
    stored as lengths (see `Validity.compact`), which lets kernels slice rows.

    >>> v = build_validity(n=2, t=3, mask=np.array([[1, 1, 0], [1, 0, 0]]))
    >>> v.lengths.tolist(), v.pad_side, v.mask is None
    ([2, 1], 'post', True)
    """
    check_one_source(mask, lengths, mask_value)
    if pad_side not in ("post", "pre"):
        raise InputError(f"pad side must be 'post' or 'pre'; got {pad_side!r}")
    if layout not in ("ntf", "tnf"):
        raise InputError(f"layout must be 'ntf' or 'tnf'; got {layout!r}")
    n, t = _batch_size(x_ntf, n, t, mask=mask, lengths=lengths, layout=layout)

    if lengths is not None:
        checked = validate_lengths(lengths, t)
        if len(checked) != n:
            raise InputError(
                f"lengths has {len(checked)} entries; expected one per sample, N={n}"
                + layout_hint(checked.shape, n, t, layout)
            )
        return Validity(n=n, t=t, lengths=checked, pad_side=pad_side).compact()
    if mask is not None:
        return Validity.from_mask(mask, n, t, layout).compact()
    if mask_value is not None:
        if x_ntf is None:
            raise InputError("--mask-value needs the data array to find the padding in")
        try:
            value = float(mask_value)
        except (TypeError, ValueError):
            raise InputError(f"mask value must be a number or nan; got {mask_value!r}") from None
        return Validity(n=n, t=t, mask=mask_from_value(x_ntf, value)).compact()
    return Validity.all_valid(n, t)


def _batch_size(
    x_ntf: npt.NDArray[np.generic] | None,
    n: int | None,
    t: int | None,
    *,
    mask: npt.ArrayLike | None,
    lengths: npt.ArrayLike | None,
    layout: Layout,
) -> tuple[int, int]:
    """(N, T) from the data, else from n/t, filling gaps from the mask or lengths."""
    if x_ntf is not None:
        shape = np.shape(x_ntf)
        if len(shape) < 2:
            raise InputError(f"data must have a time axis, (N, T, F); got shape {shape}")
        for name, given, actual in (("N", n, shape[0]), ("T", t, shape[1])):
            if given is not None and given != actual:
                raise InputError(f"{name}={given} does not match the data's shape {shape}")
        return int(shape[0]), int(shape[1])
    if (n is None or t is None) and mask is not None:
        mask_shape = np.shape(mask)
        if len(mask_shape) >= 2:
            rows, cols = mask_shape[:2] if layout == "ntf" else mask_shape[1::-1]
            n, t = rows if n is None else n, cols if t is None else t
    if n is None and lengths is not None:
        n = len(np.atleast_1d(np.asarray(lengths)))
    if n is None or t is None:
        raise InputError("the batch size N and number of timesteps T are needed without data")
    if n < 0 or t < 0:
        raise InputError(f"N and T must be non-negative; got N={n}, T={t}")
    return int(n), int(t)


@dataclass(frozen=True)
class MaskSpec:
    """A mask known up front (mask file, lengths, or none), or one computed per block."""

    validity: Validity | None = None
    mask_value: float | None = None
    detected: Detection | None = None  # --lengths auto: the padding decided on a first block

    @property
    def per_block(self) -> bool:
        """True when each block's validity comes from its data (a value, detected padding)."""
        return self.mask_value is not None or self.detected is not None

    def for_block(self, x_ntf: npt.NDArray[Any], start: int, stop: int) -> Validity:
        if self.validity is not None:
            return self.validity.rows(start, stop)
        if self.detected is not None:
            return infer(summarise(x_ntf, exact=True), like=self.detected).validity()
        if self.mask_value is not None:
            mask = mask_from_value(x_ntf, self.mask_value)
            return Validity(n=mask.shape[0], t=mask.shape[1], mask=mask).compact()
        return Validity.all_valid(x_ntf.shape[0], x_ntf.shape[1] if x_ntf.ndim > 1 else 0)
