"""Many-to-many feature change on the last axis: saved linear weights, or a mask-aware PCA.

Linear projection (`project_linear`): ``activation(x @ W + b)`` on data of shape (..., F).

- ``weights_layout="keras"``: ``W`` is a Keras ``Dense`` kernel of shape (F, K).
- ``weights_layout="torch"``: ``W`` is a PyTorch ``Linear.weight`` of shape (K, F), used as
  ``W.T``.
- dtypes: float16 and float32 input compute in float32, float64 in float64; the output keeps
  the input float dtype. Integer (and bool) input computes in and returns float64.
- With a `Validity`, the padded steps of the (N, T, K) output hold 0 (a projection of padding
  is meaningless, and 0 keeps Keras ``Masking`` / ``mask_value=0`` semantics downstream).

PCA (`PcaAccumulator`, `fit_pca`, `pca_project`): principal components of the *valid* steps
only, accumulated block by block in float64 (count, mean and the centred sum of outer
products, merged with Chan et al.'s parallel update, which stays accurate when the mean is
large compared with the spread). The covariance uses ``count - 1`` (as scikit-learn's
``explained_variance_``); components come from ``np.linalg.eigh``, ordered by decreasing
explained variance, with scikit-learn's ``svd_flip`` sign convention: the entry of largest
absolute value of every component is positive (the first such entry on ties).

A `PcaBasis` is a plain linear layer: ``components`` is a Keras-layout (F, K) weights matrix
and ``bias = -mean @ components``, so ``project_linear(x, basis.components, basis.bias)``
equals ``pca_project(x, basis)`` up to rounding. `PcaBasis.as_dict` / `PcaBasis.from_dict`
give the arrays to save (``weights``, ``bias``, ``mean``, ``explained_variance``,
``explained_variance_ratio``, ``n_steps``) so another file can be projected on the same basis.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError
from lstmshape.validity import Validity
from lstmshape.vocabulary import WEIGHTS_LAYOUTS, WeightsLayout

Array = npt.NDArray[np.generic]
FloatArray = npt.NDArray[np.floating]

__all__ = [
    "ACTIVATIONS",
    "WEIGHTS_LAYOUTS",
    "check_parameters",
    "project_dtype",
    "project_linear",
    "project_shape",
]


# --- activations ------------------------------------------------------------------------


def _linear(z: FloatArray) -> FloatArray:
    return z


def _relu(z: FloatArray) -> FloatArray:
    return np.maximum(z, 0, out=z)


def _tanh(z: FloatArray) -> FloatArray:
    return np.tanh(z, out=z)


def _sigmoid(z: FloatArray) -> FloatArray:
    # Stable for large |z|: exp only ever sees non-positive arguments.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def _softmax(z: FloatArray) -> FloatArray:
    if z.shape[-1] == 0:
        return z
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


ACTIVATIONS: dict[str, Callable[[FloatArray], FloatArray]] = {
    "linear": _linear,
    "relu": _relu,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "softmax": _softmax,  # over the last (output feature) axis
}


# --- helpers ----------------------------------------------------------------------------


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """float16/32 -> float32, float64 -> float64, anything else numeric -> float64."""
    if dtype in (np.float16, np.float32):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def project_dtype(dtype: npt.DTypeLike) -> np.dtype:
    """Output dtype of a projection: float dtypes keep theirs, other numbers give float64.

    >>> str(project_dtype("float16")), str(project_dtype("int8"))
    ('float16', 'float64')
    """
    dt = np.dtype(dtype)
    if not (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating) or dt == np.bool_):
        raise InputError(f"data must be numeric; got dtype {dt}")
    return dt if np.issubdtype(dt, np.floating) else np.dtype(np.float64)


def check_numeric(data: np.ndarray, what: str) -> None:
    if not (
        np.issubdtype(data.dtype, np.integer)
        or np.issubdtype(data.dtype, np.floating)
        or data.dtype == np.bool_
    ):
        raise InputError(f"{what} must be numeric; got dtype {data.dtype}")


def validity_mask(validity: Validity | None, n: int, t: int) -> npt.NDArray[np.bool_] | None:
    """The (N, T) mask of `validity` checked against the data, or None when all is valid."""
    if validity is None:
        return None
    if not isinstance(validity, Validity):
        raise InputError(f"validity must be a validity.Validity; got {type(validity).__name__}")
    if validity.is_all_valid:
        return None
    if (validity.n, validity.t) != (n, t):
        raise InputError(
            f"mask covers N={validity.n}, T={validity.t} but the data has N={n}, T={t}"
        )
    return validity.as_mask()


def _check_weights(
    weights_shape: tuple[int, ...], f: int, weights_layout: str
) -> tuple[int, tuple[int, int]]:
    """K, and the (F, K) orientation check, for weights of `weights_shape` on F features."""
    if weights_layout not in WEIGHTS_LAYOUTS:
        raise InputError(
            f"weights layout must be one of {', '.join(WEIGHTS_LAYOUTS)}; got {weights_layout!r}"
        )
    shape = tuple(int(d) for d in weights_shape)
    if len(shape) != 2:
        raise InputError(f"weights must be a 2-D matrix; got shape {shape}")
    f_axis = 0 if weights_layout == "keras" else 1  # keras: (F, K); torch: (K, F)
    if shape[f_axis] != f:
        other = "torch" if weights_layout == "keras" else "keras"
        other_shape, expected = ("(K, F)", f"({f}, K)") if f_axis == 0 else ("(F, K)", f"(K, {f})")
        hint = (
            f"; it looks like {other_shape}: use --weights-layout {other}"
            if shape[1 - f_axis] == f
            else f" (or use --weights-layout {other} for {other_shape})"
        )
        raise InputError(
            f"weights have shape {shape} but the data has F={f} features; "
            f"expected {expected} in {weights_layout} layout{hint}"
        )
    return shape[1 - f_axis], shape


def _check_bias(bias_shape: tuple[int, ...], k: int) -> None:
    shape = tuple(int(d) for d in bias_shape)
    if shape not in ((k,), (1, k)):
        raise InputError(
            f"bias has shape {shape} but the weights give K={k} output features; expected ({k},)"
        )


# --- linear projection ------------------------------------------------------------------


def project_shape(
    shape: tuple[int, ...],
    weights_shape: tuple[int, ...],
    weights_layout: WeightsLayout | str = "keras",
) -> tuple[int, ...]:
    """Output shape of `project_linear` for an input shape (..., F), without data.

    >>> project_shape((8, 10, 64), (64, 3)), project_shape((8, 64), (3, 64), "torch")
    ((8, 10, 3), (8, 3))
    """
    if len(shape) < 1:
        raise InputError("projection needs data with a feature axis; got a scalar")
    k, _ = _check_weights(tuple(weights_shape), int(shape[-1]), weights_layout)
    return (*(int(d) for d in shape[:-1]), k)


def project_linear(
    x: npt.ArrayLike,
    weights: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    activation: str = "linear",
    *,
    weights_layout: WeightsLayout | str = "keras",
    validity: Validity | None = None,
) -> np.ndarray:
    """``activation(x @ W + b)`` on the last axis: (..., F) -> (..., K).

    ``weights`` is (F, K) in keras layout or (K, F) in torch layout. With ``validity``
    (3-D data), padded output steps hold 0.

    >>> x = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    >>> project_linear(x, np.array([[1.0], [1.0]]), np.array([0.5])).tolist()
    [[[3.5], [7.5]]]
    >>> project_linear(x, np.array([[1.0, -1.0]]), weights_layout="torch",
    ...                activation="relu").tolist()
    [[[0.0], [0.0]]]
    """
    data = np.asarray(x)
    if data.ndim < 1:
        raise InputError("projection needs data with a feature axis; got a scalar")
    out_dtype = project_dtype(data.dtype)
    w = np.asarray(weights)
    k, _ = _check_weights(w.shape, data.shape[-1], weights_layout)
    compute = compute_dtype(data.dtype)
    check_parameters(w, bias, k, activation, compute)
    kernel = (w if weights_layout == "keras" else w.T).astype(compute, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 in the data is its own NaN
        z = np.matmul(data.astype(compute, copy=False), kernel)
    if bias is not None:
        z += np.asarray(bias).reshape(k).astype(compute, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        z = ACTIVATIONS[activation](z)
    return zero_padding(z.astype(out_dtype, copy=False), validity)


def check_parameters(
    weights: npt.ArrayLike,
    bias: npt.ArrayLike | None,
    k: int,
    activation: str,
    compute: np.dtype | None = None,
) -> None:
    """Weights and bias are numbers (within the range of `compute`, the dtype the projection
    computes in, when given), the bias has K entries, the activation is known."""
    check_numeric(np.asarray(weights), "weights")
    _check_range(np.asarray(weights), compute, "weights")
    if bias is not None:
        check_numeric(np.asarray(bias), "bias")
        _check_range(np.asarray(bias), compute, "bias")
        _check_bias(np.shape(bias), k)
    if activation not in ACTIVATIONS:
        raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")


def _check_range(values: np.ndarray, compute: np.dtype | None, what: str) -> None:
    """Refuse finite values that would turn infinite in the dtype the projection computes in.

    >>> _check_range(np.array([1e300]), np.dtype(np.float32), "weights")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lstmshape.errors.InputError: weights hold 1e+300, beyond float32, ...
    """
    if compute is None or values.dtype.kind != "f" or values.dtype.itemsize <= compute.itemsize:
        return
    finite = np.abs(values[np.isfinite(values)])
    largest = float(finite.max()) if finite.size else 0.0
    if largest > float(np.finfo(compute).max):
        raise InputError(
            f"{what} hold {largest:.3g}, beyond {compute}, the dtype float16/32 data is "
            "projected in; scale them or give float64 data"
        )


def zero_padding(out: np.ndarray, validity: Validity | None) -> np.ndarray:
    """`out` with its padded steps set to 0 (3-D outputs with a mask)."""
    if validity is not None and out.ndim == 3:
        mask = validity_mask(validity, out.shape[0], out.shape[1])
        if mask is not None:
            out[~mask] = 0
    elif validity is not None and not validity.is_all_valid:
        raise InputError(f"a mask needs 3-D data (N, T, F); got shape {out.shape}")
    return out
