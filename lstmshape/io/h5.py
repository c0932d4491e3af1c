"""HDF5 files (`.h5`/`.hdf5`) as inputs: datasets found and described from the file's
structure, opened read-only and read by the fastest reader their storage allows
(`h5_readers`); references to other files are refused unless allowed (`h5_links`).

h5py is imported inside the functions that use it: it is slow to import, and only HDF5
files need it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lstmshape.errors import InputError
from lstmshape.io.base import (
    ArrayInfo,
    ArraySource,
    _listing,
    _normalize_key,
    _one_line,
    _pick,
    _refuse_objects,
    _text,
)
from lstmshape.io.blocks import Reader
from lstmshape.io.h5_links import _refuse_external_data, _refuse_external_links
from lstmshape.io.h5_readers import ChunkedFile, H5Direct
from lstmshape.io.npy import FileArray
from lstmshape.refs import ArrayRef


def _open_h5_file(path: str) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if not h5py.is_hdf5(path):
            raise InputError(f"{path} is not an HDF5 file") from None
        raise InputError(f"cannot open {path}: {_one_line(exc)}") from None


def _h5_is_candidate(obj: Any) -> bool:
    return obj.shape is not None and not obj.dtype.hasobject


def _h5_datasets(group: Any) -> list[Any]:
    """Every dataset under `group`, in tree order."""
    import h5py

    found: list[Any] = []

    def visit(_name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(obj)

    try:
        group.visititems(visit)
    except (OSError, KeyError, RuntimeError) as exc:
        raise InputError(f"cannot list {group.file.filename}: {_one_line(exc)}") from None
    return found


def _h5_candidates(group: Any) -> list[Any]:
    return [d for d in _h5_datasets(group) if _h5_is_candidate(d)]


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as plain Python (for printing and JSON)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _h5_attrs(dset: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    try:
        names = list(dset.attrs)
    except _H5_DAMAGE:  # a damaged attribute table: attributes only inform, the data may be fine
        return attrs
    for name in names:
        try:
            attrs[_text(name)] = _plain(dset.attrs[name])
        except _H5_DAMAGE:  # an attribute type h5py cannot read, or a damaged one
            continue
    return attrs


# How h5py reports a damaged file: whichever of these the access that meets the damage
# raises (a datatype numpy cannot represent is a ValueError, a broken B-tree a RuntimeError).
_H5_DAMAGE = (OSError, RuntimeError, KeyError, ValueError, TypeError)


@contextlib.contextmanager
def _h5_damage(path: str) -> Iterator[None]:
    """Turn an h5py failure while reading a file's structure into one InputError line."""
    try:
        yield
    except InputError:
        raise
    except _H5_DAMAGE as exc:
        raise InputError(f"cannot read {path}: {_one_line(exc)}") from None


def _h5_info(path: str, key: str, dset: Any) -> ArrayInfo:
    return ArrayInfo(
        ArrayRef(path, key),
        tuple(int(s) for s in dset.shape),
        dset.dtype,
        "h5",
        chunks=dset.chunks,
        compression=dset.compression,
        attrs=_LazyH5Attrs(dset.file.filename, dset.name),
    )


class _LazyH5Attrs(Mapping[str, Any]):
    """A dataset's attributes, read from the file when first looked at.

    Only `inspect` shows attribute values, and a damaged attribute can send HDF5 into an
    endless loop (a broken variable-length string heap), so listing and opening a dataset do
    not read them, and they are read in a forked child with a time limit (`h5_guard`).
    Attributes only inform: when they cannot be read, there are none, and `error` says why.
    """

    def __init__(self, path: str, key: str) -> None:
        self._path, self._key = str(Path(path).absolute()), key
        self._read: dict[str, Any] | None = None
        self.error: str | None = None

    def _values(self) -> dict[str, Any]:
        if self._read is None:
            from lstmshape.io.h5_guard import GuardedReadError, run_guarded

            try:
                self._read = dict(run_guarded(self._read_now))
            except (GuardedReadError, *_H5_DAMAGE) as exc:  # gone or damaged since
                self._read, self.error = {}, _one_line(exc)
        return self._read

    def _read_now(self) -> dict[str, Any]:
        import h5py

        with h5py.File(self._path, "r") as f:
            return _h5_attrs(f[self._key])

    def __getitem__(self, name: str) -> Any:
        return self._values()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())

    def __repr__(self) -> str:
        return repr(self._values()) if self._read is not None else "<attributes, unread>"


