"""Linear projection against loops / np.dot, and mask-aware PCA against the valid steps."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lstmshape.errors import InputError
from lstmshape.strategies.pca import PcaAccumulator, PcaBasis, fit_pca, pca_project, pca_shape
from lstmshape.strategies.project import ACTIVATIONS, project_linear, project_shape
from lstmshape.validity import Validity

SETTINGS = settings(max_examples=50, deadline=None)

REFERENCE_ACTIVATIONS = {
    "linear": lambda z: z,
    "relu": lambda z: max(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)) if z > -700 else 0.0,
}


def slow_project(x, kernel, bias, activation):
    """Per-step loop with float64 dot products."""
    n, t, _ = x.shape
    k = kernel.shape[1]
    out = np.zeros((n, t, k))
    for i in range(n):
        for j in range(t):
            for c in range(k):
                z = float(np.dot(x[i, j].astype(np.float64), kernel[:, c].astype(np.float64)))
                if bias is not None:
                    z += float(bias[c])
                out[i, j, c] = REFERENCE_ACTIVATIONS[activation](z)
    return out


@st.composite
def projection_case(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n, t, f, k = (draw(st.integers(lo, 4)) for lo in (0, 0, 1, 1))
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64, np.int32]))
    x = (rng.normal(size=(n, t, f)) * 3).astype(dtype)
    kernel = rng.normal(size=(f, k))
    bias = draw(st.sampled_from([None, rng.normal(size=k)]))
    activation = draw(st.sampled_from(list(REFERENCE_ACTIVATIONS)))
    layout = draw(st.sampled_from(["keras", "torch"]))
    return x, kernel, bias, activation, layout


@SETTINGS
@given(projection_case())
def test_project_linear_matches_loop(case):
    x, kernel, bias, activation, layout = case
    weights = kernel if layout == "keras" else kernel.T.copy()
    out = project_linear(x, weights, bias, activation, weights_layout=layout)
    expected = slow_project(x, kernel, bias, activation)
    out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    assert out.dtype == out_dtype
    assert out.shape == project_shape(x.shape, weights.shape, layout)
    tol = {np.float16: 1e-2, np.float32: 1e-5}.get(x.dtype.type, 1e-10)
    np.testing.assert_allclose(out.astype(np.float64), expected, rtol=tol, atol=tol * 10)


def test_project_two_dimensional_and_against_dot():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4))
    w = rng.normal(size=(4, 3))
    b = rng.normal(size=3)
    np.testing.assert_allclose(project_linear(x, w, b), np.dot(x, w) + b)
    np.testing.assert_allclose(project_linear(x, w.T, b, weights_layout="torch"), x @ w + b)
    assert project_shape((5, 4), (4, 3)) == (5, 3)


def test_activations():
    x = np.array([[[-1000.0], [0.0], [2.0], [1000.0]]])
    w = np.ones((1, 1))
    assert project_linear(x, w, activation="relu")[0, :, 0].tolist() == [0, 0, 2, 1000]
    sig = project_linear(x, w, activation="sigmoid")[0, :, 0]
    np.testing.assert_allclose(sig, [0.0, 0.5, 1 / (1 + np.exp(-2.0)), 1.0])
    tanh = project_linear(x, w, activation="tanh")[0, :, 0]
    np.testing.assert_allclose(tanh, np.tanh(x[0, :, 0]))
    soft = project_linear(np.array([[1.0, 2.0]]), np.eye(2), activation="softmax")
    np.testing.assert_allclose(soft, [np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum()])
    assert set(ACTIVATIONS) >= {"linear", "relu", "tanh", "sigmoid"}


def test_padded_steps_are_zero():
    x = np.ones((2, 3, 2))
    v = Validity.from_lengths(np.array([1, 3]), 3)
    out = project_linear(x, np.ones((2, 1)), np.array([1.0]), validity=v)
    assert out[..., 0].tolist() == [[3.0, 0.0, 0.0], [3.0, 3.0, 3.0]]


def test_float16_computes_in_float32():
    x = np.full((1, 1, 2048), 1.0, np.float16)
    w = np.full((2048, 1), 1 / 2048)
    out = project_linear(x, w)
    assert out.dtype == np.float16
    assert out[0, 0, 0] == np.float16(1.0)


def test_projection_errors():
    x = np.zeros((2, 3, 128))
    with pytest.raises(
        InputError,
        match=r"weights have shape \(32, 64\) but the data has F=128 features; "
        r"expected \(128, K\) in keras layout \(or use --weights-layout torch for \(K, F\)\)",
    ):
        project_linear(x, np.zeros((32, 64)))
    with pytest.raises(InputError, match="looks like \\(K, F\\): use --weights-layout torch"):
        project_linear(x, np.zeros((4, 128)))
    with pytest.raises(InputError, match=r"expected \(K, 128\) in torch layout"):
        project_linear(x, np.zeros((128, 4)), weights_layout="torch")
    with pytest.raises(InputError, match=r"bias has shape \(3,\) but the weights give K=4"):
        project_linear(x, np.zeros((128, 4)), np.zeros(3))
    with pytest.raises(InputError, match="activation must be one of"):
        project_linear(x, np.zeros((128, 4)), activation="swish")
    with pytest.raises(InputError, match="weights must be a 2-D matrix"):
        project_linear(x, np.zeros(128))
    with pytest.raises(InputError, match="weights layout must be one of keras, torch"):
        project_linear(x, np.zeros((128, 4)), weights_layout="tf")
    with pytest.raises(InputError, match="mask covers N=2, T=4"):
        project_linear(x, np.zeros((128, 4)), validity=Validity.from_lengths([1, 1], 4))


# --- PCA --------------------------------------------------------------------------------


def svd_flip_columns(components):
    biggest = np.argmax(np.abs(components), axis=0)
    signs = np.sign(components[biggest, np.arange(components.shape[1])])
    return components * signs


def reference_pca(rows, k):
    """PCA of hand-extracted rows by SVD of the centred data."""
    mean = rows.mean(axis=0)
    _, s, vt = np.linalg.svd(rows - mean, full_matrices=False)
    variance = s**2 / (rows.shape[0] - 1)
    total = ((rows - mean) ** 2).sum() / (rows.shape[0] - 1)
    return mean, svd_flip_columns(vt[:k].T), variance[:k], variance[:k] / total, variance


@st.composite
def pca_case(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    f = draw(st.integers(1, 5))
    n = draw(st.integers(1, 6))
    t = draw(st.integers(1, 8))
    scales = rng.uniform(0.5, 5.0, size=f)
    offset = draw(st.sampled_from([0.0, 10.0, 1e4]))
    x = rng.normal(size=(n, t, f)) * scales + offset
    kind = draw(st.sampled_from(["none", "post", "pre", "holes"]))
    if kind == "none":
        validity = None
    elif kind == "holes":
        validity = Validity.from_mask(rng.random((n, t)) < 0.7, n, t)
    else:
        validity = Validity.from_lengths(rng.integers(0, t + 1, size=n), t, pad_side=kind)
    # Padding holds garbage that must not leak into the fit.
    if validity is not None:
        x[~validity.as_mask()] = 1e6
    k = draw(st.integers(1, f))
    return x, validity, k


def valid_rows(x, validity):
    rows = []
    mask = np.ones(x.shape[:2], bool) if validity is None else validity.as_mask()
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            if mask[i, j]:
                rows.append(x[i, j])
    return np.array(rows).reshape(-1, x.shape[2])


@SETTINGS
@given(pca_case())
def test_pca_on_masked_data_equals_pca_of_valid_steps(case):
    x, validity, k = case
    rows = valid_rows(x, validity)
    if rows.shape[0] < 2:
        with pytest.raises(InputError, match="PCA needs at least 2 valid timesteps"):
            fit_pca(x, validity, k)
        return
    mean, components, variance, ratio, all_variance = reference_pca(rows, k)
    # Components are defined only up to degenerate eigenvalues: need clear gaps.
    spectrum = np.concatenate([all_variance, np.zeros(max(x.shape[2] - len(all_variance), 0))])
    gaps = np.abs(np.diff(spectrum[: k + 1])) if k < len(spectrum) else np.abs(np.diff(spectrum))
    assume(np.all(gaps > 1e-3 * max(spectrum[0], 1e-12)))
    assume(np.all(np.max(np.abs(components), axis=0) - _second_abs(components) > 1e-6))

    basis = fit_pca(x, validity, k)
    assert basis.components.shape == (x.shape[2], k)
    np.testing.assert_allclose(basis.mean, mean, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(basis.explained_variance, variance, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(basis.explained_variance_ratio, ratio, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.abs(basis.components), np.abs(components), atol=1e-5)
    np.testing.assert_allclose(basis.components, components, atol=1e-5)  # sign convention
    assert np.all(np.diff(basis.explained_variance) <= 1e-12)
    assert basis.n_steps == rows.shape[0]

    projected = pca_project(x, basis, validity=validity)
    assert projected.shape == pca_shape(x.shape, k)
    mask = np.ones(x.shape[:2], bool) if validity is None else validity.as_mask()
    np.testing.assert_allclose(projected[mask], (rows - mean) @ components, atol=1e-4)
    assert np.all(projected[~mask] == 0)
    # The basis is a Keras-layout linear layer.
    as_linear = project_linear(x, basis.components, basis.bias)
    np.testing.assert_allclose(as_linear[mask], projected[mask], rtol=1e-6, atol=1e-4)


def _second_abs(components):
    if components.shape[0] < 2:
        return np.zeros(components.shape[1])
    return np.sort(np.abs(components), axis=0)[-2]


@SETTINGS
@given(pca_case(), st.lists(st.integers(0, 6), min_size=1, max_size=5))
def test_streamed_updates_equal_one_update(case, cuts):
    x, validity, _ = case
    n, _, f = x.shape
    one = PcaAccumulator(f)
    one.update(x, validity)
    streamed = PcaAccumulator(f)
    bounds = sorted({0, n, *(c for c in cuts if c <= n)})
    for start, stop in itertools.pairwise(bounds):
        block_validity = None if validity is None else validity.rows(start, stop)
        streamed.update(x[start:stop], block_validity)
    assert streamed.count == one.count
    if one.count < 2:
        return
    np.testing.assert_allclose(streamed.mean, one.mean, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(streamed.covariance(), one.covariance(), rtol=1e-8, atol=1e-8)


def test_pca_two_dimensional_rows_and_all_valid_validity():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(50, 3)) * [3.0, 1.0, 0.2]
    basis = fit_pca(rows, Validity.all_valid(50, 0), 2)
    mean, components, *_ = reference_pca(rows, 2)
    np.testing.assert_allclose(basis.components, components, atol=1e-8)
    np.testing.assert_allclose(pca_project(rows, basis), (rows - mean) @ components, atol=1e-10)


def test_pca_basis_round_trips_through_dict():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 6, 3))
    basis = fit_pca(x, None, 2)
    saved = {name: np.array(value) for name, value in basis.as_dict().items()}
    again = PcaBasis.from_dict(saved)
    np.testing.assert_array_equal(again.components, basis.components)
    np.testing.assert_array_equal(again.bias, basis.bias)
    assert again.n_steps == 24
    np.testing.assert_allclose(pca_project(x, again), pca_project(x, basis))


def test_pca_float32_output_dtype_and_large_offset():
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(20, 10, 2)) * [1.0, 0.01] + 1e6).astype(np.float64)
    basis = fit_pca(x, None, 2)
    assert basis.explained_variance[0] == pytest.approx(1.0, rel=0.2)
    assert basis.explained_variance[1] == pytest.approx(1e-4, rel=0.2)
    out = pca_project(x.astype(np.float32), basis)
    assert out.dtype == np.float32


def test_pca_errors():
    x = np.zeros((2, 3, 4))
    with pytest.raises(InputError, match="PCA components K=5 must be between 1 and F=4"):
        fit_pca(x, None, 5)
    with pytest.raises(InputError, match="PCA components K=0 must be between 1 and F=4"):
        fit_pca(x, None, 0)
    with pytest.raises(InputError, match="PCA needs at least 2 valid timesteps; got 1"):
        fit_pca(x, Validity.from_lengths([1, 0], 3), 2)
    nan = np.ones((1, 3, 4))
    nan[0, 1, 2] = np.nan
    with pytest.raises(InputError, match="PCA needs finite data"):
        fit_pca(nan, None, 1)
    nan[0, 1, 2] = 0.0
    nan[0, 2] = np.nan  # padding may hold NaN: it never reaches the fit
    assert np.isfinite(fit_pca(nan, Validity.from_lengths([2], 3), 1).components).all()
    with pytest.raises(InputError, match=r"PCA blocks must be \(n, T, 3\) or \(n, 3\)"):
        PcaAccumulator(3).update(x)
    with pytest.raises(InputError, match="fitted on F=4 features but the data has F=2"):
        pca_project(np.zeros((1, 2)), fit_pca(np.eye(4), None, 1))


# --- reference outputs of Keras Dense / torch Linear, made once by tests/fixtures -------

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.skipif(not (FIXTURES / "keras_dense.npz").exists(), reason="no fixtures")
def test_matches_keras_dense_and_torch_linear():
    with np.load(FIXTURES / "keras_dense.npz", allow_pickle=False) as z:
        x, kernel, bias = z["x"], z["kernel"], z["bias"]
        out = project_linear(x, kernel, bias, "tanh")
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, z["output"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(project_linear(x, kernel, bias), z["output_linear"], 1e-5, 1e-6)
    with np.load(FIXTURES / "torch_linear.npz", allow_pickle=False) as z:
        x, weight, bias = z["x"], z["weight"], z["bias"]
        out = project_linear(x, weight, bias, weights_layout="torch")
        np.testing.assert_allclose(out, z["output"], rtol=1e-5, atol=1e-6)
        with pytest.raises(InputError, match=r"weights have shape \(3, 5\) but the data has F=5"):
            project_linear(x, weight, bias)


@pytest.mark.parametrize("where", ["weights", "bias"])
def test_parameters_beyond_the_compute_dtype_are_refused_not_cast_to_inf(where):
    x = np.ones((2, 3, 4), np.float32)
    weights, bias = np.ones((4, 2)), np.zeros(2)
    if where == "weights":
        weights[1, 1] = 1e300
    else:
        bias[0] = -1e300
    with pytest.raises(InputError, match=f"{where} hold 1e\\+300, beyond float32"):
        project_linear(x, weights, bias)
    # float64 data computes in float64: the same parameters are fine
    assert np.isfinite(project_linear(x.astype(np.float64), np.ones((4, 2)), bias * 0)).all()
