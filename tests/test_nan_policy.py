"""--nan-policy propagate|omit|raise for reduce and pool, against per-sample loops.

omit: a step holding NaN in ANY feature is padding (masks stay per step); raise: any NaN in
a valid step is an error naming how many values and samples, counted over the whole input
even when it is streamed in blocks. Padding is never read, whatever it holds; Inf is a
number, not NaN.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from helpers import load_npy_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lstmshape import api
from lstmshape.checks import count_nans, nan_steps
from lstmshape.errors import InputError
from lstmshape.strategies import extremes as E
from lstmshape.strategies.reduce import global_pool, reduce_steps
from lstmshape.strategies.window import pool_windows, window_bounds
from lstmshape.validity import Validity

STRATEGIES = ["last", "first", "mean", "max", "min", "sum"]
POLICIES = ["propagate", "omit"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Force every max/min kernel path (row slices, row compression) on small arrays.
ROW_PATHS = dict(
    ROW_SLICE_MIN_F=0,
    ROW_SLICE_MIN_ELEMENTS=0,
    ROW_COMPRESS_MIN_F=0,
    ROW_COMPRESS_MIN_ELEMENTS=0,
)


@contextmanager
def kernel_path(name: str):
    if name == "default":
        yield
        return
    with mock.patch.multiple(E, **ROW_PATHS):
        yield


values = st.one_of(
    st.floats(-100, 100, width=64),
    st.just(np.nan),
    st.sampled_from([np.inf, -np.inf]),
)


@st.composite
def batches(draw, max_n=5, max_t=6, max_f=3):
    n = draw(st.integers(0, max_n))
    t = draw(st.integers(1, max_t))
    f = draw(st.integers(1, max_f))
    x = draw(hnp.arrays(np.float64, (n, t, f), elements=values))
    kind = draw(st.sampled_from(["all", "holes", "lengths"]))
    if kind == "all":
        validity = Validity.all_valid(n, t)
    elif kind == "holes":
        mask = draw(hnp.arrays(np.bool_, (n, t)))
        validity = Validity.from_mask(mask, n, t)
    else:
        lengths = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, t)))
        side = draw(st.sampled_from(["post", "pre"]))
        validity = Validity.from_lengths(lengths, t, side)
    return x, validity


def loop_steps(x: np.ndarray, valid: np.ndarray, i: int, policy: str) -> list[int]:
    """The steps of sample i that a reduction reads under `policy`."""
    return [
        s
        for s in range(x.shape[1])
        if valid[i, s] and not (policy == "omit" and np.isnan(x[i, s]).any())
    ]


def loop_reduce(x: np.ndarray, valid: np.ndarray, strategy: str, policy: str) -> np.ndarray:
    n, _, f = x.shape
    out = np.full((n, f), np.nan)
    with np.errstate(invalid="ignore"):
        for i in range(n):
            steps = loop_steps(x, valid, i, policy)
            if not steps:
                continue
            rows = x[i, steps]
            if strategy == "last":
                out[i] = rows[-1]
            elif strategy == "first":
                out[i] = rows[0]
            elif strategy == "mean":
                out[i] = [sum(rows[:, j]) / len(steps) for j in range(f)]
            elif strategy == "sum":
                out[i] = [sum(rows[:, j]) for j in range(f)]
            else:
                pick = max if strategy == "max" else min
                # Python's max/min ignore NaN order; NaN propagates in the kernels.
                out[i] = [
                    np.nan if np.isnan(rows[:, j]).any() else pick(rows[:, j]) for j in range(f)
                ]
    return out


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True)


# ----------------------------------------------------------------------------- reduce


@SETTINGS
@given(batch=batches(), strategy=st.sampled_from(STRATEGIES), policy=st.sampled_from(POLICIES))
@pytest.mark.parametrize("path", ["default", "rows"])
def test_reduce_matches_loop(path, batch, strategy, policy):
    x, validity = batch
    with kernel_path(path):
        got = reduce_steps(x, validity, strategy, empty="nan", nan_policy=policy)
    assert_same(got, loop_reduce(x, validity.as_mask(), strategy, policy))


@SETTINGS
@given(batch=batches(), op=st.sampled_from(["avg", "max"]), policy=st.sampled_from(POLICIES))
def test_global_pool_matches_loop(batch, op, policy):
    x, validity = batch
    got = global_pool(x, validity, op, empty="nan", nan_policy=policy)
    assert_same(got, loop_reduce(x, validity.as_mask(), "mean" if op == "avg" else "max", policy))


@SETTINGS
@given(batch=batches(), strategy=st.sampled_from(STRATEGIES))
def test_raise_counts_nan_in_valid_steps_only(batch, strategy):
    x, validity = batch
    valid = validity.as_mask()
    cells = list(zip(*np.nonzero(valid), strict=True))
    want_values = int(sum(np.isnan(x[i, s]).sum() for i, s in cells))
    want_samples = sorted({int(i) for i, s in cells if np.isnan(x[i, s]).any()})
    values, samples = count_nans(x, validity)
    assert (values, samples.tolist()) == (want_values, want_samples)
    if want_values:
        with pytest.raises(InputError, match=rf"^{want_values} NaN values? in the valid steps"):
            reduce_steps(x, validity, strategy, empty="nan", nan_policy="raise")
    else:
        got = reduce_steps(x, validity, strategy, empty="nan", nan_policy="raise")
        assert_same(got, loop_reduce(x, valid, strategy, "propagate"))


def test_omit_uses_any_feature_nan_per_step():
    x = np.array([[[1.0, 10.0], [np.nan, 20.0], [3.0, 30.0]]])
    assert nan_steps(x).tolist() == [[False, True, False]]
    got = reduce_steps(x, Validity.all_valid(1, 3), "mean", nan_policy="omit")
    assert got.tolist() == [[2.0, 20.0]]  # step 1 is dropped for every feature
    got = reduce_steps(x, Validity.all_valid(1, 3), "last", nan_policy="omit")
    assert got.tolist() == [[3.0, 30.0]]


def test_omit_can_empty_a_sample_then_empty_policy_decides():
    x = np.array([[[np.nan], [np.nan]], [[1.0], [2.0]]])
    with pytest.raises(InputError, match=r"1 sample has no valid timestep .*omitted \(0\)"):
        api.reduce(x, "mean", nan_policy="omit")
    assert api.reduce(x, "mean", nan_policy="omit", empty="zero").tolist() == [[0.0], [1.5]]


def test_padding_holding_nan_or_inf_never_counts():
    x = np.array([[[1.0], [np.nan], [np.inf]], [[2.0], [4.0], [-np.inf]]])
    lengths = [1, 2]
    for policy in ("propagate", "omit", "raise"):
        got = api.reduce(x, "mean", lengths=lengths, nan_policy=policy)
        assert got.tolist() == [[1.0], [3.0]]


def test_inf_is_a_number_not_nan():
    x = np.array([[[np.inf], [1.0]], [[np.inf], [-np.inf]]])
    assert api.reduce(x, "max", nan_policy="raise").tolist() == [[np.inf], [np.inf]]
    mean = api.reduce(x, "mean", nan_policy="omit")
    assert mean[0, 0] == np.inf and np.isnan(mean[1, 0])  # inf - inf is NaN, as IEEE says


def test_integer_data_has_no_nan():
    x = np.arange(12, dtype=np.int32).reshape(2, 3, 2)
    for policy in ("propagate", "omit", "raise"):
        assert api.reduce(x, "sum", nan_policy=policy).tolist() == [[6, 9], [24, 27]]


def test_unknown_policy_is_refused():
    with pytest.raises(InputError, match="unknown NaN policy 'skip'"):
        api.reduce(np.zeros((1, 2, 1)), "mean", nan_policy="skip")


# ----------------------------------------------------------------------------- windows


def loop_windows(x, valid, op, p, s, padding, policy):
    n, t, f = x.shape
    starts, stops = window_bounds(t, p, s, padding)
    out = np.zeros((n, len(starts), f))
    out_valid = np.zeros((n, len(starts)), bool)
    with np.errstate(invalid="ignore"):
        for i in range(n):
            keep = set(loop_steps(x, valid, i, policy))
            for j, (a, b) in enumerate(zip(starts, stops, strict=True)):
                steps = [k for k in range(a, b) if k in keep]
                if not steps:
                    continue
                out_valid[i, j] = True
                rows = x[i, steps]
                if op == "avg":
                    out[i, j] = [sum(rows[:, c]) / len(steps) for c in range(f)]
                else:
                    out[i, j] = [
                        np.nan if np.isnan(rows[:, c]).any() else max(rows[:, c]) for c in range(f)
                    ]
    return out, out_valid


@SETTINGS
@given(
    batch=batches(max_t=9),
    op=st.sampled_from(["avg", "max"]),
    p=st.integers(1, 4),
    s=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]),
    policy=st.sampled_from(POLICIES),
)
def test_windows_match_loop(batch, op, p, s, padding, policy):
    x, validity = batch
    if padding == "valid" and p > x.shape[1]:
        p = x.shape[1]
    got, got_valid = pool_windows(x, validity, op, p, s, padding, nan_policy=policy)
    want, want_valid = loop_windows(x, validity.as_mask(), op, p, s, padding, policy)
    assert got_valid.tolist() == want_valid.tolist()
    assert_same(got, want)


def test_windows_raise():
    x = np.zeros((3, 4, 2))
    x[2, 3, 1] = np.nan
    with pytest.raises(InputError, match=r"^1 NaN value in the valid steps of 1 sample \(2\)"):
        api.pool(x, "avg", pool_size=2, nan_policy="raise")
    # the NaN is in padding: fine
    out = api.pool(x, "avg", pool_size=2, nan_policy="raise", lengths=[4, 4, 3])
    assert not np.isnan(out).any()


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def nan_batch(tmp_path: Path) -> dict[str, Path]:
    """(40, 6, 3) float32: NaN in samples 3, 17 and 35 (two values in 17)."""
    x = np.random.default_rng(1).standard_normal((40, 6, 3)).astype(np.float32)
    x[3, 0, 0] = np.nan
    x[17, 2, :2] = np.nan
    x[35, 5, 2] = np.nan
    x[20, :, :] = np.nan  # padding below: never read
    lengths = np.full(40, 6)
    lengths[20] = 0
    paths = {"x": tmp_path / "x.npy", "lengths": tmp_path / "len.npy"}
    np.save(paths["x"], x)
    np.save(paths["lengths"], lengths)
    return paths


@pytest.mark.parametrize(
    "command",
    [
        ["reduce", "--strategy", "mean", "--empty", "zero"],
        ["pool", "--op", "max", "--empty", "zero"],
        ["pool", "--op", "avg", "--pool-size", "2"],
    ],
)
def test_cli_raise_counts_over_every_block(run_cli, nan_batch, tmp_path, command):
    out = tmp_path / "out.npy"
    result = run_cli(
        [
            *command[:1],
            nan_batch["x"],
            *command[1:],
            "--lengths",
            nan_batch["lengths"],
            "--nan-policy",
            "raise",
            "--chunk-mb",
            "0.001",  # one sample per block: the count spans many blocks
            "-o",
            out,
        ]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: 4 NaN values in the valid steps of 3 samples (3, 17, 35); use --nan-policy "
        "omit to treat steps holding NaN as padding, or --nan-policy propagate\n"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == sorted(nan_batch.values())


def test_cli_raise_sends_nothing_to_stdout(run_cli, nan_batch):
    args = ["reduce", nan_batch["x"], "-s", "mean", "--lengths", nan_batch["lengths"]]
    result = run_cli([*args, "--empty", "zero", "--nan-policy", "raise", "-o", "-"])
    assert result.exit_code == 2 and result.stdout_bytes == b""


def test_cli_omit_matches_the_library(run_cli, nan_batch):
    x, lengths = np.load(nan_batch["x"]), np.load(nan_batch["lengths"])
    for command, want in [
        (
            ["reduce", "-s", "max"],
            api.reduce(x, "max", lengths=lengths, nan_policy="omit", empty="zero"),
        ),
        (
            ["pool", "--op", "avg"],
            api.pool(x, "avg", lengths=lengths, nan_policy="omit", empty="zero"),
        ),
        (
            ["pool", "--op", "max", "--pool-size", "4", "--padding", "same"],
            api.pool(
                x,
                "max",
                pool_size=4,
                padding="same",
                lengths=lengths,
                nan_policy="omit",
                empty="zero",
            ),
        ),
    ]:
        result = run_cli(
            [
                command[0],
                nan_batch["x"],
                *command[1:],
                "--lengths",
                nan_batch["lengths"],
                "--empty",
                "zero",
                "--nan-policy",
                "omit",
                "--chunk-mb",
                "0.001",
                "-o",
                "-",
            ]
        )
        assert result.exit_code == 0, result.stderr
        got = load_npy_bytes(result.stdout_bytes)
        assert not np.isnan(got).any()
        np.testing.assert_array_equal(got, want)


def test_cli_omit_names_emptied_samples_by_file_index(run_cli, tmp_path):
    x = np.ones((30, 2, 1), np.float32)
    x[[4, 25]] = np.nan
    np.save(tmp_path / "x.npy", x)
    result = run_cli(
        ["reduce", tmp_path / "x.npy", "-s", "mean", "--nan-policy", "omit", "--chunk-mb", "0.001"]
    )
    assert result.exit_code == 2
    assert "2 samples have no valid timestep once steps holding NaN are omitted (4, 25)" in (
        result.stderr
    )
    assert result.stdout_bytes == b""


def test_cli_propagate_is_the_default(run_cli, nan_batch):
    args = ["reduce", nan_batch["x"], "-s", "mean", "--lengths", nan_batch["lengths"]]
    result = run_cli([*args, "--empty", "zero", "-o", "-"])
    got = load_npy_bytes(result.stdout_bytes)
    assert np.isnan(got).any(axis=1).nonzero()[0].tolist() == [3, 17, 35]
