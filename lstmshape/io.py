"""Read and write arrays: `.npy`, `.npz`, `.h5`/`.hdf5` and `-` (a `.npy` stream).

Reading never loads more than asked for: `list_arrays` reads headers only, `open_array`
memory-maps `.npy` files and uncompressed `.npz` members and slices HDF5 datasets, and
pickled (object) arrays are refused before any of their bytes are interpreted.

Writing is block-wise and atomic: an `ArraySink` writes into a temporary file beside the
target and publishes it with one rename when its `with` block ends cleanly, or deletes it
when the block raises. Writing a KEY into an existing `.h5`/`.npz` copies the file to the
temporary file first, changes the copy and renames it over the original, so the original
is either untouched or wholly replaced, never half-written (an HDF5 file that is modified
in place can be left unreadable by a crash). The price is a copy of the existing file.

This is the only module that imports h5py, and it does so lazily.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import errno
import io
import itertools
import json
import math
import os
import re
import shutil
import stat
import struct
import sys
import tempfile
import tokenize
import warnings
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any, BinaryIO, Literal

import numpy as np
import numpy.typing as npt

from lstmshape import readers
from lstmshape._version import __version__
from lstmshape.errors import InputError, OutputError
from lstmshape.refs import ArrayRef, parse_ref

try:
    import fcntl
except ImportError:  # Windows: writers go unlocked (see _TargetLock)
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ArrayInfo",
    "ArraySink",
    "ArraySource",
    "StdoutClosedError",
    "allow_external",
    "check_output",
    "default_output_path",
    "list_arrays",
    "load",
    "memory_limit",
    "open_array",
    "open_sink",
    "save",
    "save_members",
    "silence_stdout",
]

Format = Literal["npy", "npz", "h5"]
RefLike = ArrayRef | str | os.PathLike[str]

_FORMATS: dict[str, Format] = {".npy": "npy", ".npz": "npz", ".h5": "h5", ".hdf5": "h5"}
_FORMAT_LIST = ".npy, .npz, .h5 or .hdf5"
#: The KEY an output gets when none is given.
DEFAULT_KEYS: dict[Format, str] = {"npz": "arr_0", "h5": "/data"}
_STDIN = "standard input"
_MAX_LISTED = 20
_COPY_BUFFER = 1 << 20
# Errors a damaged .npy/.npz stream can raise while its header or data is parsed.
_PARSE_ERRORS = (
    ValueError,
    EOFError,
    OSError,
    zipfile.BadZipFile,
    zlib.error,
    SyntaxError,
    tokenize.TokenError,  # numpy re-tokenizes a header it cannot parse
    OverflowError,
)


# Errors zipfile raises for a damaged or unusable archive: RuntimeError for an encrypted
# member, NotImplementedError for a compression method it does not support.
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, RuntimeError, NotImplementedError)


class StdoutClosedError(OutputError, BrokenPipeError):
    """Standard output was closed by its reader (`| head`): a BrokenPipeError, so callers
    that exit quietly on a broken pipe treat it alike."""


# ----------------------------------------------------------------------------- descriptions


@dataclass(frozen=True)
class ArrayInfo:
    """What is known about a stored array without reading its data.

    `ref` names it exactly (the KEY filled in when it was implicit); `chunks`,
    `compression` and `attrs` are only set for HDF5 datasets.
    """

    ref: ArrayRef
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    format: Format
    chunks: tuple[int, ...] | None = None
    compression: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Size of the data in bytes (`prod(shape) * itemsize`)."""
        return math.prod(self.shape) * self.dtype.itemsize

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for `inspect --json`)."""
        return {
            "path": self.ref.path,
            "key": self.ref.key,
            "ref": str(self.ref),
            "format": self.format,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "nbytes": self.nbytes,
            "chunks": None if self.chunks is None else list(self.chunks),
            "compression": self.compression,
            "attrs": dict(self.attrs),
        }


@dataclass(frozen=True)
class _NpyHeader:
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype[Any]
    offset: int  # bytes from the start of the .npy stream to the data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def order(self) -> Literal["C", "F"]:
        return "F" if self.fortran else "C"


# ----------------------------------------------------------------------------- small helpers


def _as_ref(ref: RefLike) -> ArrayRef:
    return ref if isinstance(ref, ArrayRef) else parse_ref(ref)


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (HDF5 and numpy messages can span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _text(name: str | bytes) -> str:
    """A name for a message: h5py gives bytes for an HDF5 name that is not UTF-8."""
    return name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else name


def _os_reason(exc: OSError) -> str:
    return exc.strerror or _one_line(exc)


def _listing(names: list[str]) -> str:
    shown = ", ".join(_text(name) for name in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return f"{shown}, … ({more} more)" if more > 0 else shown


def _h5py() -> Any:
    """Import h5py on first use: it is slow to import and only HDF5 files need it."""
    import h5py

    return h5py


# .zarr stores live in lstmshape.zarr_io, imported only when a .zarr path is used.
def _is_zarr(ref: ArrayRef) -> bool:
    return not ref.is_stdio and ref.suffix == ".zarr"


def _zarr_io() -> Any:
    from lstmshape import zarr_io

    return zarr_io


def _format_of(ref: ArrayRef, *, verb: str = "read") -> Format:
    fmt = _FORMATS.get(ref.suffix)
    if fmt is None:
        found = ref.suffix or "no suffix"
        raise InputError(
            f"cannot {verb} {ref.path}: unsupported format ({found}); expected {_FORMAT_LIST}"
        )
    return fmt


def _normalize_key(fmt: Format, key: str | None) -> str | None:
    """One spelling per key: `/a/b` for HDF5, `a` (not `a.npy`) for .npz members."""
    if key is None:
        return None
    if fmt == "h5":
        return "/" + key.strip("/")
    return key[: -len(".npy")] if key.endswith(".npy") else key


def _refuse_objects(where: str, dtype: np.dtype[Any]) -> None:
    if dtype.hasobject:
        raise InputError(f"{where} holds Python objects (pickled data); refusing to load")


def _refuse_key(ref: ArrayRef) -> None:
    if ref.key is not None:
        raise InputError(
            f"{ref.path} is a .npy file holding one array; drop ':{ref.key}' (KEY is for .npz/.h5)"
        )


def _pick(path: str, key: str | None, candidates: list[str], what: str = "arrays") -> str:
    """The candidate KEY names, or the only candidate when KEY is None."""
    if key is not None:
        if key in candidates:
            return key
        holds = f"it holds: {_listing(candidates)}" if candidates else f"it holds no {what}"
        raise InputError(f"{path} has no array {key!r}; {holds}")
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(f"{path} holds no {what}")
    raise InputError(
        f"{path} holds {len(candidates)} {what}; name one as {path}:KEY: {_listing(candidates)}"
    )


def _check_input_file(path: str) -> None:
    """Refuse a missing, unreadable, directory or empty input with a one-line message."""
    p = Path(path)
    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{path} is a directory, not an array file")
        with p.open("rb"):
            pass
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{path} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {_os_reason(exc)}") from None
    if st.st_size == 0:
        raise InputError(f"{path} is empty")


# ----------------------------------------------------------------------------- .npy headers


def _read_header_fields(fh: io.BufferedIOBase, version: tuple[int, int]) -> tuple[Any, bool, Any]:
    fmt = np.lib.format
    if version == (1, 0):
        return fmt.read_array_header_1_0(fh)
    if version == (2, 0):
        return fmt.read_array_header_2_0(fh)
    # Version 3.0 (utf-8 field names) has no public reader.
    impl = getattr(np.lib, "_format_impl", fmt)
    return impl._read_array_header(fh, version)


def _read_npy_header(fh: io.BufferedIOBase, where: str, noun: str = "file") -> _NpyHeader:
    """Parse a .npy header at the stream's position; data follows at `offset`."""
    start = fh.tell()
    try:
        with _quiet_header_warnings():
            version = np.lib.format.read_magic(fh)
            _check_header_length(fh, version)
            shape, fortran, dtype = _read_header_fields(fh, version)
    except _PARSE_ERRORS as exc:
        raise InputError(f"{where} is not a valid .npy {noun} ({_one_line(exc)})") from None
    header = _NpyHeader(tuple(int(s) for s in shape), bool(fortran), dtype, fh.tell() - start)
    _check_npy_header(where, noun, header)
    return header


