"""lstmshape.io.zarr and zarr_sink: `.zarr` stores read and written like other formats.

Stores are written with zarr directly where the reader is under test, and read back with
zarr directly where the writer is, so both sides are checked against the library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_bitwise, sample

zarr = pytest.importorskip("zarr")

from lstmshape import io  # noqa: E402
from lstmshape._version import __version__  # noqa: E402
from lstmshape.errors import InputError, OutputError  # noqa: E402
from lstmshape.refs import ArrayRef, parse_ref  # noqa: E402

DTYPES = ["float16", "float32", "float64", "int32", "bool"]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A group store: /lstm/out (4, 5, 3) f4, /lengths (4,) i8, /empty group, chunked oddly."""
    path = tmp_path / "run.zarr"
    group = zarr.open_group(str(path), mode="w")
    out = group.create_array("lstm/out", shape=(4, 5, 3), chunks=(3, 2, 2), dtype="f4")
    out[:] = np.random.default_rng(1).standard_normal((4, 5, 3)).astype("f4")
    lengths = group.create_array("lengths", shape=(4,), dtype="i8")
    lengths[:] = [5, 3, 1, 4]
    group.create_group("empty")
    return path


# ----------------------------------------------------------------------------- refs


def test_refs_split_zarr_keys() -> None:
    assert parse_ref("run.zarr:/lstm/out", exists=lambda p: False) == ArrayRef(
        "run.zarr", "/lstm/out"
    )
    assert parse_ref("shards/*.zarr:out", exists=lambda p: False) == ArrayRef(
        "shards/*.zarr", "out"
    )
    assert ArrayRef("A.ZARR").suffix == ".zarr"


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize("dtype", DTYPES)
def test_read_root_array_bitwise(tmp_path: Path, dtype: str) -> None:
    x = sample((7, 4, 3), dtype)
    zarr.create_array(str(tmp_path / "a.zarr"), shape=x.shape, chunks=(2, 3, 3), dtype=x.dtype)[
        :
    ] = x
    with io.open_array(str(tmp_path / "a.zarr")) as src:
        assert src.shape == x.shape and src.dtype == x.dtype and src.nbytes == x.nbytes
        assert_bitwise(src.read_all(), x)
        assert_bitwise(src.read(2, 5), x[2:5])
        assert_bitwise(src.read(1, 3, axis=1), x[:, 1:3])
        assert src.read(6, 99).shape == (1, 4, 3)
        assert src.read(5, 2).shape == (0, 4, 3)
    assert_bitwise(io.load(str(tmp_path / "a.zarr")), x)


def test_read_keys_in_groups(store: Path) -> None:
    want = zarr.open_array(str(store), path="lstm/out", mode="r")[:]
    for key in ("/lstm/out", "lstm/out", "/lstm/out/"):
        assert_bitwise(io.load(f"{store}:{key}"), want)
    with io.open_array(f"{store}:lstm/out") as src:
        assert src.info.ref == ArrayRef(str(store), "/lstm/out")
        assert src.info.format == "zarr"
        assert src.info.chunks == (3, 2, 2)
        assert_bitwise(src.read(1, 4, axis=1), want[:, 1:4])


def test_only_array_needs_no_key(tmp_path: Path) -> None:
    path = tmp_path / "one.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("deep/inside/x", shape=(2, 3), dtype="f8")[:] = 1.0
    with io.open_array(str(path)) as src:
        assert src.info.ref.key == "/deep/inside/x"
        assert src.read_all().sum() == 6.0


def test_list_arrays(store: Path) -> None:
    infos = io.list_arrays(str(store))
    assert [str(i.ref) for i in infos] == [f"{store}:/lengths", f"{store}:/lstm/out"]
    assert infos[1].shape == (4, 5, 3) and infos[1].dtype == np.float32
    assert infos[1].format == "zarr" and infos[1].compression
    assert [i.ref.key for i in io.list_arrays(f"{store}:/lstm")] == ["/lstm/out"]
    assert [i.ref.key for i in io.list_arrays(f"{store}:/lengths")] == ["/lengths"]
    assert io.list_arrays(f"{store}:/empty") == []
    assert json.loads(json.dumps(infos[0].to_dict()))["format"] == "zarr"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "holds 2 arrays; name one as {p}:KEY: /lengths, /lstm/out"),
        ("/nope", "has no array '/nope'; it holds: /lengths, /lstm/out"),
        ("/lstm", "{p}:/lstm is a group, not an array; name an array in it: /lstm/out"),
        ("/empty", "{p}:/empty is a group, not an array; it holds no arrays"),
        ("/lengths/x", "has no array '/lengths/x'"),
    ],
)
def test_key_errors_list_candidates(store: Path, key: str | None, message: str) -> None:
    ref = str(store) if key is None else f"{store}:{key}"
    with pytest.raises(InputError, match=None) as err:
        io.open_array(ref)
    assert message.format(p=store) in str(err.value)


