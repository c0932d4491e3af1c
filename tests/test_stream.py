"""The streaming engine: streamed results equal in-memory ones, for every strategy, format,
layout and block size; the row-gather path equals the full read; memory stays bounded."""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers import lstmshape, npy_header, peak_rss

from lstmshape import api, blocks, gather, io
from lstmshape.errors import InputError
from lstmshape.io.blocks import Reader
from lstmshape.io.h5_readers import ChunkedFile
from lstmshape.io.npy import FileArray
from lstmshape.io.npz import ZipStream
from lstmshape.masks import MaskSpec, build_validity
from lstmshape.strategies.pca import PcaAccumulator
from lstmshape.stream import run_plan
from lstmshape.validity import Validity

N, T, F = 7, 5, 4
ROW = T * F * 4  # bytes of one float32 sample
# One sample per block, blocks of 2 and 3 samples (7 = 2+2+2+1 = 3+3+1), everything at once.
CHUNKS = [1, 2 * ROW, 3 * ROW + 5, 1 << 20]

FORMATS = ["npy", "npz-stored", "npz-deflated", "h5-contiguous", "h5-chunked", "h5-gzip"]


def _data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, T, F)).astype(np.float32)


def _write(x: np.ndarray, fmt: str, path: Path) -> str:
    """Store `x` (already in the file layout) as `fmt`; the reference to open."""
    if fmt == "npy":
        np.save(path.with_suffix(".npy"), x)
        return str(path.with_suffix(".npy"))
    if fmt.startswith("npz"):
        target = path.with_suffix(".npz")
        (np.savez if fmt == "npz-stored" else np.savez_compressed)(target, x=x, other=x[:1])
        return f"{target}:x"
    target = path.with_suffix(".h5")
    spec = {
        "h5-contiguous": {},
        "h5-chunked": {"chunks": (2, 2, 3)},  # splits every axis, edge chunks partial
        "h5-gzip": {"chunks": (3, x.shape[1], x.shape[2]), "compression": "gzip"},
    }[fmt]
    with h5py.File(target, "w") as f:
        f.create_dataset("g/x", data=x, **spec)
    return f"{target}:/g/x"


class ListSink:
    """Collects blocks; checks they come in order along one axis."""

    def __init__(self) -> None:
        self.blocks: list[tuple[int, np.ndarray, int]] = []

    def write(self, start: int, block: np.ndarray, axis: int = 0) -> None:
        done = sum(b.shape[axis] for _, b, _ in self.blocks)
        assert start == done
        self.blocks.append((start, np.array(block, copy=True), axis))

    def result(self) -> np.ndarray:
        axis = self.blocks[0][2]
        return np.concatenate([b for _, b, _ in self.blocks], axis=axis)


def _masks(rng: np.random.Generator) -> dict[str, dict]:
    lengths = np.array([5, 3, 0, 1, 4, 5, 2])
    holes = rng.random((N, T)) < 0.6
    holes[2] = False  # an empty sample
    holes[3] = [False, True, False, True, False]
    return {
        "none": {},
        "post": {"lengths": lengths},
        "pre": {"lengths": lengths, "pad_side": "pre"},
        "holes": {"mask": holes},
    }


MASKS = _masks(np.random.default_rng(1))


def _spec(mask: dict, layout: str) -> MaskSpec:
    if not mask:
        return MaskSpec()
    source = mask.get("mask")
    if source is not None and layout == "tnf":
        source = source.T
    validity = build_validity(
        None,
        n=N,
        t=T,
        mask=source,
        lengths=mask.get("lengths"),
        pad_side=mask.get("pad_side", "post"),
        layout=layout,
    )
    return MaskSpec(validity=validity)


def _api_mask(mask: dict, layout: str) -> dict:
    out = dict(mask)
    if "mask" in out and layout == "tnf":
        out["mask"] = out["mask"].T
    return out


