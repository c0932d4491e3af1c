"""Mask sources -> Validity: agreement with per-step loops, compaction, every bad-input error."""

from __future__ import annotations

import re
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lstmshape import masks
from lstmshape.errors import InputError
from lstmshape.masks import build_validity, mask_from_value
from lstmshape.validity import Validity, describe_empty, mask_from_lengths, require_nonempty

# -- references ---------------------------------------------------------------------------


def loop_indices(valid: np.ndarray) -> tuple[list[int], list[int], list[int]]:
    counts, first, last = [], [], []
    for row in valid:
        steps = [s for s, ok in enumerate(row) if ok]
        counts.append(len(steps))
        first.append(steps[0] if steps else -1)
        last.append(steps[-1] if steps else -1)
    return counts, first, last


def check_consistent(v: Validity, valid: np.ndarray) -> None:
    """Every view of a Validity agrees with the (N, T) truth."""
    assert (v.n, v.t) == valid.shape
    np.testing.assert_array_equal(v.as_mask(), valid)
    counts, first, last = loop_indices(valid)
    assert v.counts().tolist() == counts
    assert v.first_index().tolist() == first
    assert v.last_index().tolist() == last
    assert v.empty_samples().tolist() == [i for i, c in enumerate(counts) if c == 0]
    if v.n:
        part = v.rows(1, 3)
        np.testing.assert_array_equal(part.as_mask(), valid[1:3])


shapes = st.tuples(st.integers(0, 6), st.integers(0, 7))


@st.composite
def bool_masks(draw):
    n, t = draw(shapes)
    kind = draw(st.sampled_from(["holes", "prefix", "suffix", "full"]))
    if kind == "holes":
        return draw(hnp.arrays(np.bool_, (n, t)))
    if kind == "full":
        return np.ones((n, t), dtype=bool)
    lengths = np.array(draw(st.lists(st.integers(0, t), min_size=n, max_size=n)), dtype=int)
    steps = np.arange(t)[None, :]
    return steps < lengths[:, None] if kind == "prefix" else steps >= t - lengths[:, None]


# -- mask arrays --------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    valid=bool_masks(),
    layout=st.sampled_from(["ntf", "tnf"]),
    as_dtype=st.sampled_from(["bool", "int8", "float32", "uint8"]),
    trailing=st.booleans(),
)
def test_mask_array_matches_loop(valid, layout, as_dtype, trailing):
    given_mask = (valid if layout == "ntf" else valid.T).astype(as_dtype)
    if trailing:
        given_mask = given_mask[..., None]
    x = np.zeros((*valid.shape, 2))
    v = build_validity(x, mask=given_mask, layout=layout)
    check_consistent(v, valid)
    check_consistent(Validity.from_mask(given_mask, *valid.shape, layout=layout), valid)
    # the cheapest faithful form is kept
    counts = valid.sum(axis=1)
    steps = np.arange(valid.shape[1])
    if (counts == valid.shape[1]).all():
        assert v.is_all_valid
    elif (valid == (steps < counts[:, None])).all():
        assert v.lengths is not None and v.pad_side == "post"
    elif (valid == (steps >= valid.shape[1] - counts[:, None])).all():
        assert v.lengths is not None and v.pad_side == "pre"
    else:
        assert v.mask is not None


def test_mask_n_t_from_mask_when_no_data():
    v = build_validity(mask=np.array([[1, 0, 1]]).T, layout="tnf")
    assert (v.n, v.t) == (1, 3)
    assert v.as_mask().tolist() == [[True, False, True]]


# -- lengths ------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    shape=shapes,
    pad_side=st.sampled_from(["post", "pre"]),
    as_dtype=st.sampled_from(["int64", "int32", "uint16", "float64"]),
)
def test_lengths_match_loop(data, shape, pad_side, as_dtype):
    n, t = shape
    lengths = data.draw(st.lists(st.integers(0, t), min_size=n, max_size=n))
    v = build_validity(n=n, t=t, lengths=np.array(lengths, dtype=as_dtype), pad_side=pad_side)
    valid = np.zeros((n, t), dtype=bool)
    for i, length in enumerate(lengths):
        for s in range(t):
            valid[i, s] = s < length if pad_side == "post" else s >= t - length
    check_consistent(v, valid)


