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
from lstmshape.io.base import ArrayInfo, ArraySource, _one_line, _text
from lstmshape.io.h5_links import _refuse_external_data
from lstmshape.io.h5_listing import (
    _h5_dataset,
    _h5_dataset_names,
    _h5_get,
    _h5_is_candidate,
)
from lstmshape.io.h5_storage import _h5_reader, _h5_unwritten
from lstmshape.refs import ArrayRef


def _open_h5_file(path: str) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if not h5py.is_hdf5(path):
            raise InputError(f"{path} is not an HDF5 file") from None
        raise InputError(f"cannot open {path}: {_one_line(exc)}") from None


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


def _h5_info(path: str, key: str, dset: Any, filename: str | None = None) -> ArrayInfo:
    """The description of `dset`, found at `key` of `path`; `filename`: the file it is in
    (asking h5py costs a File object per dataset when there are 100,000 of them)."""
    return ArrayInfo(
        ArrayRef(path, key),
        tuple(int(s) for s in dset.shape),
        dset.dtype,
        "h5",
        chunks=dset.chunks,
        compression=dset.compression,
        attrs=_LazyH5Attrs(
            filename or dset.file.filename,
            dset.name if filename is None else key,
            declared=_attribute_count(dset),
        ),
    )


def _attribute_count(dset: Any) -> int | None:
    """How many attributes the dataset's header declares (None: unknown). Counting reads no
    value, so it is safe on a damaged file; a dataset with none needs no guarded read."""
    try:
        return len(dset.attrs)
    except _H5_DAMAGE:
        return None


class _LazyH5Attrs(Mapping[str, Any]):
    """A dataset's attributes, read from the file when first looked at.

    Only `inspect` shows attribute values, and a damaged attribute can send HDF5 into an
    endless loop (a broken variable-length string heap), so listing and opening a dataset do
    not read them, and they are read in a forked child with a time limit (`h5_guard`).
    Attributes only inform: when they cannot be read, there are none, and `error` says why.
    """

    def __init__(self, path: str, key: str, declared: int | None = None) -> None:
        self._path, self._key = str(Path(path).absolute()), key
        self._read: dict[str, Any] | None = {} if declared == 0 else None
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


def _open_h5(ref: ArrayRef) -> ArraySource:
    f = _open_h5_file(ref.path)
    try:
        with _h5_damage(ref.path):
            key, dset = _h5_dataset(f, ref)
            _refuse_external_data(f, f"{ref.path}:{key}", dset)
            # The file the data is in: another one when reached through an external link.
            reader = _h5_reader(dset.file.filename, dset, f"{ref.path}:{key}")
            info = _h5_info(ref.path, key, dset)
        return ArraySource(info, dset, close=f.close, reader=reader, unwritten=_h5_unwritten(dset))
    except BaseException:
        f.close()
        raise


def _list_h5(ref: ArrayRef) -> list[ArrayInfo]:
    with _open_h5_file(ref.path) as f, _h5_damage(ref.path):
        return [info for info, _dset, _filename in _h5_members(f, ref)]


def _h5_members(f: Any, ref: ArrayRef) -> Iterator[tuple[ArrayInfo, Any, str]]:
    """(info, dataset, the file it is in) of every candidate `ref` lists: the file's, a
    group's, or the one dataset KEY names; each dataset is opened when its turn comes."""
    import h5py

    group = f if ref.key is None else _h5_get(f, ref, "/" + ref.key.strip("/"))
    if not isinstance(group, h5py.Group):
        key, dset = _h5_dataset(f, ref)
        yield _h5_info(ref.path, key, dset), dset, dset.file.filename
        return
    filename = f.filename  # a visit follows hard links only: every dataset is in this file
    for name in _h5_dataset_names(group):
        dset = f[name]
        if _h5_is_candidate(dset):
            yield _h5_info(ref.path, name, dset, filename), dset, filename


def _iter_h5(ref: ArrayRef) -> Iterator[ArraySource]:
    """Every candidate `ref` lists, opened in turn with the file opened once."""
    with _open_h5_file(ref.path) as f, _h5_damage(ref.path):
        for info, dset, filename in _h5_members(f, ref):
            where = str(info.ref)
            _refuse_external_data(f, where, dset)
            reader = _h5_reader(filename, dset, where)
            with ArraySource(info, dset, reader=reader, unwritten=_h5_unwritten(dset)) as src:
                yield src