def _stored(tmp_path: Path, fmt: str, layout: str, x: np.ndarray) -> tuple[str, np.ndarray]:
    stored = np.ascontiguousarray(x.transpose(1, 0, 2)) if layout == "tnf" else x
    return _write(stored, fmt, tmp_path / "in"), stored


def _stream(
    ref: str, plan: api.Plan, spec: MaskSpec, chunk: int, *, maps: bool = True
) -> np.ndarray:
    """Run `plan` streamed; `maps=False` reads cached files into buffers too."""
    sink = ListSink()
    with io.open_array(ref) as source:
        if not maps and hasattr(source.reader, "maps"):
            source.reader.maps = False
        run_plan(source, plan, spec, sink, chunk_bytes=chunk)

    return sink.result()


# ----------------------------------------------------------------------------- reduce / pool


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("layout", ["ntf", "tnf"])
def test_reduce_streamed_equals_in_memory(tmp_path: Path, fmt: str, layout: str) -> None:
    x = _data()
    ref, stored = _stored(tmp_path, fmt, layout, x)
    for strategy in ("last", "first", "mean", "max", "min", "sum"):
        for mask_name, mask in MASKS.items():
            options = {"bidirectional": strategy in ("last", "first") and mask_name != "none"}
            options["keepdims"] = strategy == "mean"
            expected = api.reduce(
                stored, strategy, layout=layout, empty="nan", **options, **_api_mask(mask, layout)
            )
            plan = api.plan_reduce(
                stored.shape, stored.dtype, strategy, layout=layout, empty="nan", **options
            )
            for chunk, maps in itertools.product(CHUNKS, (True, False)):
                got = _stream(ref, plan, _spec(mask, layout), chunk, maps=maps)
                np.testing.assert_array_equal(got, expected, err_msg=f"{strategy} {mask_name}")


@pytest.mark.parametrize("fmt", ["npy", "npz-deflated", "h5-chunked"])
@pytest.mark.parametrize("layout", ["ntf", "tnf"])
def test_pool_streamed_equals_in_memory(tmp_path: Path, fmt: str, layout: str) -> None:
    x = _data(2)
    ref, stored = _stored(tmp_path, fmt, layout, x)
    windows = [{}, {"pool_size": 2, "strides": 1, "padding": "same"}, {"pool_size": 3}]
    for op in ("avg", "max"):
        for window in windows:
            for mask in (MASKS["post"], MASKS["holes"]):
                expected, expected_mask = api.pool(
                    stored,
                    op,
                    layout=layout,
                    empty="zero",
                    return_mask=True,
                    **window,
                    **_api_mask(mask, layout),
                )
                plan = api.plan_pool(
                    stored.shape, stored.dtype, op, layout=layout, empty="zero", **window
                )
                for chunk in CHUNKS:
                    sink = ListSink()
                    with io.open_array(ref) as source:
                        out_mask = run_plan(
                            source, plan, _spec(mask, layout), sink, chunk_bytes=chunk
                        )
                    np.testing.assert_array_equal(sink.result(), expected)
                    if window:
                        np.testing.assert_array_equal(out_mask, expected_mask)


def test_mask_value_streams_every_block(tmp_path: Path) -> None:
    x = _data(3)
    x[1, 3:] = 0.0
    x[4, :] = 0.0
    ref = _write(x, "npy", tmp_path / "in")
    expected = api.reduce(x, "last", mask_value=0.0, empty="zero")
    plan = api.plan_reduce(x.shape, x.dtype, "last", empty="zero")
    for chunk in CHUNKS:
        with io.open_array(ref) as source:
            assert not gather.can_gather(source, plan, MaskSpec(mask_value=0.0))
        got = _stream(ref, plan, MaskSpec(mask_value=0.0), chunk)
        np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------------------------- project