def test_mask_from_lengths_clips_out_of_range_lengths():
    got = mask_from_lengths(np.array([70000, -3, 2]), 3)
    assert got.astype(int).tolist() == [[1, 1, 1], [0, 0, 0], [1, 1, 0]]
    got = mask_from_lengths(np.array([70000, -3, 2]), 3, "pre")
    assert got.astype(int).tolist() == [[1, 1, 1], [0, 0, 0], [0, 1, 1]]


def test_lengths_column_vector_and_list_accepted():
    v = build_validity(n=2, t=3, lengths=[[1], [3]])
    assert v.is_all_valid is False and v.counts().tolist() == [1, 3]
    assert build_validity(t=4, lengths=[2, 0, 1]).n == 3


# -- mask value ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    x=hnp.arrays(
        np.float32,
        st.tuples(st.integers(0, 5), st.integers(0, 6), st.integers(0, 3)),
        elements=st.sampled_from([0.0, 1.0, -2.5, np.nan]),
    ),
    value=st.sampled_from([0.0, 1.0, "nan", float("nan"), "0"]),
    block=st.integers(1, 40),
)
def test_mask_value_matches_keras_rule(x, value, block):
    target = float(value)
    n, t, _ = x.shape
    valid = np.zeros((n, t), dtype=bool)
    for i in range(n):
        for s in range(t):
            feats = [float(v) for v in x[i, s]]
            if np.isnan(target):
                padding = all(np.isnan(v) for v in feats)
            else:
                padding = all(v == target for v in feats)
            valid[i, s] = not padding
    with mock.patch.object(masks, "BLOCK_ELEMENTS", block):
        check_consistent(build_validity(x, mask_value=value), valid)
        np.testing.assert_array_equal(mask_from_value(x, target), valid)


def test_mask_value_on_transposed_time_major_view():
    x_tnf = np.zeros((3, 2, 2))
    x_tnf[0, 1] = 1.0
    x_tnf[2, 0] = [0.0, 5.0]
    v = build_validity(x_tnf.transpose(1, 0, 2), mask_value=0, layout="tnf")
    assert v.as_mask().tolist() == [[False, False, True], [True, False, False]]


def test_mask_value_nan_on_integer_data_is_all_valid():
    v = build_validity(np.zeros((2, 3, 1), dtype=np.int16), mask_value="nan")
    assert v.is_all_valid


def test_no_source_is_all_valid():
    v = build_validity(np.zeros((2, 3, 4)))
    assert v.is_all_valid and v.counts().tolist() == [3, 3]


# -- helpers ------------------------------------------------------------------------------


def test_require_nonempty_and_describe_empty():
    require_nonempty(Validity.from_lengths([1, 2], 2))
    with pytest.raises(InputError, match=re.escape("1 sample has no valid timestep (7); use")):
        require_nonempty(Validity.from_lengths([1, 0], 2), offset=6)
    assert describe_empty(np.arange(7)).startswith(
        "7 samples have no valid timestep (0, 1, 2, 3, 4, ...)"
    )
    assert Validity.all_valid(3, 0).empty_samples().tolist() == [0, 1, 2]


# -- errors -------------------------------------------------------------------------------

TWO_SOURCES = "give at most one of --mask, --lengths, --mask-value"


@pytest.mark.parametrize(
    "sources",
    [
        dict(mask=np.ones((2, 3)), lengths=[1, 2]),
        dict(mask=np.ones((2, 3)), mask_value=0.0),
        dict(lengths=[1, 2], mask_value="nan"),
        dict(mask=np.ones((2, 3)), lengths=[1, 2], mask_value=0.0),
    ],
)
def test_two_sources_at_once(sources):
    with pytest.raises(InputError, match=f"^{re.escape(TWO_SOURCES)}"):
        build_validity(np.zeros((2, 3, 1)), **sources)


@pytest.mark.parametrize(
    ("mask", "layout", "message"),
    [
        (
            np.ones((2, 4)),
            "ntf",
            "mask has shape (2, 4); expected (2, 3) for ntf data with N=2, T=3",
        ),
        (
            np.ones((2, 3)),
            "tnf",
            "mask has shape (2, 3); expected (3, 2) for tnf data with N=2, T=3",
        ),
        (np.ones((2, 3, 2)), "ntf", "mask has shape (2, 3, 2); expected (2, 3)"),
        (np.ones(6), "ntf", "mask has shape (6,); expected (2, 3)"),
    ],
)
def test_mask_shape_mismatch_names_both_shapes(mask, layout, message):
    with pytest.raises(InputError, match=re.escape(message)):
        build_validity(n=2, t=3, mask=mask, layout=layout)


