"""Time-major reductions folded over time rows (`lstmshape.timerows`, `strategies.fold`):
the same result as the kernels of `strategies.reduce`, bit for bit, and as a slow loop over
each sample's valid steps; padding holding NaN or inf never reaches a result; every case the
fold does not cover keeps the blocks of whole samples."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmshape import api, blocks, io, timerows
from lstmshape.errors import InputError
from lstmshape.masks import MaskSpec, build_validity
from lstmshape.strategies.fold import FOLDS
from lstmshape.stream import run_plan
from lstmshape.validity import Validity


class ListSink:
    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []

    def write(self, start: int, block: np.ndarray, axis: int = 0) -> None:
        assert axis == 0 and start == sum(len(b) for b in self.blocks)
        self.blocks.append(np.array(block, copy=True))

    def result(self) -> np.ndarray:
        return np.concatenate(self.blocks, axis=0)


def _slow(x_ntf: np.ndarray, valid: np.ndarray, strategy: str, empty: str) -> np.ndarray:
    """One sample at a time, over its valid steps only, in float64."""
    n, _, f = x_ntf.shape
    out = np.zeros((n, f))
    for i in range(n):
        steps = x_ntf[i][valid[i]].astype(np.float64)
        if not len(steps):
            out[i] = np.nan if empty == "nan" else 0
            continue
        out[i] = {"mean": np.mean, "sum": np.sum, "max": np.max, "min": np.min}[strategy](
            steps, axis=0
        )
    return out


def _validity(kind: str, rng: np.random.Generator, n: int, t: int) -> Validity | None:
    if kind == "none":
        return None
    if kind == "holes":
        return Validity.from_mask(rng.random((n, t)) < 0.6, n, t)
    lengths = rng.integers(0, t + 1, size=n)
    return Validity.from_lengths(lengths, t, pad_side="post" if kind == "post" else "pre")


@st.composite
def cases(draw: st.DrawFn) -> dict:
    n, t, f = draw(st.integers(1, 9)), draw(st.integers(1, 7)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = (rng.standard_normal((n, t, f)) * 10).astype(dtype)
    kind = draw(st.sampled_from(["none", "post", "pre", "holes"]))
    validity = _validity(kind, rng, n, t)
    valid = np.ones((n, t), bool) if validity is None else validity.as_mask()
    padding = draw(st.sampled_from([0.0, np.nan, np.inf, -np.inf]))
    x[~valid] = padding
    if draw(st.booleans()):  # non-finite values in valid steps are the data's own
        x.flat[rng.integers(0, x.size, size=2)] = draw(st.sampled_from([np.nan, np.inf]))
    return {
        "x": x,
        "padding": padding,
        "validity": validity,
        "strategy": draw(st.sampled_from(FOLDS)),
        "empty": draw(st.sampled_from(["nan", "zero"])),
        "keepdims": draw(st.booleans()),
        "chunk": draw(st.sampled_from([1, 3 * f * x.itemsize, 1 << 20])),
    }


def _stream_tnf(x_ntf: np.ndarray, plan: api.Plan, spec: MaskSpec, chunk: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, np.ascontiguousarray(x_ntf.transpose(1, 0, 2)))
        sink = ListSink()
        with io.open_array(str(path)) as source:
            assert timerows.can_fold(source, plan, spec, 1 << 20)
            # The accumulators fit from 2 rows of F on: chunk 1 takes the blocks of samples.
            run_plan(source, plan, spec, sink, chunk_bytes=max(chunk, 2 * x_ntf[0, 0].nbytes))
        return sink.result()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_fold_equals_the_kernel_bit_for_bit_and_a_slow_loop(case: dict) -> None:
    x, validity, strategy = case["x"], case["validity"], case["strategy"]
    n, t, f = x.shape
    tnf = np.ascontiguousarray(x.transpose(1, 0, 2))
    plan = api.plan_reduce(
        tnf.shape, tnf.dtype, strategy, layout="tnf", empty=case["empty"], keepdims=case["keepdims"]
    )
    spec = MaskSpec(validity=validity)
    got = _stream_tnf(x, plan, spec, case["chunk"])
    expected = plan.apply(np.asarray(tnf).transpose(1, 0, 2), validity or Validity.all_valid(n, t))
    # Sums come out bit for bit where the kernel adds in time order (einsum along F); it
    # redoes rows that padding made non-finite with np.sum, sums an unmasked input with
    # one-operand einsum, and with F == 1 einsum runs along T in its unrolled loop: there
    # the order (and the last bit) may differ.
    in_order = validity is not None and case["padding"] == 0.0 and f > 1
    if strategy in ("max", "min") or in_order:
        np.testing.assert_array_equal(got, expected.out)
    else:
        ulps = 4 * np.finfo(x.dtype).eps
        np.testing.assert_allclose(got, expected.out, rtol=ulps, atol=ulps)
    valid = np.ones((n, t), bool) if validity is None else validity.as_mask()
    slow = _slow(x, valid, strategy, case["empty"])
    rtol = 1e-5 if x.dtype == np.float32 else 1e-12
    flat = got.reshape(n, f)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(flat, slow.astype(x.dtype), rtol=rtol, atol=rtol * 100)


@pytest.mark.parametrize("pad_side", ["post", "pre"])
def test_nan_and_inf_padding_never_reach_the_result(tmp_path: Path, pad_side: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 8, 4)).astype(np.float32)
    lengths = np.array([8, 0, 3, 1, 5, 7])
    validity = Validity.from_lengths(lengths, 8, pad_side=pad_side)
    x[~validity.as_mask()] = np.inf
    x[~validity.as_mask() & (np.arange(8) % 2 == 0)] = np.nan
    for strategy in FOLDS:
        plan = api.plan_reduce((8, 6, 4), x.dtype, strategy, layout="tnf", empty="zero")
        got = _stream_tnf(x, plan, MaskSpec(validity=validity), 40)
        assert np.isfinite(got).all(), strategy
        np.testing.assert_allclose(got, _slow(x, validity.as_mask(), strategy, "zero"), rtol=1e-5)


def test_the_fold_reads_time_rows_not_blocks_of_samples(tmp_path, monkeypatch) -> None:
    x = np.random.default_rng(4).standard_normal((5, 3, 7)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)  # stored (T, N, F) = (5, 3, 7)
    validity = Validity.from_lengths([5, 2, 4], 5)

    def no_blocks(*args: object, **kwargs: object) -> None:
        raise AssertionError("read in blocks of whole samples")

    monkeypatch.setattr(blocks, "iter_blocks", no_blocks)
    monkeypatch.setattr("lstmshape.stream.iter_blocks", no_blocks)
    for plan in (
        api.plan_reduce(x.shape, x.dtype, "mean", layout="tnf"),
        api.plan_pool(x.shape, x.dtype, "max", layout="tnf"),
    ):
        sink = ListSink()
        with io.open_array(str(tmp_path / "x.npy")) as source:
            run_plan(source, plan, MaskSpec(validity=validity), sink, chunk_bytes=64)
        kernel = plan.apply(x.transpose(1, 0, 2), validity).out
        np.testing.assert_array_equal(sink.result(), kernel)


def test_cases_the_fold_leaves_to_blocks_of_samples(tmp_path: Path) -> None:
    x = np.zeros((4, 3, 2), np.float32)
    np.save(tmp_path / "x.npy", x)
    validity = MaskSpec(validity=Validity.from_lengths([4, 1, 2], 4))
    shape = x.shape
    with io.open_array(str(tmp_path / "x.npy")) as source:
        fold = api.plan_reduce(shape, x.dtype, "mean", layout="tnf")
        assert timerows.can_fold(source, fold, validity)
        assert not timerows.can_fold(source, fold, MaskSpec(mask_value=0.0))  # found per block
        assert not timerows.can_fold(source, fold, validity, chunk_bytes=2)  # over the budget
        others = [
            api.plan_reduce(shape, x.dtype, "mean"),  # batch-first
            api.plan_reduce(shape, x.dtype, "last", layout="tnf"),
            api.plan_reduce(shape, x.dtype, "mean", layout="tnf", nan_policy="omit"),
            api.plan_reduce(shape, np.float16, "mean", layout="tnf"),
            api.plan_reduce(shape, np.int32, "sum", layout="tnf"),
            api.plan_pool(shape, x.dtype, "avg", layout="tnf", pool_size=2),
        ]
        for plan in others:
            assert not timerows.can_fold(source, plan, validity), plan.label


def test_a_folded_file_that_shrank_is_an_input_error(tmp_path: Path) -> None:
    x = np.ones((6, 4, 8), np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    plan = api.plan_reduce(x.shape, x.dtype, "sum", layout="tnf")
    with io.open_array(str(path)) as source:
        path.write_bytes(path.read_bytes()[:-64])
        with pytest.raises(InputError, match="truncated"):
            run_plan(source, plan, MaskSpec(), ListSink(), chunk_bytes=64)


def test_the_cli_folds_a_time_major_mean(tmp_path: Path, run_cli) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 6, 3)).astype(np.float32)  # stored (T, N, F)
    lengths = np.array([9, 1, 4, 0, 7, 2])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "L.npy", lengths)
    out = tmp_path / "out.npy"
    args = ["reduce", tmp_path / "x.npy", "-s", "mean", "--layout", "tnf"]
    args += ["--lengths", tmp_path / "L.npy", "--empty", "nan", "-o", out, "-q"]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    expected = api.reduce(x, "mean", layout="tnf", lengths=lengths, empty="nan")
    np.testing.assert_array_equal(np.load(out), expected)
    spec = MaskSpec(validity=build_validity(None, n=6, t=9, lengths=lengths))
    with io.open_array(str(tmp_path / "x.npy")) as source:
        plan = api.plan_reduce(x.shape, x.dtype, "mean", layout="tnf", empty="nan")
        assert timerows.can_fold(source, plan, spec)


def test_an_audit_sample_is_read_into_a_new_array(tmp_path: Path) -> None:
    """The sampled audit of a fold (or gather) reads its samples by the reader: a view of the
    memory map would keep the pages it touched mapped for the rest of the run."""
    x = np.random.default_rng(6).standard_normal((5, 4, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with io.open_array(str(tmp_path / "x.npy")) as source:
        for axis in (0, 1):
            got = blocks.read_copy(source, 1, 3, axis)
            assert not np.shares_memory(got, source.read_all())
            np.testing.assert_array_equal(got, np.take(x, range(1, 3), axis=axis))
