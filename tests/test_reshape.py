"""Presets, einops patterns and pack/pad against direct computations and loops."""

from __future__ import annotations

import json
from pathlib import Path

import einops
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lstmshape.errors import InputError
from lstmshape.strategies.reshape import (
    PRESETS,
    pack_shape,
    pack_steps,
    pad_shape,
    pad_steps,
    pattern_shape,
    preset_shape,
    rearrange_pattern,
    reshape_preset,
)
from lstmshape.validity import Validity

SETTINGS = settings(max_examples=50, deadline=None)

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.uint8]


@st.composite
def ntf_data(draw, even_f: bool = False):
    n = draw(st.integers(0, 4))
    t = draw(st.integers(0, 5))
    f = draw(st.integers(0, 3)) * 2 if even_f else draw(st.integers(0, 5))
    dtype = draw(st.sampled_from(DTYPES))
    return draw(hnp.arrays(dtype, (n, t, f), elements=st.integers(0, 100)))


def slow_preset(x, preset):
    """Presets by explicit index loops over batch-first data."""
    n, t, f = x.shape
    if preset == "flatten":
        out = np.zeros((n, t * f), x.dtype)
        for i in range(n):
            for j in range(t):
                out[i, j * f : (j + 1) * f] = x[i, j]
        return out
    if preset == "steps":
        out = np.zeros((n * t, f), x.dtype)
        for i in range(n):
            for j in range(t):
                out[i * t + j] = x[i, j]
        return out
    if preset == "time-major":
        out = np.zeros((t, n, f), x.dtype)
        for i in range(n):
            for j in range(t):
                out[j, i] = x[i, j]
        return out
    if preset == "batch-first":
        return x.copy()
    # split-directions
    h = f // 2
    out = np.zeros((n, t, 2, h), x.dtype)
    for i in range(n):
        for j in range(t):
            out[i, j, 0] = x[i, j, :h]
            out[i, j, 1] = x[i, j, h:]
    return out


@SETTINGS
@given(
    ntf_data(even_f=True),
    st.sampled_from([p for p in PRESETS if p != "merge-directions"]),
    st.sampled_from(["ntf", "tnf"]),
)
def test_presets_match_loops_for_both_layouts(x, preset, layout):
    stored = x if layout == "ntf" else np.ascontiguousarray(x.swapaxes(0, 1))
    out = reshape_preset(stored, preset, layout=layout)
    expected = slow_preset(x, preset)
    assert out.shape == expected.shape == preset_shape(stored.shape, preset, layout)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, expected)


@SETTINGS
@given(ntf_data())
def test_flatten_and_steps_round_trip(x):
    n, t, f = x.shape
    np.testing.assert_array_equal(reshape_preset(x, "flatten").reshape(n, t, f), x)
    np.testing.assert_array_equal(reshape_preset(x, "steps").reshape(n, t, f), x)


@SETTINGS
@given(ntf_data(even_f=True), st.sampled_from(["ntf", "tnf"]))
def test_split_then_merge_round_trips(x, layout):
    stored = x if layout == "ntf" else x.swapaxes(0, 1)
    split = reshape_preset(stored, "split-directions", layout=layout)
    merged = reshape_preset(split, "merge-directions")
    np.testing.assert_array_equal(merged, x)
    # tnf merge input: (T, N, 2, H) -> batch-first (N, T, 2H)
    merged_tnf = reshape_preset(split.swapaxes(0, 1), "merge-directions", layout="tnf")
    np.testing.assert_array_equal(merged_tnf, x)
    assert preset_shape(split.shape, "merge-directions") == x.shape


def test_time_major_of_tnf_is_a_no_op_and_views():
    x = np.arange(24).reshape(2, 3, 4)
    assert reshape_preset(x, "time-major", layout="tnf") is not None
    np.testing.assert_array_equal(reshape_preset(x, "time-major", layout="tnf"), x)
    assert np.shares_memory(reshape_preset(x, "time-major"), x)
    assert np.shares_memory(reshape_preset(x, "steps"), x)