@contextlib.contextmanager
def _quiet_header_warnings() -> Any:
    """numpy warns when it had to re-parse a Python 2 header (UserWarning) and when a
    header names a dtype by a deprecated alias such as 'a' (DeprecationWarning): properties
    of the file, checked here anyway; a warning would break the one-line error contract."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, message=".*Python 2.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*alias.*")
        yield


_MAX_NDIM = 64  # numpy's limit on the number of axes
# numpy refuses longer header text unless pickles are allowed, but only after reading it:
# a lying length field would first make it allocate up to 4 GiB.
_MAX_HEADER_BYTES = 10000


def _check_header_length(fh: io.BufferedIOBase, version: tuple[int, int]) -> None:
    """Refuse a header length field beyond what numpy reads, before anything is allocated."""
    size_format = "<H" if version == (1, 0) else "<I"
    start = fh.tell()
    raw = fh.read(struct.calcsize(size_format))
    fh.seek(start)
    if len(raw) == struct.calcsize(size_format):
        (length,) = struct.unpack(size_format, raw)
        if length > _MAX_HEADER_BYTES:
            raise ValueError(f"the header claims {length} bytes (at most {_MAX_HEADER_BYTES})")


def _check_npy_header(where: str, noun: str, header: _NpyHeader) -> None:
    """Refuse a parsed header that numpy cannot map: negative or overflowing sizes, too many
    axes, zero-byte items. Runs before any data is touched, so a lying header costs nothing."""
    shape, dtype = header.shape, header.dtype
    bad = None
    if len(shape) > _MAX_NDIM:
        bad = f"{len(shape)} axes (numpy allows {_MAX_NDIM})"
    elif any(size < 0 for size in shape):
        bad = f"a negative size in shape {shape}"
    elif dtype.itemsize == 0:
        bad = f"items of 0 bytes (dtype {dtype})"
    elif math.prod(size for size in shape if size) * dtype.itemsize > sys.maxsize:
        # Also with a zero size elsewhere: numpy multiplies the sizes up in 64 bits.
        bad = f"shape {shape} of {dtype}, more bytes than any file can hold"
    elif header.nbytes == 0 and math.prod(size for size in shape if size) * 8 > memory_limit():
        # No data at all, yet per-sample bookkeeping (counts, indices) for every entry.
        bad = f"shape {shape}: no data, but more entries than fit in memory"
    if bad is not None:
        raise InputError(f"{where} is not a valid .npy {noun}: its header declares {bad}")


def _check_length(where: str, available: int, header: _NpyHeader) -> None:
    if available < header.nbytes:
        raise InputError(
            f"{where} is truncated: its header promises {header.shape} {header.dtype} "
            f"({header.nbytes} bytes) but only {max(available, 0)} bytes follow"
        )


def _npy_header_bytes(shape: tuple[int, ...], dtype: np.dtype[Any]) -> bytes:
    fields = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": shape,
    }
    buf = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buf, fields)
    except ValueError:  # header longer than 64 KiB: format 2.0
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, fields)
    return buf.getvalue()


# ----------------------------------------------------------------------------- sources


class ArraySource:
    """An open stored array: `info`, `shape`, `dtype` and block reads along an axis.

    Use it as a context manager; it keeps its file open until closed.
    """

    def __init__(
        self,
        info: ArrayInfo,
        data: Any,
        close: Callable[[], None] | None = None,
        reader: readers.Reader | None = None,
    ) -> None:
        self.info = info
        self._data = data  # an ndarray/np.memmap, an h5py.Dataset, or None: read via reader
        self._close = close
        self._reader = reader
        self._closed = False

    @property
    def reader(self) -> readers.Reader | None:
        """The block/row reader the streaming engine uses (`lstmshape.readers`)."""
        return self._reader

    @property
    def shape(self) -> tuple[int, ...]:
        return self.info.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.info.dtype

    @property
    def ndim(self) -> int:
        return self.info.ndim

    @property
    def nbytes(self) -> int:
        return self.info.nbytes

    def read(self, start: int = 0, stop: int | None = None, axis: int = 0) -> np.ndarray:
        """Indices `start:stop` along `axis`, all of the other axes (a view for .npy files).

        Axis 1 serves time-major (T, N, F) data read in blocks of samples.
        """
        if not 0 <= axis < self.ndim:
            raise InputError(
                f"{self.info.ref} has shape {self.shape}; it has no axis {axis} to read along"
            )
        lo, hi, _ = slice(start, stop).indices(self.shape[axis])
        hi = max(lo, hi)
        if self._data is None and not self._closed:
            return self._read_fresh(lo, hi, axis)
        return self._get((slice(None),) * axis + (slice(lo, hi),))

    def read_all(self) -> np.ndarray:
        """The whole array (memory-mapped for .npy files, read into memory for HDF5)."""
        if isinstance(self._data, np.ndarray):
            return self._data
        if self._data is None and not self._closed and self.ndim:
            return self._read_fresh(0, self.shape[0], 0)
        return self._get(())

    def _read_fresh(self, start: int, stop: int, axis: int) -> np.ndarray:
        """Indices `start:stop` along `axis` read by the reader into a new array."""
        assert self._reader is not None
        shape = (*self.shape[:axis], stop - start, *self.shape[axis + 1 :])
        out = np.empty(shape, self.dtype)
        self._reader.read_into(start, stop, axis, out)
        return out

    def _get(self, selection: Any) -> np.ndarray:
        if self._data is None:
            raise ValueError(f"{self.info.ref} is closed")
        try:
            return np.asarray(self._data[selection])
        except OSError as exc:
            raise InputError(f"cannot read {self.info.ref}: {_one_line(exc)}") from None

    def close(self) -> None:
        """Release the file; arrays already returned stay valid."""
        self._data = None
        self._closed = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> ArraySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ArraySource {self.info.ref} {self.shape} {self.dtype}>"


def open_array(ref: RefLike) -> ArraySource:
    """Open one array for reading, without reading its data.

    Args:
        ref: `PATH`, `PATH:KEY`, `-` (a .npy stream on standard input) or an `ArrayRef`.
            KEY may be left out when the file holds exactly one candidate array.

    Raises:
        InputError: missing/unreadable/damaged file, unsupported format, pickled data,
            an ambiguous, missing or group KEY. The message is one line naming the path.

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(d / "x.npy", np.arange(6).reshape(3, 2))
    >>> with open_array(str(d / "x.npy")) as src: src.shape, src.read(1, 2).tolist()
    ((3, 2), [[2, 3]])
    """
    ref = _as_ref(ref)
    if ref.is_stdio:
        return _open_stdin(ref)
    if _is_zarr(ref):
        return _zarr_io().open_array(ref)  # type: ignore[no-any-return]
    fmt = _format_of(ref)
    _check_input_file(ref.path)
    return {"npy": _open_npy, "npz": _open_npz, "h5": _open_h5}[fmt](ref)


def load(ref: RefLike) -> np.ndarray:
    """Read a whole array (a read-only memory map for .npy files).

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> np.savez(d / "r.npz", out=np.ones((2, 3), "f4"))
    >>> load(f"{d}/r.npz:out").shape
    (2, 3)
    """
    with open_array(ref) as src:
        return src.read_all()


def list_arrays(path: RefLike) -> list[ArrayInfo]:
    """Every candidate array in a file, described from headers only (no data read).

    `.npy` and `-` give one entry; `.npz` gives its members and `.h5` its datasets in tree
    order (pickled/object and empty-dataspace arrays are not candidates). A KEY narrows the
    listing to that array, or for HDF5 to the datasets inside that group.
    """
    ref = _as_ref(path)
    if _is_zarr(ref):
        return _zarr_io().list_arrays(ref)  # type: ignore[no-any-return]
    fmt = "npy" if ref.is_stdio else _format_of(ref)
    if fmt == "npy":
        with open_array(ref) as src:
            return [src.info]
    _check_input_file(ref.path)
    if fmt == "npz":
        return _list_npz(ref)
    return _list_h5(ref)


# .npy ------------------------------------------------------------------------------------


def _open_npy(ref: ArrayRef) -> ArraySource:
    _refuse_key(ref)
    with Path(ref.path).open("rb") as fh:
        header = _read_npy_header(fh, ref.path)
        size = os.fstat(fh.fileno()).st_size
    _refuse_objects(ref.path, header.dtype)
    _check_length(ref.path, size - header.offset, header)
    try:
        with _quiet_header_warnings():
            data = np.load(ref.path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read {ref.path}: {_one_line(exc)}") from None
    reader = _file_reader(ref.path, header.offset, header, data, ref.path)
    return ArraySource(ArrayInfo(ref, header.shape, header.dtype, "npy"), data, reader=reader)


def _file_reader(
    path: str, offset: int, header: _NpyHeader, data: np.ndarray, where: str
) -> readers.Reader:
    """Positioned reads for C-order data at `offset`; the memory map for Fortran order."""
    if header.fortran and len(header.shape) > 1:
        return readers.InMemory(data)
    return readers.FileArray(path, offset, header.shape, header.dtype, where)


# standard input --------------------------------------------------------------------------

_stdin_cache: tuple[object, bytes] | None = None


def _read_stdin() -> bytes:
    """All of standard input, read once: later calls in the process see the same bytes."""
    global _stdin_cache
    stream = getattr(sys.stdin, "buffer", sys.stdin)
    if _stdin_cache is not None and _stdin_cache[0] is stream:
        return _stdin_cache[1]
    data = stream.read() if stream is not None else b""
    if isinstance(data, str):
        raise InputError("standard input is a text stream; pipe a binary .npy stream into it")
    _stdin_cache = (stream, data)
    return data


def _open_stdin(ref: ArrayRef) -> ArraySource:
    data = _read_stdin()
    if not data:
        raise InputError("no data on standard input")
    header = _read_npy_header(io.BytesIO(data), _STDIN, noun="stream")
    _refuse_objects(_STDIN, header.dtype)
    _check_length(_STDIN, len(data) - header.offset, header)
    flat = np.frombuffer(
        data, dtype=header.dtype, count=math.prod(header.shape), offset=header.offset
    )
    array = flat.reshape(header.shape, order=header.order)
    info = ArrayInfo(ref, header.shape, header.dtype, "npy")
    return ArraySource(info, array, reader=readers.InMemory(array))


# .npz ------------------------------------------------------------------------------------


def _open_zip(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (*_ZIP_ERRORS, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a valid .npz file ({_one_line(exc)})") from None


def _npz_entries(path: str, zf: zipfile.ZipFile) -> dict[str, tuple[zipfile.ZipInfo, _NpyHeader]]:
    """KEY -> (zip member, .npy header) for every `.npy` member, headers parsed."""
    entries = {}
    for member in zf.infolist():
        # (is_dir() fails on an empty name, which a damaged archive can hold)
        if not member.filename.endswith(".npy") or member.is_dir():
            continue
        key = member.filename[: -len(".npy")]
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
        entries[key] = (member, header)
    return entries


def _npz_candidates(entries: dict[str, tuple[zipfile.ZipInfo, _NpyHeader]]) -> list[str]:
    return [key for key, (_, header) in entries.items() if not header.dtype.hasobject]


def _npz_info(path: str, key: str, header: _NpyHeader) -> ArrayInfo:
    return ArrayInfo(ArrayRef(path, key), header.shape, header.dtype, "npz")


def _npz_pick(ref: ArrayRef, entries: dict[str, tuple[zipfile.ZipInfo, _NpyHeader]]) -> str:
    """The member KEY names, or the only loadable member; pickled members are refused."""
    key = _normalize_key("npz", ref.key)
    if key is None:
        names = _npz_candidates(entries)
        if not names and entries:
            _refuse_objects(ref.path, next(iter(entries.values()))[1].dtype)
        return _pick(ref.path, None, names)
    key = _pick(ref.path, key, list(entries))
    _refuse_objects(f"{ref.path}:{key}", entries[key][1].dtype)
    return key


def _list_npz(ref: ArrayRef) -> list[ArrayInfo]:
    with _open_zip(ref.path) as zf:
        entries = _npz_entries(ref.path, zf)
    keys = [_npz_pick(ref, entries)] if ref.key is not None else _npz_candidates(entries)
    return [_npz_info(ref.path, k, entries[k][1]) for k in keys]


def _open_npz(ref: ArrayRef) -> ArraySource:
    with _open_zip(ref.path) as zf:
        entries = _npz_entries(ref.path, zf)
        key = _npz_pick(ref, entries)
        member, header = entries[key]
        data, reader = _npz_member_data(ref.path, zf, member, header, f"{ref.path}:{key}")
    return ArraySource(_npz_info(ref.path, key, header), data, reader=reader)


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
    path: str, zf: zipfile.ZipFile, member: zipfile.ZipInfo, header: _NpyHeader, where: str
) -> tuple[np.ndarray | None, readers.Reader]:
    """An uncompressed member (np.savez) is memory-mapped and read at its offset in the
    archive; a compressed one (np.savez_compressed) is decompressed block by block when read
    (data None). NumPy's own `mmap_mode` silently loads .npz members whole."""
    if header.nbytes == 0:
        empty = np.empty(header.shape, header.dtype, order=header.order)
        return empty, readers.InMemory(empty)
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
        if header.shape and (not header.fortran or len(header.shape) < 2):  # 0-d: one value
            stream = readers.ZipStream(
                path, member, header.offset, header.shape, header.dtype, where
            )
            return None, stream
        with zf.open(member) as fh:
            loaded = np.lib.format.read_array(fh, allow_pickle=False)
        return loaded, readers.InMemory(loaded)
    except (*_PARSE_ERRORS, *_ZIP_ERRORS) as exc:
        raise InputError(f"cannot read {where}: {_one_line(exc)}") from None