def test_open_errors(tmp_path: Path) -> None:
    (tmp_path / "file.zarr").write_bytes(b"not a store")
    (tmp_path / "plain.zarr").mkdir()
    (tmp_path / "plain.zarr" / "notes.txt").write_text("x")
    (tmp_path / "empty.zarr").mkdir()
    zarr.open_group(str(tmp_path / "nothing.zarr"), mode="w")
    (tmp_path / "bad.zarr").mkdir()
    (tmp_path / "bad.zarr" / "zarr.json").write_text("{not json")
    cases = {
        "missing.zarr": "missing.zarr does not exist",
        "file.zarr": "is a file, not a Zarr directory store",
        "plain.zarr": "is not a Zarr store",
        "empty.zarr": "is not a Zarr store",
        "nothing.zarr": "nothing.zarr holds no arrays",
        "bad.zarr": "cannot open",
    }
    for name, message in cases.items():
        with pytest.raises(InputError, match=message):
            io.open_array(str(tmp_path / name))
    root = tmp_path / "root.zarr"
    zarr.create_array(str(root), shape=(2,), dtype="f4")
    with pytest.raises(InputError, match="holds a single array, not a group; drop ':/x'"):
        io.open_array(f"{root}:/x")


def test_string_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("text", shape=(2,), dtype=str)
    group.create_array("x", shape=(2, 2), dtype="f4")
    with pytest.raises(InputError, match="variable-length strings"):
        io.open_array(f"{path}:/text")
    assert [i.ref.key for i in io.list_arrays(str(path))] == ["/x"]
    assert io.open_array(str(path)).info.ref.key == "/x"  # the only candidate


def test_missing_chunk_reads_fill_value_and_damaged_chunk_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "c.zarr"
    a = zarr.create_array(str(path), shape=(4, 2), chunks=(2, 2), dtype="f4", fill_value=0)
    a[:] = 1.0
    chunk = next(p for p in (path / "c").rglob("*") if p.is_file())
    chunk.write_bytes(b"garbage")
    with io.open_array(str(path)) as src, pytest.raises(InputError, match=f"cannot read {path}"):
        src.read_all()


# ----------------------------------------------------------------------------- writing


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_round_trip_bitwise(tmp_path: Path, dtype: str) -> None:
    x = sample((6, 4, 3), dtype)
    assert io.save(x, str(tmp_path / "o.zarr")) == str(tmp_path / "o.zarr")
    got = zarr.open_array(str(tmp_path / "o.zarr"), mode="r")
    assert got.metadata.zarr_format == 3
    assert_bitwise(np.asarray(got[:]), x)


@pytest.mark.parametrize("shape", [(), (0, 3), (3, 0, 2), (5,)])
def test_save_odd_shapes(tmp_path: Path, shape: tuple[int, ...]) -> None:
    x = np.arange(int(np.prod(shape)), dtype="f4").reshape(shape)
    io.save(x, str(tmp_path / "o.zarr"))
    assert_bitwise(io.load(str(tmp_path / "o.zarr")), x)


def test_block_writes_along_axis_one_chunk_per_block(tmp_path: Path) -> None:
    x = sample((3, 10, 2), "float32")
    ref = f"{tmp_path}/o.zarr:/pool/max"
    with io.open_sink(ref, x.shape, x.dtype) as sink:
        for start in range(0, 10, 4):
            sink.write(start, x[:, start : start + 4], axis=1)
    got = zarr.open_array(str(tmp_path / "o.zarr"), path="pool/max", mode="r")
    assert got.chunks == (3, 4, 2)
    assert_bitwise(np.asarray(got[:]), x)


