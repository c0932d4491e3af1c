"""netCDF-4 (`.nc`): a file written by xarray through netCDF-C is read right, and xarray opens
lstmshape's outputs with named dimensions and provenance attributes."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from helpers import assert_bitwise, sample

from lstmshape import io
from lstmshape.errors import InputError
from lstmshape.plan import plan_pool, plan_reduce, plan_reshape
from lstmshape.plan.dims import extra_dims, output_dims

FIXTURES = Path(__file__).parent / "fixtures"
NC = FIXTURES / "xarray_lstm.nc"
EXPECTED = np.load(FIXTURES / "formats_expected.npz")


def _open(path: Path, group: str | None = None) -> xr.Dataset:
    return xr.open_dataset(path, engine="h5netcdf", group=group)


def test_a_file_written_by_xarray_is_read_with_its_dimensions() -> None:
    listed = {info.ref.key: info for info in io.list_arrays(NC)}
    assert sorted(listed) == ["/lengths", "/output", "/time"]
    assert listed["/output"].dims == ("sample", "time", "feature")
    assert listed["/time"].dims == ("time",)  # a coordinate variable is its own dimension
    assert_bitwise(io.load(f"{NC}:output"), EXPECTED["x"])
    assert_bitwise(io.load(f"{NC}:/lengths"), EXPECTED["lengths"])
    assert listed["/output"].attrs["long_name"] == "LSTM out"


def test_commands_read_variables_as_keys(run_cli, tmp_path: Path) -> None:
    args = ["reduce", f"{NC}:output", "--lengths", f"{NC}:lengths", "-o", tmp_path / "l.npy"]
    assert run_cli(args).exit_code == 0
    x, lengths = EXPECTED["x"], EXPECTED["lengths"]
    assert_bitwise(np.load(tmp_path / "l.npy"), x[np.arange(4), lengths - 1])


@pytest.mark.parametrize(
    ("args", "dims"),
    [
        (["reduce", "-s", "mean"], ("sample", "feature")),
        (["reduce", "--keepdims"], ("sample", "time", "feature")),
        (["pool", "--pool-size", "2"], ("sample", "time", "feature")),
        (["pool", "--pool-size", "2", "--layout", "tnf"], ("time", "sample", "feature")),
        (["project", "--pca", "2"], ("sample", "time", "feature")),
        (["reshape", "--to", "steps"], ("step", "feature")),
        (["reshape", "--to", "flatten"], ("sample", "time_feature")),
        (["reshape", "--pattern", "n t f -> t (n f)"], ("t", "n_f")),
    ],
)
def test_xarray_opens_outputs_with_named_dimensions(run_cli, tmp_path, args, dims) -> None:
    out = tmp_path / "o.nc"
    command, *options = args
    result = run_cli([command, f"{NC}:output", *options, "-o", f"{out}:hidden"])
    assert result.exit_code == 0, result.stderr
    with _open(out) as ds:
        assert ds["hidden"].dims == dims
        assert ds["hidden"].attrs["operation"] == command
        assert json.loads(ds["hidden"].attrs["options"])["layout"] in ("ntf", "tnf")
        assert ds["hidden"].attrs["source"].endswith("xarray_lstm.nc:output")


def test_a_window_mask_goes_beside_the_output(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "p.nc"
    args = ["pool", f"{NC}:output", "--pool-size", "2", "--lengths", f"{NC}:lengths"]
    result = run_cli([*args, "--mask-out", f"{out}:mask", "-o", f"{out}:pooled"])
    assert result.exit_code == 0, result.stderr
    with _open(out) as ds:
        assert ds["mask"].dims == ("sample", "time") and ds["mask"].dtype == np.uint8
        assert ds["mask"].attrs["flag_meanings"] == "false true"
        assert ds.sizes == {"sample": 4, "time": 3, "feature": 5}


def test_a_new_variable_keeps_the_others_and_an_old_one_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "k.nc"
    io.save(sample((3, 4), "float32"), path, dims=("sample", "feature"))
    io.save(np.arange(3), f"{path}:/lengths", dims=("sample",))
    io.save(np.ones((2, 2)), f"{path}:/group/other", dims=("a", "b"))
    with _open(path) as ds:
        assert sorted(ds.data_vars) == ["data", "lengths"] and ds["lengths"].dims == ("sample",)
    with _open(path, "group") as ds:
        assert ds["other"].dims == ("a", "b")
    with pytest.raises(InputError, match="netCDF cannot delete a variable"):
        io.save(np.arange(3), f"{path}:/lengths", force=True)
    with pytest.raises(InputError, match="dimension 'sample' has size 3, this output needs 5"):
        io.save(np.arange(5), f"{path}:/more", dims=("sample",))


@pytest.mark.parametrize("dtype", ["float16", "float64", "int8", "int64", "complex64"])
def test_dtypes_and_zero_length_axes_round_trip(tmp_path: Path, dtype: str) -> None:
    for shape in [(3, 0, 2), (0,), (2, 3)]:
        x = sample(shape, dtype)
        io.save(x, tmp_path / f"{dtype}{len(shape)}{x.size}.nc")
        assert_bitwise(io.load(tmp_path / f"{dtype}{len(shape)}{x.size}.nc"), x)


def test_netcdf3_and_other_files_are_refused_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "old.nc").write_bytes(b"CDF\x01" + bytes(60))
    with pytest.raises(InputError, match=r"netCDF-3 \(classic\) file; .*nccopy -k nc4"):
        io.load(tmp_path / "old.nc")
    (tmp_path / "text.nc").write_text("hello")
    with pytest.raises(InputError, match="is not a netCDF-4 file"):
        io.list_arrays(tmp_path / "text.nc")


def test_packed_variables_and_bare_dimensions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "packed.nc"
    encoding = {"x": {"dtype": "int16", "scale_factor": 0.5, "_FillValue": -1}}
    xr.Dataset({"x": (("n",), np.arange(4.0))}).to_netcdf(
        path, engine="h5netcdf", encoding=encoding
    )
    with h5py.File(path) as f:
        assert "scale_factor" in f["x"].attrs
    with pytest.raises(InputError, match=r"packed \(scale_factor\): lstmshape reads stored"):
        io.load(f"{path}:x")
    with pytest.raises(InputError, match="is a netCDF dimension, not a variable"):
        io.load(f"{path}:n")
    with pytest.raises(InputError, match="holds no variables"):
        io.load(path)


def test_output_dimension_names_from_plans() -> None:
    shape = (4, 6, 5)
    assert output_dims(plan_reduce(shape, "f4", strategy="last")) == ("sample", "feature")
    windows = plan_pool(shape, "f4", op="max", pool_size=2, layout="tnf")
    assert output_dims(windows) == ("time", "sample", "feature")
    assert extra_dims(windows) == ("sample", "time")
    split = plan_reshape((4, 6, 8), "f4", "split-directions")
    assert output_dims(split) == ("sample", "time", "direction", "feature")
    assert output_dims(plan_reshape(shape, "f4", pattern="n t f -> (n t) f")) == ("n_t", "f")
    assert output_dims(plan_reshape(shape, "f4", pattern="n ... -> ... n")) is None
