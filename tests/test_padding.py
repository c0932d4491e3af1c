"""The one padding detector and the audit: slow loops, merged blocks, random padded batches."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmshape.inspection import inspect_array
from lstmshape.masks import build_validity
from lstmshape.padding import (
    EMPTY,
    HEAD,
    PROBE_STEPS,
    TAIL,
    Detection,
    Ends,
    TimeScan,
    audit,
    detect,
    infer,
    looks_time_major,
    summarise,
)
from lstmshape.validity import Validity

STRATEGIES = [None, "last", "first", "mean", "sum", "max", "min"]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
MANIFEST = json.loads((SAMPLES / "manifest.json").read_text(encoding="utf-8"))["arrays"]
PADDED_SAMPLES = [ref for ref, made in MANIFEST.items() if made["lengths"] is not None]
FRAMEWORK_BATCHES = sorted(p.name for p in FIXTURES.glob("padding_*.npz"))


# --- references and batches ----------------------------------------------------------------


def same_step(a: np.ndarray, b: np.ndarray) -> bool:
    return all(u == v or (u != u and v != v) for u, v in zip(a.tolist(), b.tolist(), strict=True))


def slow_ends(x: np.ndarray) -> dict[str, list[Any]]:
    """Per-sample end facts, one step at a time."""
    out: dict[str, list[Any]] = {
        k: [] for k in ("head_run", "tail_run", "head_const", "tail_const")
    }
    for sample in x:
        t = len(sample)
        head = next((s for s in range(t) if not same_step(sample[s], sample[0])), t)
        tail = next((s for s in range(t) if not same_step(sample[t - 1 - s], sample[-1])), t)
        out["head_run"].append(head)
        out["tail_run"].append(tail)
        out["head_const"].append(same_step(sample[0], np.full_like(sample[0], sample[0][0])))
        out["tail_const"].append(same_step(sample[-1], np.full_like(sample[-1], sample[-1][0])))
    return out


def padded_batch(
    lengths: list[int] | np.ndarray,
    t: int,
    f: int = 3,
    *,
    kind: str = "post",
    value: float = 0.0,
    dtype: Any = np.float64,
    seed: int = 0,
) -> np.ndarray:
    """(N, T, F) data whose sample i has lengths[i] valid steps and no valid step equal to
    the padding: value padding after (post) or before (pre) them, or for "repeat" the last
    valid step repeated to the end and empty samples all zeros (a masked Keras RNN)."""
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        x = rng.integers(1, 1000, size=(len(lengths), t, f)).astype(dtype)
    else:
        x = (rng.standard_normal((len(lengths), t, f)) + 0.1).astype(dtype)
    steps = np.arange(t)[None, :]
    if kind == "repeat":
        last = np.minimum(steps, np.maximum(lengths - 1, 0)[:, None])
        x = np.take_along_axis(x, last[..., None], axis=1)
        x[lengths == 0] = 0
        return x
    valid = steps < lengths[:, None] if kind == "post" else steps >= (t - lengths)[:, None]
    x[~valid] = value
    return x


def true_mask(lengths: np.ndarray, t: int, side: str) -> np.ndarray:
    steps = np.arange(t)[None, :]
    return steps < lengths[:, None] if side == "post" else steps >= (t - lengths)[:, None]


def codes(found: list[Any]) -> list[str]:
    return [f.code for f in found]


# --- the summary ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    n=st.integers(0, 6),
    t=st.integers(0, 8),
    f=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_summary_matches_a_slow_loop(data: st.DataObject, n: int, t: int, f: int, seed: int):
    # few distinct values, so runs, constant steps and NaN steps are common
    rng = np.random.default_rng(seed)
    pool = np.array([0.0, 1.0, np.nan])
    x = pool[rng.integers(0, 3 if data.draw(st.booleans()) else 2, size=(n, t, f))]
    x[:, t // 2 :] = x[:, -1:] if t else x[:, t // 2 :]  # long trailing runs
    exact = summarise(x, exact=True)
    cheap = summarise(x)
    if t == 0:
        assert exact.n == n and cheap.n == n
        return
    ref = slow_ends(x)
    assert exact.head_run.tolist() == ref["head_run"]
    assert exact.tail_run.tolist() == ref["tail_run"]
    assert cheap.head_run.tolist() == [min(r, PROBE_STEPS) for r in ref["head_run"]]
    assert cheap.tail_run.tolist() == [min(r, PROBE_STEPS) for r in ref["tail_run"]]
    for ends in (exact, cheap):
        assert ends.head_const.tolist() == ref["head_const"]
        assert ends.tail_const.tolist() == ref["tail_const"]
        np.testing.assert_array_equal(ends.head_value, x[:, 0, 0])
        np.testing.assert_array_equal(ends.tail_value, x[:, -1, 0])


@settings(max_examples=100, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_time_slabs_give_the_exact_summary(data: st.DataObject, seed: int):
    n, t, f = (
        data.draw(st.integers(1, 5)),
        data.draw(st.integers(1, 9)),
        data.draw(st.integers(1, 3)),
    )
    rng = np.random.default_rng(seed)
    x = np.array([0.0, 2.0, np.nan])[rng.integers(0, 3, size=(n, t, f))]
    x[:, data.draw(st.integers(0, t)) :] = x[:, -1:]
    cuts = sorted(data.draw(st.lists(st.integers(0, t), max_size=4)))
    scan = TimeScan(n, t, f, x.dtype)
    for start, stop in zip([0, *cuts], [*cuts, t], strict=True):
        scan.add(x[:, start:stop])
    got, want = scan.result(), summarise(x, exact=True)
    for name in ("head_run", "tail_run", "head_const", "tail_const", "middle"):
        assert getattr(got, name).tolist() == getattr(want, name).tolist(), name
    np.testing.assert_array_equal(got.tail_value, want.tail_value)


def test_cheap_summary_reads_only_the_end_steps():
    class Spy:
        def __init__(self, x: np.ndarray) -> None:
            self._x, self.shape, self.keys = x, x.shape, []

        def __getitem__(self, key: Any) -> np.ndarray:
            self.keys.append(key)
            return self._x[key]

    spy = Spy(padded_batch(np.arange(1, 21) % 5 + 1, 6, 4))
    assert infer(summarise(spy)).kind == "value"
    assert all(key[1] in (slice(None, 2), slice(4, None)) for key in spy.keys)


def test_merging_rejects_different_summaries():
    with pytest.raises(ValueError, match="share T"):
        Ends.concat([summarise(np.zeros((1, 3, 2))), summarise(np.zeros((1, 4, 2)))])


# --- inference -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, -1.0, 7.5, np.nan])
@pytest.mark.parametrize("side", ["post", "pre"])
def test_value_padding(side: str, value: float):
    lengths = np.array([6, 2, 0, 4, 1, 6])
    d = detect(padded_batch(lengths, 6, kind=side, value=value))
    assert (d.kind, d.side) == ("value", side)
    assert d.value == value or (math.isnan(d.value) and math.isnan(value))
    assert d.lengths is not None and d.lengths.tolist() == lengths.tolist()
    assert d.empty.tolist() == (lengths == 0).tolist()


def test_keras_empty_sequence_and_repeat_padding_report_true_lengths():
    """The issue's case: one all-zero empty sample must not make 0.0 the pad value."""
    lengths = np.array([0, 4, 9, 2, 6, 4, 3, 9, 4])
    d = detect(padded_batch(lengths, 9, 4, kind="repeat"))
    assert (d.kind, d.side, d.value) == ("repeat", "post", None)
    assert d.lengths is not None and d.lengths.tolist() == lengths.tolist()
    assert (int(d.lengths.min()), float(np.median(d.lengths)), int(d.lengths.max())) == (0, 4, 9)


