"""netCDF-4 outputs (`.nc`), written through h5netcdf (`pip install 'lstmshape[netcdf]'`) so
that netCDF-C, netCDF4-python and xarray read them: named dimensions (`sample`, `time`,
`feature`, or what the command keeps), the variable, and its provenance as attributes.

The variable is written into a new file beside the target. A new KEY in an existing `.nc`
keeps the file's other variables: at commit, under the target lock, the target as it is then
is copied, the variable (and any dimension it lacks) is added to the copy block by block, and
the copy renamed over the target. A dimension the file already has must have the same size.
netCDF has no way to delete a variable, so an existing KEY is not replaced (even with
`--force`): write another KEY, or the whole file. netCDF has no bool type: bool arrays (masks)
are stored as uint8 0/1 with CF `flag_values`/`flag_meanings`; float16 is stored as HDF5's
half float (h5py, h5netcdf and xarray read it; netCDF-C does not).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstmshape.errors import InputError
from lstmshape.io.atomic import _FileSink, _OutputPlan
from lstmshape.refs import ArrayRef

# Rows of the variable copied at a time into an existing file (bounded memory).
_COPY_BYTES = 16 * 2**20


def _h5netcdf(ref: ArrayRef) -> Any:
    try:
        import h5netcdf
    except ImportError:
        raise InputError(
            f"cannot write {ref}: writing netCDF needs h5netcdf (pip install 'lstmshape[netcdf]')"
        ) from None
    return h5netcdf


def check_netcdf_output(ref: ArrayRef) -> None:
    """Refuse a `.nc` output before any work when h5netcdf is missing."""
    _h5netcdf(ref)


def netcdf_dims(key: str, shape: tuple[int, ...], dims: Sequence[str] | None) -> tuple[str, ...]:
    """The dimension names of the variable `key`: `dims`, or `KEY_dim_0`, `KEY_dim_1`, ...
    (its own, so unnamed axes of several variables never clash) when they are not given or
    do not fit the shape; names equal to the variable's own get a suffix (a variable named
    like its dimension would be a coordinate variable).

    >>> netcdf_dims("/data", (2, 3), ("sample", "feature")), netcdf_dims("/w", (2,), None)
    (('sample', 'feature'), ('w_dim_0',))
    >>> netcdf_dims("/time", (2, 3), ("sample", "time"))
    ('sample', 'time_')
    """
    own = key.rsplit("/", 1)[-1]
    names = list(dims) if dims is not None and len(dims) == len(shape) else []
    names = names or [f"{own}_dim_{i}" for i in range(len(shape))]
    return tuple(f"{name}_" if name == own else name for name in names)


class _NcSink(_FileSink):
    """Writes one variable (and `extras`) into a new netCDF-4 file; at commit, into a copy of
    the target when its other variables are kept."""

    def __init__(
        self,
        plan: _OutputPlan,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        attrs: Mapping[str, Any],
        dims: Sequence[str] | None = None,
        extras: Mapping[str, np.ndarray] | None = None,
        replan: Callable[[], _OutputPlan] | None = None,
    ) -> None:
        assert plan.ref.key is not None
        self._h5n = _h5netcdf(plan.ref)
        self._attrs = dict(attrs)
        self._dims = {plan.ref.key: netcdf_dims(plan.ref.key, shape, dims)}
        for key, array in (extras or {}).items():
            self._dims[key] = netcdf_dims(key, array.shape, None)
        sizes = {plan.ref.key: shape, **{k: a.shape for k, a in (extras or {}).items()}}
        self._sizes = {k: dict(zip(self._dims[k], sizes[k], strict=True)) for k in self._dims}
        if plan.append_to is not None:
            _check_fits(plan.append_to, plan.ref, self._dims, self._sizes, self._h5n)
        super().__init__(plan, shape, dtype, extras, replan)

    def _start(self) -> None:
        assert self.target.key is not None
        self._file: Any = self._h5n.File(self._tmp, "w", locking=False)
        self._var = self._create(self._file, self.target.key, self.shape, self.dtype)
        for key, array in self._extras.items():
            var = self._create(self._file, key, array.shape, array.dtype)
            var[...] = array.astype(_stored(array.dtype), copy=False)

    def _create(self, f: Any, key: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
        group = _group_of(f, key)
        for name, size in self._sizes[key].items():
            if _visible_dimension(group, name) is None:
                group.dimensions[name] = size
        var = group.create_variable(key.rsplit("/", 1)[-1], self._dims[key], _stored(dtype))
        for name, value in self._attrs.items():
            var.attrs[name] = value
        if dtype == np.bool_:
            var.attrs["flag_values"] = np.array([0, 1], np.uint8)
            var.attrs["flag_meanings"] = "false true"
        return var

    def _write(self, start: int, block: np.ndarray, axis: int) -> None:
        if block.size == 0:
            return
        block = block.astype(_stored(block.dtype), copy=False)
        if not self.shape:
            self._var[...] = block
            return
        self._var[(slice(None),) * axis + (slice(start, start + block.shape[axis]),)] = block

    def _close_file(self) -> None:
        f, self._file = getattr(self, "_file", None), None
        if f is not None:
            f.close()

    def _seal(self, plan: _OutputPlan) -> None:
        self._close_file()
        if plan.append_to is None:
            return
        merged = self._make_temp(".tmp")
        shutil.copyfile(plan.append_to, merged)
        with (
            self._h5n.File(self._tmp, "r", locking=False) as ours,
            self._h5n.File(merged, "a", locking=False) as kept,
        ):
            _check_fits_file(kept, plan.ref, self._dims, self._sizes)
            dtypes = {key: array.dtype for key, array in self._extras.items()}
            for key in self._dims:
                source = ours[key]
                target = self._create(kept, key, source.shape, dtypes.get(key, self.dtype))
                _copy_variable(source, target)
        self._drop_temp(self._tmp)
        self._tmp = merged


def _stored(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """netCDF has no bool type: bools are stored as uint8 0/1 (with CF flag attributes)."""
    return np.dtype(np.uint8) if dtype == np.bool_ else dtype


def _group_of(f: Any, key: str, *, create: bool = True) -> Any:
    """The group holding the variable `key` (created when missing, or None)."""
    group = f
    for part in key.strip("/").split("/")[:-1]:
        if part in group.groups:
            group = group.groups[part]
        elif create:
            group = group.create_group(part)
        else:
            return None
    return group


def _check_fits(
    path: Path,
    ref: ArrayRef,
    dims: Mapping[str, tuple[str, ...]],
    sizes: Mapping[str, Mapping[str, int]],
    h5netcdf: Any,
) -> None:
    try:
        with h5netcdf.File(path, "r") as f:
            _check_fits_file(f, ref, dims, sizes)
    except InputError:
        raise
    except Exception as exc:  # h5netcdf raises many types for files it cannot read
        raise InputError(f"cannot add {ref.key} to {path}: {' '.join(str(exc).split())}") from None


def _check_fits_file(
    f: Any,
    ref: ArrayRef,
    dims: Mapping[str, tuple[str, ...]],
    sizes: Mapping[str, Mapping[str, int]],
) -> None:
    """A variable added to an existing file must agree with the dimensions it already has."""
    for key in dims:
        group = _group_of(f, key, create=False)
        if group is None:
            continue
        for name, size in sizes[key].items():
            have = _visible_dimension(group, name)
            if have is not None and have != size:
                raise InputError(
                    f"cannot add {ref.path}:{key}: the file's dimension {name!r} has size "
                    f"{have}, this output needs {size}; write another file"
                )


def _visible_dimension(group: Any, name: str) -> int | None:
    while group is not None:
        if name in group.dimensions:
            return int(group.dimensions[name].size)
        group = group.parent
    return None


def _copy_variable(source: Any, target: Any) -> None:
    if not source.shape:
        target[...] = source[...]
        return
    row = int(np.prod(source.shape[1:], dtype=np.int64)) * source.dtype.itemsize
    step = max(1, _COPY_BYTES // max(row, 1))
    for start in range(0, source.shape[0], step):
        target[start : start + step] = source[start : start + step]