@pytest.mark.parametrize("fmt", ["npy", "npz-stored", "h5-chunked", "h5-gzip"])
@pytest.mark.parametrize("layout", ["ntf", "tnf"])
def test_project_streamed_equals_in_memory(tmp_path: Path, fmt: str, layout: str) -> None:
    x = _data(4)
    ref, stored = _stored(tmp_path, fmt, layout, x)
    rng = np.random.default_rng(5)
    weights, bias = rng.standard_normal((F, 3)), rng.standard_normal(3)
    mask = MASKS["post"]
    expected = api.project(
        stored, weights, bias, activation="tanh", layout=layout, **_api_mask(mask, layout)
    )
    plan = api.plan_project(
        stored.shape,
        stored.dtype,
        weights,
        bias,
        activation="tanh",
        layout=layout,
        masked=True,
    )
    for chunk in CHUNKS:
        got = _stream(ref, plan, _spec(mask, layout), chunk)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmt", ["npy", "npz-deflated", "h5-contiguous"])
@pytest.mark.parametrize("layout", ["ntf", "tnf"])
def test_pca_two_passes_equal_in_memory(tmp_path: Path, fmt: str, layout: str) -> None:
    x = _data(6)
    ref, stored = _stored(tmp_path, fmt, layout, x)
    mask = MASKS["holes"]
    expected = api.project(stored, pca=2, layout=layout, **_api_mask(mask, layout))
    spec = _spec(mask, layout)
    for chunk in CHUNKS:
        accumulator = PcaAccumulator(F)
        with io.open_array(ref) as source:
            for _, _, block, validity in blocks.iter_blocks(
                source, layout, spec, chunk_bytes=chunk
            ):
                accumulator.update(block, validity)
        basis = accumulator.finish(2)
        plan = api.plan_project(
            stored.shape,
            stored.dtype,
            basis.components,
            basis.bias,
            layout=layout,
            masked=True,
        )
        np.testing.assert_allclose(_stream(ref, plan, spec, chunk), expected, atol=1e-5)


# ----------------------------------------------------------------------------- gather


def _full_read(plan: api.Plan) -> api.Plan:
    return dataclasses.replace(plan, gather=None)


