"""reduce_steps / global_pool against an obvious per-sample loop, plus dtype and error rules."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lstmshape.errors import InputError
from lstmshape.masks import build_validity
from lstmshape.strategies import extremes as E
from lstmshape.strategies.reduce import (
    global_pool,
    global_pool_shape,
    reduce_dtype,
    reduce_shape,
    reduce_steps,
)
from lstmshape.validity import Validity

STRATEGIES = ["last", "first", "mean", "max", "min", "sum"]
DTYPES = ["float16", "float32", "float64", "int32"]
SOURCES = ["none", "holes", "lengths-post", "lengths-pre", "value-0", "value-nan"]
HUGE = 10**9

# Module constants that pick a kernel by shape; forcing each setting runs every kernel on
# the small arrays hypothesis draws.
KERNEL_PATHS = {
    "default": {"ROW_SLICE_MIN_F": E.ROW_SLICE_MIN_F},
    "rows": dict(
        ROW_SLICE_MIN_F=0,
        ROW_SLICE_MIN_ELEMENTS=0,
        ROW_COMPRESS_MIN_F=0,
        ROW_COMPRESS_MIN_ELEMENTS=0,
        F16_BLOCK_ELEMENTS=7,
    ),
    "features": dict(
        ROW_SLICE_MIN_F=HUGE,
        ROW_COMPRESS_MIN_F=HUGE,
        FEATURE_LOOP_MAX_F=HUGE,
        FILLED_MAX_F=HUGE,
        CACHE_BLOCK_ELEMENTS=5,
    ),
    "where": dict(
        ROW_SLICE_MIN_F=HUGE, ROW_COMPRESS_MIN_F=HUGE, FEATURE_LOOP_MAX_F=-1, FILLED_MAX_F=-1
    ),
}


@contextmanager
def kernel_path(name: str):
    with mock.patch.multiple(E, **KERNEL_PATHS[name]):  # type: ignore[arg-type]
        yield


# -- the reference: one sample, one step at a time --------------------------------------------


def reference_valid(x: np.ndarray, source: str, mask: np.ndarray, lengths: np.ndarray):
    """Per-step validity written out by the contract's words."""
    n, t, f = x.shape
    valid = np.zeros((n, t), dtype=bool)
    for i in range(n):
        for s in range(t):
            if source == "none":
                valid[i, s] = True
            elif source == "holes":
                valid[i, s] = bool(mask[i, s])
            elif source == "lengths-post":
                valid[i, s] = s < lengths[i]
            elif source == "lengths-pre":
                valid[i, s] = s >= t - lengths[i]
            else:
                value = 0.0 if source == "value-0" else float("nan")
                step = [x[i, s, k] for k in range(f)]
                if np.isnan(value):
                    padding = all(np.isnan(float(v)) for v in step)
                else:
                    padding = all(v == value for v in step)
                valid[i, s] = not padding
    return valid


def reference_reduce(x, valid, strategy, bidirectional, empty):
    """Slow, obviously right: float64 arithmetic, then the dtype rules."""
    n, _, f = x.shape
    out_dtype = reduce_dtype(x.dtype, strategy)
    out = np.zeros((n, f), dtype=out_dtype)
    for i in range(n):
        steps = [s for s in range(x.shape[1]) if valid[i, s]]
        if not steps:
            out[i] = np.nan if empty == "nan" else 0
            continue
        for k in range(f):
            backward = bidirectional and k >= f // 2
            values = [x[i, s, k] for s in steps]
            if strategy == "last":
                out[i, k] = values[0] if backward else values[-1]
            elif strategy == "first":
                out[i, k] = values[-1] if backward else values[0]
            elif strategy == "max":
                out[i, k] = np.nan if any(np.isnan(float(v)) for v in values) else max(values)
            elif strategy == "min":
                out[i, k] = np.nan if any(np.isnan(float(v)) for v in values) else min(values)
            else:
                total = sum(float(v) for v in values)
                out[i, k] = total / len(values) if strategy == "mean" else total
    return out


def assert_matches(got: np.ndarray, want: np.ndarray, strategy: str) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    if strategy in ("mean", "sum") and got.dtype.kind == "f":
        rtol = {2: 2e-3, 4: 1e-5, 8: 1e-12}[got.dtype.itemsize]
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    else:
        np.testing.assert_array_equal(got, want)


# -- hypothesis: every strategy x mask source x layout x dtype x kernel ----------------------


