"""Rearranging saved outputs: presets, einops patterns, and packing / padding of valid steps.

Presets name the OUTPUT arrangement (N samples, T steps, F features):

=================  ==========================  =========================================
preset             output                      notes
=================  ==========================  =========================================
flatten            (N, T*F)                    per sample: step 0's features, then step 1's
steps              (N*T, F)                    sample-major: all steps of sample 0 first
time-major         (T, N, F)
batch-first        (N, T, F)
split-directions   (N, T, 2, F/2)              [:, :, 0] forward, [:, :, 1] backward half
merge-directions   (N, T, 2*H) from (N,T,2,H)  inverse of split-directions
=================  ==========================  =========================================

``layout="tnf"`` means the input is stored time-major, (T, N, F) (or (T, N, 2, H) for
merge-directions). It is first viewed batch-first, then the preset is applied, so the output
is exactly what the table says whatever the input layout: ``time-major`` of tnf input is a
no-op and ``batch-first`` of tnf input is the transpose. Results are views of the input when
NumPy can make them without copying.

Patterns (`rearrange_pattern`) are einops ``rearrange`` patterns applied to the array as
stored (the pattern names the stored axes, whatever the layout).

Packing (`pack_steps`) keeps the valid steps only, in sample order then time order, as
(sum of lengths, F) plus the (N,) lengths; `pad_steps` is its inverse. For a mask with holes,
pack then pad gives the compacted form: each sample's valid steps moved to the front
(post-padding) or the back (pre-padding), in their original order.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Mapping
from typing import cast

import einops
import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError
from lstmshape.validity import Validity, checked_mask, mask_from_lengths, validate_lengths
from lstmshape.vocabulary import LAYOUTS, PRESETS, Layout, PadSide, Preset

__all__ = [
    "PRESETS",
    "pack_shape",
    "pack_steps",
    "pad_shape",
    "pad_steps",
    "pattern_shape",
    "preset_shape",
    "rearrange_pattern",
    "reshape_preset",
]


# --- presets ----------------------------------------------------------------------------


def _check_preset(preset: str, layout: str) -> None:
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    if preset == "padded":
        raise InputError("the padded arrangement needs per-sample lengths; use pad_steps")
    if preset not in PRESETS:
        raise InputError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")


def _ntf_shape(shape: tuple[int, ...], preset: str, layout: str) -> tuple[int, ...]:
    """The input shape viewed batch-first, checked for the preset's rank."""
    shape = tuple(int(d) for d in shape)
    order = "N, T" if layout == "ntf" else "T, N"
    if preset == "merge-directions":
        if len(shape) != 4 or shape[2] != 2:
            raise InputError(
                f"merge-directions needs ({order}, 2, H) data (forward and backward halves); "
                f"got shape {shape}"
            )
    elif len(shape) != 3:
        raise InputError(f"{preset} needs a 3-D array ({order}, F); got shape {shape}")
    if layout == "tnf":
        return (shape[1], shape[0], *shape[2:])
    return shape