class NoBlocks:
    """Wraps a reader; block reads fail, so only the row path can have run."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self.rows = 0

    def __getattr__(self, name: str):
        return getattr(self._reader, name)

    def read_into(self, *args: object) -> None:
        raise AssertionError("the gather path read a whole block")

    def read_rows(self, rows: np.ndarray, out: np.ndarray) -> None:
        self.rows += rows.size
        self._reader.read_rows(rows, out)


@pytest.mark.parametrize("fmt", ["npy", "npz-stored", "h5-contiguous", "h5-chunked"])
@pytest.mark.parametrize("layout", ["ntf", "tnf"])
def test_gather_reads_rows_only_and_equals_full_read(tmp_path: Path, fmt: str, layout: str) -> None:
    x = _data(7)
    ref, stored = _stored(tmp_path, fmt, layout, x)
    for strategy in ("last", "first"):
        for bidirectional in (False, True):
            for mask_name, mask in MASKS.items():
                spec = _spec(mask, layout)
                plan = api.plan_reduce(
                    stored.shape,
                    stored.dtype,
                    strategy,
                    layout=layout,
                    bidirectional=bidirectional,
                    empty="nan",
                )
                for chunk in (1, 3 * F * 4, 1 << 20):
                    with io.open_array(ref) as source:
                        assert gather.can_gather(source, plan, spec)
                        spy = NoBlocks(source.reader)
                        source._reader = spy
                        gathered = ListSink()
                        run_plan(source, plan, spec, gathered, chunk_bytes=chunk)
                        source._reader = spy._reader
                        full = ListSink()
                        run_plan(source, _full_read(plan), spec, full, chunk_bytes=chunk)
                    valid = _validity(spec).counts() > 0
                    assert spy.rows == valid.sum() * (2 if bidirectional else 1), mask_name
                    np.testing.assert_array_equal(gathered.result(), full.result())


@pytest.mark.parametrize("keepdims", [False, True])
def test_gathered_steps_are_the_output_when_every_sample_has_one(
    tmp_path: Path, keepdims: bool
) -> None:
    x = _data(16)
    ref = _write(x, "npy", tmp_path / "in")
    for mask_name in ("none", "post"):  # "post": sample 2 is empty, the kernel fills it
        plan = api.plan_reduce(x.shape, x.dtype, "last", keepdims=keepdims, empty="zero")
        spec = _spec(MASKS[mask_name], "ntf")
        with io.open_array(ref) as source:
            blocks_seen = list(gather.gather_blocks(source, plan, spec, chunk_bytes=3 * F * 4))
        handed = [gather.as_result(plan, steps, picked) for _, steps, picked, _ in blocks_seen]
        empty = _validity(spec).counts() == 0  # one sample a block at this chunk size
        assert [out is None for out in handed] == empty.tolist()
        expected = api.reduce(x, "last", keepdims=keepdims, empty="zero", **MASKS[mask_name])
        np.testing.assert_array_equal(_stream(ref, plan, spec, 3 * F * 4), expected)


def _validity(spec: MaskSpec) -> Validity:
    return spec.validity if spec.validity is not None else Validity.all_valid(N, T)


def test_gather_falls_back_for_compressed_members(tmp_path: Path) -> None:
    x = _data(8)
    ref = _write(x, "npz-deflated", tmp_path / "in")
    plan = api.plan_reduce(x.shape, x.dtype, "last")
    spec = _spec(MASKS["post"], "ntf")
    with io.open_array(ref) as source:
        assert not gather.can_gather(source, plan, spec)
    plan = api.plan_reduce(x.shape, x.dtype, "last", empty="zero")
    got = _stream(ref, plan, spec, 2 * ROW)
    expected = api.reduce(x, "last", lengths=MASKS["post"]["lengths"], empty="zero")
    np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------------------------- readers


@pytest.mark.parametrize("fmt", FORMATS)
def test_readers_blocks_and_rows(tmp_path: Path, fmt: str) -> None:
    x = np.arange(N * T * F, dtype=np.float32).reshape(N, T, F)
    ref = _write(x, fmt, tmp_path / "in")
    rows = np.array([34, 0, 3, 3, 4, 5, 20, N * T - 1])  # unsorted, repeated, adjacent
    with io.open_array(ref) as source:
        reader = source.reader
        for start, stop, axis in [(0, N, 0), (2, 5, 0), (6, 7, 0), (1, 4, 1), (4, 5, 1), (0, 2, 0)]:
            shape = list(x.shape)
            shape[axis] = stop - start
            out = np.empty(shape, np.float32)
            reader.read_into(start, stop, axis, out)
            np.testing.assert_array_equal(out, np.take(x, range(start, stop), axis=axis))
        out = np.empty((rows.size, F), np.float32)
        reader.read_rows(rows, out)  # also where slow (supports_rows False): still right
        np.testing.assert_array_equal(out, x.reshape(-1, F)[rows])


def test_unwritten_chunks_read_as_the_fill_value(tmp_path: Path) -> None:
    path = tmp_path / "sparse.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("x", shape=(N, T, F), dtype="f4", chunks=(2, 5, 2), fillvalue=7)
        dset[2:4] = 1.0
        expected = dset[()]
    with io.open_array(str(path)) as source:
        assert isinstance(source.reader, ChunkedFile)
        out = np.empty((N, T, F), np.float32)
        source.reader.read_into(0, N, 0, out)
        np.testing.assert_array_equal(out, expected)
        rows = np.arange(N * T)
        got = np.empty((rows.size, F), np.float32)
        source.reader.read_rows(rows, got)
        np.testing.assert_array_equal(got, expected.reshape(-1, F))


@pytest.mark.parametrize("in_order", [True, False])
def test_whole_sample_chunks_read_in_place(tmp_path: Path, in_order: bool) -> None:
    """Chunks of whole samples written in order are one run of bytes: read like a .npy file
    (mapped when cached); written out of order, chunk by chunk."""
    x = _data(9)
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("x", shape=x.shape, dtype=x.dtype, chunks=(3, T, F))
        for lo in (0, 3, 6) if in_order else (6, 0, 3):
            dset[lo : lo + 3] = x[lo : lo + 3]
    with io.open_array(str(path)) as source:
        reader = source.reader
        assert isinstance(reader, ChunkedFile)
        assert (reader.contiguous is not None) == in_order
        assert reader.maps == in_order
        for start, stop in [(0, 7), (1, 5), (6, 7)]:
            out = np.empty((stop - start, T, F), np.float32)
            reader.read_into(start, stop, 0, out)
            np.testing.assert_array_equal(out, x[start:stop])
        rows = np.array([33, 2, 17])
        got = np.empty((3, F), np.float32)
        reader.read_rows(rows, got)
        np.testing.assert_array_equal(got, x.reshape(-1, F)[rows])
        expected = api.reduce(x, "mean")
        plan = api.plan_reduce(x.shape, x.dtype, "mean")
        sink = ListSink()
        run_plan(source, plan, MaskSpec(), sink, chunk_bytes=3 * ROW)
        np.testing.assert_array_equal(sink.result(), expected)


def test_deflated_member_reads_backwards_and_time_major(tmp_path: Path) -> None:
    x = _data(10)
    ref = _write(x, "npz-deflated", tmp_path / "in")
    with io.open_array(ref) as source:
        assert isinstance(source.reader, ZipStream)
        np.testing.assert_array_equal(source.read(4, 6), x[4:6])
        np.testing.assert_array_equal(source.read(1, 2), x[1:2])  # reopens the member
        np.testing.assert_array_equal(source.read(1, 3, axis=1), x[:, 1:3])  # spills once
        np.testing.assert_array_equal(source.read(0, 7), x)
        np.testing.assert_array_equal(source.read_all(), x)


def test_truncated_file_is_an_input_error(tmp_path: Path) -> None:
    x = _data(11)
    path = tmp_path / "x.npy"
    np.save(path, x)
    with io.open_array(str(path)) as source:
        os.truncate(path, path.stat().st_size - ROW)
        out = np.empty_like(x)
        with pytest.raises(InputError, match="truncated"):
            source.reader.read_into(0, N, 0, out)
        plan = api.plan_reduce(x.shape, x.dtype, "mean")
        with pytest.raises(InputError, match="truncated"):  # not mapped: no SIGBUS
            run_plan(source, plan, MaskSpec(), ListSink(), chunk_bytes=3 * ROW)


def test_cached_blocks_are_mapped_and_released(tmp_path: Path) -> None:
    x = _data(15)
    ref = _write(x, "npy", tmp_path / "in")
    with io.open_array(ref) as source:
        reader = source.reader
        assert reader.maps and reader.cached(0, N, 0)
        for start, stop, axis in [(0, N, 0), (2, 5, 0), (1, 4, 1)]:
            block = reader.map_block(start, stop, axis)
            np.testing.assert_array_equal(block, np.take(x, range(start, stop), axis=axis))
            reader.unmap_block(start, stop, axis)
            np.testing.assert_array_equal(block, np.take(x, range(start, stop), axis=axis))
    os.truncate(tmp_path / "in.npy", 200)
    with pytest.raises(InputError, match="truncated"), io.open_array(ref) as source:
        pass


@pytest.mark.parametrize("maps", [True, False])
def test_cached_rows_are_gathered_through_the_map(
    tmp_path: Path, maps: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of a cached file are copied out of a map (its pages dropped every few rows'
    span), else read by positioned reads: the same rows either way, in the order asked."""
    from lstmshape.io import npy

    monkeypatch.setattr(npy, "_ROW_SPAN_BYTES", 3 * F * 4)
    mapped: list[int] = []
    gather = npy.FileArray._gather_mapped

    def spy(self: npy.FileArray, file_off: np.ndarray, *rest: Any) -> None:
        mapped.append(file_off.size)
        gather(self, file_off, *rest)

    monkeypatch.setattr(npy.FileArray, "_gather_mapped", spy)
    x = _data(19)
    ref = _write(x, "npy", tmp_path / "in")
    rng = np.random.default_rng(19)
    with io.open_array(ref) as source:
        reader = source.reader
        reader.maps = maps
        flat = x.reshape(-1, F)
        row_sets = [np.arange(0, N * T, 5), rng.integers(0, N * T, 40), np.array([N * T - 1])]
        for rows in row_sets:
            out = np.empty((rows.size, F), np.float32)
            reader.read_rows(rows, out)
            np.testing.assert_array_equal(out, flat[rows])
        assert mapped == ([rows.size for rows in row_sets] if maps else [])
        os.truncate(tmp_path / "in.npy", (tmp_path / "in.npy").stat().st_size - ROW)
        out = np.empty((1, F), np.float32)
        with pytest.raises(InputError, match="truncated"):  # not mapped: no SIGBUS
            reader.read_rows(np.array([N * T - 1]), out)


