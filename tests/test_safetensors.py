"""`.safetensors` in and out: files written by the real library (fixtures), files lstmshape
writes read back by it, block reads, and every damaged header as one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_bitwise, sample
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from lstmshape import io
from lstmshape.errors import InputError
from lstmshape.io.safetensors import read_header

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = np.load(FIXTURES / "formats_expected.npz")


def test_files_written_by_safetensors_numpy_are_read_right() -> None:
    path = FIXTURES / "st_numpy.safetensors"
    want = load_file(str(path))
    listed = {info.ref.key: info for info in io.list_arrays(path)}
    assert sorted(listed) == sorted(want)
    for name, array in want.items():
        assert_bitwise(io.load(f"{path}:{name}"), array)
        assert listed[name].attrs == {"producer": "make_format_fixtures.py", "format": "np"}
    assert_bitwise(io.load(f"{path}:lstm/output"), EXPECTED["x"])
    assert_bitwise(io.load(f"{path}:h_n"), EXPECTED["h_n"])


def test_bfloat16_from_safetensors_torch_is_read_as_float32_exactly(run_cli) -> None:
    ref = f"{FIXTURES / 'st_torch_bf16.safetensors'}:output"
    info = io.list_arrays(ref)[0]
    assert (info.dtype, info.stored_dtype) == (np.dtype("float32"), "bfloat16")
    assert_bitwise(io.load(ref), EXPECTED["bf16_as_f32"])
    result = run_cli(["reduce", ref, "-s", "mean", "--json", "-o", "-"])
    assert result.exit_code == 2  # --json with -o - is a usage error: take the table instead
    result = run_cli(["reduce", ref, "-s", "last", "--dry-run", "--json"])
    assert json.loads(result.stdout)["input"]["note"] == "bfloat16 on disk, read as float32 (exact)"


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("source", ["f32", "bf16"])
def test_blocks_and_rows_read_like_the_whole(tmp_path: Path, axis: int, source: str) -> None:
    if source == "bf16":
        ref, whole = f"{FIXTURES / 'st_torch_bf16.safetensors'}:output", EXPECTED["bf16_as_f32"]
    else:
        whole = sample((7, 5, 3), "float32")
        save_file({"x": whole}, str(tmp_path / "x.safetensors"))
        ref = f"{tmp_path / 'x.safetensors'}:x"
    with io.open_array(ref) as src:
        assert src.reader is not None
        n = whole.shape[axis]
        parts = [src.read(i, i + 2, axis=axis) for i in range(0, n, 2)]
        assert_bitwise(np.concatenate(parts, axis=axis), whole)
        rows = np.array([5, 0, 3], np.int64)
        got = np.empty((3, whole.shape[-1]), whole.dtype)
        src.reader.read_rows(rows, got)
        assert_bitwise(got, whole.reshape(-1, whole.shape[-1])[rows])


def test_outputs_are_read_by_safetensors_with_provenance(run_cli, tmp_path: Path) -> None:
    x = sample((6, 4, 3), "float32")
    save_file({"out": x}, str(tmp_path / "in.safetensors"))
    out = tmp_path / "o.safetensors"
    result = run_cli(["reduce", f"{tmp_path / 'in.safetensors'}:out", "-s", "max", "-o", out])
    assert result.exit_code == 0, result.stderr
    np.testing.assert_array_equal(load_file(str(out))["data"], np.max(x, axis=1))
    with safe_open(str(out), "np") as f:
        record = json.loads(f.metadata()["lstmshape:data"])
    assert record["operation"] == "reduce" and record["source"].endswith("in.safetensors:out")
    assert json.loads(record["options"])["strategy"] == "max"
    assert io.list_arrays(out)[0].attrs["operation"] == "reduce"


def test_a_new_key_keeps_the_other_tensors_and_an_old_one_needs_force(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"a": np.arange(3.0), "b": np.ones((2, 2), np.float16)}, str(path), {"k": "v"})
    io.save(np.zeros((2, 5), np.int32), f"{path}:c")
    got = load_file(str(path))
    assert sorted(got) == ["a", "b", "c"]
    assert_bitwise(got["b"], np.ones((2, 2), np.float16))
    with safe_open(str(path), "np") as f:
        assert f.metadata()["k"] == "v" and "lstmshape:c" in f.metadata()
    with pytest.raises(InputError, match=r"w\.safetensors:a exists; use --force"):
        io.save(np.zeros(1), f"{path}:a")
    io.save(np.full(4, 7, np.uint8), f"{path}:a", force=True)
    assert_bitwise(load_file(str(path))["a"], np.full(4, 7, np.uint8))


def test_time_major_blocks_scalars_and_empty_tensors_are_written(tmp_path: Path) -> None:
    x = sample((5, 4, 3), "float64")
    with io.open_sink(tmp_path / "t.safetensors", x.shape, x.dtype) as sink:
        sink.write(0, x[:, :3], axis=1)
        sink.write(3, x[:, 3:], axis=1)
    assert_bitwise(load_file(str(tmp_path / "t.safetensors"))["data"], x)
    for name, array in {"s": np.array(2.5, np.float32), "e": np.zeros((0, 3), np.int8)}.items():
        io.save(array, tmp_path / f"{name}.safetensors")
        assert_bitwise(load_file(str(tmp_path / f"{name}.safetensors"))["data"], array)
        assert_bitwise(io.load(tmp_path / f"{name}.safetensors"), array)


def test_big_endian_data_is_stored_little_endian(tmp_path: Path) -> None:
    x = np.arange(6, dtype=">i4").reshape(2, 3)
    io.save(x, tmp_path / "b.safetensors")
    got = load_file(str(tmp_path / "b.safetensors"))["data"]
    assert got.dtype == np.dtype("<i4") and got.tolist() == x.tolist()


def test_types_safetensors_lacks_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.safetensors has no complex128 type"):
        io.save(np.ones(2, np.complex128), tmp_path / "c.safetensors")
    assert list(tmp_path.iterdir()) == []


def _raw(header: object, data: bytes = b"", *, length: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return (len(text) if length is None else length).to_bytes(8, "little") + text + data


def _t(dtype: str, shape: list[int], begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


DAMAGED = {
    "short": (b"\x01\x02", "is not a valid .safetensors file: it has 2 bytes"),
    "huge length": (_raw({}, length=2**40), "its header length says 1099511627776 bytes"),
    "cut header": (_raw({"x": _t("F32", [1], 0, 4)})[:20], "is truncated: its header is"),
    "not an object": (_raw(b"[1, 2]"), "its header does not start with '{'"),
    "not json": (_raw(b"{nope"), "its header is not JSON"),
    "not utf-8": (_raw(b'{"\xff": 1}'), "its header is not JSON"),
    "deep": (_raw(b"{" + b'"a":[' * 100000), "its header is not JSON"),
    "twice": (_raw(b'{"a": {}, "a": {}}'), "the name 'a' appears twice"),
    "fields": (_raw({"x": {"dtype": "F32"}}), "needs exactly dtype, shape and data_offsets"),
    "dtype": (_raw({"x": _t("F33", [1], 0, 4)}, bytes(4)), "unknown dtype 'F33'"),
    "shape": (_raw({"x": _t("F32", [-1], 0, 4)}, bytes(4)), "shape that is not a list of sizes"),
    "lying size": (_raw({"x": _t("F32", [2**40], 0, 4)}, bytes(4)), "needs 4398046511104 bytes"),
    "hole": (_raw({"x": _t("U8", [2], 2, 4)}, bytes(4)), "starts at byte 2 of the data where 0"),
    "overlap": (
        _raw({"x": _t("U8", [4], 0, 4), "y": _t("U8", [2], 2, 4)}, bytes(4)),
        "starts at byte 2 of the data where 4",
    ),
    "truncated data": (_raw({"x": _t("F32", [4], 0, 16)}, bytes(8)), "is truncated: its tensors"),
    "trailing": (_raw({"x": _t("U8", [1], 0, 1)}, bytes(9)), "8 bytes follow its last tensor"),
    "metadata": (_raw({"__metadata__": {"a": 1}}), "__metadata__ must map names to strings"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_files_are_one_line_errors(run_cli, tmp_path: Path, name: str) -> None:
    data, expected = DAMAGED[name]
    (tmp_path / "d.safetensors").write_bytes(data)
    result = run_cli(["inspect", tmp_path / "d.safetensors"])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and expected in result.stderr, result.stderr


def test_small_float_types_are_listed_in_messages_but_not_read(tmp_path: Path) -> None:
    path = tmp_path / "f8.safetensors"
    path.write_bytes(_raw({"q": _t("F8_E4M3", [4], 0, 4), "x": _t("F32", [1], 4, 8)}, bytes(8)))
    assert [info.ref.key for info in io.list_arrays(path)] == ["x"]
    assert read_header(str(path)).tensors["q"].code == "F8_E4M3"
    with pytest.raises(InputError, match="holds F8_E4M3 data, which numpy cannot hold"):
        io.load(f"{path}:q")
