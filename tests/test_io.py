"""lstmshape.io: reading, listing, safety refusals, atomic writes and output pre-flight.

Inputs are written and outputs are read back with numpy/h5py directly, so each round trip
checks lstmshape's reader and writer against the reference implementations.
"""

from __future__ import annotations

import errno
import io as stdio
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers import ROOT, assert_bitwise, evil_array, load_npy_bytes, npy_bytes, sample
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmshape import io
from lstmshape._version import __version__
from lstmshape.errors import InputError, OutputError
from lstmshape.io import atomic, sidefiles
from lstmshape.refs import ArrayRef

IN_FORMATS = ["npy", "npz", "npz-compressed", "h5", "stdin"]
OUT_FORMATS = ["npy", "npz", "h5", "stdout"]
DTYPES = ["float16", "float32", "float64", "int32", "bool"]
ZERO_SHAPES = [(0, 5, 3), (4, 0, 3)]


# ----------------------------------------------------------------------------- helpers


class FakeStdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = stdio.BytesIO(data)


def write_input(fmt: str, folder: Path, array: np.ndarray, monkeypatch: Any) -> str:
    """Store `array` with numpy/h5py as format `fmt`; returns the reference text."""
    if fmt == "npy":
        np.save(folder / "in.npy", array)
        return str(folder / "in.npy")
    if fmt == "npz":
        np.savez(folder / "in.npz", other=np.zeros(2), hidden=array)
        return f"{folder / 'in.npz'}:hidden"
    if fmt == "npz-compressed":
        np.savez_compressed(folder / "in.npz", hidden=array)
        return str(folder / "in.npz")
    if fmt == "h5":
        with h5py.File(folder / "in.h5", "w") as f:
            f["lstm/output"] = array
            f["lstm/other"] = np.zeros(3)
        return f"{folder / 'in.h5'}:/lstm/output"
    assert fmt == "stdin"
    monkeypatch.setattr(sys, "stdin", FakeStdin(npy_bytes(array)))
    return "-"


def output_ref(fmt: str, folder: Path) -> str:
    return {
        "npy": str(folder / "out.npy"),
        "npz": f"{folder / 'out.npz'}:result",
        "h5": f"{folder / 'out.h5'}:/lstm/output",
        "stdout": "-",
    }[fmt]


def read_output(fmt: str, folder: Path, stdout: pytest.CaptureFixture[bytes]) -> np.ndarray:
    if fmt == "npy":
        return np.load(folder / "out.npy", allow_pickle=False)
    if fmt == "npz":
        with np.load(folder / "out.npz", allow_pickle=False) as z:
            return z["result"]
    if fmt == "h5":
        with h5py.File(folder / "out.h5", "r") as f:
            return f["/lstm/output"][()]
    return load_npy_bytes(stdout.readouterr().out)


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary files a sink may have left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


@pytest.fixture
def stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> pytest.CaptureFixture[bytes]:
    """Standard output as bytes (pytest re-installs sys.stdout per phase, so no patching)."""
    return capsysbinary


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path so messages carry short relative paths."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def run_h5(here: Path) -> Path:
    path = here / "run.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.arange(6, dtype="f4").reshape(2, 3)
        f["g/b"] = np.ones((2, 2))
        f["g/c"] = np.zeros((1, 2, 3), "i4")
        f["a"].attrs["note"] = "kept"
    return path


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_fmt", OUT_FORMATS)
@pytest.mark.parametrize("in_fmt", IN_FORMATS)
def test_round_trip_is_bit_for_bit(
    in_fmt: str,
    out_fmt: str,
    dtype: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stdout: pytest.CaptureFixture[bytes],
) -> None:
    array = sample((3, 4, 5), dtype)
    ref = write_input(in_fmt, tmp_path, array, monkeypatch)
    loaded = io.load(ref)
    io.save(loaded, output_ref(out_fmt, tmp_path), inputs=[ref])
    assert_bitwise(read_output(out_fmt, tmp_path, stdout), array)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("shape", ZERO_SHAPES)
