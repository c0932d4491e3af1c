"""inspect_array: the samples report what they were made with; padding kinds; block invariance."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers import SAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmshape.blocks import rows_per_block
from lstmshape.errors import InputError
from lstmshape.inspection import (
    Report,
    inspect_array,
)
from lstmshape.padding import detect

MANIFEST = json.loads((SAMPLES / "manifest.json").read_text(encoding="utf-8"))["arrays"]
WITH_MASK = [ref for ref, e in MANIFEST.items() if e["mask"] is not None]


# --- helpers -------------------------------------------------------------------------------


@contextmanager
def open_sample(file: str, key: str | None) -> Iterator[Any]:
    """The array as the CLI would hand it over: a memmap, an .npz member, an h5py Dataset."""
    path = SAMPLES / file
    if path.suffix == ".npy":
        yield np.load(path, mmap_mode="r", allow_pickle=False)
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as members:
            yield members[key]
    else:
        with h5py.File(path, "r") as f:
            yield f[key]


def read_sample(file: str, key: str | None) -> np.ndarray:
    with open_sample(file, key) as x:
        return np.asarray(x[()] if isinstance(x, h5py.Dataset) else x)


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def batch(
    lengths: list[int] | np.ndarray,
    t: int,
    f: int = 3,
    *,
    side: str = "post",
    value: float = 0.0,
    repeat: bool = False,
    dtype: Any = np.float32,
    seed: int = 0,
) -> np.ndarray:
    """Random (N, T, F) data whose sample i has lengths[i] valid steps, padded at `side`."""
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        x = rng.integers(1, 1000, size=(len(lengths), t, f)).astype(dtype)
    else:
        x = rng.standard_normal((len(lengths), t, f)).astype(dtype)
    steps = np.arange(t)[None, :]
    valid = steps < lengths[:, None] if side == "post" else steps >= (t - lengths)[:, None]
    if repeat:
        last = np.minimum(steps, np.maximum(lengths - 1, 0)[:, None])
        return np.take_along_axis(x, last[..., None], axis=1)
    x[~valid] = value
    return x


class RecordingArray:
    """An array-like offering only shape, dtype and x[i:j]; records every read."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.reads: list[tuple[int, int]] = []

    def __getitem__(self, key: Any) -> np.ndarray:
        assert isinstance(key, slice) and key.step is None, f"unexpected read {key!r}"
        start, stop, _ = key.indices(self.shape[0])
        self.reads.append((start, stop))
        return self._data[key].copy()