def test_provenance_attrs_match_h5(tmp_path: Path) -> None:
    x = np.ones((2, 3), "f4")
    provenance = {"source": "in.npy", "operation": "reduce", "options": {"strategy": "last"}}
    io.save(x, f"{tmp_path}/o.zarr:/r", provenance=provenance)
    io.save(x, f"{tmp_path}/o.h5:/r", provenance=provenance)
    attrs = dict(zarr.open_array(str(tmp_path / "o.zarr"), path="r", mode="r").attrs)
    h5_attrs = dict(io.list_arrays(f"{tmp_path}/o.h5:/r")[0].attrs)
    assert attrs == h5_attrs
    assert attrs["version"] == __version__ and json.loads(attrs["options"]) == {"strategy": "last"}


def test_new_keys_keep_other_arrays_and_replace_needs_force(store: Path) -> None:
    before = io.load(f"{store}:/lstm/out").copy()
    io.save(np.zeros((4, 2)), f"{store}:/reduced/mean")
    io.save(np.ones(3), f"{store}:/top")
    keys = [i.ref.key for i in io.list_arrays(str(store))]
    assert keys == ["/lengths", "/lstm/out", "/reduced/mean", "/top"]
    assert_bitwise(io.load(f"{store}:/lstm/out"), before)
    with pytest.raises(InputError, match=r"/top exists; use --force"):
        io.save(np.ones(3), f"{store}:/top")
    io.save(np.full(5, 7.0), f"{store}:/top", force=True)
    assert io.load(f"{store}:/top").tolist() == [7.0] * 5
    assert not [p for p in store.parent.iterdir() if p.name.startswith(".")]


def test_existing_store_without_key_needs_force(tmp_path: Path) -> None:
    path = str(tmp_path / "o.zarr")
    io.save(np.ones(2), path)
    with pytest.raises(InputError, match=r"o\.zarr exists; use --force"):
        io.save(np.zeros(3), path)
    with pytest.raises(InputError, match=r"single array, not a group\); use --force"):
        io.save(np.zeros(3), f"{path}:/k")
    io.save(np.zeros(3), f"{path}:/k", force=True)
    assert [i.ref.key for i in io.list_arrays(path)] == ["/k"]
    io.save(np.arange(4.0), path, force=True)
    assert io.load(path).tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("{s}:/lstm", "/lstm is a group; name an array"),
        ("{s}:/lengths/x", "a parent of /lengths/x is an array"),
        ("{s}:/", "KEY must name an array"),
        ("{d}/nodir/o.zarr", "directory .* does not exist"),
        ("{d}/plain.zarr", "not a Zarr store; refusing to replace it"),
        ("{d}/file.zarr", "exists and is not a Zarr store; use --force"),
    ],
)
def test_output_refusals(store: Path, ref: str, message: str) -> None:
    (store.parent / "plain.zarr").mkdir()
    (store.parent / "plain.zarr" / "keep.txt").write_text("mine")
    (store.parent / "file.zarr").write_text("a file")
    target = ref.format(s=store, d=store.parent)
    with pytest.raises(InputError, match=message):
        io.check_output(target)
    with pytest.raises(InputError, match=message):
        io.save(np.ones(2), target)
    assert (store.parent / "plain.zarr" / "keep.txt").read_text() == "mine"


def test_plain_directory_is_never_replaced_even_with_force(tmp_path: Path) -> None:
    (tmp_path / "plain.zarr").mkdir()
    (tmp_path / "plain.zarr" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="refusing to replace it"):
        io.save(np.ones(2), str(tmp_path / "plain.zarr"), force=True)
    io.save(np.ones(2), str(tmp_path / "file.zarr"))  # a new store
    (tmp_path / "f.zarr").write_text("x")
    io.save(np.ones(2), str(tmp_path / "f.zarr"), force=True)  # a file is replaced
    assert io.load(str(tmp_path / "f.zarr")).tolist() == [1.0, 1.0]


def test_input_is_never_the_output(store: Path) -> None:
    ref = f"{store}:/lstm/out"
    with pytest.raises(InputError, match="it is the input"):
        io.check_output(ref, force=True, inputs=[ref])
    with pytest.raises(InputError, match="it is the input"):
        io.check_output(str(store), force=True, inputs=[ref])  # replacing the whole store
    with pytest.raises(InputError, match="it is the input"):
        io.check_output(f"{store}:/lstm", force=True, inputs=[ref])
    io.check_output(f"{store}:/reduced", inputs=[ref])  # another KEY is safe


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "o.zarr"
    with pytest.raises(RuntimeError), io.open_sink(str(target), (4, 2), "f4") as sink:
        sink.write(0, np.ones((2, 2)))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="received 4 of 8 values"):
        with io.open_sink(str(target), (4, 2), "f4") as sink:
            sink.write(0, np.ones((2, 2)))
    assert list(tmp_path.iterdir()) == []


