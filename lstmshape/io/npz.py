"""`.npz` archives: members listed from their headers; stored members memory-mapped and read
at their offset in the archive, deflated ones decompressed in order block by block
(`ZipStream`); and the sink, which builds a new archive (keeping the target's other members)
on commit.
"""

from __future__ import annotations

import math
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lstmshape.errors import InputError
from lstmshape.io.atomic import _OutputPlan
from lstmshape.io.base import (
    _COPY_BUFFER,
    _MAX_LISTED,
    ArrayInfo,
    ArraySource,
    _listing,
    _normalize_key,
    _one_line,
    _os_reason,
    _pick,
    _refuse_objects,
)
from lstmshape.io.blocks import Array, IndexArray, InMemory, Reader, _bytes_of
from lstmshape.io.npy import FileArray, _file_reader
from lstmshape.io.npy_sink import _NpySink
from lstmshape.io.npyformat import (
    _PARSE_ERRORS,
    _check_length,
    _NpyHeader,
    _read_npy_header,
)
from lstmshape.limits import memory_limit
from lstmshape.refs import ArrayRef

# Errors zipfile raises for a damaged or unusable archive: RuntimeError for an encrypted
# member, NotImplementedError for a compression method it does not support.
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, RuntimeError, NotImplementedError)


def _open_zip(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (*_ZIP_ERRORS, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a valid .npz file ({_one_line(exc)})") from None


def _npy_members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """KEY -> zip member for every `.npy` member, from the archive's directory alone."""
    # (is_dir() fails on an empty name, which a damaged archive can hold)
    return {
        member.filename[: -len(".npy")]: member
        for member in zf.infolist()
        if member.filename.endswith(".npy") and not member.is_dir()
    }


def _npz_header(path: str, zf: zipfile.ZipFile, key: str, member: zipfile.ZipInfo) -> _NpyHeader:
    """The .npy header of one member, checked against the member's size."""
    where = f"{path}:{key}"
    try:
        with zf.open(member) as fh:
            header = _read_npy_header(fh, where)
    except InputError:
        raise
    # ValueError: a local header whose name is not UTF-8 (UnicodeDecodeError)
    except (*_ZIP_ERRORS, OSError, ValueError) as exc:
        raise InputError(f"cannot read {where}: {_one_line(exc)}") from None
    _check_length(where, member.file_size - header.offset, header)
    return header


def _npz_entries(path: str, zf: zipfile.ZipFile) -> dict[str, tuple[zipfile.ZipInfo, _NpyHeader]]:
    """KEY -> (zip member, .npy header) for every `.npy` member, headers parsed."""
    return {
        key: (member, _npz_header(path, zf, key, member))
        for key, member in _npy_members(zf).items()
    }


def _npz_candidates(entries: dict[str, tuple[zipfile.ZipInfo, _NpyHeader]]) -> list[str]:
    return [key for key, (_, header) in entries.items() if not header.dtype.hasobject]


def _npz_info(path: str, key: str, header: _NpyHeader) -> ArrayInfo:
    return ArrayInfo(ArrayRef(path, key), header.shape, header.dtype, "npz")


def _npz_pick(ref: ArrayRef, zf: zipfile.ZipFile) -> tuple[str, zipfile.ZipInfo, _NpyHeader]:
    """The member KEY names, or the only loadable member; pickled members are refused.
    With KEY every member's header is checked (a damaged archive is refused as a whole);
    without, only until the answer is known (21 candidates are enough to say there is
    more than one)."""
    members = _npy_members(zf)
    key = _normalize_key("npz", ref.key)
    if key is not None:
        entries = _npz_entries(ref.path, zf)
        key = _pick(ref.path, key, list(entries))
        member, header = entries[key]
        _refuse_objects(f"{ref.path}:{key}", header.dtype)
        return key, member, header
    found: dict[str, _NpyHeader] = {}
    pickled: _NpyHeader | None = None
    for name, member in members.items():
        header = _npz_header(ref.path, zf, name, member)
        if header.dtype.hasobject:
            pickled = pickled or header
            continue
        found[name] = header
        if len(found) > _MAX_LISTED:
            raise InputError(
                f"{ref.path} holds more than {_MAX_LISTED} arrays ({len(members)} members in "
                f"all); name one as {ref.path}:KEY: {_listing(list(found)[:_MAX_LISTED])}, …"
            )
    if not found and pickled is not None:
        _refuse_objects(ref.path, pickled.dtype)
    key = _pick(ref.path, None, list(found))
    return key, members[key], found[key]


def _list_npz(ref: ArrayRef) -> list[ArrayInfo]:
    with _open_zip(ref.path) as zf:
        if ref.key is not None:
            key, _member, header = _npz_pick(ref, zf)
            return [_npz_info(ref.path, key, header)]
        entries = _npz_entries(ref.path, zf)
    return [_npz_info(ref.path, k, entries[k][1]) for k in _npz_candidates(entries)]


def _open_npz(ref: ArrayRef) -> ArraySource:
    with _open_zip(ref.path) as zf:
        key, member, header = _npz_pick(ref, zf)
        data, reader = _npz_member_data(ref.path, zf, member, header, f"{ref.path}:{key}")
    return ArraySource(_npz_info(ref.path, key, header), data, reader=reader)


def _iter_npz(ref: ArrayRef) -> Iterator[ArraySource]:
    """Every candidate `ref` lists, opened in turn with the archive opened once."""
    if ref.key is not None:
        with _open_npz(ref) as source:
            yield source
        return
    with _open_zip(ref.path) as zf:
        entries = _npz_entries(ref.path, zf)
        for key in _npz_candidates(entries):
            member, header = entries[key]
            where = f"{ref.path}:{key}"
            data, reader = _npz_member_data(
                ref.path, zf, member, header, where, small_in_memory=True
            )
            with ArraySource(_npz_info(ref.path, key, header), data, reader=reader) as source:
                yield source


# Listing every member, a deflated one this small is inflated at once from the archive
# already open; a stream of its own would open the archive again (100,000 members: 100,000
# times).
_SMALL_MEMBER_BYTES = 1 << 20


def _zip_data_offset(path: str, member: zipfile.ZipInfo) -> int | None:
    """Where a member's bytes start in the archive, from its local header (None: unsure)."""
    with Path(path).open("rb") as fh:
        fh.seek(member.header_offset)
        local = fh.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return member.header_offset + 30 + name_len + extra_len


def _refuse_inflating(where: str, header: _NpyHeader) -> None:
    """A member that is decompressed whole into memory must fit the memory limit."""
    limit = memory_limit()
    if header.nbytes > limit:
        raise InputError(
            f"{where} is a compressed Fortran-order member of {header.nbytes} bytes, "
            f"decompressed whole into memory; at most {limit} bytes are (LSTMSHAPE_MAX_MEMORY); "
            "save it in C order or uncompressed (np.savez)"
        )


def _npz_member_data(
    path: str,
    zf: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    header: _NpyHeader,
    where: str,
    *,
    small_in_memory: bool = False,
) -> tuple[np.ndarray | None, Reader]:
    """An uncompressed member (np.savez) is memory-mapped and read at its offset in the
    archive; a compressed one (np.savez_compressed) is decompressed block by block when read
    (data None), or, with `small_in_memory` and at most `_SMALL_MEMBER_BYTES`, at once from
    `zf`. NumPy's own `mmap_mode` silently loads .npz members whole."""
    if header.nbytes == 0:
        empty = np.empty(header.shape, header.dtype, order=header.order)
        return empty, InMemory(empty)
    stored = member.compress_type == zipfile.ZIP_STORED and not member.flag_bits & 1
    offset = _zip_data_offset(path, member) if stored else None
    if offset is None and header.fortran and len(header.shape) >= 2:
        _refuse_inflating(where, header)
    try:
        if offset is not None:
            data = np.memmap(
                path,
                dtype=header.dtype,
                mode="r",
                offset=offset + header.offset,
                shape=header.shape,
                order=header.order,
            )
            return data, _file_reader(path, offset + header.offset, header, data, where)
        streamable = header.shape and (not header.fortran or len(header.shape) < 2)
        if streamable and not (small_in_memory and header.nbytes <= _SMALL_MEMBER_BYTES):
            stream = ZipStream(path, member, header.offset, header.shape, header.dtype, where)
            return None, stream
        with zf.open(member) as fh:
            loaded = np.lib.format.read_array(fh, allow_pickle=False)
        return loaded, InMemory(loaded)
    except (*_PARSE_ERRORS, *_ZIP_ERRORS) as exc:
        raise InputError(f"cannot read {where}: {_one_line(exc)}") from None


def _npz_key_state(path: Path, key: str) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, EOFError):
        return "foreign"
    except OSError as exc:
        raise InputError(f"cannot read {path}: {_os_reason(exc)}") from None
    return "dataset" if f"{key}.npy" in names else "absent"


def _npz_member(key: str) -> str:
    return f"{key}.npy"


class _NpzSink(_NpySink):
    """Stages the array as .npy in a scratch file, then builds the archive on commit.

    The scratch file lets blocks land anywhere (a zip member is a one-way stream); the
    archive gets the other members of the target as it is at commit, this array, then
    `extras`.
    """

    def _npy_file(self) -> Path:
        self._scratch: Path | None = self._make_temp(".part")
        return self._scratch

    def _seal(self, plan: _OutputPlan) -> None:
        assert self._fh is not None and self.target.key is not None
        keys = [self.target.key, *self._extras]
        with zipfile.ZipFile(self._tmp, "w", allowZip64=True) as zf:
            if plan.append_to is not None:
                _copy_members(plan.append_to, zf, skip={_npz_member(k) for k in keys})
            self._fh.flush()
            self._fh.seek(0)
            with zf.open(_npz_member(self.target.key), "w", force_zip64=True) as member:
                shutil.copyfileobj(self._fh, member, _COPY_BUFFER)
            for key, array in self._extras.items():
                with zf.open(_npz_member(key), "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        self._close_file()

    def _close_file(self) -> None:
        super()._close_file()
        scratch, self._scratch = getattr(self, "_scratch", None), None
        if scratch is not None:
            self._drop_temp(scratch)


def _copy_members(source: Path, zf: zipfile.ZipFile, skip: set[str]) -> None:
    """Copy every member of the archive `source` into `zf`, except the names in `skip`."""
    try:
        with zipfile.ZipFile(source) as src:
            for member in src.infolist():
                if member.filename not in skip:
                    _copy_member(src, member, zf)
    except _ZIP_ERRORS as exc:
        raise InputError(f"cannot copy the arrays of {source}: {_one_line(exc)}") from None


def _copy_member(src: zipfile.ZipFile, member: zipfile.ZipInfo, zf: zipfile.ZipFile) -> None:
    clone = zipfile.ZipInfo(member.filename, member.date_time)
    clone.compress_type = member.compress_type
    clone.external_attr = member.external_attr
    if member.is_dir():
        zf.writestr(clone, b"")
        return
    with src.open(member) as r, zf.open(clone, "w", force_zip64=True) as w:
        shutil.copyfileobj(r, w, _COPY_BUFFER)


class ZipStream:
    """A deflated `.npz` member (C order), decompressed in order into the caller's buffers.

    Blocks along axis 0 stream; reading backwards reopens the member. Other axes (a
    time-major array) would need the member many times over, so it is first decompressed
    once into an anonymous temporary file and read from there.
    """

    background = True  # zlib releases the GIL while it inflates
    supports_rows = False

    def __init__(
        self,
        path: str,
        member: zipfile.ZipInfo,
        data_offset: int,
        shape: tuple[int, ...],
        dtype: Any,
        where: str,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.where = where
        self._path, self._member, self._data_offset = path, member, data_offset
        self._zip: zipfile.ZipFile | None = None
        self._stream: Any = None
        self._pos = 0  # bytes of data consumed
        self._spill: FileArray | None = None
        self._spill_file: Any = None

    def align(self, axis: int) -> int:
        return 1

    def _open(self) -> None:
        self.close()
        self._zip = zipfile.ZipFile(self._path)
        self._stream = self._zip.open(self._member)
        self._skip(self._data_offset)
        self._pos = 0

    def _skip(self, nbytes: int) -> None:
        while nbytes > 0:
            got = len(self._stream.read(min(nbytes, 1 << 20)))
            if got == 0:
                raise InputError(f"{self.where} is truncated")
            nbytes -= got

    def _fill(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            got = self._stream.readinto(view[done:])
            if not got:
                raise InputError(f"{self.where} is truncated")
            done += got

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        try:
            if axis != 0 or self._spill is not None:
                self._spilled().read_into(start, stop, axis, out)
                return
            inner = math.prod(self.shape[1:]) * self.dtype.itemsize
            if self._stream is None or start * inner < self._pos:
                self._open()
            self._skip(start * inner - self._pos)
            self._fill(_bytes_of(out))
            self._pos = stop * inner
        except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as exc:
            raise InputError(f"cannot read {self.where}: {_one_line(exc)}") from None

    def _spilled(self) -> FileArray:
        """The member decompressed once into a temporary file, read like a .npy file."""
        if self._spill is None:
            self._open()
            spill = tempfile.NamedTemporaryFile(prefix="lstmshape-", suffix=".npy")
            shutil.copyfileobj(self._stream, spill, 1 << 22)
            spill.flush()
            self._stream.close()
            self._stream = None
            self._spill_file = spill
            self._spill = FileArray(spill.name, 0, self.shape, self.dtype, self.where)
        return self._spill

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        self._spilled().read_rows(rows, out)

    def close(self) -> None:
        for closing in (self._stream, self._zip, self._spill, self._spill_file):
            if closing is not None:
                closing.close()
        self._stream = self._zip = self._spill = self._spill_file = None