def test_preset_errors():
    with pytest.raises(InputError, match="split-directions needs an even number of features"):
        reshape_preset(np.zeros((2, 3, 5)), "split-directions")
    with pytest.raises(InputError, match=r"merge-directions needs \(N, T, 2, H\) data"):
        reshape_preset(np.zeros((2, 3, 4)), "merge-directions")
    with pytest.raises(InputError, match=r"merge-directions needs \(T, N, 2, H\) data"):
        reshape_preset(np.zeros((2, 3, 3, 4)), "merge-directions", layout="tnf")
    with pytest.raises(InputError, match=r"flatten needs a 3-D array \(N, T, F\)"):
        reshape_preset(np.zeros((2, 3)), "flatten")
    with pytest.raises(InputError, match="preset must be one of flatten, steps"):
        reshape_preset(np.zeros((2, 3, 4)), "squash")
    with pytest.raises(InputError, match="layout must be one of ntf, tnf"):
        reshape_preset(np.zeros((2, 3, 4)), "flatten", layout="nft")
    with pytest.raises(InputError, match="use pad_steps"):
        preset_shape((2, 3, 4), "padded")


# --- patterns ---------------------------------------------------------------------------

PATTERNS = [
    ("n t f -> t n f", {}),
    ("n t f -> n (t f)", {}),
    ("n t f -> (n t) f", {}),
    ("n t (d h) -> n t d h", {"d": 2}),
    ("n t (d h) -> d n t h", {"h": 1}),
    ("n t f -> f t n", {}),
    ("n ... -> (n ...)", {}),
    ("n (t2 w) f -> n t2 (w f)", {"w": 1}),
]


@SETTINGS
@given(ntf_data(even_f=True), st.sampled_from(PATTERNS))
def test_patterns_match_einops_and_pattern_shape(x, case):
    pattern, sizes = case
    out = rearrange_pattern(x, pattern, sizes)
    np.testing.assert_array_equal(out, einops.rearrange(x, pattern, **sizes))
    assert pattern_shape(x.shape, pattern, sizes) == out.shape


def test_pattern_shape_allocates_nothing():
    huge = (10**6, 10**6, 10**6)
    assert pattern_shape(huge, "n t (d h) -> (t n) h d", {"d": 2}) == (10**12, 500_000, 2)
    assert pattern_shape(huge, "n t f -> f t n") == (10**6, 10**6, 10**6)


@pytest.mark.parametrize(
    ("pattern", "sizes", "message"),
    [
        ("n t (d h) -> n t d h", {"d": 5}, "can't divide axis of length 4 in chunks of 5"),
        ("n t f -> n t", {}, "Identifiers only on one side of expression"),
        ("a b -> b a", {}, "expected 2 dims. Received 3-dim tensor"),
        ("n t f", {}, "looks like 'n t f -> t n f'"),
        ("n t (d h) -> n t d h", {"d": 0}, "axis d needs a positive size"),
        ("n t (d h) -> n t d h", {"d": "2"}, "axis d needs a whole-number size"),
    ],
)
def test_pattern_errors_are_one_line(pattern, sizes, message):
    with pytest.raises(InputError, match=message) as info:
        rearrange_pattern(np.zeros((2, 3, 4)), pattern, sizes)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=message):
        pattern_shape((2, 3, 4), pattern, sizes)


# --- pack / pad -------------------------------------------------------------------------


@st.composite
def packed_case(draw):
    n = draw(st.integers(0, 5))
    t = draw(st.integers(0, 6))
    f = draw(st.integers(0, 3))
    lengths = np.array(draw(st.lists(st.integers(0, t), min_size=n, max_size=n)), dtype=np.intp)
    pad_side = draw(st.sampled_from(["post", "pre"]))
    dtype = draw(st.sampled_from(DTYPES))
    x = draw(hnp.arrays(dtype, (n, t, f), elements=st.integers(1, 100)))
    return x, lengths, pad_side


@SETTINGS
@given(packed_case())
def test_pack_then_pad_gives_back_input_and_mask(case):
    x, lengths, pad_side = case
    n, t, f = x.shape
    validity = Validity.from_lengths(lengths, t, pad_side=pad_side)
    mask = validity.as_mask()
    x = np.where(mask[:, :, None], x, 0).astype(x.dtype)  # padding holds 0

    packed, got_lengths = pack_steps(x, validity)
    assert packed.shape == (int(lengths.sum()), f) == pack_shape(x.shape, validity)
    np.testing.assert_array_equal(got_lengths, lengths)
    # Slow reference: sample order, then time order.
    rows = [x[i, j] for i in range(n) for j in range(t) if mask[i, j]]
    np.testing.assert_array_equal(packed, np.array(rows, dtype=x.dtype).reshape(len(rows), f))

    padded, out_mask = pad_steps(packed, got_lengths, t=t, pad_side=pad_side)
    assert padded.shape == pad_shape(packed.shape, got_lengths, t)
    np.testing.assert_array_equal(padded, x)
    np.testing.assert_array_equal(out_mask, mask)


