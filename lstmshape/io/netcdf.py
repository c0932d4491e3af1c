"""netCDF-4 files (`.nc`) as inputs: HDF5 files with netCDF's conventions, read through h5py
(see `h5`) with what netCDF adds: a KEY is a variable (`out.nc:hidden`, `out.nc:/grp/x`), the
dimensions are named, and netCDF-3 (classic) files get a conversion hint.

Dimension names come from fixed-size attributes only, as netCDF-C and h5netcdf write them:
each dimension is an HDF5 dimension scale carrying `_Netcdf4Dimid`, and each variable lists
its dimension ids in `_Netcdf4Coordinates` (a coordinate variable is its own dimension). The
`DIMENSION_LIST` references are never followed: they are variable-length data, which a
damaged file can send into an endless loop inside HDF5. A variable without
`_Netcdf4Coordinates` is listed without dimension names.

Variables that are dimension scales without data of their own ("This is a netCDF dimension
but not a netCDF variable") are no candidates, and packed variables (`scale_factor`,
`add_offset`) are refused: lstmshape reads stored values only, never decoded ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lstmshape.errors import InputError
from lstmshape.io.base import ArrayInfo, ArraySource, _listing, _normalize_key, _pick, _text
from lstmshape.io.h5 import (
    _h5_damage,
    _h5_get,
    _h5_is_candidate,
    _h5_reader,
    _LazyH5Attrs,
)
from lstmshape.io.h5_links import _refuse_external_data
from lstmshape.io.h5_listing import _h5_dataset_names
from lstmshape.refs import ArrayRef

_DIMENSION_ONLY = b"This is a netCDF dimension but not a netCDF variable"
_PACKING = ("scale_factor", "add_offset")


def _open_nc_file(path: str) -> Any:
    import h5py

    with Path(path).open("rb") as fh:
        magic = fh.read(4)
    if magic[:3] == b"CDF":
        raise InputError(
            f"{path} is a netCDF-3 (classic) file; lstmshape reads netCDF-4 (HDF5) files: "
            f"convert it with `nccopy -k nc4 {path} new.nc` or xarray's "
            "to_netcdf('new.nc', engine='h5netcdf')"
        )
    if not h5py.is_hdf5(path):
        raise InputError(f"{path} is not a netCDF-4 file (not HDF5, not netCDF-3 either)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"cannot open {path}: {' '.join(str(exc).split())}") from None


def _fixed_attr(dset: Any, name: str) -> Any:
    """A fixed-size attribute (numbers, fixed-length strings); None when it is absent or of
    variable length (never read here, see the module docstring)."""
    if name not in dset.attrs or dset.attrs.get_id(name).dtype.kind == "O":
        return None
    return dset.attrs[name]


def _is_scale(dset: Any) -> bool:
    from h5py import h5ds

    return bool(h5ds.is_scale(dset.id))


def _is_dimension_only(dset: Any) -> bool:
    name = _fixed_attr(dset, "NAME")
    return isinstance(name, bytes) and name.startswith(_DIMENSION_ONLY)


def _h5_datasets(group: Any) -> list[Any]:
    """Every dataset under `group`, in tree order (opened by the paths h5_listing finds)."""
    return [group.file[name] for name in _h5_dataset_names(group)]


def _dimension_names(datasets: list[Any]) -> dict[int, str]:
    """netCDF dimension id -> name, from the dimension scales among `datasets`."""
    names: dict[int, str] = {}
    for dset in datasets:
        if _is_scale(dset):
            dimid = _fixed_attr(dset, "_Netcdf4Dimid")
            if dimid is not None:
                names[int(dimid)] = _text(dset.name).rsplit("/", 1)[-1]
    return names


def _dims_of(dset: Any, names: dict[int, str]) -> tuple[str, ...] | None:
    if _is_scale(dset):
        return (_text(dset.name).rsplit("/", 1)[-1],)
    ids = _fixed_attr(dset, "_Netcdf4Coordinates")
    if ids is None:
        return None
    dims = tuple(names.get(int(i), "") for i in ids.reshape(-1))
    return dims if len(dims) == len(dset.shape) and all(dims) else None


def _is_variable(dset: Any) -> bool:
    return _h5_is_candidate(dset) and not _is_dimension_only(dset)


def _nc_info(path: str, key: str, dset: Any, names: dict[int, str]) -> ArrayInfo:
    return ArrayInfo(
        ArrayRef(path, key),
        tuple(int(s) for s in dset.shape),
        dset.dtype,
        "nc",
        chunks=dset.chunks,
        compression=dset.compression,
        attrs=_LazyH5Attrs(dset.file.filename, dset.name),
        dims=_dims_of(dset, names),
    )


def _refuse_packed(where: str, dset: Any) -> None:
    packing = [name for name in _PACKING if name in dset.attrs]
    if packing:
        raise InputError(
            f"{where} is packed ({'/'.join(packing)}): lstmshape reads stored values only; "
            "unpack it first (xarray: ds.to_netcdf with encoding that drops them)"
        )


def _variables(group: Any) -> list[Any]:
    return [d for d in _h5_datasets(group) if _is_variable(d) and not _is_packed(d)]


def _is_packed(dset: Any) -> bool:
    return any(name in dset.attrs for name in _PACKING)


def _nc_variable(f: Any, ref: ArrayRef) -> tuple[str, Any]:
    """The variable `ref` names (KEY, or the only one) and its normalized KEY."""
    import h5py

    key = _normalize_key("nc", ref.key)
    if key is None:
        found = {_text(d.name): d for d in _variables(f)}
        key = _pick(ref.path, None, list(found), what="variables")
        return key, found[key]
    obj = _h5_get(f, ref, key)
    where = f"{ref.path}:{key}"
    if isinstance(obj, h5py.Group):
        names = [_text(d.name) for d in _variables(obj)]
        inside = f"name a variable in it: {_listing(names)}" if names else "it holds no variables"
        raise InputError(f"{where} is a group, not a variable; {inside}")
    if not isinstance(obj, h5py.Dataset) or not _h5_is_candidate(obj):
        raise InputError(f"{where} is not a variable of numbers")
    if _is_dimension_only(obj):
        raise InputError(f"{where} is a netCDF dimension, not a variable (it holds no data)")
    _refuse_packed(where, obj)
    return key, obj


def _open_nc(ref: ArrayRef) -> ArraySource:
    f = _open_nc_file(ref.path)
    try:
        with _h5_damage(ref.path):
            key, dset = _nc_variable(f, ref)
            where = f"{ref.path}:{key}"
            _refuse_external_data(f, where, dset)
            reader = _h5_reader(dset.file.filename, dset, where)
            info = _nc_info(ref.path, key, dset, _dimension_names(_h5_datasets(f)))
        return ArraySource(info, dset, close=f.close, reader=reader)
    except BaseException:
        f.close()
        raise


def _list_nc(ref: ArrayRef) -> list[ArrayInfo]:
    import h5py

    with _open_nc_file(ref.path) as f, _h5_damage(ref.path):
        names = _dimension_names(_h5_datasets(f))
        group = f if ref.key is None else _h5_get(f, ref, "/" + ref.key.strip("/"))
        if not isinstance(group, h5py.Group):
            key, dset = _nc_variable(f, ref)
            return [_nc_info(ref.path, key, dset, names)]
        return [_nc_info(ref.path, _text(d.name), d, names) for d in _variables(group)]


def _nc_key_state(path: Path, key: str) -> str:
    """'absent', 'dataset', 'group', 'blocked' or 'foreign' (not a netCDF-4 file)."""
    import h5py

    from lstmshape.io.h5_sink import _h5_key_state

    if not h5py.is_hdf5(path):
        return "foreign"
    return _h5_key_state(path, key)
