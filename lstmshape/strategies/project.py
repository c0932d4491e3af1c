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

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError
from lstmshape.masks import Validity
from lstmshape.vocabulary import WEIGHTS_LAYOUTS, WeightsLayout

Array = npt.NDArray[np.generic]
FloatArray = npt.NDArray[np.floating]

__all__ = [
    "ACTIVATIONS",
    "WEIGHTS_LAYOUTS",
    "PcaAccumulator",
    "PcaBasis",
    "fit_pca",
    "pca_project",
    "pca_shape",
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


def _compute_dtype(dtype: np.dtype) -> np.dtype:
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


def _check_numeric(data: np.ndarray, what: str) -> None:
    if not (
        np.issubdtype(data.dtype, np.integer)
        or np.issubdtype(data.dtype, np.floating)
        or data.dtype == np.bool_
    ):
        raise InputError(f"{what} must be numeric; got dtype {data.dtype}")


def _validity_mask(validity: Validity | None, n: int, t: int) -> npt.NDArray[np.bool_] | None:
    """The (N, T) mask of `validity` checked against the data, or None when all is valid."""
    if validity is None:
        return None
    if not isinstance(validity, Validity):
        raise InputError(f"validity must be a masks.Validity; got {type(validity).__name__}")
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
    check_parameters(w, bias, k, activation)
    compute = _compute_dtype(data.dtype)
    kernel = (w if weights_layout == "keras" else w.T).astype(compute, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 in the data is its own NaN
        z = np.matmul(data.astype(compute, copy=False), kernel)
    if bias is not None:
        z += np.asarray(bias).reshape(k).astype(compute, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        z = ACTIVATIONS[activation](z)
    return _zero_padding(z.astype(out_dtype, copy=False), validity)


def check_parameters(
    weights: npt.ArrayLike, bias: npt.ArrayLike | None, k: int, activation: str
) -> None:
    """Weights and bias are numbers, the bias has K entries, the activation is known."""
    _check_numeric(np.asarray(weights), "weights")
    if bias is not None:
        _check_numeric(np.asarray(bias), "bias")
        _check_bias(np.shape(bias), k)
    if activation not in ACTIVATIONS:
        raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")


def _zero_padding(out: np.ndarray, validity: Validity | None) -> np.ndarray:
    """`out` with its padded steps set to 0 (3-D outputs with a mask)."""
    if validity is not None and out.ndim == 3:
        mask = _validity_mask(validity, out.shape[0], out.shape[1])
        if mask is not None:
            out[~mask] = 0
    elif validity is not None and not validity.is_all_valid:
        raise InputError(f"a mask needs 3-D data (N, T, F); got shape {out.shape}")
    return out


# --- PCA --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PcaBasis:
    """A fitted PCA basis: ``(x - mean) @ components``.

    ``components`` (F, K) is a Keras-layout weights matrix and `bias` (``-mean @
    components``) its bias, so the basis can be saved and applied as a linear layer.
    """

    components: npt.NDArray[np.float64]
    mean: npt.NDArray[np.float64]
    explained_variance: npt.NDArray[np.float64]
    explained_variance_ratio: npt.NDArray[np.float64]
    n_steps: int = 0

    def members(self) -> dict[str, npt.NDArray[np.float64]]:
        """The basis as named arrays: `--weights FILE:weights --bias FILE:bias` reuses it."""
        return {
            "weights": self.components,
            "bias": self.bias,
            "mean": self.mean,
            "explained_variance": self.explained_variance,
            "explained_variance_ratio": self.explained_variance_ratio,
        }

    @property
    def bias(self) -> npt.NDArray[np.float64]:
        """``-mean @ components``, shape (K,): the bias of the equivalent linear layer."""
        return -(self.mean @ self.components)

    @property
    def k(self) -> int:
        return int(self.components.shape[1])

    def as_dict(self) -> dict[str, np.ndarray]:
        """The arrays to save; ``weights``/``bias`` are what `project_linear` takes."""
        return {
            "weights": self.components,
            "bias": self.bias,
            "mean": self.mean,
            "explained_variance": self.explained_variance,
            "explained_variance_ratio": self.explained_variance_ratio,
            "n_steps": np.asarray(self.n_steps, dtype=np.int64),
        }

    @classmethod
    def from_dict(cls, arrays: Mapping[str, npt.ArrayLike]) -> PcaBasis:
        """Rebuild a basis saved with `as_dict` (``components`` is accepted for weights)."""
        key = "weights" if "weights" in arrays else "components"
        if key not in arrays or "mean" not in arrays:
            raise InputError("a saved PCA basis needs 'weights' and 'mean' arrays")
        components = np.asarray(arrays[key], dtype=np.float64)
        mean = np.asarray(arrays["mean"], dtype=np.float64)
        if components.ndim != 2 or mean.shape != (components.shape[0],):
            raise InputError(
                f"PCA basis weights {components.shape} and mean {mean.shape} do not match"
            )
        k = components.shape[1]
        ev = np.asarray(arrays.get("explained_variance", np.full(k, np.nan)), np.float64)
        ratio = np.asarray(arrays.get("explained_variance_ratio", np.full(k, np.nan)), np.float64)
        n_steps = int(np.asarray(arrays.get("n_steps", 0)))
        return cls(components, mean, ev, ratio, n_steps)


class PcaAccumulator:
    """Streaming covariance of the valid steps of (n, T, F) or (n, F) blocks, in float64.

    >>> acc = PcaAccumulator(2)
    >>> acc.update(np.array([[[0.0, 0.0], [2.0, 2.0], [9.0, -9.0]]]),
    ...            Validity.from_lengths([2], t=3))
    >>> basis = acc.finish(1)
    >>> basis.mean.tolist(), np.round(basis.components[:, 0] ** 2, 6).tolist()
    ([1.0, 1.0], [0.5, 0.5])
    """

    def __init__(self, f: int) -> None:
        f = operator.index(f)
        if f < 0:
            raise InputError(f"the number of features must be non-negative; got {f}")
        self.f = f
        self.count = 0
        self.mean = np.zeros(f, dtype=np.float64)
        self.m2 = np.zeros((f, f), dtype=np.float64)  # centred sum of outer products

    def update(self, x_block: npt.ArrayLike, validity_block: Validity | None = None) -> None:
        """Add the valid steps of one block: (n, T, F) with a mask, or (n, F)."""
        data = np.asarray(x_block)
        _check_numeric(data, "data")
        if data.ndim not in (2, 3) or data.shape[-1] != self.f:
            raise InputError(
                f"PCA blocks must be (n, T, {self.f}) or (n, {self.f}); got shape {data.shape}"
            )
        if data.ndim == 3:
            mask = _validity_mask(validity_block, data.shape[0], data.shape[1])
            # (an explicit row count: reshape(-1, 0) is ambiguous for F = 0)
            steps = data.shape[0] * data.shape[1]
            rows = data.reshape(steps, self.f) if mask is None else data[mask]
        else:
            if validity_block is not None and not validity_block.is_all_valid:
                raise InputError(f"a mask needs 3-D data (N, T, F); got shape {data.shape}")
            rows = data
        n_b = rows.shape[0]
        if n_b == 0:
            return
        with np.errstate(invalid="ignore"):  # a signalling NaN in the data warns on the cast
            rows64 = rows.astype(np.float64)  # one block-sized float64 copy
        mean_b = rows64.mean(axis=0)
        rows64 -= mean_b
        m2_b = rows64.T @ rows64
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * (n_b / total)
        self.m2 += m2_b + np.outer(delta, delta) * (self.count * n_b / total)
        self.count = total

    def covariance(self) -> npt.NDArray[np.float64]:
        """Sample covariance (divisor count - 1) of the steps seen so far."""
        if self.count < 2:
            raise InputError(f"PCA needs at least 2 valid timesteps; got {self.count}")
        return self.m2 / (self.count - 1)

    def finish(self, k: int) -> PcaBasis:
        """The top-``k`` principal components of everything added so far."""
        k = _check_k(k, self.f)
        cov = self.covariance()
        if not np.all(np.isfinite(cov)):
            raise InputError("PCA needs finite data; the valid steps hold NaN or Inf")
        cov = (cov + cov.T) / 2
        values, vectors = np.linalg.eigh(cov)  # ascending
        order = np.argsort(values, kind="stable")[::-1][:k]
        values = np.clip(values[order], 0.0, None)
        components = vectors[:, order]
        # svd_flip: the largest-|value| entry of each component is positive.
        biggest = np.argmax(np.abs(components), axis=0)
        signs = np.sign(components[biggest, np.arange(k)])
        signs[signs == 0] = 1.0
        components = components * signs
        total = float(np.clip(np.trace(cov), 0.0, None))
        ratio = values / total if total > 0 else np.zeros_like(values)
        return PcaBasis(
            components=np.ascontiguousarray(components),
            mean=self.mean.copy(),
            explained_variance=values,
            explained_variance_ratio=ratio,
            n_steps=self.count,
        )


def _check_k(k: int, f: int) -> int:
    if isinstance(k, bool):
        raise InputError(f"PCA needs a whole number of components; got {k!r}")
    try:
        k = operator.index(k)
    except TypeError:
        raise InputError(f"PCA needs a whole number of components; got {k!r}") from None
    if k < 1 or k > f:
        raise InputError(f"PCA components K={k} must be between 1 and F={f} features")
    return k


def pca_shape(shape: tuple[int, ...], k: int) -> tuple[int, ...]:
    """Output shape of `pca_project` with K components, without data.

    >>> pca_shape((8, 10, 64), 4)
    (8, 10, 4)
    """
    if len(shape) < 1:
        raise InputError("PCA needs data with a feature axis; got a scalar")
    return (*(int(d) for d in shape[:-1]), _check_k(k, int(shape[-1])))


def fit_pca(x: npt.ArrayLike, validity: Validity | None, k: int) -> PcaBasis:
    """Fit a K-component PCA on the valid steps of (N, T, F) data (or on (N, F) rows).

    >>> x = np.array([[[1.0, 1.0], [3.0, 3.0], [100.0, 0.0]]])
    >>> basis = fit_pca(x, Validity.from_lengths([2], t=3), 1)
    >>> basis.mean.tolist(), basis.explained_variance.round(6).tolist()
    ([2.0, 2.0], [4.0])
    """
    data = np.asarray(x)
    if data.ndim not in (2, 3):
        raise InputError(f"PCA needs (N, T, F) or (N, F) data; got shape {data.shape}")
    _check_k(k, data.shape[-1])
    accumulator = PcaAccumulator(data.shape[-1])
    accumulator.update(data, validity)
    return accumulator.finish(k)


def pca_project(
    x: npt.ArrayLike, basis: PcaBasis, *, validity: Validity | None = None
) -> np.ndarray:
    """The centred projection ``(x - mean) @ components``: (..., F) -> (..., K).

    dtypes as `project_linear`; with ``validity`` the padded steps hold 0.

    >>> basis = PcaBasis(np.eye(2)[:, :1], np.array([1.0, 2.0]), np.ones(1), np.ones(1))
    >>> pca_project(np.array([[3.0, 5.0]]), basis).tolist()
    [[2.0]]
    """
    data = np.asarray(x)
    if data.ndim < 1:
        raise InputError("PCA needs data with a feature axis; got a scalar")
    _check_numeric(data, "data")
    f = basis.components.shape[0]
    if data.shape[-1] != f:
        raise InputError(
            f"the PCA basis was fitted on F={f} features but the data has "
            f"F={data.shape[-1]} features"
        )
    compute = _compute_dtype(data.dtype)
    centred = data.astype(compute) - basis.mean.astype(compute)
    out = (centred @ basis.components.astype(compute)).astype(project_dtype(data.dtype), copy=False)
    return _zero_padding(out, validity)