def test_a_real_step_equal_to_the_padding_at_the_other_end_stays_data():
    lengths = np.array([5, 3, 2, 4, 1, 5, 3])
    x = padded_batch(lengths, 6, kind="post")
    x[0, 0] = 0.0  # one sample starts with a step that equals the padding
    d = detect(x)
    assert (d.side, d.stray) == ("post", 1)
    assert d.lengths is not None and d.lengths.tolist() == lengths.tolist()


def test_mixed_sides():
    x = np.concatenate(
        [padded_batch([2, 3], 5, kind="pre"), padded_batch([1, 4], 5, kind="post", seed=1)]
    )
    d = detect(x)
    assert d.side == "mixed" and d.lengths is not None and d.lengths.tolist() == [2, 3, 1, 4]
    mask = d.validity().as_mask()
    assert mask.sum(axis=1).tolist() == [2, 3, 1, 4] and mask[:2, -1].all() and mask[2:, 0].all()


def test_one_feature_needs_two_samples():
    two = detect(padded_batch([4, 3, 2], 4, 1))
    assert two.kind == "value" and two.lengths is not None and two.lengths.tolist() == [4, 3, 2]
    assert detect(padded_batch([4, 3, 4], 4, 1)).kind == "none"  # one could be real data
    assert detect(np.random.default_rng(0).standard_normal((5, 4, 1))).kind == "none"


