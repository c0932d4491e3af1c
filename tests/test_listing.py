"""`inspect --brief` (headers only: a test counts the reads), KEY globs, and what `inspect`
adds from the headers: attributes with lstmshape's provenance, chunks, compression."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import zarr
from helpers import sample
from safetensors.numpy import save_file

from lstmshape import io
from lstmshape.io import blocks, h5_readers, npy, npz, safetensors
from lstmshape.refs import ArrayRef
from lstmshape.render import brief_line
from lstmshape.sources import expand_refs

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def every_format(tmp_path: Path) -> list[str]:
    """One small file of each format (chunked and gzip, stored and deflated, bfloat16...)."""
    x = sample((6, 5, 4), "float32")
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "stored.npz", a=x, b=x[:, 0])
    np.savez_compressed(tmp_path / "deflated.npz", a=x)
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f.create_dataset("/run1/out", data=x, chunks=(2, 5, 4), compression="gzip")
        f.create_dataset("/run2/out", data=x)
    io.save(x, tmp_path / "o.nc", dims=("sample", "time", "feature"))
    save_file({"x": x}, str(tmp_path / "s.safetensors"))
    io.save(x, tmp_path / "z.zarr")
    names = ["x.npy", "stored.npz", "deflated.npz", "r.h5", "o.nc", "s.safetensors", "z.zarr"]
    fixtures = [FIXTURES / "st_torch_bf16.safetensors", FIXTURES / "keras_two_dense.keras"]
    return [str(tmp_path / name) for name in names] + [str(p) for p in fixtures]


READS = [
    (npy.FileArray, "read_into"),
    (npy.FileArray, "read_rows"),
    (npy.FileArray, "map_block"),
    (npz.ZipStream, "read_into"),
    (h5_readers.ChunkedFile, "read_into"),
    (h5_readers.H5Direct, "read_into"),
    (blocks.InMemory, "read_into"),
    (safetensors.Bf16Array, "read_into"),
    (io.ArraySource, "read"),
    (io.ArraySource, "read_all"),
    (h5py.Dataset, "__getitem__"),
    (h5py.Dataset, "read_direct"),
    (zarr.Array, "__getitem__"),
]


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Every data read through lstmshape's readers, h5py or zarr, by name."""
    seen: list[str] = []
    for owner, name in READS:
        original = getattr(owner, name)

        def counted(*args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            seen.append(_name)
            return _original(*args, **kw)

        monkeypatch.setattr(owner, name, counted)
    return seen


def test_brief_reads_no_data(run_cli, every_format: list[str], reads: list[str]) -> None:
    result = run_cli(["inspect", "--brief", "--json", *every_format])
    assert result.exit_code == 0, result.stderr
    entries = json.loads(result.stdout)
    assert len(entries) == 14 and reads == []
    run_cli(["inspect", "--json", "-q", every_format[0]])  # the counter counts
    assert reads


def test_brief_lines(run_cli, every_format: list[str]) -> None:
    result = run_cli(["inspect", "--brief", *every_format])
    lines = result.stderr.splitlines()
    assert result.exit_code == 0 and len(lines) == 14 and result.stdout == ""
    h5 = next(line for line in lines if "r.h5:/run1/out" in line)
    assert h5.endswith("r.h5:/run1/out  (6, 5, 4)  float32  480 B  chunks (2, 5, 4) gzip")
    assert any(line.endswith("o.nc:/data  (sample=6, time=5, feature=4)  float32  480 B")
               for line in lines)  # fmt: skip
    assert any("float32 (bfloat16 on disk)" in line for line in lines)
    assert any(line.endswith(":head/kernel  (7, 3)  float32  84 B") for line in lines)
    assert run_cli(["inspect", "--brief", "-q", *every_format]).stderr == ""


def _child(args: list[str]) -> int:
    """The bytes a command reads through system calls (rchar), run as its own process."""
    code = (
        "import runpy, sys\n"
        "sys.argv = ['lstmshape', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('lstmshape', run_name='__main__')\n"
        "finally:\n"
        "    line = [l for l in open('/proc/self/io') if l.startswith('rchar')][0]\n"
        "    print('RCHAR', line.split()[1], file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return int(done.stderr.rsplit("RCHAR", 1)[1])


def test_brief_on_huge_files_reads_only_headers(tmp_path: Path) -> None:
    """16 GiB declared in each file, nothing stored (sparse): reading them would take
    minutes and show as gigabytes of rchar."""
    shape = (1 << 16, 256, 256)
    with h5py.File(tmp_path / "big.h5", "w") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        space = h5py.h5s.create_simple(shape)
        h5py.h5d.create(f.id, b"out", h5py.h5t.NATIVE_FLOAT, space, dcpl=dcpl)
    head = json.dumps({"x": {"dtype": "F32", "shape": list(shape), "data_offsets": [0, 2**34]}})
    with (tmp_path / "big.safetensors").open("wb") as fh:
        fh.write(len(head).to_bytes(8, "little") + head.encode())
        fh.truncate(8 + len(head) + 2**34)
    assert (tmp_path / "big.h5").stat().st_size >= 2**34
    rchar = _child(
        ["inspect", "--brief", str(tmp_path / "big.h5"), str(tmp_path / "big.safetensors")]
    )
    assert rchar < 64 * 2**20, rchar


def test_key_globs_expand_per_file_in_order(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "runs.h5", "w") as f:
        for name in ("run2", "run1", "run10", "other"):
            f[f"/{name}/lstm/output"] = np.zeros((2, 3, 4))
            f[f"/{name}/lstm/lengths"] = np.ones(2)
        f["/odd[1]"] = np.zeros(2)
    runs = str(tmp_path / "runs.h5")
    got = [r.key for r in expand_refs([ArrayRef(runs, "/run*/lstm/output")])]
    assert got == ["/run1/lstm/output", "/run10/lstm/output", "/run2/lstm/output"]
    assert [r.key for r in expand_refs([ArrayRef(runs, "run?/*/lengths")])] == [
        "/run1/lstm/lengths",
        "/run2/lstm/lengths",
    ]
    assert expand_refs([ArrayRef(runs, "/odd[1]")]) == [ArrayRef(runs, "/odd[1]")]  # as written
    save_file(
        {"a.w": np.ones(1), "a.b": np.ones(1), "c": np.ones(1)}, str(tmp_path / "s.safetensors")
    )
    st = str(tmp_path / "s.safetensors")
    assert [r.key for r in expand_refs([ArrayRef(st, "a.*")])] == ["a.b", "a.w"]


def test_a_key_glob_joins_arrays_along_n(run_cli, tmp_path: Path) -> None:
    with h5py.File(tmp_path / "runs.h5", "w") as f:
        for i in range(3):
            f[f"/run{i}/out"] = np.full((2, 3, 4), i, np.float32)
    result = run_cli(["reduce", f"{tmp_path / 'runs.h5'}:/run*/out", "-s", "last", "-o", "-"])
    assert result.exit_code == 0, result.stderr
    out = np.load(__import__("io").BytesIO(result.stdout_bytes))
    assert out[:, 0].tolist() == [0, 0, 1, 1, 2, 2]
    missing = run_cli(["inspect", f"{tmp_path / 'runs.h5'}:/x*"])
    assert missing.exit_code == 2
    assert missing.stderr.endswith("matches /x*; it holds: /run0/out, /run1/out, /run2/out\n")


def test_inspect_shows_provenance_chunks_and_compression(run_cli, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", sample((4, 3, 2), "float32"))
    for out in ("o.h5:/r", "o.zarr", "o.nc"):
        assert run_cli(["reduce", tmp_path / "x.npy", "-o", tmp_path / out]).exit_code == 0
        report = json.loads(run_cli(["inspect", tmp_path / out, "--json", "-q"]).stdout)
        assert report["provenance"]["operation"] == "reduce", out
        assert report["provenance"]["options"]["strategy"] == "last"
        assert report["provenance"]["source"].endswith("x.npy")
    with h5py.File(tmp_path / "c.h5", "w") as f:
        dset = f.create_dataset("c", data=np.ones((4, 3)), chunks=(2, 3), compression="gzip")
        dset.attrs["units"] = "m"
    report = json.loads(run_cli(["inspect", tmp_path / "c.h5", "--json", "-q"]).stdout)
    assert (report["chunks"], report["compression"]) == ([2, 3], "gzip")
    assert report["attrs"] == {"units": "m"} and report["provenance"] is None
    table = run_cli(["inspect", tmp_path / "o.h5:/r"]).stderr
    assert "provenance" in table and "strategy=last" in table and "from " in table


def test_a_damaged_attribute_does_not_hang_inspect(run_cli) -> None:
    """HDF5 loops forever on this file's attribute (tests/fuzz_corpus): inspect still
    answers, saying so."""
    path = Path(__file__).parent / "fuzz_corpus" / "h5-attribute-heap-loop" / "contiguous.h5"
    result = run_cli(["inspect", f"{path}:/lstm/output", "--json", "-q"])
    assert result.exit_code == 0, result.stderr
    assert "did not answer" in json.loads(result.stdout)["attrs_error"]


def test_brief_line_without_storage_details() -> None:
    entry = {"ref": "x.npy", "shape": [3], "dtype": "int8", "nbytes": 3}
    assert brief_line(entry) == "x.npy  (3,)  int8  3 B"