def preset_shape(
    shape: tuple[int, ...], preset: Preset | str, layout: Layout | str = "ntf"
) -> tuple[int, ...]:
    """Output shape of `reshape_preset`, without data.

    >>> preset_shape((4, 10, 6), "flatten"), preset_shape((10, 4, 6), "split-directions", "tnf")
    ((4, 60), (4, 10, 2, 3))
    """
    _check_preset(preset, layout)
    dims = _ntf_shape(shape, preset, layout)
    if preset == "merge-directions":
        n, t, two, h = dims
        return (n, t, two * h)
    n, t, f = dims
    if preset == "flatten":
        return (n, t * f)
    if preset == "steps":
        return (n * t, f)
    if preset == "time-major":
        return (t, n, f)
    if preset == "batch-first":
        return (n, t, f)
    # split-directions
    if f % 2:
        raise InputError(
            f"split-directions needs an even number of features (forward + backward); got F={f}"
        )
    return (n, t, 2, f // 2)


def reshape_preset(
    x: npt.ArrayLike, preset: Preset | str, *, layout: Layout | str = "ntf"
) -> np.ndarray:
    """Rearrange (N, T, F) data (or (T, N, F) with ``layout="tnf"``) into a preset.

    >>> x = np.arange(12).reshape(2, 3, 2)
    >>> reshape_preset(x, "flatten").tolist()
    [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    >>> reshape_preset(x, "split-directions").shape, reshape_preset(x, "time-major").shape
    ((2, 3, 2, 1), (3, 2, 2))
    """
    data = np.asarray(x)
    out_shape = preset_shape(data.shape, preset, layout)
    ntf = data if layout == "ntf" else data.swapaxes(0, 1)
    if preset == "time-major":
        return ntf.swapaxes(0, 1)
    if preset == "batch-first":
        return ntf
    return ntf.reshape(out_shape)


# --- einops patterns --------------------------------------------------------------------


def _check_sizes(sizes: Mapping[str, int] | None) -> dict[str, int]:
    checked: dict[str, int] = {}
    for name, value in (sizes or {}).items():
        if not isinstance(name, str) or not name.isidentifier():
            raise InputError(f"axis names must be identifiers; got {name!r}")
        try:
            size = operator.index(value)
        except TypeError:
            raise InputError(f"axis {name} needs a whole-number size; got {value!r}") from None
        if size < 1 or isinstance(value, bool):
            raise InputError(f"axis {name} needs a positive size; got {value!r}")
        checked[name] = size
    return checked


def _einops_message(error: Exception) -> str:
    """The informative last line of an einops error, on one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _rearrange(data: np.ndarray, pattern: str, sizes: dict[str, int]) -> np.ndarray:
    if not isinstance(pattern, str) or "->" not in pattern:
        raise InputError(f"an einops pattern looks like 'n t f -> t n f'; got {pattern!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # einops may warn on odd patterns; we report errors
            return einops.rearrange(data, pattern, **sizes)
    except (einops.EinopsError, ValueError, TypeError) as error:
        raise InputError(
            f"einops pattern {pattern!r} does not fit shape {tuple(data.shape)}: "
            f"{_einops_message(error)}"
        ) from None


def rearrange_pattern(
    x: npt.ArrayLike, pattern: str, sizes: Mapping[str, int] | None = None
) -> np.ndarray:
    """``einops.rearrange(x, pattern, **sizes)``; einops errors become one-line InputErrors.

    >>> rearrange_pattern(np.zeros((2, 3, 4)), "n t (d h) -> n t d h", {"d": 2}).shape
    (2, 3, 2, 2)
    """
    return _rearrange(np.asarray(x), pattern, _check_sizes(sizes))


def pattern_shape(
    shape: tuple[int, ...], pattern: str, sizes: Mapping[str, int] | None = None
) -> tuple[int, ...]:
    """Output shape of `rearrange_pattern` for an input shape, without data.

    einops runs on a zero-stride dummy of that shape (every reshape and transpose of an
    all-zero-strides array is a view), so nothing of the input's size is allocated.

    >>> pattern_shape((10**9, 10**6, 512), "n t f -> (n t) f")
    (1000000000000000, 512)
    """
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise InputError(f"shape dimensions must be non-negative; got {dims}")
    dummy = np.broadcast_to(np.zeros((), dtype=np.uint8), dims)
    return tuple(int(d) for d in _rearrange(dummy, pattern, _check_sizes(sizes)).shape)


# --- packing ----------------------------------------------------------------------------


def pack_shape(shape: tuple[int, ...], validity: Validity | None = None) -> tuple[int, int]:
    """Output shape (sum of lengths, F) of `pack_steps` (reads only the small mask).

    >>> pack_shape((2, 5, 3), Validity.from_lengths([2, 4], t=5))
    (6, 3)
    """
    if len(shape) != 3:
        raise InputError(f"packing needs (N, T, F) data; got shape {tuple(shape)}")
    n, t, f = (int(d) for d in shape)
    mask = checked_mask(validity, n, t)
    total = n * t if mask is None else int(np.count_nonzero(mask))
    return (total, f)


def pack_steps(
    x: npt.ArrayLike, validity: Validity | None = None
) -> tuple[np.ndarray, npt.NDArray[np.intp]]:
    """Keep the valid steps of (N, T, F) data: ((sum of lengths, F), lengths (N,)).

    Steps are in sample order, then time order.

    >>> x = np.arange(6).reshape(2, 3, 1)
    >>> packed, lengths = pack_steps(x, Validity.from_lengths([1, 2], t=3, pad_side="pre"))
    >>> packed[:, 0].tolist(), lengths.tolist()
    ([2, 4, 5], [1, 2])
    """
    data = np.asarray(x)
    if data.ndim != 3:
        raise InputError(f"packing needs (N, T, F) data; got shape {data.shape}")
    n, t, f = data.shape
    mask = checked_mask(validity, n, t)
    if mask is None:
        return data.reshape(n * t, f), np.full(n, t, dtype=np.intp)
    return data[mask], np.count_nonzero(mask, axis=1).astype(np.intp)


def _resolve_pad(
    packed_shape: tuple[int, ...], lengths: npt.ArrayLike, t: int | None, pad_side: str
) -> tuple[npt.NDArray[np.intp], int]:
    if pad_side not in ("post", "pre"):
        raise InputError(f"pad side must be post or pre; got {pad_side!r}")
    if len(packed_shape) < 1:
        raise InputError("packed steps must be (sum of lengths, F); got a scalar")
    checked = validate_lengths(lengths, np.iinfo(np.intp).max)
    if t is None:
        t = int(checked.max()) if checked.size else 0
    else:
        try:
            t = operator.index(t)
        except TypeError:
            raise InputError(f"T must be a whole number; got {t!r}") from None
        if t < 0:
            raise InputError(f"T must be non-negative; got {t}")
        checked = validate_lengths(checked, t)
    total = int(checked.sum())
    if total != packed_shape[0]:
        raise InputError(
            f"lengths add up to {total} steps but the packed data has {packed_shape[0]} rows"
        )
    return checked, t


def pad_shape(
    packed_shape: tuple[int, ...], lengths: npt.ArrayLike, t: int | None = None
) -> tuple[int, ...]:
    """Output shape (N, T, F) of `pad_steps` (T defaults to the longest length).

    >>> pad_shape((6, 3), [2, 4])
    (2, 4, 3)
    """
    shape = tuple(int(d) for d in packed_shape)
    checked, t = _resolve_pad(shape, lengths, t, "post")
    return (len(checked), t, *shape[1:])


def pad_steps(
    packed: npt.ArrayLike,
    lengths: npt.ArrayLike,
    *,
    t: int | None = None,
    pad_side: PadSide | str = "post",
    pad_value: float = 0,
) -> tuple[np.ndarray, npt.NDArray[np.bool_]]:
    """Inverse of `pack_steps`: ((N, T, F) padded with ``pad_value``, (N, T) mask).

    ``t`` defaults to the longest length; ``pad_side="post"`` puts each sample's steps first,
    ``"pre"`` last (Keras ``pad_sequences`` default).

    >>> x, mask = pad_steps(np.array([[1.0], [2.0], [3.0]]), [1, 2], t=3, pad_side="pre")
    >>> x[..., 0].tolist(), mask.astype(int).tolist()
    ([[0.0, 0.0, 1.0], [0.0, 2.0, 3.0]], [[0, 0, 1], [0, 1, 1]])
    """
    data = np.asarray(packed)
    if data.ndim < 1:
        raise InputError("packed steps must be (sum of lengths, F); got a scalar")
    checked, t = _resolve_pad(data.shape, lengths, t, pad_side)
    fill = _fill_value(pad_value, data.dtype)
    mask = mask_from_lengths(checked, t, pad_side)  # type: ignore[arg-type]
    out = np.full((len(checked), t, *data.shape[1:]), fill, dtype=data.dtype)
    out[mask] = data  # row-major over (N, T): sample order, then time order
    return out, mask


def _fill_value(pad_value: float, dtype: np.dtype) -> np.generic:
    """`pad_value` as a scalar of `dtype`; InputError when the dtype cannot hold it.

    Float dtypes round (NaN and inf are fine, a finite value must not overflow); integer and
    bool dtypes need the exact value.
    """
    if isinstance(pad_value, (bool, np.bool_)) or not isinstance(
        pad_value, (int, float, np.integer, np.floating)
    ):
        if dtype != np.bool_ or not isinstance(pad_value, (bool, np.bool_)):
            raise InputError(f"pad value must be a number; got {pad_value!r}")
    message = f"pad value {pad_value!r} cannot be stored as {dtype}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fill = cast(np.generic, np.asarray(pad_value).astype(dtype)[()])
    except (ValueError, TypeError, OverflowError):
        raise InputError(message) from None
    if np.issubdtype(dtype, np.floating):
        if np.isinf(fill) and not np.isinf(pad_value):
            raise InputError(message)
        return fill
    if not np.isfinite(pad_value) or fill != pad_value:
        raise InputError(message)
    return fill