@pytest.mark.parametrize("out_fmt", OUT_FORMATS)
@pytest.mark.parametrize("in_fmt", IN_FORMATS)
def test_round_trip_of_a_zero_length_axis(
    in_fmt: str,
    out_fmt: str,
    shape: tuple[int, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stdout: pytest.CaptureFixture[bytes],
) -> None:
    array = np.zeros(shape, "f4")
    ref = write_input(in_fmt, tmp_path, array, monkeypatch)
    with io.open_array(ref) as source:
        assert source.shape == shape and source.dtype == np.float32
        assert source.read(0, 2).shape == (min(shape[0], 2), *shape[1:])
        io.save(source.read_all(), output_ref(out_fmt, tmp_path))
    assert_bitwise(read_output(out_fmt, tmp_path, stdout), array)


@pytest.mark.parametrize("out_fmt", OUT_FORMATS)
def test_zero_d_arrays_round_trip(
    out_fmt: str, tmp_path: Path, stdout: pytest.CaptureFixture[bytes]
) -> None:
    io.save(np.float64(2.5), output_ref(out_fmt, tmp_path))
    assert_bitwise(read_output(out_fmt, tmp_path, stdout), np.array(2.5))


def test_fortran_order_inputs_read_correctly(tmp_path: Path) -> None:
    array = np.asfortranarray(sample((3, 4, 5), "float32"))
    np.save(tmp_path / "f.npy", array)
    np.savez(tmp_path / "f.npz", x=array)
    for ref in (tmp_path / "f.npy", tmp_path / "f.npz"):
        with io.open_array(ref) as source:
            assert_bitwise(np.ascontiguousarray(source.read(1, 3)), array[1:3])
            assert_bitwise(np.ascontiguousarray(source.read_all()), array)


def test_big_endian_input_keeps_its_dtype(tmp_path: Path) -> None:
    array = sample((2, 3), "float32").astype(">f4")
    np.save(tmp_path / "be.npy", array)
    io.save(io.load(tmp_path / "be.npy"), tmp_path / "out.npy")
    assert_bitwise(np.load(tmp_path / "out.npy"), array)


# ----------------------------------------------------------------------------- reading


def test_npy_is_memory_mapped_not_read(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(12.0).reshape(3, 4))
    assert isinstance(io.load(tmp_path / "x.npy"), np.memmap)
    with io.open_array(tmp_path / "x.npy") as source:
        assert isinstance(source.read(1, 2).base, np.memmap | np.ndarray)
        assert source.info.format == "npy" and source.nbytes == 96 and source.ndim == 2


def test_uncompressed_npz_members_are_memory_mapped(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", a=np.arange(4), b=np.arange(6.0).reshape(2, 3))
    with io.open_array(f"{tmp_path / 's.npz'}:b") as source:
        assert isinstance(source.read_all(), np.memmap)
        assert source.read(1, 2).tolist() == [[3.0, 4.0, 5.0]]


@pytest.mark.parametrize("in_fmt", ["npy", "npz", "npz-compressed", "h5", "stdin"])
def test_read_blocks_along_axis_0_and_1(
    in_fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    array = sample((4, 6, 2), "float32")
    ref = write_input(in_fmt, tmp_path, array, monkeypatch)
    with io.open_array(ref) as source:
        assert_bitwise(source.read(1, 3), array[1:3])
        assert_bitwise(source.read(2, 5, axis=1), array[:, 2:5])
        assert_bitwise(source.read(3), array[3:])
        assert source.read(5, 9).shape == (0, 6, 2)
        with pytest.raises(InputError, match="has no axis 3"):
            source.read(0, 1, axis=3)


def test_reading_a_closed_source_fails(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(3))
    source = io.open_array(tmp_path / "x.npy")
    first = source.read(0, 2)
    source.close()
    assert first.tolist() == [0, 1]
    with pytest.raises(ValueError, match="closed"):
        source.read(0, 1)


def test_key_is_optional_for_a_single_array(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "one.h5", "w") as f:
        f["deep/inside/x"] = np.arange(3)
        f["names"] = np.array([b"a", b"b"], dtype=h5py.string_dtype())  # not a candidate
    np.savez(tmp_path / "one.npz", only=np.arange(2))
    with io.open_array(tmp_path / "one.h5") as source:
        assert source.info.ref.key == "/deep/inside/x"
        assert source.read_all().tolist() == [0, 1, 2]
    assert io.load(tmp_path / "one.npz").tolist() == [0, 1]
    assert io.load(f"{tmp_path / 'one.h5'}:deep/inside/x").tolist() == [0, 1, 2]
    assert io.load(f"{tmp_path / 'one.npz'}:only.npy").tolist() == [0, 1]


def test_several_arrays_need_a_key(run_h5: Path) -> None:
    with pytest.raises(InputError) as info:
        io.open_array("run.h5")
    assert message(info) == "run.h5 holds 3 arrays; name one as run.h5:KEY: /a, /g/b, /g/c"


def test_several_npz_members_need_a_key(here: Path) -> None:
    np.savez("r.npz", a=np.zeros(1), b=np.ones(1))
    with pytest.raises(InputError) as info:
        io.load("r.npz")
    assert message(info) == "r.npz holds 2 arrays; name one as r.npz:KEY: a, b"


def test_a_key_naming_a_group_lists_its_datasets(run_h5: Path) -> None:
    with pytest.raises(InputError) as info:
        io.open_array("run.h5:/g")
    assert message(info) == "run.h5:/g is a group, not a dataset; name a dataset in it: /g/b, /g/c"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("run.h5:/nope", "run.h5 has no dataset /nope; it holds: /a, /g/b, /g/c"),
        ("run.h5:g/nope", "run.h5 has no dataset /g/nope; it holds: /a, /g/b, /g/c"),
    ],
)
def test_a_missing_h5_key_lists_the_candidates(run_h5: Path, ref: str, expected: str) -> None:
    with pytest.raises(InputError) as info:
        io.load(ref)
    assert message(info) == expected


def test_a_missing_npz_key_lists_the_candidates(here: Path) -> None:
    np.savez("r.npz", a=np.zeros(1), b=np.ones(1))
    with pytest.raises(InputError) as info:
        io.load("r.npz:nope")
    assert message(info) == "r.npz has no array 'nope'; it holds: a, b"


def test_list_arrays_reads_headers_only(run_h5: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any) -> None:
        raise AssertionError("data was read")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", refuse)
    infos = io.list_arrays("run.h5")
    assert [str(i.ref) for i in infos] == ["run.h5:/a", "run.h5:/g/b", "run.h5:/g/c"]
    assert [i.shape for i in infos] == [(2, 3), (2, 2), (1, 2, 3)]
    assert [str(i.dtype) for i in infos] == ["float32", "float64", "int32"]
    assert infos[0].nbytes == 24 and infos[0].attrs == {"note": "kept"}
    assert [str(i.ref) for i in io.list_arrays("run.h5:/g")] == ["run.h5:/g/b", "run.h5:/g/c"]
    assert [str(i.ref) for i in io.list_arrays("run.h5:/a")] == ["run.h5:/a"]


def test_list_arrays_of_npz_and_npy(here: Path) -> None:
    np.savez_compressed("r.npz", z=np.zeros((2, 3), "f2"), a=np.ones(4, "i4"))
    np.save("x.npy", np.ones((5, 2)))
    infos = io.list_arrays("r.npz")
    assert [(i.ref.key, i.shape, str(i.dtype)) for i in infos] == [
        ("z", (2, 3), "float16"),
        ("a", (4,), "int32"),
    ]
    assert [i.ref for i in io.list_arrays("x.npy")] == [ArrayRef("x.npy")]
    assert io.list_arrays("r.npz:a")[0].shape == (4,)
    json.dumps([i.to_dict() for i in infos])


def test_h5_info_reports_chunks_compression_and_attrs(here: Path) -> None:
    with h5py.File("c.h5", "w") as f:
        d = f.create_dataset("x", data=np.zeros((8, 4)), chunks=(2, 4), compression="gzip")
        d.attrs["units"] = b"volts"
        d.attrs["scale"] = np.float32(0.5)
        d.attrs["dims"] = np.array([1, 2])
    (info,) = io.list_arrays("c.h5")
    assert info.chunks == (2, 4) and info.compression == "gzip"
    assert info.attrs == {"units": "volts", "scale": 0.5, "dims": [1, 2]}
    assert json.loads(json.dumps(info.to_dict()))["attrs"]["dims"] == [1, 2]


def test_stdin_is_read_once_and_can_be_listed_then_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStdin(npy_bytes(np.arange(6).reshape(2, 3))))
    (info,) = io.list_arrays("-")
    assert info.shape == (2, 3) and info.ref.is_stdio
    assert io.load("-").tolist() == [[0, 1, 2], [3, 4, 5]]