# .h5 -------------------------------------------------------------------------------------


def _open_h5_file(path: str) -> Any:
    h5py = _h5py()
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
    h5py = _h5py()
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


# HDF5 objects that read other files: external links, virtual datasets, external storage.
_allow_external: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "lstmshape_allow_external", default=False
)
_EXTERNAL_HINT = "lstmshape reads only the named file unless --allow-external is given"
_MAX_LINK_DEPTH = 16  # HDF5's own limit on nested soft/external link traversals


@contextlib.contextmanager
def allow_external(allowed: bool = True) -> Iterator[None]:
    """Let HDF5 inputs read other files (external links, virtual datasets whose sources are
    other files, datasets with external raw storage) inside the `with` block.

    By default such inputs are refused: a file handed over by someone else could otherwise
    make lstmshape read any file the user can read, or block on a FIFO. Outputs never
    follow an external link, allowed or not.
    """
    token = _allow_external.set(allowed)
    try:
        yield
    finally:
        _allow_external.reset(token)


def _h5_external_link(f: Any, key: str, depth: int = 0) -> str | None:
    """The first external link on the way to `key`, described, or None; soft links are
    followed by their target paths, so nothing outside `f` is opened to find out."""
    h5py = _h5py()
    here = ""
    for part in (p for p in key.split("/") if p):
        parent, here = here, f"{here}/{part}"
        link = f.get(here, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            return f"{here} is an external link to {link.filename}:{link.path}"
        if isinstance(link, h5py.SoftLink) and depth < _MAX_LINK_DEPTH:
            target = link.path if link.path.startswith("/") else f"{parent}/{link.path}"
            found = _h5_external_link(f, target, depth + 1)
            if found is not None:
                return found
    return None


def _refuse_external_links(f: Any, path: str, key: str) -> None:
    if _allow_external.get():
        return
    try:
        link = _h5_external_link(f, key)
    except (KeyError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot read {path}:{key}: {_one_line(exc)}") from None
    if link is not None:
        raise InputError(f"{path}:{key}: {link}; {_EXTERNAL_HINT}")


def _refuse_external_data(f: Any, where: str, dset: Any) -> None:
    """Refuse a dataset whose data lives in other files (unless allowed)."""
    if _allow_external.get():
        return
    reason = None
    if dset.file.id != f.id:  # reached through a link that the path check did not see
        reason = f"lives in another file ({_text(dset.file.filename)})"
    elif dset.is_virtual:
        files = sorted({_text(s.file_name) for s in dset.virtual_sources()} - {"."})
        if files:
            reason = f"is a virtual dataset reading other files ({_listing(files)})"
    if reason is None and dset.external:
        names = [_text(name) for name, *_ in dset.external]
        reason = f"keeps its data in other files ({_listing(names)})"
    if reason is not None:
        raise InputError(f"{where} {reason}; {_EXTERNAL_HINT}")


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

    No command needs attribute values, and a damaged attribute can send HDF5 into an
    endless loop (a broken variable-length string heap), so listing and opening a dataset
    do not read them; library callers of `ArrayInfo.attrs` get them as before.
    """

    def __init__(self, path: str, key: str) -> None:
        self._path, self._key = str(Path(path).absolute()), key
        self._read: dict[str, Any] | None = None

    def _values(self) -> dict[str, Any]:
        if self._read is None:
            try:
                with _h5py().File(self._path, "r") as f:
                    self._read = _h5_attrs(f[self._key])
            except _H5_DAMAGE:  # gone or damaged since: attributes only inform
                self._read = {}
        return self._read

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
    h5py = _h5py()
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
    h5d = _h5py().h5d
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


def _h5_reader(path: str, dset: Any, where: str) -> readers.Reader:
    """Plain positioned reads for unfiltered data (h5py holds the GIL and copies through
    HDF5's own buffers); h5py's `read_direct` for everything else."""
    shape = tuple(int(s) for s in dset.shape)
    try:
        layout = _h5_raw_layout(dset)
    except (OSError, RuntimeError, ValueError, TypeError):
        layout = None
    if layout == "contiguous":
        return readers.FileArray(path, dset.id.get_offset(), shape, dset.dtype, where)
    if layout == "chunked":
        fill = dset.fillvalue
        grid = tuple(-(-s // c) for s, c in zip(shape, dset.chunks, strict=True))
        return readers.ChunkedFile(
            path,
            shape,
            dset.dtype,
            dset.chunks,
            lambda: _h5_chunk_offsets(dset, grid),
            fill,
            where,
        )
    return readers.H5Direct(dset, where)


def _list_h5(ref: ArrayRef) -> list[ArrayInfo]:
    h5py = _h5py()
    with _open_h5_file(ref.path) as f, _h5_damage(ref.path):
        group = f if ref.key is None else _h5_get(f, ref, "/" + ref.key.strip("/"))
        if not isinstance(group, h5py.Group):
            key, dset = _h5_dataset(f, ref)
            return [_h5_info(ref.path, key, dset)]
        return [_h5_info(ref.path, d.name, d) for d in _h5_candidates(group)]


# ----------------------------------------------------------------------------- output checks


@dataclass(frozen=True)
class _OutputPlan:
    """How an output will be written once the checks pass."""

    ref: ArrayRef  # KEY filled in for containers
    format: Format
    append_to: Path | None  # an existing container whose other arrays are kept
    replace: bool  # whether publishing may replace an existing file


def _same_file(a: str, b: str) -> bool:
    """True when both paths name one file (any spelling, symlink or hard link)."""
    try:
        return Path(a).samefile(b)
    except OSError:
        return False


def _input_key(inp: ArrayRef, fmt: Format) -> str | None:
    """The input's KEY in the output's format, resolved when the file holds one array."""
    if inp.key is not None or fmt == "npy":
        return _normalize_key(fmt, inp.key)
    try:
        infos = list_arrays(inp)
    except InputError:
        return None
    return _normalize_key(fmt, infos[0].ref.key) if len(infos) == 1 else None


def _refuse_input_as_output(ref: ArrayRef, fmt: Format, inputs: Iterable[RefLike]) -> None:
    out_key = _normalize_key(fmt, ref.key)
    for raw in inputs:
        inp = _as_ref(raw)
        if inp.is_stdio or not _same_file(inp.path, ref.path):
            continue
        in_key = _input_key(inp, fmt)
        # Another KEY of the same container is safe: the file is rewritten via a copy.
        if fmt != "npy" and in_key is not None and out_key is not None and in_key != out_key:
            continue
        raise InputError(f"cannot write {ref}: it is the input {inp}; choose another output")


def _check_target_path(ref: ArrayRef) -> Path:
    target = Path(ref.path)
    parent = target.parent
    if not parent.exists():
        raise InputError(f"cannot write {ref.path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"cannot write {ref.path}: {parent} is not a directory")
    if target.is_dir():
        raise InputError(f"cannot write {ref.path}: it is a directory")
    return target


def _h5_key_state(path: Path, key: str) -> str:
    """'absent', 'dataset', 'group', 'blocked' (a parent is not a group) or 'foreign'."""
    h5py = _h5py()
    if not h5py.is_hdf5(path):
        return "foreign"
    try:
        with h5py.File(path, "r") as f:
            link = _h5_external_link(f, key)
            if link is not None:  # HDF5 would write into the other file
                raise InputError(
                    f"cannot write {path}:{key}: {link}; lstmshape writes only into the named file"
                )
            parts = key.strip("/").split("/")
            for depth in range(1, len(parts) + 1):
                obj = f.get("/" + "/".join(parts[:depth]))
                if obj is None:
                    return "absent"
                if depth < len(parts) and not isinstance(obj, h5py.Group):
                    return "blocked"
            return "group" if isinstance(obj, h5py.Group) else "dataset"
    except InputError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot read {path}: {_one_line(exc)}") from None


def _npz_key_state(path: Path, key: str) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, EOFError):
        return "foreign"
    except OSError as exc:
        raise InputError(f"cannot read {path}: {_os_reason(exc)}") from None
    return "dataset" if f"{key}.npy" in names else "absent"


def _plan_existing_key(ref: ArrayRef, fmt: Format, target: Path, force: bool) -> _OutputPlan:
    """An existing file and an output KEY: add or (with force) replace that array."""
    key = ref.key
    assert key is not None
    state = _h5_key_state(target, key) if fmt == "h5" else _npz_key_state(target, key)
    if state == "foreign":
        if not force:
            kind = "an HDF5" if fmt == "h5" else "a .npz"
            raise InputError(f"{ref.path} exists and is not {kind} file; use --force to overwrite")
        return _OutputPlan(ref, fmt, None, True)
    if state == "group":
        raise InputError(f"cannot write {ref}: {key} is a group; name a dataset")
    if state == "blocked":
        raise InputError(f"cannot write {ref}: a parent of {key} is a dataset, not a group")
    if state == "dataset" and not force:
        raise InputError(f"{ref} exists; use --force to overwrite")
    return _OutputPlan(ref, fmt, target, True)


def _plan_output(ref: ArrayRef, *, force: bool, inputs: Iterable[RefLike]) -> _OutputPlan:
    if ref.is_stdio:
        return _OutputPlan(ref, "npy", None, False)
    fmt = _format_of(ref, verb="write")
    if fmt == "npy" and ref.key is not None:
        raise InputError(f"cannot write {ref}: a .npy file holds one array and takes no KEY")
    target = _check_target_path(ref)
    if fmt != "npy" and ref.key is not None and _normalize_key(fmt, ref.key) in ("/", ""):
        raise InputError(f"cannot write {ref}: KEY must name an array")
    _refuse_input_as_output(ref, fmt, inputs)
    named = ref.key is not None
    key = _normalize_key(fmt, ref.key) if named else DEFAULT_KEYS.get(fmt)
    out = ArrayRef(ref.path, key)
    if not (target.exists() or target.is_symlink()):
        return _OutputPlan(out, fmt, None, force)
    if not named or fmt == "npy":
        if not force:
            raise InputError(f"{ref.path} exists; use --force to overwrite")
        return _OutputPlan(out, fmt, None, True)
    return _plan_existing_key(out, fmt, target, force)


def check_output(ref: RefLike, *, force: bool = False, inputs: Iterable[RefLike] = ()) -> None:
    """Refuse an output before any work is done.

    Refused (InputError): an unsupported suffix, a missing output directory, an existing
    file (or HDF5/.npz KEY) without `force`, a KEY that names an HDF5 group, a non-HDF5
    file at an `.h5` path without `force`, and an output that is one of `inputs` (also
    through another spelling, a symlink or a hard link). A new KEY in an existing `.h5` or
    `.npz` needs no `force`; the input file may be the output container when both name
    different KEYs.
    """
    ref = _as_ref(ref)
    if _is_zarr(ref):
        _zarr_io().check_output(ref, force=force, inputs=inputs)
        return
    _plan_output(ref, force=force, inputs=inputs)


def default_output_path(
    input_ref: RefLike,
    operation: str,
    suffix: str = ".npy",
    cwd: str | os.PathLike[str] = ".",
    *,
    exists: Callable[[str], bool] = os.path.exists,
) -> str:
    """A new file name in `cwd` from the input's name and the operation, never clobbering.

    >>> default_output_path("data/samples_post.npy", "reduce-last", exists=lambda p: False)
    'samples_post.reduce-last.npy'
    >>> taken = {"run_lstm_out.pool.npy"}
    >>> default_output_path("run.h5:/lstm/out", "pool", exists=taken.__contains__)
    'run_lstm_out.pool-1.npy'
    """
    ref = _as_ref(input_ref)
    stem = "stdin" if ref.is_stdio else PurePath(ref.path).stem
    if ref.key:
        stem = f"{stem}_{_slug(ref.key)}"
    base = f"{_slug(stem)}.{_slug(operation)}"
    for n in itertools.count():
        candidate = str(Path(cwd) / f"{base}{f'-{n}' if n else ''}{suffix}")
        if not exists(candidate):
            return candidate
    raise AssertionError("unreachable")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "array"


# ----------------------------------------------------------------------------- sinks


def _as_bytes(block: np.ndarray) -> np.ndarray:
    """A C-contiguous block's memory as uint8, without copying (any dtype, also 0-d)."""
    return block.reshape(-1).view(np.uint8)


class _NpyWriter:
    """Writes a .npy stream into a seekable file: the header, then blocks at their offsets.

    A block along `axis` k > 0 is not one run of bytes in C order; it is written as one run
    per index of the leading axes (T' runs for a time-major (T', N, F) output).
    """

    def __init__(self, fh: BinaryIO, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        header = _npy_header_bytes(shape, dtype)
        fh.seek(0)
        fh.write(header)
        self._fh, self._shape, self._itemsize = fh, shape, dtype.itemsize
        self._data_at = len(header)

    def write(self, start: int, block: np.ndarray, axis: int) -> None:
        if block.size == 0:
            return
        if not self._shape:
            self._put(0, block)
            return
        inner = math.prod(self._shape[axis + 1 :]) * self._itemsize
        extent = self._shape[axis]
        runs = block.reshape(math.prod(self._shape[:axis]), -1)
        for lead, run in enumerate(runs):
            self._put((lead * extent + start) * inner, run)

    def _put(self, offset: int, data: np.ndarray) -> None:
        self._fh.seek(self._data_at + offset)
        self._fh.write(_as_bytes(data))  # type: ignore[arg-type]


class ArraySink(ABC):
    """Receives an array in blocks along one axis, in order; publishes it on commit.

    Use it as a context manager: a clean exit commits (the output appears atomically), an
    exception aborts (nothing is left behind). `target` is the reference being written,
    with the KEY filled in for containers.
    """

    def __init__(self, target: ArrayRef, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.target = target
        self.shape = shape
        self.dtype = dtype
        self._axis: int | None = None
        self._next = 0
        self._written = 0
        self._open = True

    def write(self, start: int, block: npt.ArrayLike, axis: int = 0) -> None:
        """Write `block` at `start:start + block.shape[axis]` along `axis`.

        Blocks come in order along one axis and cover the output exactly once; every other
        axis is whole. Axis 1 serves time-major (T, N, F) outputs written per sample block.
        A 0-d output takes one 0-d block at start 0. The block is cast to the sink's dtype
        (`same_kind`).
        """
        arr = self._check_block(start, np.asarray(block), axis)
        self._guarded(self._write, start, arr, axis)
        if self.shape:
            self._next = start + arr.shape[axis]
        self._written += arr.size

    def commit(self) -> str:
        """Publish the output; returns `str(target)`."""
        if not self._open:
            raise ValueError(f"{self.target} is already closed")
        expected = math.prod(self.shape)
        if self._written != expected:
            self.abort()
            raise ValueError(f"{self.target} received {self._written} of {expected} values")
        self._guarded(self._finish)
        self._open = False
        return str(self.target)

    def abort(self) -> None:
        """Drop everything written so far (idempotent)."""
        if self._open:
            self._open = False
            self._discard()

    def __enter__(self) -> ArraySink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.target} {self.shape} {self.dtype}>"

    # -- checks ----------------------------------------------------------------

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        """Run a write step; on any failure drop the partial output (OSError -> OutputError)."""
        try:
            step(*args)
        except OutputError:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise self._failure(exc) from None
        except BaseException:
            self.abort()
            raise

    def _check_block(self, start: int, arr: np.ndarray, axis: int) -> np.ndarray:
        if not self._open:
            raise ValueError(f"{self.target} is closed")
        if self.shape:
            self._check_place(start, arr.shape, axis)
        elif arr.shape != () or start != 0 or axis != 0 or self._written:
            raise ValueError(f"a block of shape {arr.shape} does not fit the 0-d {self.target}")
        if arr.dtype != self.dtype:
            if not np.can_cast(arr.dtype, self.dtype, "same_kind"):
                raise ValueError(f"cannot store {arr.dtype} data in the {self.dtype} {self.target}")
            arr = arr.astype(self.dtype)
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)

    def _check_place(self, start: int, shape: tuple[int, ...], axis: int) -> None:
        if not 0 <= axis < len(self.shape) or self._axis not in (None, axis):
            raise ValueError(f"cannot write {self.target} {self.shape} along axis {axis}")
        others = [i for i in range(len(self.shape)) if i != axis]
        if len(shape) != len(self.shape) or any(shape[i] != self.shape[i] for i in others):
            raise ValueError(f"a block of shape {shape} does not fit {self.shape} along {axis}")
        if start != self._next or start + shape[axis] > self.shape[axis]:
            raise ValueError(f"{self.target}: expected a block at {self._next}, got {start}")
        self._axis = axis

    # -- for subclasses --------------------------------------------------------

    @abstractmethod
    def _write(self, start: int, block: np.ndarray, axis: int) -> None:
        """Put one block in place."""

    @abstractmethod
    def _finish(self) -> None:
        """Make the complete output visible at its target."""

    @abstractmethod
    def _discard(self) -> None:
        """Remove everything written so far."""

    def _failure(self, exc: OSError) -> OutputError:
        return OutputError(f"cannot write {self.target}: {_os_reason(exc)}")


def memory_limit() -> int:
    """Bytes that one read into memory may take: LSTMSHAPE_MAX_MEMORY (e.g. 8G, 512M, or a
    number of bytes), else half the machine's memory.

    Whole-array reads (reshape's input, masks, weights) and streamed blocks rounded up to
    whole stored chunks are refused above it: a header can declare any size, and a
    compressed file can inflate far beyond its own.
    """
    text = os.environ.get("LSTMSHAPE_MAX_MEMORY", "").strip()
    if text:
        units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
        number, unit = text[:-1] if text[-1:].isalpha() else text, text[-1:].upper()
        unit = unit if unit.isalpha() else ""
        try:
            return int(float(number) * units[unit])
        except (KeyError, ValueError):
            raise InputError(
                f"LSTMSHAPE_MAX_MEMORY takes a size like 8G, 512M or a number of bytes; "
                f"got {text!r}"
            ) from None
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def _new_file_mode() -> int:
    """0o666 minus the umask: the mode open() would give (mkstemp makes 0o600)."""
    # Reading the umask means setting it; the window is one call long.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_file(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename durable; best effort (not every platform can open a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _lock_supported() -> bool:
    return fcntl is not None


class _TargetLock:
    """An exclusive advisory lock for the writers of one target file (POSIX `flock`).

    It is held for short moments only: while a writer creates its temporary files and clears
    stale ones, and at commit, from re-reading the target through to the rename that replaces
    it. So two writers adding KEYs to one container never copy the same old file and
    replace it one after the other (the second would drop the first's dataset); their
    computations still run side by side.

    The lock lives on a sidecar `.NAME.lock` beside the target. The holder removes it before
    letting go, and a waiter that then gets the lock on the removed file sees that the path
    names another file (or none) and tries again, so no lock file stays behind and no two
    writers ever hold it at once. A writer killed while holding it loses the lock with its
    life; the next one finds the sidecar free and removes it.

    HDF5's own file locks cannot do this: they guard a file while HDF5 has it open, and the
    container is only ever opened in a private copy; and they fail instead of waiting.
    Where `flock` is missing (Windows) or refused (some network file systems), writers go on
    unlocked: each write stays atomic, but concurrent KEYs into one container can be lost.

    Re-entrant within one sink: nested `with` blocks on the same object count.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = target.parent / f".{target.name}.lock"
        self._fd: int | None = None
        self._depth = 0

    def __enter__(self) -> _TargetLock:
        if self._depth == 0 and _lock_supported():
            self._fd = self._acquire()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):  # another user's sidecar in a sticky directory
                if _names_file(self.path, fd):
                    self.path.unlink()
            os.close(fd)  # releases the lock

    def _acquire(self) -> int | None:
        while True:
            try:
                # Read-only is enough for flock, and lets other users open an existing sidecar.
                fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:  # an unwritable directory: the write itself would fail
                raise OutputError(f"cannot write {self.target}: {_os_reason(exc)}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # no locks on this file system: write unlocked
                os.close(fd)
                return None
            if _names_file(self.path, fd):
                return fd
            os.close(fd)  # the holder removed the sidecar as we waited: lock the new one


def _names_file(path: Path, fd: int) -> bool:
    """True when `path` still names the open file `fd`."""
    try:
        now = path.stat(follow_symlinks=False)
    except OSError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _temp_pattern(target: Path) -> re.Pattern[str]:
    """The names `tempfile.mkstemp` gives a writer's temporary files for `target`."""
    return re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.(?:tmp|part)")


def _remove_stale_temps(target: Path) -> None:
    """Delete the temporary files that killed writers of `target` left behind.

    A live writer holds a `flock` on each of its temporary files from the moment it made
    them (under the target lock, which the caller holds); a killed one lost its locks with
    its life. So a temporary file whose lock can be taken belongs to nobody.
    """
    if not _lock_supported():
        return
    pattern = _temp_pattern(target)
    try:
        paths = [path for path in target.parent.iterdir() if pattern.fullmatch(path.name)]
    except OSError:
        return
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live writer's (or a file system without locks: keep it)
                continue
            if _names_file(path, fd):
                with contextlib.suppress(OSError):
                    path.unlink()
        finally:
            os.close(fd)


def _write_reason(exc: OSError) -> str:
    """Why a write failed, in a few words: HDF5 buries the errno in a long message."""
    code = exc.errno
    if code is None:
        found = re.search(r"errno = (\d+),", str(exc))
        code = int(found.group(1)) if found else None
    if code == errno.EFBIG:
        return "File too large (a file size limit was reached)"
    if code in (errno.ENOSPC, errno.EDQUOT) or (exc.strerror is None and code is not None):
        return os.strerror(code)
    return _os_reason(exc)


class _FileSink(ArraySink):
    """A sink writing a temporary file beside the target, renamed over it on commit.

    `extras` are further whole arrays (KEY -> array) stored in the same container. `replan`
    checks the output again at commit, under the target lock, against the file as it is
    then (another writer may have created it, or added a KEY, meanwhile).
    """

    def __init__(
        self,
        plan: _OutputPlan,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        extras: Mapping[str, np.ndarray] | None = None,
        replan: Callable[[], _OutputPlan] | None = None,
    ) -> None:
        super().__init__(plan.ref, shape, dtype)
        self._plan = plan
        self._replan = replan or (lambda: plan)
        self._path = Path(plan.ref.path)
        self._extras = dict(extras or {})
        self._lock = _TargetLock(self._path)
        self._temps: dict[Path, int] = {}  # temporary file -> the fd holding its flock
        try:
            with self._lock:
                self._tmp = self._make_temp(".tmp")
                _remove_stale_temps(self._path)
            self._start()
        except BaseException as exc:
            self._open = False
            self._discard()
            if isinstance(exc, OSError) and not isinstance(exc, OutputError):
                raise self._failure(exc) from None
            raise

    def _make_temp(self, suffix: str) -> Path:
        """A new temporary file beside the target, locked as long as this sink lives."""
        with self._lock:
            try:
                fd, name = tempfile.mkstemp(
                    dir=self._path.parent, prefix=f".{self._path.name}.", suffix=suffix
                )
            except OSError as exc:
                raise self._failure(exc) from None
            if _lock_supported():
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._temps[Path(name)] = fd
            return Path(name)

    def _drop_temp(self, path: Path) -> None:
        """Delete a temporary file (before its lock goes, so no one else can take it)."""
        path.unlink(missing_ok=True)
        self._forget_temp(path)

    def _forget_temp(self, path: Path) -> None:
        """Stop tracking a temporary file and release its lock (it is kept on disk)."""
        fd = self._temps.pop(path, None)
        if fd is not None:
            os.close(fd)

    def _release_temps(self) -> None:
        for path in list(self._temps):
            self._drop_temp(path)

    @abstractmethod
    def _start(self) -> None:
        """Create the temporary file and write what precedes the blocks."""

    @abstractmethod
    def _close_file(self) -> None:
        """Flush and close the temporary file."""

    def _seal(self, plan: _OutputPlan) -> None:
        """Complete the temporary file for `plan` (containers take in the target's other
        arrays here)."""
        self._close_file()

    def _finish(self) -> None:
        with self._lock:
            plan = self._replan()
            self._seal(plan)
            if plan.replace and self._path.exists():
                shutil.copymode(self._path, self._tmp)  # a replaced file keeps its permissions
            else:
                self._tmp.chmod(_new_file_mode())
            _fsync_file(self._tmp)
            # Unlock it before it takes the target's name: HDF5 readers take a shared lock
            # on what they open. No cleaner can remove it meanwhile (we hold the target lock).
            self._forget_temp(self._tmp)
            self._publish(plan)
            _fsync_dir(self._path.parent)
        self._release_temps()

    def _publish(self, plan: _OutputPlan) -> None:
        if plan.replace:
            self._tmp.replace(self._path)
            return
        # Without --force, a hard link fails if the target appeared meanwhile: no clobbering.
        try:
            self._path.hardlink_to(self._tmp)
        except FileExistsError:
            raise InputError(f"{self._path} exists; use --force to overwrite") from None
        except OSError:  # a file system without hard links
            if self._path.exists():
                raise InputError(f"{self._path} exists; use --force to overwrite") from None
            self._tmp.replace(self._path)
            return
        self._tmp.unlink()

    def _discard(self) -> None:
        with contextlib.suppress(Exception):  # the write already failed; report that failure
            self._close_file()
        self._release_temps()

    def _failure(self, exc: OSError) -> OutputError:
        return OutputError(f"cannot write {self.target}: {_write_reason(exc)}")


class _NpySink(_FileSink):
    def _start(self) -> None:
        self._fh: BinaryIO | None = self._tmp.open("r+b")
        self._writer = _NpyWriter(self._fh, self.shape, self.dtype)

    def _write(self, start: int, block: np.ndarray, axis: int) -> None:
        self._writer.write(start, block, axis)

    def _close_file(self) -> None:
        fh, self._fh = getattr(self, "_fh", None), None
        if fh is not None:
            fh.close()


def _npz_member(key: str) -> str:
    return f"{key}.npy"


class _NpzSink(_FileSink):
    """Stages the array as .npy in a scratch file, then builds the archive on commit.

    The scratch file lets blocks land anywhere (a zip member is a one-way stream); the
    archive gets the other members of the target as it is at commit, this array, then
    `extras`.
    """

    def _start(self) -> None:
        self._scratch: Path | None = self._make_temp(".part")
        self._fh: BinaryIO | None = self._scratch.open("r+b")
        self._writer = _NpyWriter(self._fh, self.shape, self.dtype)

    def _write(self, start: int, block: np.ndarray, axis: int) -> None:
        self._writer.write(start, block, axis)

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
        fh, self._fh = getattr(self, "_fh", None), None
        if fh is not None:
            fh.close()
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


class _H5Sink(_FileSink):
    """Writes the dataset (and `extras`) into a new HDF5 file; on commit, under the target
    lock, into a copy of the target as it is then when it is kept (a KEY added).

    The temporary files are private, so HDF5's own file locking is off for them (it would
    clash with the lock that marks them as a live writer's).
    """

    def __init__(
        self,
        plan: _OutputPlan,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        attrs: Mapping[str, Any],
        extras: Mapping[str, np.ndarray] | None = None,
        replan: Callable[[], _OutputPlan] | None = None,
    ) -> None:
        self._attrs = attrs
        super().__init__(plan, shape, dtype, extras, replan)

    def _start(self) -> None:
        self._file: Any = _h5py().File(self._tmp, "w", locking=False)
        assert self.target.key is not None
        self._dset = self._create(self.target.key, shape=self.shape, dtype=self.dtype)
        for key, array in self._extras.items():
            self._create(key, data=array)

    def _create(self, key: str, **spec: Any) -> Any:
        dset = self._file.create_dataset(key, **spec)
        for name, value in self._attrs.items():
            dset.attrs[name] = value
        return dset

    def _write(self, start: int, block: np.ndarray, axis: int) -> None:
        if block.size == 0:
            return
        if not self.shape:
            self._dset[()] = block
            return
        where = (slice(None),) * axis + (slice(start, start + block.shape[axis]),)
        self._dset[where] = block

    def _seal(self, plan: _OutputPlan) -> None:
        self._close_file()
        if plan.append_to is None:
            return
        assert self.target.key is not None
        merged = self._make_temp(".tmp")
        shutil.copyfile(plan.append_to, merged)
        h5py = _h5py()
        with (
            h5py.File(self._tmp, "r", locking=False) as ours,
            h5py.File(merged, "r+", locking=False) as kept,
        ):
            for key in (self.target.key, *self._extras):
                if key in kept:
                    del kept[key]  # an existing dataset, replaced under --force
                ours.copy(ours[key], kept, name=key)
        self._drop_temp(self._tmp)
        self._tmp = merged

    def _close_file(self) -> None:
        f, self._file = getattr(self, "_file", None), None
        if f is not None:
            f.close()


class _StdoutSink(ArraySink):
    """Streams .npy to standard output, the header with the first block.

    Blocks along axis 0 go straight out. Blocks along another axis interleave in the byte
    stream, so they are collected in an anonymous temporary file and sent on commit; so are
    all blocks with `hold`, for writers that may still fail after the last block (bytes
    sent cannot be taken back). An anonymous file leaves nothing behind, even after kill -9.
    """

    def __init__(
        self, target: ArrayRef, shape: tuple[int, ...], dtype: np.dtype[Any], *, hold: bool = False
    ) -> None:
        super().__init__(target, shape, dtype)
        self._stream: BinaryIO = getattr(sys.stdout, "buffer", sys.stdout)
        self._spool: BinaryIO | None = None
        self._spooler: _NpyWriter | None = None
        self._header_sent = False
        self._hold = hold

    def _write(self, start: int, block: np.ndarray, axis: int) -> None:
        if (axis != 0 or self._hold) and self._spooler is None:
            self._spool = tempfile.TemporaryFile()
            self._spooler = _NpyWriter(self._spool, self.shape, self.dtype)
        if self._spooler is not None:
            self._spooler.write(start, block, axis)
        else:
            self._send(_as_bytes(block))

    def _send(self, data: Any) -> None:
        try:
            if not self._header_sent:
                self._header_sent = True
                self._stream.write(_npy_header_bytes(self.shape, self.dtype))
            self._stream.write(data)
        except BrokenPipeError:
            silence_stdout()
            raise StdoutClosedError("standard output was closed before the data ended") from None

    def _finish(self) -> None:
        if self._spool is not None:
            self._header_sent = True  # the spool holds the header
            self._spool.seek(0)
            while chunk := self._spool.read(_COPY_BUFFER):
                self._send(chunk)
            self._spool.close()
        self._send(b"")  # the header alone, when no block came (a zero-size output)
        try:
            self._stream.flush()
        except BrokenPipeError:
            silence_stdout()
            raise StdoutClosedError("standard output was closed before the data ended") from None

    def _discard(self) -> None:
        # Bytes already sent cannot be taken back; the reader sees a short stream.
        if self._spool is not None:
            self._spool.close()

    def _failure(self, exc: OSError) -> OutputError:
        return OutputError(f"cannot write to standard output: {_os_reason(exc)}")


def silence_stdout() -> None:
    """After a broken pipe, point file descriptor 1 at /dev/null.

    Python flushes stdout at exit; with the reader gone that flush would print a second
    BrokenPipeError. The stdout sink calls this before raising `StdoutClosedError`.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _provenance_attrs(
    inputs: Iterable[RefLike], provenance: Mapping[str, Any] | None
) -> dict[str, str]:
    """HDF5 attributes saying where a dataset came from: source, operation, options, version."""
    extra = dict(provenance or {})
    refs = [_as_ref(r) for r in inputs]
    default_source = ", ".join(
        "-" if r.is_stdio else str(ArrayRef(str(Path(r.path).absolute()), r.key)) for r in refs
    )
    attrs = {
        "source": str(extra.pop("source", None) or default_source),
        "operation": str(extra.pop("operation", "")),
        "options": json.dumps(extra.pop("options", {}), sort_keys=True, default=str),
        "version": __version__,
    }
    for name, value in extra.items():
        attrs[str(name)] = value if isinstance(value, str) else json.dumps(value, default=str)
    return attrs


def _refuse_object_output(ref: ArrayRef, dtype: np.dtype[Any]) -> None:
    if dtype.hasobject:
        raise InputError(f"cannot write {ref}: Python objects are never stored")


def open_sink(
    ref: RefLike,
    shape: tuple[int, ...],
    dtype: npt.DTypeLike,
    *,
    force: bool = False,
    inputs: Iterable[RefLike] = (),
    provenance: Mapping[str, Any] | None = None,
    hold_stdout: bool = False,
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

    Raises:
        InputError: the output is refused (see `check_output`).
        OutputError: the file system failed; nothing is left behind.

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> with open_sink(str(d / "y.npy"), (3, 2), "f4") as sink:
    ...     sink.write(0, np.zeros((2, 2))); sink.write(2, np.ones((1, 2)))
    >>> load(str(d / "y.npy")).sum()
    np.float32(2.0)
    """
    ref = _as_ref(ref)
    shape = tuple(int(s) for s in shape)
    dt = np.dtype(dtype)
    _refuse_object_output(ref, dt)
    inputs = list(inputs)
    if _is_zarr(ref):
        return _zarr_io().open_sink(  # type: ignore[no-any-return]
            ref, shape, dt, force=force, inputs=inputs, provenance=provenance
        )
    plan = _plan_output(ref, force=force, inputs=inputs)
    if ref.is_stdio:
        return _StdoutSink(ref, shape, dt, hold=hold_stdout)

    def replan() -> _OutputPlan:  # at commit, under the target lock
        return _plan_output(ref, force=force, inputs=inputs)

    if plan.format == "npy":
        return _NpySink(plan, shape, dt, replan=replan)
    if plan.format == "npz":
        return _NpzSink(plan, shape, dt, replan=replan)
    return _H5Sink(plan, shape, dt, _provenance_attrs(inputs, provenance), replan=replan)


def save(
    array: npt.ArrayLike,
    ref: RefLike,
    *,
    force: bool = False,
    inputs: Iterable[RefLike] = (),
    provenance: Mapping[str, Any] | None = None,
) -> str:
    """Write a whole array atomically; returns the reference written (KEY filled in).

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> save(np.arange(3), f"{d}/z.h5").endswith("z.h5:/data")
    True
    """
    arr = np.asarray(array)
    with open_sink(
        ref, arr.shape, arr.dtype, force=force, inputs=inputs, provenance=provenance
    ) as sink:
        sink.write(0, arr)
    return str(sink.target)


def _member_key(fmt: Format, prefix: str | None, name: str) -> str:
    parts = [p.strip("/") for p in (prefix or "", name) if p.strip("/")]
    return ("/" if fmt == "h5" else "") + "/".join(parts)


def save_members(
    ref: RefLike,
    members: Mapping[str, npt.ArrayLike],
    *,
    force: bool = False,
    inputs: Iterable[RefLike] = (),
    provenance: Mapping[str, Any] | None = None,
) -> str:
    """Write several named arrays into one `.npz` or `.h5` file, all or nothing.

    Without KEY the file holds exactly `members` (an existing file needs `force`). With
    KEY they go under it (`basis.h5:/pca` -> `/pca/weights`, `basis.npz:pca` ->
    `pca/weights`) and the file's other arrays are kept; existing names need `force`.

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = save_members(f"{d}/b.npz", {"weights": np.eye(2), "bias": np.zeros(2)})
    >>> [info.ref.key for info in list_arrays(f"{d}/b.npz")]
    ['weights', 'bias']
    """
    ref = _as_ref(ref)
    arrays = {str(name): np.asarray(a) for name, a in members.items()}
    if not arrays:
        raise ValueError("save_members needs at least one array")
    fmt = "npy" if ref.is_stdio else _format_of(ref, verb="write")
    if fmt == "npy":
        raise InputError(f"cannot write {len(arrays)} arrays to {ref}: use a .npz or .h5 file")
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
    if fmt == "h5":
        attrs = _provenance_attrs(inputs, provenance)
        sink = _H5Sink(plan, head.shape, head.dtype, attrs, extras, replan)
    else:
        sink = _NpzSink(plan, head.shape, head.dtype, extras, replan)
    with sink:
        sink.write(0, head)
    return str(ArrayRef(ref.path, ref.key))