class ReadingArray:
    """Like `io.ArraySource`: shape, dtype, read(start, stop) and read_all(); no slicing."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self._data[start:stop].copy()

    def read_all(self) -> np.ndarray:
        return self._data.copy()


# --- every sample reports what it was made with --------------------------------------------


@pytest.mark.parametrize("block_rows", [None, 7])
@pytest.mark.parametrize("ref", list(MANIFEST))
def test_sample_reports_what_it_was_made_with(ref: str, block_rows: int | None) -> None:
    made = MANIFEST[ref]
    with open_sample(made["file"], made["key"]) as x:
        report = inspect_array(x, layout=made["layout"] or "ntf", block_rows=block_rows)
    assert list(report.shape) == made["shape"]
    assert report.dtype == made["dtype"]
    assert report.size == math.prod(made["shape"])
    if made["layout"] is None:
        assert report.padding is None and report.lengths is None
        return
    lengths = read_sample(made["lengths"]["file"], made["lengths"]["key"])
    assert report.layout == made["layout"]
    assert report.padding is not None and report.lengths is not None
    assert report.padding.side == made["pad_side"]
    assert report.padding.kind == made["pad_kind"]
    assert report.to_dict()["padding"]["value"] == made["pad_value"]
    np.testing.assert_array_equal(report.lengths.values, lengths)
    assert (report.lengths.min, report.lengths.median, report.lengths.max) == (
        lengths.min(),
        np.median(lengths),
        lengths.max(),
    )
    assert report.t is not None and report.f is not None
    expected_nan = int((report.t - lengths).sum()) * report.f if made["pad_value"] == "nan" else 0
    assert report.nan_count == expected_nan


@pytest.mark.parametrize("ref", WITH_MASK)
def test_sample_mask_agrees_with_lengths(ref: str) -> None:
    made = MANIFEST[ref]
    mask = read_sample(made["mask"]["file"], made["mask"]["key"])
    lengths = read_sample(made["lengths"]["file"], made["lengths"]["key"])
    np.testing.assert_array_equal(mask.sum(axis=1), lengths)
    first_valid = mask[:, 0] if made["pad_side"] == "post" else mask[:, -1]
    assert first_valid.all()


def test_samples_are_small_and_described() -> None:
    data = [p for p in SAMPLES.iterdir() if p.suffix in {".npy", ".npz", ".h5"}]
    assert sum(p.stat().st_size for p in data) < 2_000_000
    assert {p.name for p in data} == {e["file"] for e in MANIFEST.values()}
    readme = (SAMPLES / "README.md").read_text(encoding="utf-8")
    assert all(f"`{ref}`" in readme for ref in MANIFEST)


def test_make_samples_reproduces_the_committed_files(tmp_path: Path) -> None:
    script = SAMPLES / "make_samples.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    remade = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))["arrays"]
    assert remade == MANIFEST
    for made in MANIFEST.values():
        ours = read_sample(made["file"], made["key"])
        theirs = _read_from(tmp_path / made["file"], made["key"])
        assert theirs.dtype == ours.dtype
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)


def _read_from(path: Path, key: str | None) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as members:
            return members[key]
    with h5py.File(path, "r") as f:
        return f[key][()]


# --- padding kinds -------------------------------------------------------------------------


def test_no_padding() -> None:
    report = inspect_array(batch([5, 5, 5], 5))
    assert report.padding is not None and report.lengths is not None
    assert (report.padding.kind, report.padding.side) == ("none", "none")
    assert report.lengths.values.tolist() == [5, 5, 5]
    assert report.padding.padded_steps == 0


@pytest.mark.parametrize("side", ["post", "pre"])
@pytest.mark.parametrize("value", [0.0, -1.0, 7.5])
def test_value_padding(side: str, value: float) -> None:
    lengths = [6, 2, 4, 1, 6]
    report = inspect_array(batch(lengths, 6, side=side, value=value))
    assert report.padding is not None and report.lengths is not None
    assert (report.padding.kind, report.padding.side) == ("value", side)
    assert report.padding.value == value
    assert report.lengths.values.tolist() == lengths
    assert (report.lengths.min, report.lengths.median, report.lengths.max) == (1, 4.0, 6)
    assert report.padding.padded_samples == 3
    assert report.padding.padded_steps == sum(6 - n for n in lengths)


def test_repeat_last_padding() -> None:
    lengths = [5, 1, 3, 4]
    report = inspect_array(batch(lengths, 5, repeat=True))
    assert report.padding is not None and report.lengths is not None
    assert (report.padding.kind, report.padding.side, report.padding.value) == (
        "repeat",
        "post",
        None,
    )
    assert report.lengths.values.tolist() == lengths
    assert any("repeat" in note for note in report.notes)


def test_nan_padding() -> None:
    lengths = [4, 2, 0, 3]
    report = inspect_array(batch(lengths, 4, f=2, value=np.nan))
    assert report.padding is not None and report.lengths is not None
    assert report.padding.kind == "value" and isinstance(report.padding.value, float)
    assert math.isnan(report.padding.value)
    assert report.padding.side == "post"
    assert report.lengths.values.tolist() == lengths
    assert report.padding.empty_samples == 1
    assert (report.nan_count, report.inf_count) == ((0 + 2 + 4 + 1) * 2, 0)
    assert report.to_dict()["padding"]["value"] == "nan"


def test_infinite_pad_value_is_json_ready() -> None:
    report = inspect_array(batch([1, 3], 3, value=-np.inf))
    as_dict = report.to_dict()
    assert as_dict["padding"]["value"] == "-inf"
    assert as_dict["inf_count"] == 2 * 3
    json.dumps(as_dict, allow_nan=False)


def test_mixed_padding() -> None:
    x = np.concatenate([batch([2, 3], 5, side="pre"), batch([1, 4], 5, side="post", seed=1)])
    report = inspect_array(x)
    assert report.padding is not None and report.lengths is not None
    assert (report.padding.kind, report.padding.side) == ("value", "mixed")
    assert report.lengths.values.tolist() == [2, 3, 1, 4]


def test_only_empty_samples_is_post_with_a_note() -> None:
    report = inspect_array(batch([3, 0, 3], 3))
    assert report.padding is not None and report.lengths is not None
    assert (report.padding.side, report.padding.empty_samples) == ("post", 1)
    assert report.lengths.values.tolist() == [3, 0, 3]
    assert any("cannot be told apart" in note for note in report.notes)


def test_most_common_value_wins() -> None:
    x = batch([1, 2, 3, 1], 4, value=0.0)
    x[0, 0] = 9.0  # one sample starting with a constant step of another value
    report = inspect_array(x)
    assert report.padding is not None and report.padding.value == 0.0


def test_single_feature_needs_two_samples_to_agree() -> None:
    no_padding = inspect_array(batch([4, 4, 4], 4, f=1))
    padded = inspect_array(batch([4, 2, 3], 4, f=1))
    assert no_padding.padding is not None and no_padding.padding.side == "none"
    assert padded.padding is not None and padded.lengths is not None
    assert padded.padding.side == "post" and padded.lengths.values.tolist() == [4, 2, 3]


def test_float16() -> None:
    report = inspect_array(batch([3, 1, 2], 3, dtype=np.float16, side="pre"))
    assert report.dtype == "float16" and report.nbytes == 3 * 3 * 3 * 2
    assert report.padding is not None and report.lengths is not None
    assert report.padding.side == "pre" and report.lengths.values.tolist() == [3, 1, 2]


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8])
def test_integers(dtype: Any) -> None:
    x = batch([2, 4, 1], 4, dtype=dtype, value=0)
    report = inspect_array(x)
    assert report.padding is not None and report.lengths is not None
    assert report.padding.value == 0 and isinstance(report.padding.value, int)
    assert report.lengths.values.tolist() == [2, 4, 1]
    assert (report.nan_count, report.inf_count) == (0, 0)


def test_bool_skips_padding_detection() -> None:
    report = inspect_array(np.zeros((2, 3, 4), bool))
    assert report.padding is None and report.lengths is None
    assert report.notes == ("padding detection skipped for bool data",)


# --- degenerate shapes ---------------------------------------------------------------------


def test_zero_timesteps() -> None:
    report = inspect_array(np.zeros((3, 0, 4), np.float32))
    assert report.padding is not None and report.lengths is not None
    assert report.padding.side == "none"
    assert report.lengths.values.tolist() == [0, 0, 0]
    assert report.lengths.histogram == (3,)


def test_zero_samples() -> None:
    report = inspect_array(np.zeros((0, 5, 4), np.float32))
    assert (report.n, report.t, report.f, report.size) == (0, 5, 4, 0)
    assert report.padding is None and report.lengths is None


def test_zero_samples_time_major() -> None:
    report = inspect_array(np.zeros((5, 0, 4), np.float32), layout="tnf")
    assert (report.n, report.t, report.f) == (0, 5, 4)


def test_zero_features() -> None:
    report = inspect_array(np.zeros((2, 3, 0), np.float32))
    assert report.padding is None and "no features" in report.notes[0]


@pytest.mark.parametrize(
    ("data", "nan", "inf"),
    [
        (np.array([1.0, np.nan, np.inf, -np.inf, np.nan]), 2, 2),
        (np.array([[np.nan, 1.0], [2.0, np.inf]], np.float16), 1, 1),
        (np.arange(6).reshape(2, 3), 0, 0),
        (np.array(np.nan), 1, 0),
        (np.zeros((2, 3, 4, 5), np.float32), 0, 0),
    ],
)
def test_other_ranks_get_shape_and_nonfinite_counts(data: np.ndarray, nan: int, inf: int) -> None:
    report = inspect_array(data, block_rows=1)
    assert report.shape == data.shape and report.ndim == data.ndim
    assert (report.nan_count, report.inf_count) == (nan, inf)
    assert report.padding is None and report.lengths is None and report.layout is None


def test_integer_vectors_are_not_read() -> None:
    x = RecordingArray(np.arange(10))
    assert inspect_array(x).size == 10
    assert x.reads == []


@pytest.mark.parametrize("layout", ["ntf", "tnf"])
def test_sources_offering_read_instead_of_slicing(layout: str) -> None:
    x = batch([3, 1, 2, 3], 3, value=np.nan)
    x = x if layout == "ntf" else x.transpose(1, 0, 2)
    expected = inspect_array(x, layout=layout).to_dict(include_lengths=True)
    got = inspect_array(ReadingArray(x), layout=layout, block_rows=1)
    assert got.to_dict(include_lengths=True) == expected
    assert inspect_array(ReadingArray(np.array(np.inf))).inf_count == 1


def test_array_like_input_and_bad_layout() -> None:
    assert inspect_array([[1.0, 2.0]]).shape == (1, 2)
    with pytest.raises(InputError, match="layout"):
        inspect_array(np.zeros((1, 1, 1)), layout="nft")


# --- layouts, blocks and what is read ------------------------------------------------------


def _comparable(report: Report) -> dict[str, Any]:
    out = report.to_dict(include_lengths=True)
    del out["shape"], out["layout"]
    return out


@pytest.mark.parametrize("value", [0.0, np.nan])
@pytest.mark.parametrize("side", ["post", "pre"])
def test_time_major_reports_like_batch_first(side: str, value: float) -> None:
    x = batch([5, 1, 0, 3, 4, 2, 5], 5, side=side, value=value)
    batch_first = inspect_array(x)
    for rows in (None, 1, 2, 3):
        time_major = inspect_array(x.transpose(1, 0, 2), layout="tnf", block_rows=rows)
        assert _comparable(time_major) == _comparable(batch_first)


def test_time_major_repeat_padding_across_blocks() -> None:
    x = batch([6, 1, 3, 5, 2], 6, repeat=True)
    for rows in (1, 2, 4, 5):
        report = inspect_array(x.transpose(1, 0, 2), layout="tnf", block_rows=rows)
        assert report.lengths is not None and report.lengths.values.tolist() == [6, 1, 3, 5, 2]


@pytest.mark.parametrize("layout", ["ntf", "tnf"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: batch([7, 3, 0, 5, 1, 7, 2, 6, 4, 7, 1], 7, value=np.nan),
        lambda: batch([7, 3, 1, 5, 1, 7, 2, 6, 4, 7, 1], 7, repeat=True),
        lambda: batch([7, 3, 0, 5, 1, 7, 2, 6, 4, 7, 1], 7, side="pre", dtype=np.int16),
    ],
)
def test_uneven_blocks_give_the_same_report(layout: str, make: Any) -> None:
    x = make()
    x = x if layout == "ntf" else x.transpose(1, 0, 2)
    reports = [
        inspect_array(x, layout=layout, block_rows=rows).to_dict(include_lengths=True)
        for rows in (1, 2, 3, 4, 5, 10, 100)
    ]
    assert all(r == reports[0] for r in reports)


@pytest.mark.parametrize(("layout", "rows"), [("ntf", 3), ("tnf", 2), ("ntf", None)])
def test_every_element_is_read_once_in_bounded_blocks(layout: str, rows: int | None) -> None:
    data = batch([5, 2, 4, 1, 3, 5, 2], 5, value=np.nan)
    x = RecordingArray(data if layout == "ntf" else data.transpose(1, 0, 2))
    inspect_array(x, layout=layout, block_rows=rows, block_bytes=4 * 5 * 3 * 4)
    expected_rows = rows or 4  # block_bytes holds four samples of 5 x 3 float32
    assert x.reads[0][0] == 0 and x.reads[-1][1] == x.shape[0]
    assert all(a[1] == b[0] for a, b in zip(x.reads, x.reads[1:], strict=False))
    assert all(0 < stop - start <= expected_rows for start, stop in x.reads)


def test_rows_per_block() -> None:  # inspect blocks as the engine does (blocks.rows_per_block)
    assert rows_per_block((10, 4, 4), 4, 64) == 1
    assert rows_per_block((10, 4, 4), 4, 10) == 1
    assert rows_per_block((10, 0, 4), 4, 640) == 10  # empty rows still count 64 bytes each
    assert rows_per_block((100,), 8, 640) == 10


# --- report and helpers --------------------------------------------------------------------


def test_report_to_dict_is_json_ready() -> None:
    report = inspect_array(batch([3, 1], 3, value=np.nan))
    as_dict = report.to_dict()
    assert json.loads(json.dumps(as_dict, allow_nan=False)) == as_dict
    assert set(as_dict) >= {"shape", "dtype", "size", "nbytes", "layout", "padding", "lengths"}
    assert "values" not in as_dict["lengths"]
    assert report.to_dict(include_lengths=True)["lengths"]["values"] == [3, 1]
    assert as_dict["lengths"]["histogram"] == [0, 1, 0, 1]
    assert as_dict["lengths"]["histogram_edges"] == [0.0, 0.75, 1.5, 2.25, 3.0]


def test_histogram_has_eight_bins_over_zero_to_t() -> None:
    report = inspect_array(batch(list(range(41)), 40))
    assert report.lengths is not None
    assert len(report.lengths.histogram) == 8 and sum(report.lengths.histogram) == 41
    assert report.lengths.histogram_edges[0] == 0 and report.lengths.histogram_edges[-1] == 40


@pytest.mark.parametrize("value", [0.0, np.nan])
def test_detector_gives_lengths(value: float) -> None:  # the one detector (padding.detect)
    x = batch([3, 0, 1], 3, value=value)
    assert detect(x).lengths.tolist() == [3, 0, 1]
    pre = batch([3, 0, 1], 3, value=value, side="pre")
    assert detect(pre).lengths.tolist() == [3, 0, 1]


def test_detector_matches_inspect() -> None:
    x = batch([4, 2, 3], 4, side="pre")
    detected = detect(x)
    report = inspect_array(x)
    assert report.padding is not None and report.padding.side == detected.side == "pre"
    assert report.lengths is not None
    assert detected.lengths.tolist() == report.lengths.values.tolist()


# --- property: made-with lengths come back for any batch -----------------------------------


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    t=st.integers(1, 9),
    f=st.integers(2, 4),
    kind=st.sampled_from(["post", "pre", "repeat"]),
    value=st.sampled_from([0.0, -1.0, np.nan]),
    layout=st.sampled_from(["ntf", "tnf"]),
    seed=st.integers(0, 2**16),
)
def test_lengths_come_back(
    data: st.DataObject, t: int, f: int, kind: str, value: float, layout: str, seed: int
) -> None:
    low = 1 if kind == "repeat" else 0
    lengths = data.draw(st.lists(st.integers(low, t), min_size=1, max_size=12))
    side = "post" if kind == "repeat" else kind
    x = batch(lengths, t, f, side=side, value=value, repeat=kind == "repeat", seed=seed)
    x = x if layout == "ntf" else x.transpose(1, 0, 2)
    rows = data.draw(st.one_of(st.none(), st.integers(1, 5)))
    report = inspect_array(x, layout=layout, block_rows=rows)
    assert report.padding is not None and report.lengths is not None
    assert report.lengths.values.tolist() == lengths
    partly_padded = any(0 < n < t for n in lengths)
    if partly_padded:
        assert report.padding.side == side
        assert report.padding.kind == ("repeat" if kind == "repeat" else "value")
    elif all(n == t for n in lengths):
        assert report.padding.side == "none"
    if report.padding.kind == "value":
        assert same_value(report.padding.value, value)


# --- notes from the padding detector -------------------------------------------------------


def test_time_major_data_read_as_batch_first_gets_a_layout_note() -> None:
    lengths = np.random.default_rng(3).integers(1, 13, size=40)
    time_major = np.ascontiguousarray(batch(lengths, 12).transpose(1, 0, 2))
    report = inspect_array(time_major)
    assert any("staircase" in note and "--layout tnf" in note for note in report.notes)
    assert not any("staircase" in n for n in inspect_array(time_major, layout="tnf").notes)


def test_a_real_step_equal_to_the_padding_at_the_start_is_data_with_a_note() -> None:
    x = batch([5, 3, 2, 4, 1, 5, 3], 6)
    x[0, 0] = 0.0
    report = inspect_array(x)
    assert report.padding is not None and report.lengths is not None
    assert report.padding.side == "post" and report.lengths.values.tolist() == [5, 3, 2, 4, 1, 5, 3]
    assert "1 sample also holds the pad value at the start, taken as data" in report.notes


def test_keras_empty_sequence_with_repeat_padding() -> None:
    """An all-zero empty sample must not make 0.0 the pad value (issue #11)."""
    lengths = [0, 4, 9, 2, 6, 4, 3, 9, 4]
    x = batch(lengths, 9, f=4, repeat=True)
    x[0] = 0.0
    report = inspect_array(x)
    assert report.padding is not None and report.lengths is not None
    assert (report.padding.kind, report.padding.empty_samples) == ("repeat", 1)
    assert report.lengths.values.tolist() == lengths
    assert (report.lengths.min, report.lengths.median, report.lengths.max) == (0, 4.0, 9)


@settings(max_examples=300, deadline=None)
@given(
    dtype=st.sampled_from(["float16", "float32", "float64", "complex64"]),
    values=st.lists(
        st.sampled_from([0.0, 1.5, -2.0, 6e4, 3e38, 1e300, np.nan, np.inf, -np.inf]),
        max_size=40,
    ),
)
def test_nonfinite_counts_match_an_element_loop(dtype: str, values: list[float]) -> None:
    from lstmshape.inspect_reads import nonfinite_counts

    with np.errstate(over="ignore"):
        block = np.array(values, dtype=dtype)
    nan = sum(1 for v in block.tolist() if v != v)
    inf = sum(1 for v in block.tolist() if v == v and not math.isfinite(abs(v)))
    assert nonfinite_counts(block) == (nan, inf)