def test_no_padding_and_degenerate_shapes():
    d = detect(padded_batch([5, 5, 5], 5))
    assert (d.kind, d.side) == ("none", "none") and d.lengths.tolist() == [5, 5, 5]  # type: ignore[union-attr]
    assert detect(np.zeros((0, 3, 2))).n == 0
    assert detect(np.zeros((2, 0, 3))).lengths.tolist() == [0, 0]  # type: ignore[union-attr]
    assert detect(np.zeros((2, 3, 0))).kind == "none"


def test_validity_needs_an_exact_summary():
    with pytest.raises(ValueError, match="exact"):
        detect(padded_batch([2, 3], 3), exact=False).validity()


def test_a_decision_carries_over_to_later_blocks():
    first = infer(summarise(padded_batch([3, 1, 4], 4, kind="pre")))
    later = infer(summarise(padded_batch([4, 4], 4, kind="pre"), exact=True), like=first)
    assert (later.kind, later.side, later.value) == ("value", "pre", 0.0)
    assert later.lengths is not None and later.lengths.tolist() == [4, 4]


# --- random padded batches -----------------------------------------------------------------


@st.composite
def batches(draw: Any) -> tuple[np.ndarray, np.ndarray, str, str, Any]:
    """(x as read, batch-first; lengths; kind; layout; pad value) with no valid step equal to
    the padding: value padding pre or post (NaN included, integers too), or repeat padding,
    random empty samples, and time-major data handed over as a transposed view."""
    kind = draw(st.sampled_from(["post", "pre", "repeat"]))
    t, f = draw(st.integers(1, 9)), draw(st.integers(2, 4))
    lengths = np.array(draw(st.lists(st.integers(0, t), min_size=1, max_size=12)))
    integer = kind != "repeat" and draw(st.booleans())
    value = draw(st.sampled_from([0, -1] if integer else [0.0, -1.0, 7.5, np.nan]))
    dtype = np.int32 if integer else draw(st.sampled_from([np.float64, np.float32]))
    x = padded_batch(
        lengths, t, f, kind=kind, value=value, dtype=dtype, seed=draw(st.integers(0, 2**32 - 1))
    )
    layout = draw(st.sampled_from(["ntf", "tnf"]))
    if layout == "tnf":  # stored time-major, read through the batch-first view
        x = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
    return x, lengths, kind, layout, value