@given(rows=st.lists(st.integers(0, 5 * 4 * 2 - 1), max_size=12).map(sorted))
@settings(max_examples=50, deadline=None)
def test_stdin_rows_are_read_forward_through_the_stream(rows: list[int]) -> None:
    """`read_rows` on a stream: rows of the (N*T, F) view, in order, skipping between them."""
    from lstmshape.io.stdio import PipeStream, _read_header

    array = np.arange(5 * 4 * 2 * 3, dtype=np.float32).reshape(5, 4, 2, 3)
    stream = stdio.BytesIO(npy_bytes(array))
    reader = PipeStream(stream, _read_header(stream))
    out = np.empty((len(rows), 3), np.float32)
    reader.read_rows(np.array(rows, np.intp), out)
    np.testing.assert_array_equal(out, array.reshape(-1, 3)[rows])


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("setup", "ref", "expected"),
    [
        (None, "nope.npy", "nope.npy does not exist"),
        (None, "nope.h5:/a", "nope.h5 does not exist"),
        ("dir", "d.npy", "d.npy is a directory, not an array file"),
        ("empty", "e.npy", "e.npy is empty"),
        ("empty", "e.h5", "e.h5 is empty"),
        ("text", "t.h5", "t.h5 is not an HDF5 file"),
        ("text", "t.npz", "t.npz is not a valid .npz file (File is not a zip file)"),
        (None, "data.csv", "cannot read data.csv: unsupported format (.csv); "
         "expected .npy, .npz, .h5/.hdf5, .nc, .safetensors, .keras or .zarr"),
        (None, "a:b", "cannot read a:b: unsupported format (no suffix); "
         "expected .npy, .npz, .h5/.hdf5, .nc, .safetensors, .keras or .zarr"),
        ("npy", "x.npy:k", "x.npy is a .npy file holding one array; "
         "drop ':k' (KEY is for .npz/.h5)"),
    ],
)  # fmt: skip
def test_bad_inputs_are_one_line_input_errors(
    here: Path, setup: str | None, ref: str, expected: str
) -> None:
    name = ref.split(":")[0]
    if setup == "dir":
        Path(name).mkdir()
    elif setup == "empty":
        Path(name).write_bytes(b"")
    elif setup == "text":
        Path(name).write_text("hello, world\n1,2,3\n")
    elif setup == "npy":
        np.save(name, np.zeros(2))
    with pytest.raises(InputError) as info:
        io.load(ref)
    assert message(info) == expected
    # No chained library traceback: raised plainly or `from None`.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_a_text_file_named_npy_is_refused(here: Path) -> None:
    Path("t.npy").write_text("hello, world\n1,2,3\n")
    with pytest.raises(InputError) as info:
        io.load("t.npy")
    assert message(info).startswith("t.npy is not a valid .npy file (the magic string is not")