@pytest.mark.parametrize("layout", ["ntf", "tnf"])
def test_joined_inputs_stream_through_their_readers(tmp_path: Path, layout: str) -> None:
    """Several files joined along N (sources.MultiSource) are read block by block through
    their parts' readers (blocks spanning two parts included), rows too."""
    from lstmshape.refs import parse_ref
    from lstmshape.sources import join_refs, open_sources

    x = _data(18)
    refs = []
    for k, (lo, hi) in enumerate([(0, 3), (3, 5), (5, 7)]):
        part = x[lo:hi]
        stored = np.ascontiguousarray(part.transpose(1, 0, 2)) if layout == "tnf" else part
        fmt = ("npy", "h5-chunked", "npz-deflated")[k]
        refs.append(parse_ref(_write(stored, fmt, tmp_path / f"part{k}")))
    ref = join_refs(refs)
    stored = np.ascontiguousarray(x.transpose(1, 0, 2)) if layout == "tnf" else x
    for strategy in ("mean", "last"):
        for mask in (MASKS["none"], MASKS["holes"]):
            expected = api.reduce(
                stored, strategy, layout=layout, empty="nan", **_api_mask(mask, layout)
            )
            plan = api.plan_reduce(stored.shape, stored.dtype, strategy, layout=layout, empty="nan")
            for chunk in (1, 2 * ROW, 1 << 20):
                sink = ListSink()
                with open_sources(ref, layout) as source:
                    assert blocks.reader_of(source) is not None
                    run_plan(source, _full_read(plan), _spec(mask, layout), sink, chunk_bytes=chunk)
                np.testing.assert_array_equal(sink.result(), expected)
    rows = np.array([0, 9, 34, 12, 20])
    with open_sources(ref, layout) as source:
        reader = blocks.reader_of(source)
        out = np.empty((rows.size, F), np.float32)
        reader.read_rows(rows, out)
        np.testing.assert_array_equal(out, stored.reshape(-1, F)[rows])