@settings(max_examples=300, deadline=None)
@given(case=batches())
def test_the_detector_recovers_the_lengths(case: tuple[Any, ...]):
    x, lengths, kind, _, value = case
    t = x.shape[1]
    d = detect(x)
    assert d.lengths is not None and d.lengths.tolist() == lengths.tolist()
    if np.any((lengths > 0) & (lengths < t)):
        assert d.side == ("post" if kind == "repeat" else kind)
        assert d.kind == ("repeat" if kind == "repeat" else "value")
        if d.kind == "value":
            assert d.value == value or (math.isnan(d.value) and math.isnan(value))
    mask = d.validity().as_mask()
    assert mask.tolist() == true_mask(lengths, t, "post" if kind == "repeat" else kind).tolist()


@settings(max_examples=300, deadline=None)
@given(case=batches(), exact=st.booleans(), cut=st.floats(0, 1))
def test_the_audit_never_warns_on_the_true_mask(case: tuple[Any, ...], exact: bool, cut: float):
    x, lengths, kind, _, value = case
    n, t, _ = x.shape
    side = "post" if kind == "repeat" else kind
    by_lengths = build_validity(x, lengths=lengths, pad_side=side)  # type: ignore[arg-type]
    by_mask = build_validity(x, mask=true_mask(lengths, t, side))
    sources: list[tuple[Validity, str, Any]] = [
        (by_lengths, "lengths", None),
        (by_mask, "mask", None),
    ]
    if kind != "repeat" and np.any(lengths < t):
        sources.append((build_validity(x, mask_value=value), "mask-value", value))
    k = int(cut * n)
    for validity, source, mask_value in sources:
        parts = [summarise(x[a:b], validity.rows(a, b), exact=exact) for a, b in ((0, k), (k, n))]
        detected = infer(Ends.concat([p for p in parts if p.n] or parts))
        for strategy in STRATEGIES:
            found = audit(detected, validity, side, source, strategy, mask_value=mask_value)
            assert found == [], (source, strategy, found)


@settings(max_examples=200, deadline=None)
@given(case=batches(), cut=st.floats(0, 1))
def test_merging_blocks_changes_nothing(case: tuple[Any, ...], cut: float):
    x = case[0]
    n = x.shape[0]
    k = int(cut * n)
    for exact in (True, False):
        whole = infer(summarise(x, exact=exact))
        parts = infer(Ends.concat([summarise(x[:k], exact=exact), summarise(x[k:], exact=exact)]))
        assert (parts.kind, parts.side, parts.stray) == (whole.kind, whole.side, whole.stray)
        assert parts.value == whole.value or (
            parts.value != parts.value and whole.value != whole.value
        )
        assert parts.flags.tolist() == whole.flags.tolist()
        assert parts.pad_run.tolist() == whole.pad_run.tolist()


# --- the audit: each finding ---------------------------------------------------------------


def pre_batch_64() -> tuple[np.ndarray, np.ndarray]:
    lengths = np.where(np.arange(64) % 11 == 0, 12, np.arange(64) % 10 + 1)  # 6 full samples
    return padded_batch(lengths, 12, 4, kind="pre"), lengths


def run_audit(x: np.ndarray, validity: Validity | None, *args: Any, **kwargs: Any) -> list[Any]:
    return audit(infer(summarise(x, validity)), validity, *args, **kwargs)


def test_lengths_on_the_wrong_side():
    x, lengths = pre_batch_64()
    validity = build_validity(x, lengths=lengths, pad_side="post")
    (found,) = run_audit(x, validity, "post", "lengths", "last")
    assert found.code == "pad-side"
    assert found.message == (
        "lengths say post-padded, but 58 of 64 samples are padded at the start; did you mean "
        "--pad-side pre?"
    )
    x = padded_batch(lengths, 12, 4, kind="post")
    validity = build_validity(x, lengths=lengths, pad_side="pre")
    (found,) = run_audit(x, validity, "pre", "lengths", "mean")
    assert found.message.startswith("lengths say pre-padded, but 58 of 64 samples are padded at")
    assert found.message.endswith("did you mean --pad-side post?")


