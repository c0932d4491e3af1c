"""Principal components of the valid steps: fitted in one pass (or merged from blocks),
applied as the centred projection ``(x - mean) @ components``."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError
from lstmshape.strategies.project import (
    check_numeric,
    compute_dtype,
    project_dtype,
    validity_mask,
    zero_padding,
)
from lstmshape.validity import Validity


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
        check_numeric(data, "data")
        if data.ndim not in (2, 3) or data.shape[-1] != self.f:
            raise InputError(
                f"PCA blocks must be (n, T, {self.f}) or (n, {self.f}); got shape {data.shape}"
            )
        if data.ndim == 3:
            mask = validity_mask(validity_block, data.shape[0], data.shape[1])
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
    check_numeric(data, "data")
    f = basis.components.shape[0]
    if data.shape[-1] != f:
        raise InputError(
            f"the PCA basis was fitted on F={f} features but the data has "
            f"F={data.shape[-1]} features"
        )
    compute = compute_dtype(data.dtype)
    centred = data.astype(compute) - basis.mean.astype(compute)
    out = (centred @ basis.components.astype(compute)).astype(project_dtype(data.dtype), copy=False)
    return zero_padding(out, validity)
