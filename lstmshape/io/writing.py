"""Writing by format: `open_sink`, `save` and `save_members` check the output, then hand it to
the sink of its format. Every output appears only when its sink commits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError
from lstmshape.io.atomic import _FileSink, _OutputPlan, _provenance_attrs
from lstmshape.io.base import Format, RefLike, _as_ref, _format_of, _is_zarr, _refuse_object_output
from lstmshape.io.h5_sink import _H5Sink
from lstmshape.io.netcdf_sink import _NcSink
from lstmshape.io.npy_sink import _NpySink
from lstmshape.io.npz import _NpzSink
from lstmshape.io.outputs import _plan_output, _plan_zarr_output
from lstmshape.io.safetensors_sink import _SafetensorsSink
from lstmshape.io.sink import ArraySink
from lstmshape.io.stdio import _StdoutSink
from lstmshape.io.zarr_outputs import _ZarrPlan
from lstmshape.io.zarr_sink import ZarrSink
from lstmshape.refs import ArrayRef


def open_sink(
    ref: RefLike,
    shape: tuple[int, ...],
    dtype: npt.DTypeLike,
    *,
    force: bool = False,
    inputs: Iterable[RefLike] = (),
    provenance: Mapping[str, Any] | None = None,
    hold_stdout: bool = False,
    dims: Sequence[str] | None = None,
) -> ArraySink:
    """Open an output for block-wise writing; it appears only when the `with` block succeeds.

    Args:
        ref: `PATH`, `PATH:KEY` (.npz member, HDF5 dataset) or `-` (.npy to stdout). Without
            KEY, containers get `arr_0` (.npz) or `/data` (.h5).
        shape: the shape of the whole output.
        dtype: its dtype; blocks are cast to it.
        force: allow replacing an existing file or KEY.
        inputs: the inputs, refused as outputs and recorded as the HDF5 `source`.
        provenance: for HDF5, `operation`, `options` (stored as JSON) and any other
            attributes; a `source` entry replaces the one derived from `inputs`.
        hold_stdout: for `-`, send nothing before commit (the blocks wait in an anonymous
            temporary file), so a failure found after the last block sends no data at all.
            Files never need it: they appear only on commit.
        dims: the names of the output's axes, for formats that name them (netCDF); without
            them (or when they do not fit the shape) netCDF dimensions are `KEY_dim_0`, ...

    Raises:
        InputError: the output is refused (see `check_output`).
        OutputError: the file system failed; nothing is left behind.

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> with open_sink(str(d / "y.npy"), (3, 2), "f4") as sink:
    ...     sink.write(0, np.zeros((2, 2))); sink.write(2, np.ones((1, 2)))
    >>> from lstmshape.io import load
    >>> load(str(d / "y.npy")).sum()
    np.float32(2.0)
    """
    ref = _as_ref(ref)
    shape = tuple(int(s) for s in shape)
    dt = np.dtype(dtype)
    _refuse_object_output(ref, dt)
    inputs = list(inputs)
    if _is_zarr(ref):
        zarr_plan = _plan_zarr_output(ref, force=force, inputs=inputs)

        def replan_zarr() -> _ZarrPlan:  # at commit, under the store's lock
            return _plan_zarr_output(ref, force=force, inputs=inputs)

        attrs = _provenance_attrs(inputs, provenance)
        return ZarrSink(zarr_plan, shape, dt, attrs, replan=replan_zarr)
    plan = _plan_output(ref, force=force, inputs=inputs)
    if ref.is_stdio:
        return _StdoutSink(ref, shape, dt, hold=hold_stdout)

    def replan() -> _OutputPlan:  # at commit, under the target lock
        return _plan_output(ref, force=force, inputs=inputs)

    if plan.format == "npy":
        return _NpySink(plan, shape, dt, replan=replan)
    if plan.format == "npz":
        return _NpzSink(plan, shape, dt, replan=replan)
    attrs = _provenance_attrs(inputs, provenance)
    if plan.format == "safetensors":
        return _SafetensorsSink(plan, shape, dt, attrs, replan=replan)
    if plan.format == "nc":
        return _NcSink(plan, shape, dt, attrs, dims, replan=replan)
    return _H5Sink(plan, shape, dt, attrs, replan=replan)


def save(
    array: npt.ArrayLike,
    ref: RefLike,
    *,
    force: bool = False,
    inputs: Iterable[RefLike] = (),
    provenance: Mapping[str, Any] | None = None,
    dims: Sequence[str] | None = None,
) -> str:
    """Write a whole array atomically; returns the reference written (KEY filled in).
    `dims`: the names of its axes (see `open_sink`).

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> save(np.arange(3), f"{d}/z.h5").endswith("z.h5:/data")
    True
    """
    arr = np.asarray(array)
    with open_sink(
        ref, arr.shape, arr.dtype, force=force, inputs=inputs, provenance=provenance, dims=dims
    ) as sink:
        sink.write(0, arr)
    return str(sink.target)


def _member_key(fmt: Format, prefix: str | None, name: str) -> str:
    parts = [p.strip("/") for p in (prefix or "", name) if p.strip("/")]
    return ("/" if fmt in ("h5", "nc") else "") + "/".join(parts)


def save_members(
    ref: RefLike,
    members: Mapping[str, npt.ArrayLike],
    *,
    force: bool = False,
    inputs: Iterable[RefLike] = (),
    provenance: Mapping[str, Any] | None = None,
) -> str:
    """Write several named arrays into one `.npz`, `.h5`, `.nc` or `.safetensors` file, all
    or nothing.

    Without KEY the file holds exactly `members` (an existing file needs `force`). With
    KEY they go under it (`basis.h5:/pca` -> `/pca/weights`, `basis.npz:pca` ->
    `pca/weights`) and the file's other arrays are kept; existing names need `force`.

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = save_members(f"{d}/b.npz", {"weights": np.eye(2), "bias": np.zeros(2)})
    >>> from lstmshape.io import list_arrays
    >>> [info.ref.key for info in list_arrays(f"{d}/b.npz")]
    ['weights', 'bias']
    """
    ref = _as_ref(ref)
    arrays = {str(name): np.asarray(a) for name, a in members.items()}
    if not arrays:
        raise ValueError("save_members needs at least one array")
    fmt = "npy" if ref.is_stdio else _format_of(ref, verb="write")
    if fmt == "npy":
        raise InputError(
            f"cannot write {len(arrays)} arrays to {ref}: use a .npz, .h5, .nc or .safetensors file"
        )
    keys = {name: _member_key(fmt, ref.key, name) for name in arrays}
    for name, array in arrays.items():
        _refuse_object_output(ArrayRef(ref.path, keys[name]), array.dtype)
    inputs = list(inputs)
    first, *rest = arrays

    def replan() -> _OutputPlan:
        if ref.key is None:
            plan = _plan_output(ref, force=force, inputs=inputs)
        else:
            plans = [
                _plan_output(ArrayRef(ref.path, k), force=force, inputs=inputs)
                for k in keys.values()
            ]
            plan = plans[0]
        return dataclasses.replace(plan, ref=ArrayRef(ref.path, keys[first]))

    plan = replan()
    extras = {keys[name]: arrays[name] for name in rest}
    head = arrays[first]
    sink: _FileSink
    attrs = _provenance_attrs(inputs, provenance)
    if fmt == "h5":
        sink = _H5Sink(plan, head.shape, head.dtype, attrs, extras, replan)
    elif fmt == "safetensors":
        sink = _SafetensorsSink(plan, head.shape, head.dtype, attrs, extras, replan)
    elif fmt == "nc":
        sink = _NcSink(plan, head.shape, head.dtype, attrs, None, extras, replan)
    else:
        sink = _NpzSink(plan, head.shape, head.dtype, extras, replan)
    with sink:
        sink.write(0, head)
    return str(ArrayRef(ref.path, ref.key))