def test_a_truncated_header_is_refused(here: Path) -> None:
    Path("h.npy").write_bytes(npy_bytes(np.zeros(3))[:20])
    with pytest.raises(InputError) as info:
        io.load("h.npy")
    assert message(info).startswith("h.npy is not a valid .npy file (")


def test_truncated_npy_data_is_refused(here: Path) -> None:
    Path("t.npy").write_bytes(npy_bytes(np.zeros(100))[:-790])
    with pytest.raises(InputError) as info:
        io.load("t.npy")
    assert message(info) == (
        "t.npy is truncated: its header promises (100,) float64 (800 bytes) "
        "but only 10 bytes follow"
    )


def test_a_damaged_zip_is_refused(here: Path) -> None:
    np.savez("z.npz", a=np.zeros(1000))
    data = Path("z.npz").read_bytes()
    Path("z.npz").write_bytes(data[:-200])
    with pytest.raises(InputError) as info:
        io.load("z.npz")
    assert message(info).startswith("z.npz is not a valid .npz file (")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "no data on standard input"),
        (b"not numpy at all", "standard input is not a valid .npy stream ("),
        (npy_bytes(np.zeros(4))[:-8], "standard input is truncated: "),
    ],
)
def test_bad_stdin_is_refused(monkeypatch: pytest.MonkeyPatch, data: bytes, expected: str) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStdin(data))
    with pytest.raises(InputError) as info:
        io.load("-")
    assert message(info).startswith(expected)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_an_unreadable_file_is_refused(here: Path) -> None:
    np.save("x.npy", np.zeros(2))
    Path("x.npy").chmod(0)
    with pytest.raises(InputError) as info:
        io.load("x.npy")
    assert message(info) == "cannot read x.npy: Permission denied"


# ----------------------------------------------------------------------------- pickles


def test_a_pickled_npy_is_refused_and_nothing_runs(here: Path) -> None:
    marker = here / "pwned"
    np.save("evil.npy", evil_array(marker), allow_pickle=True)
    for call in (io.load, io.list_arrays, io.open_array):
        with pytest.raises(InputError) as info:
            call("evil.npy")
        assert message(info) == "evil.npy holds Python objects (pickled data); refusing to load"
    assert not marker.exists()