@SETTINGS
@given(packed_case(), st.data())
def test_mask_with_holes_packs_to_compacted_form(case, data):
    x, _, pad_side = case
    n, t, f = x.shape
    mask = data.draw(hnp.arrays(np.bool_, (n, t)))
    packed, lengths = pack_steps(x, Validity.from_mask(mask, n, t))
    padded, out_mask = pad_steps(packed, lengths, pad_side=pad_side, pad_value=7)
    t_out = int(lengths.max()) if n else 0
    assert padded.shape == (n, t_out, f)
    for i in range(n):
        valid = x[i][mask[i]]
        row = padded[i][out_mask[i]]
        np.testing.assert_array_equal(row, valid)
        assert np.all(padded[i][~out_mask[i]] == 7)
        if pad_side == "post":
            assert out_mask[i].tolist() == [j < lengths[i] for j in range(t_out)]
        else:
            assert out_mask[i].tolist() == [j >= t_out - lengths[i] for j in range(t_out)]


def test_pack_without_mask_keeps_everything():
    x = np.arange(12).reshape(2, 3, 2)
    packed, lengths = pack_steps(x)
    assert packed.shape == (6, 2)
    assert lengths.tolist() == [3, 3]
    assert pack_shape(x.shape) == (6, 2)


def test_pad_value_and_dtype():
    padded, _ = pad_steps(np.ones((3, 2), np.float32), [1, 2], t=4, pad_value=np.nan)
    assert padded.dtype == np.float32
    assert np.isnan(padded[0, 1:]).all()
    assert pad_shape((3, 2), [1, 2]) == (2, 2, 2)


def test_pad_errors():
    with pytest.raises(
        InputError, match="lengths add up to 3 steps but the packed data has 4 rows"
    ):
        pad_steps(np.zeros((4, 2)), [1, 2])
    with pytest.raises(InputError, match="length 5 of sample 1 exceeds T=3 timesteps"):
        pad_steps(np.zeros((6, 2)), [1, 5], t=3)
    with pytest.raises(InputError, match="lengths must be non-negative"):
        pad_steps(np.zeros((1, 2)), [2, -1])
    with pytest.raises(InputError, match="pad side must be post or pre"):
        pad_steps(np.zeros((3, 2)), [1, 2], pad_side="middle")
    with pytest.raises(InputError, match="pad value nan cannot be stored as int32"):
        pad_steps(np.zeros((3, 2), np.int32), [1, 2], pad_value=np.nan)
    with pytest.raises(InputError, match="mask covers N=2, T=4 but the data has N=2, T=3"):
        pack_steps(np.zeros((2, 3, 1)), Validity.from_lengths([1, 1], 4))


# --- reference outputs of einops, made once by tests/fixtures ---------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.skipif(not (FIXTURES / "einops_patterns.npz").exists(), reason="no fixtures")
@pytest.mark.parametrize(
    ("name", "preset"),
    [
        ("flatten", "flatten"),
        ("time_major", "time-major"),
        ("split_directions", "split-directions"),
        ("steps", "steps"),
    ],
)
def test_matches_einops_fixtures(name, preset):
    with np.load(FIXTURES / "einops_patterns.npz", allow_pickle=False) as z:
        x, expected = z["x"], z[f"out__{name}"]
        pattern, sizes = str(z[f"pattern__{name}"]), json.loads(str(z[f"axes__{name}"]))
        merged = z["out__merge_directions"]
        split = z["out__split_directions"]
    np.testing.assert_array_equal(reshape_preset(x, preset), expected)
    np.testing.assert_array_equal(rearrange_pattern(x, pattern, sizes), expected)
    assert pattern_shape(x.shape, pattern, sizes) == expected.shape
    np.testing.assert_array_equal(reshape_preset(split, "merge-directions"), merged)
