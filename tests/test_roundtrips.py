"""Every format to every format through a command, bit for bit: data and dtype kept,
float16 and zero-length axes included. The documented exceptions: netCDF stores bool as
uint8 0/1, `.safetensors` stores little-endian (bfloat16 inputs are read as float32, see
test_safetensors), and `.keras` archives are read only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import assert_bitwise, sample

from lstmshape import io

FORMATS = {
    "npy": "a.npy",
    "npz": "a.npz:k",
    "h5": "a.h5:/g/k",
    "nc": "a.nc:/k",
    "safetensors": "a.safetensors:k",
    "zarr": "a.zarr:/k",
}
CASES = {
    "float16 with a zero-length axis": ((3, 0, 2), "float16"),
    "float32": ((4, 3, 2), "float32"),
    "int64": ((2, 3, 5), "int64"),
    "bool": ((2, 2, 3), "bool"),
}


def _ref(tmp_path: Path, fmt: str, side: str) -> str:
    return str(tmp_path / f"{side}-{FORMATS[fmt]}")


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dst", sorted(FORMATS))
@pytest.mark.parametrize("src", sorted(FORMATS))
def test_every_pair_of_formats_keeps_data_and_dtype(run_cli, tmp_path, src, dst, case) -> None:
    shape, dtype = CASES[case]
    x = sample(shape, dtype)
    source, target = _ref(tmp_path, src, "in"), _ref(tmp_path, dst, "out")
    io.save(x, source)
    result = run_cli(["reshape", source, "--pattern", "n t f -> n t f", "-o", target])
    assert result.exit_code == 0, result.stderr
    want = x.astype(np.uint8) if dtype == "bool" and "nc" in (src, dst) else x
    assert_bitwise(io.load(target), want)


@pytest.mark.parametrize("fmt", ["safetensors", "nc"])
def test_several_arrays_in_one_file(run_cli, tmp_path: Path, fmt: str) -> None:
    """`save_members` (`--save-basis`): every member kept, 0-d ones too; unnamed axes of
    different sizes never share a netCDF dimension."""
    rng = np.random.default_rng(0)
    members = {"weights": rng.standard_normal((4, 3)), "bias": np.ones(3), "n": np.array(7)}
    io.save_members(tmp_path / f"b.{fmt}", members)
    for name, array in members.items():
        assert_bitwise(io.load(f"{tmp_path / f'b.{fmt}'}:{name}"), array)
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    weights = [f"{tmp_path / f'b.{fmt}'}:{key}" for key in ("weights", "bias")]
    args = ["project", tmp_path / "x.npy", "--weights", weights[0], "--bias", weights[1]]
    result = run_cli([*args, "-o", tmp_path / "p.npy"])
    assert result.exit_code == 0, result.stderr
    want = x @ members["weights"] + 1
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), want, rtol=1e-5, atol=1e-6)