def test_a_pickled_npz_member_is_refused_and_nothing_runs(here: Path) -> None:
    marker = here / "pwned"
    np.savez("evil.npz", evil=evil_array(marker), fine=np.arange(3))
    np.savez("only.npz", evil=evil_array(marker))
    assert io.load("evil.npz").tolist() == [0, 1, 2]  # the one loadable member
    assert [i.ref.key for i in io.list_arrays("evil.npz")] == ["fine"]
    with pytest.raises(InputError) as info:
        io.load("evil.npz:evil")
    assert message(info) == "evil.npz:evil holds Python objects (pickled data); refusing to load"
    with pytest.raises(InputError) as info:
        io.load("only.npz")
    assert message(info) == "only.npz holds Python objects (pickled data); refusing to load"
    assert not marker.exists()


def test_a_pickled_stdin_stream_is_refused(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = here / "pwned"
    data = npy_bytes(evil_array(marker), allow_pickle=True)
    monkeypatch.setattr(sys, "stdin", FakeStdin(data))
    with pytest.raises(InputError) as info:
        io.load("-")
    assert message(info) == "standard input holds Python objects (pickled data); refusing to load"
    assert not marker.exists()


def test_object_data_is_never_written(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Python objects are never stored"):
        io.save(np.array([{}, 1], dtype=object), tmp_path / "o.npy")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- block writes


@pytest.mark.parametrize("out_fmt", OUT_FORMATS)
@pytest.mark.parametrize("axis", [0, 1])
def test_sinks_take_blocks_along_axis_0_or_1(
    out_fmt: str, axis: int, tmp_path: Path, stdout: pytest.CaptureFixture[bytes]
) -> None:
    array = sample((5, 7, 3), "float32")
    with io.open_sink(output_ref(out_fmt, tmp_path), array.shape, array.dtype) as sink:
        for start in range(0, array.shape[axis], 3):
            index = (slice(None),) * axis + (slice(start, start + 3),)
            sink.write(start, array[index], axis=axis)
    assert_bitwise(read_output(out_fmt, tmp_path, stdout), array)
    assert leftovers(tmp_path) == []


def test_blocks_are_cast_to_the_sink_dtype(tmp_path: Path) -> None:
    with io.open_sink(tmp_path / "c.npy", (2,), "float32") as sink:
        sink.write(0, np.array([1.5, 2.5]))
    assert_bitwise(np.load(tmp_path / "c.npy"), np.array([1.5, 2.5], "f4"))


@pytest.mark.parametrize(
    ("writes", "error"),
    [
        ([(1, (1, 2))], "expected a block at 0, got 1"),
        ([(0, (1, 3))], "does not fit"),
        ([(0, (4, 2))], "expected a block at 0, got 0"),
        ([(0, (1, 2))], "received 2 of 6 values"),
    ],
)
def test_misplaced_or_missing_blocks_fail_and_leave_nothing(
    tmp_path: Path, writes: list[tuple[int, tuple[int, int]]], error: str
) -> None:
    with (
        pytest.raises(ValueError, match=error),
        io.open_sink(tmp_path / "o.npy", (3, 2), "f8") as sink,
    ):
        for start, shape in writes:
            sink.write(start, np.zeros(shape))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out_fmt", ["npy", "npz", "h5"])
def test_a_failure_inside_the_sink_leaves_no_file(out_fmt: str, tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        io.open_sink(output_ref(out_fmt, tmp_path), (4, 2), "f4") as sink,
    ):
        sink.write(0, np.ones((2, 2)))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out_fmt", ["npy", "npz", "h5"])
def test_disk_full_is_an_output_error_and_leaves_no_file(
    out_fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    ref = output_ref(out_fmt, tmp_path)
    with pytest.raises(OutputError) as info:
        io.save(np.ones((4, 2)), ref)
    assert message(info) == f"cannot write {ref}: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_existing_h5_byte_identical(run_h5: Path) -> None:
    before = run_h5.read_bytes()
    with pytest.raises(RuntimeError), io.open_sink("run.h5:/new", (2,), "f4") as sink:
        sink.write(0, np.ones(1))
        raise RuntimeError("interrupted")
    assert run_h5.read_bytes() == before
    assert leftovers(run_h5.parent) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes everywhere")
def test_an_unwritable_folder_is_an_output_error(here: Path) -> None:
    Path("ro").mkdir()
    Path("ro").chmod(0o500)
    try:
        with pytest.raises(OutputError) as info:
            io.save(np.ones(2), "ro/x.npy")
        assert message(info) == "cannot write ro/x.npy: Permission denied"
    finally:
        Path("ro").chmod(0o700)


def test_a_refused_temporary_file_is_an_output_error(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(**_: Any) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(sidefiles.tempfile, "mkstemp", denied)
    for ref in ("x.npy", "x.npz:a", "x.h5:/a"):
        with pytest.raises(OutputError) as info:
            io.save(np.ones(2), ref)
        assert message(info) == f"cannot write {ref}: Permission denied"
    assert list(here.iterdir()) == []


def test_a_forced_replacement_keeps_the_file_mode(here: Path) -> None:
    np.save("m.npy", np.zeros(1))
    Path("m.npy").chmod(0o600)
    io.save(np.ones(1), "m.npy", force=True)
    assert Path("m.npy").stat().st_mode & 0o777 == 0o600


def test_importing_io_does_not_import_h5py() -> None:
    code = "import sys, lstmshape.io; print('h5py' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "False"


def test_new_files_get_the_usual_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        io.save(np.ones(2), tmp_path / "p.npy")
    finally:
        os.umask(old)
    assert (tmp_path / "p.npy").stat().st_mode & 0o777 == 0o644


def test_a_target_that_appears_meanwhile_is_not_clobbered(tmp_path: Path) -> None:
    target = tmp_path / "race.npy"
    with pytest.raises(InputError) as info, io.open_sink(target, (2,), "f8") as sink:
        sink.write(0, np.ones(2))
        target.write_bytes(b"someone else's")
    assert message(info) == f"{target} exists; use --force to overwrite"
    assert target.read_bytes() == b"someone else's"
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- stdout


def test_stdout_gets_a_npy_stream(stdout: pytest.CaptureFixture[bytes]) -> None:
    assert io.save(np.arange(4, dtype="i4"), "-") == "-"
    assert_bitwise(load_npy_bytes(stdout.readouterr().out), np.arange(4, dtype="i4"))


def test_nothing_reaches_stdout_when_the_first_block_never_comes(
    stdout: pytest.CaptureFixture[bytes],
) -> None:
    with pytest.raises(RuntimeError), io.open_sink("-", (2, 2), "f4"):
        raise RuntimeError("failed before any data")
    assert stdout.readouterr().out == b""


def test_a_broken_pipe_is_a_quiet_stdout_closed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Closed:
        def __init__(self) -> None:
            self.buffer = self

        def fileno(self) -> int:
            raise stdio.UnsupportedOperation("fileno")

        def write(self, _data: Any) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    with pytest.raises(io.StdoutClosedError) as info:
        io.save(np.ones(3), "-")
    assert isinstance(info.value, BrokenPipeError) and isinstance(info.value, OutputError)


# ----------------------------------------------------------------------------- existing outputs


def test_an_existing_output_needs_force(here: Path) -> None:
    np.save("out.npy", np.zeros(1))
    with pytest.raises(InputError) as info:
        io.check_output("out.npy", force=False)
    assert message(info) == "out.npy exists; use --force to overwrite"
    with pytest.raises(InputError):
        io.save(np.ones(2), "out.npy")
    assert np.load("out.npy").tolist() == [0.0]
    io.check_output("out.npy", force=True)
    io.save(np.ones(2), "out.npy", force=True)
    assert np.load("out.npy").tolist() == [1.0, 1.0]


def test_an_h5_key_is_added_and_every_other_dataset_is_kept(run_h5: Path) -> None:
    mode = 0o640
    run_h5.chmod(mode)
    io.check_output("run.h5:/new/x", force=False)
    written = io.save(np.arange(3), "run.h5:/new/x")
    assert written == "run.h5:/new/x"
    with h5py.File(run_h5, "r") as f:
        assert f["new/x"][()].tolist() == [0, 1, 2]
        assert f["a"][()].tolist() == [[0, 1, 2], [3, 4, 5]]
        assert f["a"].attrs["note"] == "kept"
        assert f["g/b"].shape == (2, 2) and f["g/c"].dtype == np.int32
    assert run_h5.stat().st_mode & 0o777 == mode
    assert leftovers(run_h5.parent) == []


def test_an_existing_h5_key_needs_force_and_the_file_stays_identical(run_h5: Path) -> None:
    before = run_h5.read_bytes()
    with pytest.raises(InputError) as info:
        io.check_output("run.h5:/g/b", force=False)
    assert message(info) == "run.h5:/g/b exists; use --force to overwrite"
    with pytest.raises(InputError):
        io.save(np.zeros(5), "run.h5:g/b")
    assert run_h5.read_bytes() == before
    io.save(np.zeros(5), "run.h5:/g/b", force=True)
    with h5py.File(run_h5, "r") as f:
        assert f["g/b"].shape == (5,)
        assert f["g/c"].shape == (1, 2, 3) and f["a"].attrs["note"] == "kept"


@pytest.mark.parametrize(
    ("ref", "force", "expected"),
    [
        ("run.h5:/g", True, "cannot write run.h5:/g: /g is a group; name a dataset"),
        ("run.h5:/a/x", False,
         "cannot write run.h5:/a/x: a parent of /a/x is a dataset, not a group"),
        ("run.h5:/", True, "cannot write run.h5:/: KEY must name an array"),
        ("run.h5", False, "run.h5 exists; use --force to overwrite"),
        ("out.csv", True, "cannot write out.csv: unsupported format (.csv); "
         "expected .npy, .npz, .h5/.hdf5, .nc, .safetensors or .zarr"),
        ("out.npy:k", True, "cannot write out.npy:k: a .npy file holds one array and takes no KEY"),
        ("nodir/out.npy", True, "cannot write nodir/out.npy: directory nodir does not exist"),
        ("run.h5/out.npy", True, "cannot write run.h5/out.npy: run.h5 is not a directory"),
        ("sub", True, "cannot write sub: unsupported format (no suffix); "
         "expected .npy, .npz, .h5/.hdf5, .nc, .safetensors or .zarr"),
        ("sub.npy", True, "cannot write sub.npy: it is a directory"),
    ],
)  # fmt: skip
def test_refused_outputs(run_h5: Path, ref: str, force: bool, expected: str) -> None:
    Path("sub.npy").mkdir()
    with pytest.raises(InputError) as info:
        io.check_output(ref, force=force)
    assert message(info) == expected


def test_a_non_hdf5_file_at_an_h5_output_needs_force(here: Path) -> None:
    Path("notes.h5").write_text("my notes")
    with pytest.raises(InputError) as info:
        io.save(np.ones(2), "notes.h5:/x")
    assert message(info) == "notes.h5 exists and is not an HDF5 file; use --force to overwrite"
    assert Path("notes.h5").read_text() == "my notes"
    io.save(np.ones(2), "notes.h5:/x", force=True)
    assert [str(i.ref) for i in io.list_arrays("notes.h5")] == ["notes.h5:/x"]


def test_an_npz_key_is_added_and_other_members_are_kept(here: Path) -> None:
    np.savez_compressed("r.npz", a=np.arange(3), b=np.ones(2))
    io.save(np.zeros((2, 2)), "r.npz:c")
    with pytest.raises(InputError) as info:
        io.save(np.zeros(1), "r.npz:a")
    assert message(info) == "r.npz:a exists; use --force to overwrite"
    io.save(np.full(4, 7), "r.npz:a", force=True)
    with np.load("r.npz") as z:
        assert sorted(z.files) == ["a", "b", "c"]
        assert z["a"].tolist() == [7, 7, 7, 7] and z["b"].tolist() == [1.0, 1.0]
    with zipfile.ZipFile("r.npz") as zf:
        assert zf.getinfo("b.npy").compress_type == zipfile.ZIP_DEFLATED


def test_default_keys_for_containers(here: Path) -> None:
    assert io.save(np.ones(2), "x.h5") == "x.h5:/data"
    assert io.save(np.ones(2), "x.npz") == "x.npz:arr_0"
    assert np.load("x.npz")["arr_0"].tolist() == [1.0, 1.0]


# ----------------------------------------------------------------------------- input == output


def test_the_input_is_never_the_output(here: Path) -> None:
    np.save("x.npy", np.arange(3))
    Path("sub").mkdir()
    Path("link.npy").symlink_to("x.npy")
    os.link("x.npy", "hard.npy")
    for out in ("x.npy", "./x.npy", "sub/../x.npy", str(here / "x.npy"), "link.npy", "hard.npy"):
        with pytest.raises(InputError) as info:
            io.check_output(out, force=True, inputs=["x.npy"])
        assert message(info) == f"cannot write {out}: it is the input x.npy; choose another output"
        with pytest.raises(InputError):
            io.save(np.zeros(3), out, force=True, inputs=["x.npy"])
    assert np.load("x.npy").tolist() == [0, 1, 2]
    io.check_output("new.npy", force=False, inputs=["x.npy", "-"])


def test_another_key_of_the_input_container_may_be_written(run_h5: Path) -> None:
    with io.open_array("run.h5:/a") as source:
        io.save(source.read_all() * 2, "run.h5:/a2", inputs=["run.h5:/a"])
    with h5py.File(run_h5, "r") as f:
        assert f["a2"][()].tolist() == [[0, 2, 4], [6, 8, 10]]
        assert f["a"][()].tolist() == [[0, 1, 2], [3, 4, 5]]
    for out, inp in [("run.h5:/a", "run.h5:a"), ("run.h5:/b", "run.h5"), ("run.h5", "run.h5:/a")]:
        with pytest.raises(InputError, match="it is the input"):
            io.check_output(out, force=True, inputs=[inp])


def test_the_only_array_of_the_input_container_counts_as_its_key(here: Path) -> None:
    with h5py.File("one.h5", "w") as f:
        f["lstm/output"] = np.ones((2, 3))
    np.savez("one.npz", x=np.ones(2))
    io.check_output("one.h5:/lstm/mean", inputs=["one.h5"])
    io.check_output("one.npz:y", inputs=["one.npz"])
    for out, inp in [("one.h5:lstm/output", "one.h5"), ("one.npz:x", "one.npz")]:
        with pytest.raises(InputError, match="it is the input"):
            io.check_output(out, force=True, inputs=[inp])


# ----------------------------------------------------------------------------- provenance


def test_h5_outputs_record_provenance(here: Path) -> None:
    np.save("in.npy", np.zeros((2, 3, 4)))
    options = {"strategy": "last", "pad_side": "post"}
    io.save(
        np.zeros((2, 4)),
        "out.h5:/reduced",
        inputs=["in.npy"],
        provenance={"operation": "reduce", "options": options},
    )
    with h5py.File("out.h5", "r") as f:
        attrs = dict(f["reduced"].attrs)
    assert attrs["source"] == str(here / "in.npy")
    assert attrs["operation"] == "reduce"
    assert json.loads(attrs["options"]) == options
    assert attrs["version"] == __version__


def test_an_explicit_source_wins(here: Path) -> None:
    io.save(np.ones(1), "p.h5:/x", provenance={"source": "run.h5:/lstm", "operation": "pool"})
    with h5py.File("p.h5", "r") as f:
        assert f["x"].attrs["source"] == "run.h5:/lstm"
        assert json.loads(f["x"].attrs["options"]) == {}


# ----------------------------------------------------------------------------- save_members


@pytest.mark.parametrize(
    ("ref", "keys"),
    [
        ("basis.npz", ["weights", "bias"]),
        ("basis.h5", ["/bias", "/weights"]),
        ("basis.h5:/pca", ["/pca/bias", "/pca/weights"]),
        ("basis.npz:pca", ["pca/weights", "pca/bias"]),
    ],
)
def test_save_members_writes_every_array(here: Path, ref: str, keys: list[str]) -> None:
    members = {"weights": np.eye(3, 2), "bias": np.arange(2.0)}
    io.save_members(ref, members, provenance={"operation": "pca"})
    infos = io.list_arrays(ref.split(":")[0])
    assert [i.ref.key for i in infos] == keys
    assert io.load(f"{infos[-1].ref}").shape in {(3, 2), (2,)}


def test_save_members_refuses_existing_files_and_keys(here: Path) -> None:
    io.save_members("b.npz", {"w": np.ones(2)})
    with pytest.raises(InputError, match=re.escape("b.npz exists; use --force")):
        io.save_members("b.npz", {"w": np.ones(2)})
    io.save_members("b.h5:/pca", {"w": np.ones(2)})
    with pytest.raises(InputError, match=re.escape("b.h5:/pca/w exists; use --force")):
        io.save_members("b.h5:/pca", {"v": np.ones(2), "w": np.ones(2)})
    with pytest.raises(InputError, match=re.escape("use a .npz, .h5, .nc or .safetensors file")):
        io.save_members("b.npy", {"w": np.ones(2)})
    assert [i.ref.key for i in io.list_arrays("b.h5")] == ["/pca/w"]


# ----------------------------------------------------------------------------- default names


def test_default_output_path_does_not_clobber(here: Path) -> None:
    assert io.default_output_path("data/samples_post.npy", "reduce-last") == (
        "samples_post.reduce-last.npy"
    )
    Path("samples_post.reduce-last.npy").write_bytes(b"")
    Path("samples_post.reduce-last-1.npy").write_bytes(b"")
    assert io.default_output_path("samples_post.npy", "reduce-last") == (
        "samples_post.reduce-last-2.npy"
    )
    assert io.default_output_path("-", "pool avg", suffix=".h5", cwd="out") == (
        str(Path("out") / "stdin.pool_avg.h5")
    )
    assert io.default_output_path(ArrayRef("run.h5", "/lstm/output"), "reshape") == (
        "run_lstm_output.reshape.npy"
    )