@st.composite
def cases(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    n = draw(st.integers(0, 5))
    t = draw(st.integers(0, 6))
    f = draw(st.integers(0, 5))
    source = draw(st.sampled_from(SOURCES))
    if source == "value-nan" and dtype.kind != "f":
        source = "value-0"
    values = draw(hnp.arrays(dtype, (n, t, f), elements=st.integers(-40, 40)))
    x = values.astype(dtype)
    holes = draw(hnp.arrays(np.bool_, (n, t)))
    lengths = np.array(draw(st.lists(st.integers(0, t), min_size=n, max_size=n)), dtype=np.intp)
    if source.startswith("value"):
        pad = 0 if source == "value-0" else np.nan
        padded = draw(hnp.arrays(np.bool_, (n, t)))
        x[padded] = pad
    elif source != "none" and dtype.kind == "f":
        # Padding holding NaN, inf or a huge value must never reach a result.
        junk = draw(st.sampled_from([np.nan, np.inf, -np.inf, 6e4]))
        padding = ~reference_valid(x, source, holes, lengths)
        x[padding] = junk
    return dict(
        x=x,
        source=source,
        holes=holes,
        lengths=lengths,
        layout=draw(st.sampled_from(["ntf", "tnf"])),
        bidirectional=draw(st.booleans()),
        keepdims=draw(st.booleans()),
        empty=draw(st.sampled_from(["error", "nan", "zero"])),
        path=draw(st.sampled_from(list(KERNEL_PATHS))),
    )


def build(x_ntf: np.ndarray, case: dict) -> tuple[np.ndarray, Validity]:
    """The input as the CLI would give it: a transposed view and a (T, N) mask for tnf."""
    layout, source = case["layout"], case["source"]
    x = x_ntf
    if layout == "tnf":
        x = np.ascontiguousarray(x_ntf.transpose(1, 0, 2)).transpose(1, 0, 2)
    kwargs: dict = {}
    if source == "holes":
        kwargs["mask"] = case["holes"] if layout == "ntf" else case["holes"].T
    elif source.startswith("lengths"):
        kwargs.update(lengths=case["lengths"], pad_side=source.split("-")[1])
    elif source.startswith("value"):
        kwargs["mask_value"] = 0.0 if source == "value-0" else "nan"
    return x, build_validity(x, layout=layout, **kwargs)


@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_reduce_steps_matches_per_sample_loop(strategy, case):
    x_ntf = case["x"]
    x, validity = build(x_ntf, case)
    valid = reference_valid(x_ntf, case["source"], case["holes"], case["lengths"])
    n, _, f = x_ntf.shape
    kwargs = dict(
        bidirectional=case["bidirectional"], keepdims=case["keepdims"], empty=case["empty"]
    )
    n_empty = int((~valid.any(axis=1)).sum())
    with kernel_path(case["path"]):
        if case["bidirectional"] and f % 2:
            with pytest.raises(InputError, match="even number of features; got F="):
                reduce_steps(x, validity, strategy, **kwargs)
            return
        if n_empty and case["empty"] == "error":
            with pytest.raises(InputError, match=f"^{n_empty} samples? ha(s|ve) no valid"):
                reduce_steps(x, validity, strategy, **kwargs)
            return
        if n_empty and case["empty"] == "nan" and reduce_dtype(x.dtype, strategy).kind != "f":
            with pytest.raises(InputError, match="use --empty zero"):
                reduce_steps(x, validity, strategy, **kwargs)
            return
        got = reduce_steps(x, validity, strategy, **kwargs)
    event(f"computed, {case['path']} kernels, {'some' if n_empty else 'no'} empty samples")
    want = reference_reduce(x_ntf, valid, strategy, case["bidirectional"], case["empty"])
    assert type(got) is np.ndarray
    assert got.shape == reduce_shape(x_ntf.shape, keepdims=case["keepdims"])
    assert_matches(got.reshape(n, f), want, strategy)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=6),
        elements=st.floats(-1e6, 1e6),
    )
)
def test_all_valid_mean_equals_np_mean(x):
    validity = Validity.all_valid(x.shape[0], x.shape[1])
    np.testing.assert_allclose(reduce_steps(x, validity, "mean"), np.mean(x, axis=1), atol=1e-6)
    np.testing.assert_allclose(global_pool(x, validity), np.mean(x, axis=1), atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        hnp.scalar_dtypes(), hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=5)
    )
)
def test_full_mask_last_equals_final_step(x):
    if x.dtype.kind not in "biufc":
        return
    full = build_validity(x, mask=np.ones(x.shape[:2], dtype=bool))
    got = reduce_steps(x, full, "last")
    np.testing.assert_array_equal(got, x[:, -1])
    assert got.dtype == x.dtype