def test_lengths_in_another_order_disagree_per_sample():
    lengths = np.array([5, 3, 1, 4, 2, 5, 3])
    x = padded_batch(lengths, 6, kind="post")
    validity = build_validity(x, lengths=lengths[::-1].copy())
    for exact in (True, False):
        detected = infer(summarise(x, validity, exact=exact))
        (found,) = audit(detected, validity, "post", "lengths", "mean")
        assert found.code == "mask-disagrees"
        assert "in 6 of 7 samples (0, 1, 2, 4, 5, ...)" in found.message
        assert "--lengths auto" in found.message
    assert "sample 0 has 3 valid steps, the data 5" in found.message or exact is False


def test_a_mask_that_reads_one_padded_step_disagrees():
    lengths = np.array([5, 3, 1, 4])
    x = padded_batch(lengths, 6, kind="post")
    mask = true_mask(lengths, 6, "post")
    mask[1, 3] = True  # sample 1 reads its first padded step
    validity = build_validity(x, mask=mask)
    (found,) = run_audit(x, validity, "post", "mask", "mean")
    assert found.code == "mask-disagrees" and "1 of 4 samples (1)" in found.message


@pytest.mark.parametrize("exact", [True, False])
def test_repeat_padding_off_by_one_disagrees(exact: bool):
    lengths = np.array([5, 3, 2, 4, 6])
    x = padded_batch(lengths, 6, kind="repeat")
    for wrong in (lengths + np.array([0, 1, 0, 0, 0]), lengths - np.array([0, 0, 1, 0, 0])):
        validity = build_validity(x, lengths=wrong)
        detected = infer(summarise(x, validity, exact=exact))
        assert np.flatnonzero(~detected.agree).tolist() == [
            int(np.flatnonzero(wrong != lengths)[0])
        ]  # type: ignore[operator]


def test_lengths_all_t_while_padding_shows():
    x = padded_batch([5, 3, 6, 4], 6, kind="post")
    validity = build_validity(x, lengths=np.full(4, 6))
    (found,) = run_audit(x, validity, "post", "lengths", "mean")
    assert found.code == "mask-all-valid"
    assert found.message.startswith(
        "the lengths are all T=6 (no padding), but 3 of 4 samples end in 0.0 padding"
    )


def test_a_mask_value_that_matches_no_step():
    x = padded_batch([5, 3, 6, 4], 6, kind="post", value=-1.0)
    validity = build_validity(x, mask_value=0.0)
    (found,) = run_audit(x, validity, "post", "mask-value", "mean", mask_value=0.0)
    assert found.code == "mask-value-unmatched"
    assert found.message == (
        "--mask-value 0.0 matches no timestep, but 3 of 4 samples end in -1.0 padding; did you "
        "mean --mask-value -1.0?"
    )
    unpadded = padded_batch([6, 6], 6)
    nothing = build_validity(unpadded, mask_value=9)
    (found,) = run_audit(unpadded, nothing, "post", "mask-value", "mean", mask_value=9)
    assert found.message == "--mask-value 9 matches no timestep, and the data shows no padding"


def test_no_mask_warns_only_where_the_result_would_be_wrong():
    post = padded_batch([5, 3, 1, 4, 2], 6, kind="post")
    pre = padded_batch([5, 3, 1, 4, 2], 6, kind="pre")
    repeat = padded_batch([5, 3, 1, 4, 2], 6, kind="repeat")
    wrong = {
        "post": {"last", "mean", "sum", "max", "min"},
        "pre": {"first", "mean", "sum", "max", "min"},
        "repeat": {"mean", "sum"},
    }
    for name, x in (("post", post), ("pre", pre), ("repeat", repeat)):
        for exact in (True, False):
            for strategy in STRATEGIES:
                found = audit(infer(summarise(x, exact=exact)), None, strategy=strategy)
                assert codes(found) == (["no-mask"] if strategy in wrong[name] else []), name
    (found,) = audit(detect(repeat), None, strategy="sum")
    assert "5 of 5 samples repeat their last valid step to the end" in found.message


