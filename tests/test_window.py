"""Windowed pooling against a slow per-window loop and known Keras output shapes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lstmshape.errors import InputError
from lstmshape.strategies.window import (
    pool_windows,
    pool_windows_shape,
    window_bounds,
    window_shape,
)
from lstmshape.validity import Validity

SETTINGS = settings(max_examples=50, deadline=None)


# --- a slow reference written from the Keras / XLA definitions --------------------------


def keras_t_out(t: int, p: int, s: int, padding: str) -> int:
    # keras.src.ops.operation_utils.compute_pooling_output_shape
    if padding == "valid":
        return math.floor((t - p) / s) + 1
    return math.floor((t - 1) / s) + 1


def xla_pad_before(t: int, p: int, s: int, padding: str) -> int:
    # lax.padtype_to_pads("SAME"): out = ceil(t / s); pad = max((out-1)*s + p - t, 0)
    if padding == "valid":
        return 0
    out = math.ceil(t / s)
    return max((out - 1) * s + p - t, 0) // 2


def slow_pool(x, mask, op, p, s, padding):
    n, t, f = x.shape
    t_out = keras_t_out(t, p, s, padding)
    before = xla_pad_before(t, p, s, padding)
    is_float = np.issubdtype(x.dtype, np.floating)
    out_dtype = x.dtype if (op == "max" or is_float) else np.float64
    out = np.zeros((n, t_out, f), dtype=out_dtype)
    valid = np.zeros((n, t_out), dtype=bool)
    for i in range(n):
        for j in range(t_out):
            start = j * s - before
            steps = [k for k in range(start, start + p) if 0 <= k < t and mask[i, k]]
            if not steps:
                continue
            valid[i, j] = True
            window = x[i, steps, :]
            if op == "avg":
                out[i, j] = window.astype(np.float64).mean(axis=0)
            else:
                out[i, j] = window.max(axis=0)
    return out, valid


# --- strategies -------------------------------------------------------------------------

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8]


@st.composite
def pooling_case(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    n = draw(st.integers(0, 3))
    t = draw(st.integers(0, 30))
    f = draw(st.integers(0, 3))
    if np.issubdtype(dtype, np.floating):
        elements = st.floats(-1000, 1000, width=dtype.itemsize * 8, allow_subnormal=False)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, -1000), min(info.max, 1000))
    x = draw(hnp.arrays(dtype, (n, t, f), elements=elements))
    kind = draw(st.sampled_from(["none", "post", "pre", "holes"]))
    if kind == "none":
        validity = None
    elif kind == "holes":
        mask = draw(hnp.arrays(np.bool_, (n, t)))
        validity = Validity.from_mask(mask, n, t)
    else:
        lengths = draw(st.lists(st.integers(0, t), min_size=n, max_size=n))
        validity = Validity.from_lengths(np.array(lengths, dtype=np.intp), t, pad_side=kind)
    p = draw(st.one_of(st.integers(1, 6), st.integers(1, 20)))
    s = draw(st.one_of(st.none(), st.integers(1, 4), st.integers(1, 12)))
    padding = draw(st.sampled_from(["valid", "same"]))
    op = draw(st.sampled_from(["avg", "max"]))
    return x, validity, op, p, s, padding


def tolerance(dtype: np.dtype) -> dict[str, float]:
    if dtype == np.float16:
        return {"rtol": 2e-3, "atol": 1e-3}
    if dtype == np.float32:
        return {"rtol": 1e-6, "atol": 1e-5}
    return {"rtol": 1e-12, "atol": 1e-9}


@SETTINGS
@given(pooling_case())
def test_pool_windows_matches_slow_loop(case):
    x, validity, op, p, s, padding = case
    n, t, _ = x.shape
    stride = p if s is None else s
    if padding == "valid" and p > t:
        with pytest.raises(InputError, match=f"pool size {p} exceeds T={t} timesteps"):
            pool_windows(x, validity, op, p, s, padding)
        return
    mask = np.ones((n, t), bool) if validity is None else validity.as_mask()
    expected, expected_valid = slow_pool(x, mask, op, p, stride, padding)
    out, valid = pool_windows(x, validity, op, p, s, padding)

    assert out.shape == expected.shape == pool_windows_shape(x.shape, p, s, padding)
    assert out.dtype == expected.dtype
    assert valid.dtype == np.bool_
    np.testing.assert_array_equal(valid, expected_valid)
    if op == "max" or not np.issubdtype(out.dtype, np.floating):
        np.testing.assert_array_equal(out, expected)
    else:
        np.testing.assert_allclose(out, expected, **tolerance(x.dtype))
    # An all-padding window holds 0.
    assert np.all(out[~valid] == 0)


@SETTINGS
@given(pooling_case())
def test_non_contiguous_input_gives_same_result(case):
    x, validity, op, p, s, padding = case
    if padding == "valid" and p > x.shape[1]:
        return
    time_major = np.ascontiguousarray(x.transpose(1, 0, 2))
    view = time_major.transpose(1, 0, 2)  # batch-first view of time-major memory
    a, va = pool_windows(x, validity, op, p, s, padding)
    b, vb = pool_windows(view, validity, op, p, s, padding)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(va, vb)


@pytest.mark.parametrize(
    ("t", "p", "s", "padding", "expected"),
    [
        (10, 3, 2, "valid", 4),
        (10, 3, 2, "same", 5),
        (5, 2, 1, "same", 5),
        (5, 2, None, "valid", 2),
        (5, 2, None, "same", 3),
        (4, 4, 1, "valid", 1),
        (1, 5, 3, "same", 1),
        (0, 3, 2, "same", 0),
        (7, 1, 1, "valid", 7),
        (12, 5, 4, "same", 3),
    ],
)
def test_known_keras_shapes(t, p, s, padding, expected):
    assert window_shape(t, p, s, padding) == expected
    assert pool_windows_shape((2, t, 3), p, s, padding) == (2, expected, 3)
    out, valid = pool_windows(np.ones((2, t, 3)), None, "avg", p, s, padding)
    assert out.shape == (2, expected, 3)
    assert valid.shape == (2, expected)


def test_same_padding_puts_the_extra_step_after():
    # T=5, P=4, S=1: pad_total = 3, 1 before and 2 after (XLA / TF "SAME").
    starts, stops = window_bounds(5, 4, 1, "same")
    assert starts.tolist() == [0, 0, 1, 2, 3]
    assert stops.tolist() == [3, 4, 5, 5, 5]
    x = np.arange(5.0).reshape(1, 5, 1)
    out, _ = pool_windows(x, None, "avg", 4, 1, "same")
    # Edge windows average only in-range positions (TF / JAX count_include_pad=False).
    assert out[0, :, 0].tolist() == [1.0, 1.5, 2.5, 3.0, 3.5]


def test_masked_window_without_valid_steps_is_zero_and_invalid():
    x = np.array([[[5.0], [-3.0], [7.0], [9.0]]])
    mask = np.array([[True, False, False, True]])
    v = Validity.from_mask(mask, 1, 4)
    out, valid = pool_windows(x, v, "max", 1, 1, "valid")
    assert out[0, :, 0].tolist() == [5.0, 0.0, 0.0, 9.0]
    assert valid.tolist() == [[True, False, False, True]]
    out, valid = pool_windows(x, v, "avg", 2, 2, "valid")
    assert out[0, :, 0].tolist() == [5.0, 9.0]
    assert valid.tolist() == [[True, True]]


def test_padding_never_wins_max_and_nan_padding_does_not_leak():
    x = np.array([[[1.0], [100.0], [np.nan]]])
    v = Validity.from_lengths(np.array([1]), 3)
    out, _ = pool_windows(x, v, "max", 3, 1, "same")
    assert out[0, :, 0].tolist() == [1.0, 1.0, 0.0]
    out, _ = pool_windows(x, v, "avg", 3, 1, "same")
    assert out[0, :, 0].tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("op", ["avg", "max"])
@pytest.mark.parametrize(("p", "s"), [(64, 1), (37, 3), (5, 1), (3, 3)])
def test_large_windows_keep_nan_local(op, p, s):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 200, 3))
    x[0, 10, 1] = np.nan
    out, _ = pool_windows(x, None, op, p, s, "same")
    expected, _ = slow_pool(x, np.ones((2, 200), bool), op, p, s, "same")
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)  # NaN == NaN here
    assert np.isnan(out[0, :, 1]).sum() == np.isnan(expected[0, :, 1]).sum() < out.shape[1]


def test_dtypes():
    x16 = np.ones((1, 4, 2), np.float16)
    assert pool_windows(x16, None, "avg", 2)[0].dtype == np.float16
    xi = np.arange(8, dtype=np.int32).reshape(1, 4, 2)
    avg, _ = pool_windows(xi, None, "avg", 2)
    assert avg.dtype == np.float64
    assert avg[0, :, 0].tolist() == [1.0, 5.0]
    mx, _ = pool_windows(xi, None, "max", 2)
    assert mx.dtype == np.int32
    assert mx[0, :, 1].tolist() == [3, 7]


def test_float32_avg_accumulates_precisely():
    x = np.full((1, 4096, 1), 0.1, np.float32)
    out, _ = pool_windows(x, None, "avg", 4096)
    assert out[0, 0, 0] == np.float32(0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"pool_size": 12},
            "pool size 12 exceeds T=10 timesteps with --padding valid; use --padding same",
        ),
        ({"pool_size": 0}, "pool size must be a positive integer"),
        ({"pool_size": -2}, "pool size must be a positive integer"),
        ({"pool_size": 2.5}, "pool size must be a positive integer"),
        ({"pool_size": 2, "strides": 0}, "strides must be a positive integer"),
        ({"pool_size": 2, "strides": -1}, "strides must be a positive integer"),
        ({"pool_size": 2, "padding": "causal"}, "padding must be one of valid, same"),
        ({"pool_size": 2, "op": "median"}, "pool op must be one of avg, max"),
    ],
)
def test_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        pool_windows(np.zeros((2, 10, 3)), None, **kwargs)


def test_shape_errors():
    with pytest.raises(InputError, match=r"needs \(N, T, F\) data; got shape \(10, 3\)"):
        pool_windows(np.zeros((10, 3)), None, "avg", 2)
    with pytest.raises(InputError, match="mask covers N=2, T=5 but the data has N=2, T=10"):
        pool_windows(np.zeros((2, 10, 3)), Validity.all_valid(2, 5), "avg", 2)
    with pytest.raises(InputError, match="pool size 12 exceeds T=10"):
        window_shape(10, 12)
    with pytest.raises(InputError, match="numeric data"):
        pool_windows(np.zeros((1, 2, 1), dtype=complex), None, "avg", 2)


# --- reference outputs of Keras 3 (JAX backend), made once by tests/fixtures ------------

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _keras_cases():
    path = FIXTURES / "keras_pooling_windows.npz"
    if not path.exists():
        return []
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["cases"]))


@pytest.mark.parametrize("case", _keras_cases(), ids=lambda c: c["name"])
def test_matches_keras_pooling_layers(case):
    with np.load(FIXTURES / "keras_pooling_windows.npz", allow_pickle=False) as z:
        x, avg, mx = z[case["x"]], z[case["avg"]], z[case["max"]]
    args = (case["pool_size"], case["strides"], case["padding"])
    starts, stops = window_bounds(case["T"], *args)
    assert [[int(a), int(b)] for a, b in zip(starts, stops, strict=True)] == case["windows"]
    assert window_shape(case["T"], *args) == case["T_out"]
    out_avg, _ = pool_windows(x, None, "avg", *args)
    out_max, _ = pool_windows(x, None, "max", *args)
    assert out_avg.dtype == out_max.dtype == np.float32
    np.testing.assert_allclose(out_avg, avg, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out_max, mx)