# -- specific behaviour -----------------------------------------------------------------------


def test_bidirectional_last_is_packed_h_n():
    # forward half at the last valid step, backward half at the first valid step
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    v = build_validity(x, mask=np.array([[0, 1, 0, 1], [1, 1, 1, 0]]))
    got = reduce_steps(x, v, "last", bidirectional=True)
    np.testing.assert_array_equal(got[0], np.r_[x[0, 3, :2], x[0, 1, 2:]])
    np.testing.assert_array_equal(got[1], np.r_[x[1, 2, :2], x[1, 0, 2:]])
    first = reduce_steps(x, v, "first", bidirectional=True)
    np.testing.assert_array_equal(first[0], np.r_[x[0, 1, :2], x[0, 3, 2:]])
    mean = reduce_steps(x, v, "mean", bidirectional=True)
    np.testing.assert_array_equal(mean, reduce_steps(x, v, "mean"))


def test_float16_mean_accumulates_beyond_float16_range():
    x = np.full((2, 5000, 3), 60000.0, dtype=np.float16)
    for validity in (Validity.all_valid(2, 5000), Validity.from_lengths([4000, 5000], 5000)):
        got = reduce_steps(x, validity, "mean")
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, 60000.0)
    assert np.isinf(reduce_steps(x, Validity.all_valid(2, 5000), "sum")).all()


def test_keras_global_average_pooling_with_mask():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 7, 3)).astype(np.float32)
    m = rng.random((5, 7)) < 0.6
    m[:, 0] = True
    keras = (x * m[..., None]).sum(1) / m.sum(1, keepdims=True)
    got = global_pool(x, build_validity(x, mask=m), "avg")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, keras, rtol=1e-5)


def test_global_max_never_lets_padding_win():
    x = -np.ones((3, 4, 2))
    x[:, 2:] = 1e30
    got = global_pool(x, Validity.from_lengths([2, 2, 1], 4), "max")
    np.testing.assert_array_equal(got, -1.0)
    assert global_pool_shape(x.shape) == (3, 2)


@pytest.mark.parametrize("path", list(KERNEL_PATHS))
@pytest.mark.parametrize("dtype", ["float16", "float32", "int64", "uint8"])
@pytest.mark.parametrize("shape", [(5, 40, 64), (9, 12, 1), (7, 30, 3)])
def test_max_min_kernels_on_larger_shapes(path, dtype, shape):
    # The default thresholds pick the row kernels only on rows with thousands of elements.
    rng = np.random.default_rng(2)
    x = rng.integers(0, 200, size=shape).astype(dtype)
    n, t, _ = shape
    sources = {
        "lengths": build_validity(x, lengths=rng.integers(1, t + 1, n), pad_side="pre"),
        "holes": build_validity(x, mask=(rng.random((n, t)) < 0.5) | (np.arange(t) == 3)),
    }
    if x.dtype.kind == "f":
        x[1, -1, 5 % shape[2]] = np.nan  # a NaN in a valid step propagates, as np.max does
    with kernel_path(path):
        for validity in sources.values():
            m = validity.as_mask()
            for strategy, fn in (("max", np.max), ("min", np.min)):
                want = np.stack([fn(x[i][m[i]], axis=0) for i in range(n)])
                np.testing.assert_array_equal(reduce_steps(x, validity, strategy), want)


def test_memmap_input_gives_plain_array(tmp_path: Path):
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(3, 4, 2))
    mm[:] = np.arange(24, dtype=np.float32).reshape(3, 4, 2)
    v = Validity.from_lengths([1, 4, 2], 4)
    for strategy in STRATEGIES:
        got = reduce_steps(mm, v, strategy)
        assert type(got) is np.ndarray
    np.testing.assert_array_equal(reduce_steps(mm, v, "last"), mm[[0, 1, 2], [0, 3, 1]])


def test_keepdims_and_empty_fill():
    x = np.ones((3, 2, 2))
    v = Validity.from_lengths([0, 2, 0], 2)
    got = reduce_steps(x, v, "sum", keepdims=True, empty="nan")
    assert got.shape == (3, 1, 2)
    assert np.isnan(got[[0, 2]]).all() and (got[1] == 2).all()
    np.testing.assert_array_equal(reduce_steps(x, v, "max", empty="zero"), [[0, 0], [1, 1], [0, 0]])


