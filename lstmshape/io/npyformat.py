"""The `.npy` byte layout, shared by `.npy` files, `.npz` members and the stdin/stdout
streams: the header, parsed and checked, or written; and a block writer.

A header is checked before any data is touched, so a lying one costs nothing: its length
field, its axes, sizes and item size, and the bytes that must follow it.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
import sys
import tokenize
import warnings
import zlib
from typing import IO, Any, BinaryIO, Literal, NamedTuple

import numpy as np

from lstmshape.errors import InputError
from lstmshape.io.base import _one_line
from lstmshape.limits import memory_limit

# Errors a damaged .npy/.npz stream can raise while its header or data is parsed (and
# zipfile.BadZipFile from an .npz member: `_parse_errors`).
_PARSE_ERRORS = (
    ValueError,
    EOFError,
    OSError,
    zlib.error,
    SyntaxError,
    tokenize.TokenError,  # numpy re-tokenizes a header it cannot parse
    OverflowError,
)


def _parse_errors() -> tuple[type[Exception], ...]:
    """`_PARSE_ERRORS`, with zipfile's `BadZipFile` once zipfile is loaded: only a stream
    out of a zip archive raises it, and `npz` imports zipfile to open one, so reading a
    `.npy` file need not import zipfile (a few milliseconds of start-up)."""
    zipfile = sys.modules.get("zipfile")
    return _PARSE_ERRORS if zipfile is None else (*_PARSE_ERRORS, zipfile.BadZipFile)


# A NamedTuple, not a frozen dataclass: as immutable, and created ~7x faster (start-up).
class _NpyHeader(NamedTuple):
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


def _read_header_fields(fh: IO[bytes], version: tuple[int, int]) -> tuple[Any, bool, Any]:
    fmt = np.lib.format
    if version == (1, 0):
        return fmt.read_array_header_1_0(fh)
    if version == (2, 0):
        return fmt.read_array_header_2_0(fh)
    # Version 3.0 (utf-8 field names) has no public reader.
    impl = getattr(np.lib, "_format_impl", fmt)
    return impl._read_array_header(fh, version)


def _read_npy_header(fh: IO[bytes], where: str, noun: str = "file") -> _NpyHeader:
    """Parse a .npy header at the stream's position; data follows at `offset`."""
    start = fh.tell()
    try:
        with _quiet_header_warnings():
            version = np.lib.format.read_magic(fh)
            _check_header_length(fh, version)
            shape, fortran, dtype = _read_header_fields(fh, version)
    except _parse_errors() as exc:
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


def _check_header_length(fh: IO[bytes], version: tuple[int, int]) -> None:
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


def _as_bytes(block: np.ndarray) -> memoryview:
    """A C-contiguous block's memory as bytes, without copying (any dtype, also 0-d)."""
    return block.reshape(-1).view(np.uint8).data


class _NpyWriter:
    """Writes a .npy stream into a seekable file: the header, then blocks at their offsets.

    A block along `axis` k > 0 is not one run of bytes in C order; it is written as one run
    per index of the leading axes (T' runs for a time-major (T', N, F) output).
    """

    def __init__(
        self,
        fh: BinaryIO,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        header: bytes | None = None,
    ) -> None:
        # `header`: another format's header the C-order data follows (.safetensors).
        header = _npy_header_bytes(shape, dtype) if header is None else header
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
        self._fh.write(_as_bytes(data))