def test_nan_padding_without_a_mask():
    x = padded_batch([4, 2, 0, 3] * 8, 4, 2, value=np.nan)  # 16 padded, 8 empty
    (found,) = audit(detect(x, exact=False), None, strategy="mean")
    assert found.code == "nan-padding"
    assert found.message.startswith(
        "no mask given, but 24 of 32 samples end in nan padding: --strategy mean gives NaN for "
        "them; add --mask-value nan"
    )


def test_time_major_data_read_as_batch_first_forms_a_staircase():
    lengths = np.random.default_rng(3).integers(1, 13, size=40)
    time_major = np.ascontiguousarray(padded_batch(lengths, 12, 3).transpose(1, 0, 2))
    (found,) = audit(detect(time_major), None, strategy="mean")
    assert found.code == "layout" and found.message.endswith("did you mean --layout tnf?")
    (found,) = audit(detect(time_major), None, strategy="mean", layout="tnf")
    assert found.message.endswith("did you mean --layout ntf?")
    assert not looks_time_major(detect(padded_batch(lengths, 12, 3)))
    assert not looks_time_major(detect(padded_batch(np.sort(lengths)[::-1], 12, 3)))


def test_findings_are_json_ready():
    (found,) = audit(detect(padded_batch([5, 3, 1], 6)), None, strategy="mean")
    assert found.to_dict() == {"code": "no-mask", "message": found.message}


# --- what the old `last` warning did, now through the audit ----------------------------------


def _post_padded(value: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 6, 4))
    lengths = rng.integers(1, 5, size=20)  # every sample padded at the end
    x[np.arange(6)[None, :] >= lengths[:, None]] = value
    return x


def last_warning(x: Any) -> str | None:
    found = audit(detect(x, exact=False), None, strategy="last")
    return found[0].message if found else None


@pytest.mark.parametrize("value", [0.0, -1.0, np.nan])
def test_last_without_a_mask_on_value_padding_warns(value: float):
    message = last_warning(_post_padded(value))
    assert message is not None
    for option in ("--lengths", "--mask-value", "--pad-side"):
        assert option in message
    assert "20 of 20 samples" in message


def test_repeat_padding_warns_for_mean_but_not_for_last():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((10, 5, 3))
    for i, length in enumerate(rng.integers(1, 4, size=10)):
        x[i, length:] = x[i, length - 1]  # Keras writes the last output into padded steps
    assert last_warning(x) is None  # `last` reads the repeated last valid step: right
    (found,) = audit(detect(x, exact=False), None, strategy="mean")
    assert "repeat their last valid step" in found.message


def test_last_warning_quiet_on_real_or_pre_padded_data():
    rng = np.random.default_rng(5)
    assert last_warning(rng.standard_normal((50, 8, 16))) is None
    assert last_warning(_post_padded()[:, ::-1]) is None
    assert last_warning(np.zeros((0, 3, 2))) is None
    assert last_warning(np.zeros((3, 0, 2))) is None
    # one sample in fifty looking padded is not "many samples"
    x = rng.standard_normal((50, 8, 16))
    x[0, -1] = 0
    assert last_warning(x) is None


def test_flags_name_each_end():
    x = padded_batch([3, 0, 4], 4, kind="post")
    x[2, 0] = 0.0
    d = detect(x)
    assert d.flags.tolist() == [TAIL, EMPTY, HEAD]
    assert isinstance(d, Detection) and d.padded.tolist() == [True, False, False]


# --- real Keras and PyTorch outputs (tests/fixtures/make_padding_fixtures.py) ---------------