# -- dtype rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "strategy", "expected"),
    [
        ("float16", "mean", "float16"),
        ("float32", "sum", "float32"),
        ("int32", "mean", "float64"),
        ("int32", "sum", "int32"),
        ("uint8", "max", "uint8"),
        ("bool", "mean", "float64"),
        ("bool", "sum", "int64"),
        ("bool", "max", "bool"),
        ("bool", "last", "bool"),
        ("complex64", "mean", "complex64"),
        ("complex128", "first", "complex128"),
    ],
)
def test_reduce_dtype(dtype, strategy, expected):
    assert reduce_dtype(dtype, strategy) == np.dtype(expected)


def test_bool_is_zero_one():
    x = np.array([[[True], [False], [True]], [[False], [False], [True]]])
    v = Validity.from_lengths([2, 2], 3)
    assert reduce_steps(x, v, "sum").tolist() == [[1], [0]]
    assert reduce_steps(x, v, "mean").tolist() == [[0.5], [0.0]]
    assert reduce_steps(x, v, "max").tolist() == [[True], [False]]
    assert reduce_steps(x, v, "min").tolist() == [[False], [False]]


def test_complex_mean_allowed_max_rejected():
    x = np.array([[[1 + 1j], [3 - 1j], [np.nan]]], dtype=np.complex64)
    v = Validity.from_lengths([2], 3)
    assert reduce_steps(x, v, "mean").tolist() == [[2 + 0j]]
    with pytest.raises(InputError, match="--strategy max is undefined for complex data"):
        reduce_steps(x, v, "max")


@pytest.mark.parametrize("dtype", ["int8", "int32", "uint16", "int64"])
def test_integer_sum_overflow_is_an_error(dtype):
    info = np.iinfo(dtype)
    x = np.full((2, 3, 1), info.max, dtype=dtype)
    with pytest.raises(InputError, match=f"the sum of the valid steps overflows {dtype}"):
        reduce_steps(x, Validity.all_valid(2, 3), "sum")
    fits = reduce_steps(x, Validity.from_lengths([1, 0], 3), "sum", empty="zero")
    assert fits.dtype == np.dtype(dtype) and fits.tolist() == [[info.max], [0]]


def test_object_dtype_rejected():
    with pytest.raises(InputError, match="cannot reduce data of dtype object"):
        reduce_steps(np.empty((1, 1, 1), dtype=object), Validity.all_valid(1, 1), "sum")


# -- errors -----------------------------------------------------------------------------------


def test_empty_sample_message_names_count_and_indices():
    x = np.zeros((10, 3, 2))
    lengths = np.ones(10, dtype=int)
    lengths[[0, 5, 9]] = 0
    message = "3 samples have no valid timestep (0, 5, 9); use --empty nan or --empty zero"
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        reduce_steps(x, Validity.from_lengths(lengths, 3), "mean")
    many = Validity.from_lengths(np.zeros(8, dtype=int), 3)
    with pytest.raises(
        InputError, match=re.escape("8 samples have no valid timestep (0, 1, 2, 3, 4, ...)")
    ):
        global_pool(np.zeros((8, 3, 2)), many)


def test_nan_fill_impossible_for_integer_output():
    x = np.zeros((2, 2, 1), dtype=np.int32)
    with pytest.raises(
        InputError, match=r"--empty nan cannot fill int32 output .*use --empty zero"
    ):
        reduce_steps(x, Validity.from_lengths([0, 1], 2), "max", empty="nan")
    # a mean is float64, so NaN is fine there
    assert np.isnan(reduce_steps(x, Validity.from_lengths([0, 1], 2), "mean", empty="nan")[0, 0])


def test_argument_errors():
    x = np.zeros((2, 3, 3))
    v = Validity.all_valid(2, 3)
    with pytest.raises(InputError, match="unknown strategy 'median'; choose from last, first"):
        reduce_steps(x, v, "median")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown empty 'skip'"):
        reduce_steps(x, v, "mean", empty="skip")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown pooling op 'min'"):
        global_pool(x, v, "min")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"needs \(N, T, F\) data; got shape \(3, 3\)"):
        reduce_steps(x[0], v, "mean")
    with pytest.raises(InputError, match="the mask covers N=2, T=4 but the data has N=2, T=3"):
        reduce_steps(x, Validity.all_valid(2, 4), "mean")
    with pytest.raises(InputError, match="even number of features; got F=3"):
        reduce_steps(x, v, "mean", bidirectional=True)
    with pytest.raises(InputError, match=r"got shape \(2, 3\)"):
        reduce_shape((2, 3))