def test_failed_key_write_keeps_the_store(store: Path) -> None:
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    with pytest.raises(RuntimeError), io.open_sink(f"{store}:/new/x", (4,), "f4") as sink:
        sink.write(0, np.ones(2))
        raise RuntimeError("boom")
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before
    assert [p.name for p in store.parent.iterdir()] == ["run.zarr"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes everywhere")
def test_unwritable_directory_is_output_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            io.save(np.ones(2), str(locked / "o.zarr"))
    finally:
        locked.chmod(0o700)


def test_published_store_has_normal_permissions(tmp_path: Path) -> None:
    io.save(np.ones(2), str(tmp_path / "o.zarr"))
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "o.zarr").stat().st_mode & 0o777 == 0o777 & ~mask


def test_v2_group_gets_a_v2_array(tmp_path: Path) -> None:
    path = tmp_path / "v2.zarr"
    zarr.open_group(str(path), mode="w", zarr_format=2).create_array("a", shape=(2,), dtype="f4")
    io.save(np.arange(3.0), f"{path}:/b/c")
    assert zarr.open_array(str(path), path="b/c", mode="r").metadata.zarr_format == 2
    assert io.load(f"{path}:/b/c").tolist() == [0.0, 1.0, 2.0]


def test_consolidated_metadata_is_refreshed(tmp_path: Path) -> None:
    path = tmp_path / "c.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("a", shape=(2,), dtype="f4")
    with warnings.catch_warnings():  # consolidated metadata is not in the v3 specification
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))
        io.save(np.ones(3), f"{path}:/b")
        consolidated = zarr.open_consolidated(str(path), mode="r")
    assert sorted(name for name, _ in consolidated.members()) == ["a", "b"]


# ----------------------------------------------------------------------------- CLI


def test_cli_reads_and_writes_zarr(store: Path, run_cli) -> None:
    out = store.parent / "out.zarr"
    result = run_cli(
        [
            "reduce",
            f"{store}:/lstm/out",
            "-s",
            "mean",
            "--lengths",
            f"{store}:/lengths",
            "-o",
            f"{out}:/mean",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["output"]["shape"] == [4, 3]
    want = io.load(f"{store}:/lstm/out")
    mask = np.arange(5)[None, :] < np.array([5, 3, 1, 4])[:, None]
    expected = (want * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(io.load(f"{out}:/mean"), expected, rtol=1e-6)
    attrs = io.list_arrays(f"{out}:/mean")[0].attrs
    assert attrs["operation"] == "reduce" and json.loads(attrs["options"])["strategy"] == "mean"
    inspected = run_cli(["inspect", str(out), "--json", "-q"])
    assert inspected.exit_code == 0 and json.loads(inspected.stdout)["format"] == "zarr"
    again = run_cli(["reduce", f"{store}:/lstm/out", "-o", f"{out}:/mean"])
    assert again.exit_code == 2 and "exists; use --force" in again.stderr


def test_cli_missing_key_lists_candidates(store: Path, run_cli) -> None:
    result = run_cli(["reduce", str(store), "-o", str(store.parent / "o.npy")])
    assert result.exit_code == 2
    assert "holds 2 arrays; name one as" in result.stderr and "/lstm/out" in result.stderr


def test_zarr_is_imported_only_for_zarr_paths(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((2, 3, 4), "f4"))
    code = (
        "import sys\n"
        "from lstmshape.cli import main\n"
        "sys.argv = ['lstmshape', *sys.argv[1:]]\n"
        "try:\n    main()\n"
        "except SystemExit:\n    pass\n"
        "print('ZARR', 'zarr' in sys.modules, 'dask' in sys.modules, file=sys.stderr)\n"
    )

    def imported(*args: str) -> str:
        run = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
        )
        return run.stderr.strip().splitlines()[-1]

    assert imported("--help") == "ZARR False False"
    assert imported("reduce", "x.npy", "-q", "-o", "y.npy") == "ZARR False False"
    assert imported("reduce", "x.npy", "-q", "-o", "y.zarr") == "ZARR True False"