@pytest.mark.parametrize(("bad", "shown"), [(2, "2"), (-1, "-1"), (0.5, "0.5"), (np.nan, "nan")])
def test_mask_values_other_than_zero_one(bad, shown):
    mask = np.ones((2, 3))
    mask[1, 2] = bad
    with pytest.raises(
        InputError, match=rf"mask must hold only 0/1 or bool values; found .*{shown}"
    ):
        build_validity(n=2, t=3, mask=mask)


def test_mask_non_numeric_dtype():
    with pytest.raises(InputError, match="mask must be bool or 0/1; got dtype <U1"):
        build_validity(n=1, t=2, mask=np.array([["1", "0"]]))


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        ([1, 4], "length 4 of sample 1 exceeds T=3 timesteps"),
        ([-1, 2], "lengths must be non-negative; got -1"),
        ([1.0, 2.5], "lengths must be whole numbers; got 2.5"),
        ([1.0, np.nan], "lengths must be whole numbers; got nan"),
        ([True, False], "lengths must be integers; got dtype bool"),
        (["1", "2"], "lengths must be integers; got dtype <U1"),
        ([[1, 2], [2, 1]], "lengths must have shape (N,); got (2, 2)"),
        ([1, 2, 3], "lengths has 3 entries; expected one per sample, N=2"),
    ],
)
def test_bad_lengths(lengths, message):
    with pytest.raises(InputError, match=re.escape(message)):
        build_validity(np.zeros((2, 3, 1)), lengths=np.array(lengths))


def test_other_argument_errors():
    x = np.zeros((2, 3, 1))
    with pytest.raises(InputError, match="--mask-value needs the data array"):
        build_validity(n=2, t=3, mask_value=0.0)
    with pytest.raises(InputError, match="mask value must be a number or nan; got 'zero'"):
        build_validity(x, mask_value="zero")
    with pytest.raises(InputError, match="pad side must be 'post' or 'pre'; got 'left'"):
        build_validity(x, lengths=[1, 1], pad_side="left")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="layout must be 'ntf' or 'tnf'; got 'nft'"):
        build_validity(x, layout="nft")  # type: ignore[arg-type]
    with pytest.raises(
        InputError, match=re.escape("T=4 does not match the data's shape (2, 3, 1)")
    ):
        build_validity(x, t=4)
    with pytest.raises(InputError, match="N and number of timesteps T are needed"):
        build_validity(lengths=[1, 2])


# -- layout hints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"lengths": np.ones(100, int)},
            "lengths has 100 entries; expected one per sample, N=30; 100 is T here: is the "
            "data time-major? try --layout tnf",
        ),
        (
            {"mask": np.ones((100, 30))},
            "mask has shape (100, 30); expected (30, 100) for ntf data with N=30, T=100; it "
            "is time-major (T, N): transpose it, or check --layout",
        ),
        (
            {"mask": np.ones((100, 30)), "layout": "tnf"},
            "mask has shape (100, 30); expected (30, 100) for tnf data with N=100, T=30; it "
            "is batch-first (N, T): transpose it, or check --layout",
        ),
        (
            {"lengths": np.ones(30, int), "layout": "tnf"},
            "lengths has 30 entries; expected one per sample, N=100; 30 is T here: is the "
            "data batch-first? try --layout ntf",
        ),
    ],
)
def test_sizes_that_fit_the_other_axis_suggest_the_layout(kwargs, message):
    layout = kwargs.pop("layout", "ntf")
    x = np.zeros((30, 100, 2))
    x_ntf = x if layout == "ntf" else x.transpose(1, 0, 2)
    with pytest.raises(InputError) as caught:
        build_validity(x_ntf, layout=layout, **kwargs)
    assert str(caught.value) == message


def test_sizes_that_fit_neither_axis_get_no_hint():
    with pytest.raises(InputError) as caught:
        build_validity(np.zeros((30, 100, 2)), lengths=np.ones(7, int))
    assert "layout" not in str(caught.value)