def load_fixture(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    with np.load(FIXTURES / name, allow_pickle=False) as z:
        return z["output"], z["lengths"], z["mask"], json.loads(str(z["truth"]))


def test_framework_batches_are_small_and_described():
    assert len(FRAMEWORK_BATCHES) == 11
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    for name in FRAMEWORK_BATCHES:
        assert (FIXTURES / name).stat().st_size < 8_000
        assert f"`{name}`" in readme


@pytest.mark.parametrize("layout", ["ntf", "tnf"])
@pytest.mark.parametrize("name", FRAMEWORK_BATCHES)
def test_framework_batches_give_their_exact_lengths(name: str, layout: str):
    output, lengths, mask, truth = load_fixture(name)
    x = output if layout == "ntf" else np.ascontiguousarray(output.transpose(1, 0, 2))
    report = inspect_array(x, layout=layout, block_rows=3)
    assert report.lengths is not None and report.padding is not None
    assert report.lengths.values.tolist() == lengths.tolist()
    assert (report.padding.kind, report.padding.side) == (truth["kind"], truth["pad_side"])
    d = detect(output)
    assert d.validity().as_mask().tolist() == mask.tolist()
    if truth["kind"] == "value":
        assert json.dumps(d.value if d.value == d.value else "nan") == json.dumps(
            truth["pad_value"]
        )


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("name", FRAMEWORK_BATCHES)
def test_framework_batches_with_their_true_mask_get_no_finding(name: str, exact: bool):
    output, lengths, mask, truth = load_fixture(name)
    side = truth["pad_side"]
    sources = [
        (build_validity(output, lengths=lengths, pad_side=side), "lengths", None),
        (build_validity(output, mask=mask), "mask", None),
    ]
    if truth["kind"] == "value":
        value = truth["pad_value"]
        sources.append((build_validity(output, mask_value=value), "mask-value", value))
    for validity, source, value in sources:
        detected = infer(summarise(output, validity, exact=exact))
        for strategy in STRATEGIES:
            assert audit(detected, validity, side, source, strategy, mask_value=value) == []


@pytest.mark.parametrize("name", FRAMEWORK_BATCHES)
def test_framework_batches_without_a_mask_warn_where_the_result_is_wrong(name: str):
    output, _, _, truth = load_fixture(name)
    detected = detect(output, exact=False)
    right = {"repeat": {"last", "first", "max", "min"}}.get(
        truth["kind"], {"first"} if truth["pad_side"] == "post" else {"last"}
    )
    for strategy in STRATEGIES[1:]:
        expected = (
            [] if strategy in right else [f.code for f in audit(detected, None, strategy="mean")]
        )
        assert codes(audit(detected, None, strategy=strategy)) == expected
    assert audit(detected, None, strategy="mean") != []


# --- samples/: every correctly masked run is quiet --------------------------------------------


def read_sample(file: str, key: str | None) -> np.ndarray:
    path = SAMPLES / file
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as members:
            return members[key]
    with h5py.File(path, "r") as f:
        return f[key][()]


@pytest.mark.parametrize("ref", PADDED_SAMPLES)
def test_samples_with_their_true_lengths_get_no_finding(ref: str):
    made = MANIFEST[ref]
    stored = read_sample(made["file"], made["key"])
    layout, side = made["layout"], made["pad_side"]
    x = stored if layout == "ntf" else stored.transpose(1, 0, 2)
    lengths = read_sample(made["lengths"]["file"], made["lengths"]["key"])
    validity = build_validity(x, lengths=lengths, pad_side=side)
    for exact in (True, False):
        detected = infer(summarise(x, validity, exact=exact))
        assert detected.exact or detected.lengths is None
        for strategy in STRATEGIES:
            found = audit(detected, validity, side, "lengths", strategy, layout=layout)
            assert found == []
    assert detect(x).lengths.tolist() == lengths.tolist()  # type: ignore[union-attr]