def test_many_blocks_timed_both_ways_give_the_same_result(tmp_path: Path) -> None:
    """Past 16 blocks the engine times mapped and copied blocks and keeps the faster way."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((40, T, F)).astype(np.float32)
    ref = _write(x, "npy", tmp_path / "in")
    lengths = rng.integers(0, T + 1, 40)
    for strategy in ("mean", "max"):
        plan = api.plan_reduce(x.shape, x.dtype, strategy, empty="zero")
        spec = MaskSpec(validity=Validity.from_lengths(lengths, T))
        expected = api.reduce(x, strategy, lengths=lengths, empty="zero")
        np.testing.assert_array_equal(_stream(ref, _full_read(plan), spec, ROW), expected)


@pytest.mark.parametrize("maps", [True, False])
def test_stopping_early_ends_the_reader_thread(tmp_path: Path, maps: bool) -> None:
    x = _data(16)
    ref = _write(x, "npy", tmp_path / "in")
    with io.open_array(ref) as source:
        source.reader.maps = maps
        produced = blocks.iter_blocks(source, "ntf", MaskSpec(), chunk_bytes=ROW)
        _, _, first, _ = next(produced)
        np.testing.assert_array_equal(first, x[:1])
        produced.close()
    assert not [t for t in threading.enumerate() if t.name == "lstmshape-read"]


def test_stored_member_reads_at_its_offset(tmp_path: Path) -> None:
    x = _data(12)
    ref = _write(x, "npz-stored", tmp_path / "in")
    with zipfile.ZipFile(ref.split(":")[0]) as zf:
        assert zf.getinfo("x.npy").compress_type == zipfile.ZIP_STORED
    with io.open_array(ref) as source:
        assert isinstance(source.reader, FileArray)


# ----------------------------------------------------------------------------- CLI


def test_cli_streams_into_outputs_larger_than_one_block(tmp_path: Path, run_cli) -> None:
    rng = np.random.default_rng(13)
    x = rng.standard_normal((9, 8, 32)).astype(np.float32)  # 1 KiB per sample
    lengths = np.array([8, 1, 3, 8, 0, 5, 6, 2, 7])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "len.npy", lengths)
    chunk = ["--chunk-mb", "0.0025"]  # 2 samples per block
    weights = rng.standard_normal((32, 5)).astype(np.float32)
    np.save(tmp_path / "w.npy", weights)
    cases = [
        (["pool", "--op", "max", "--pool-size", "2"], api.pool(x, "max", pool_size=2)),
        (
            ["project", "--weights", tmp_path / "w.npy"],
            api.project(x, weights),
        ),
        (
            ["reduce", "--strategy", "last", "--empty", "zero", "--lengths", tmp_path / "len.npy"],
            api.reduce(x, "last", lengths=lengths, empty="zero"),
        ),
    ]
    for out_name in ("out.npy", "out.h5:/r"):
        for args, expected in cases:
            out = tmp_path / out_name
            result = run_cli(
                [args[0], tmp_path / "x.npy", *args[1:], *chunk, "-o", out, "--force", "-q"]
            )
            assert result.exit_code == 0, result.output
            np.testing.assert_allclose(io.load(str(out)), expected, rtol=1e-6)


@pytest.mark.slow
def test_peak_rss_stays_below_the_input_size(tmp_path: Path) -> None:
    """A 256 MiB input reduced with 4 MiB blocks: a whole-file load (or a memory map that the
    kernel touches) would hold 256 MiB; the streamed run stays far below."""
    n, t, f = 2048, 128, 256  # 128 KiB per sample, 256 MiB
    path = tmp_path / "big.npy"
    block = np.random.default_rng(14).standard_normal((64, t, f)).astype(np.float32)
    with path.open("wb") as fh:
        fh.write(npy_header((n, t, f)))
        for _ in range(n // 64):
            fh.write(block.tobytes())
    size_mb = path.stat().st_size / 2**20
    np.save(tmp_path / "len.npy", np.full(n, 100))
    runs = [
        ["--strategy", "mean", "--lengths", tmp_path / "len.npy"],
        ["--strategy", "max"],
    ]
    for extra in runs:
        args = lstmshape(
            "reduce", path, *extra, "--chunk-mb", "4", "-o", tmp_path / "out.npy", "--force", "-q"
        )
        code, err, rss = peak_rss(args)
        assert code == 0, err
        peak_mb = rss / 2**20
        assert peak_mb < size_mb / 2, f"peak RSS {peak_mb:.0f} MiB for a {size_mb:.0f} MiB input"
    out = np.load(tmp_path / "out.npy")
    np.testing.assert_array_equal(out[:64], block.max(axis=1))