def _h5_get(f: Any, ref: ArrayRef, key: str) -> Any:
    _refuse_external_links(f, ref.path, key)
    try:
        obj = f.get(key)
    except (KeyError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot read {ref.path}:{key}: {_one_line(exc)}") from None
    if obj is None:
        names = [d.name for d in _h5_candidates(f)]
        holds = f"it holds: {_listing(names)}" if names else "it holds no datasets"
        raise InputError(f"{ref.path} has no dataset {key}; {holds}")
    return obj


def _h5_dataset(f: Any, ref: ArrayRef) -> tuple[str, Any]:
    """The dataset `ref` names (KEY, or the only candidate) and its normalized KEY."""
    import h5py

    key = _normalize_key("h5", ref.key)
    if key is None:
        datasets = {d.name: d for d in _h5_candidates(f)}
        key = _pick(ref.path, None, list(datasets))
        return key, datasets[key]
    obj = _h5_get(f, ref, key)
    where = f"{ref.path}:{key}"
    if isinstance(obj, h5py.Group):
        names = [d.name for d in _h5_datasets(obj)]
        inside = f"name a dataset in it: {_listing(names)}" if names else "it holds no datasets"
        raise InputError(f"{where} is a group, not a dataset; {inside}")
    if not isinstance(obj, h5py.Dataset):
        raise InputError(f"{where} is not a dataset")
    _refuse_objects(where, obj.dtype)
    if obj.shape is None:
        raise InputError(f"{where} holds no data (an empty dataspace)")
    return key, obj


def _open_h5(ref: ArrayRef) -> ArraySource:
    f = _open_h5_file(ref.path)
    try:
        with _h5_damage(ref.path):
            key, dset = _h5_dataset(f, ref)
            _refuse_external_data(f, f"{ref.path}:{key}", dset)
            # The file the data is in: another one when reached through an external link.
            reader = _h5_reader(dset.file.filename, dset, f"{ref.path}:{key}")
            info = _h5_info(ref.path, key, dset)
        return ArraySource(info, dset, close=f.close, reader=reader)
    except BaseException:
        f.close()
        raise


def _h5_raw_layout(dset: Any) -> str | None:
    """'contiguous' or 'chunked' when the dataset's bytes can be read from the file as they
    are (plain numbers, no filters, no external or virtual storage); None otherwise."""
    from h5py import h5d

    if dset.dtype.kind not in "biufc" or dset.size == 0 or dset.external or dset.is_virtual:
        return None
    plist = dset.id.get_create_plist()
    if plist.get_nfilters():
        return None
    layout = plist.get_layout()
    if layout == h5d.CONTIGUOUS and dset.id.get_offset() is not None:
        return "contiguous"
    return "chunked" if layout == h5d.CHUNKED else None


def _h5_chunk_offsets(dset: Any, grid: tuple[int, ...]) -> np.ndarray:
    """The byte offset of every chunk by grid position; -1 for chunks never written."""
    offsets = np.full(grid, -1, dtype=np.int64)
    chunks = dset.chunks

    def visit(info: Any) -> None:
        cell = tuple(c // k for c, k in zip(info.chunk_offset, chunks, strict=True))
        offsets[cell] = info.byte_offset

    if hasattr(dset.id, "chunk_iter"):
        dset.id.chunk_iter(visit)
    else:
        for index in range(dset.id.get_num_chunks()):
            visit(dset.id.get_chunk_info(index))
    return offsets


def _h5_reader(path: str, dset: Any, where: str) -> Reader:
    """Plain positioned reads for unfiltered data (h5py holds the GIL and copies through
    HDF5's own buffers); h5py's `read_direct` for everything else."""
    shape = tuple(int(s) for s in dset.shape)
    try:
        layout = _h5_raw_layout(dset)
    except (OSError, RuntimeError, ValueError, TypeError):
        layout = None
    if layout == "contiguous":
        return FileArray(path, dset.id.get_offset(), shape, dset.dtype, where)
    if layout == "chunked":
        fill = dset.fillvalue
        grid = tuple(-(-s // c) for s, c in zip(shape, dset.chunks, strict=True))
        return ChunkedFile(
            path,
            shape,
            dset.dtype,
            dset.chunks,
            lambda: _h5_chunk_offsets(dset, grid),
            fill,
            where,
        )
    return H5Direct(dset, where)


def _list_h5(ref: ArrayRef) -> list[ArrayInfo]:
    import h5py

    with _open_h5_file(ref.path) as f, _h5_damage(ref.path):
        group = f if ref.key is None else _h5_get(f, ref, "/" + ref.key.strip("/"))
        if not isinstance(group, h5py.Group):
            key, dset = _h5_dataset(f, ref)
            return [_h5_info(ref.path, key, dset)]
        return [_h5_info(ref.path, d.name, d) for d in _h5_candidates(group)]
