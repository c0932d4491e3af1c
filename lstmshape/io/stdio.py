"""Standard input and output as `-`: a `.npy` stream read from stdin block by block in
order (`PipeStream`, once per process), and one streamed to stdout block by block; a
broken pipe is a quiet `StdoutClosedError`.

Standard input is read like a file, never whole: the header, then exactly the data it
declares, a block at a time into the engine's buffers, so memory stays bounded whatever
the stream holds and nothing past the declared data is read. A pipe cannot be read twice:
the first bytes are kept in memory for a second look at the start (the padding warning),
and a run that reads the input twice (`--pca`) or along another axis (time-major data)
keeps what it reads in an anonymous temporary file (`rereadable`).
"""

from __future__ import annotations

import io
import math
import os
import sys
import tempfile
from typing import Any, BinaryIO, cast

import numpy as np

from lstmshape.errors import InputError, OutputError
from lstmshape.io.base import (
    _COPY_BUFFER,
    ArrayInfo,
    ArraySource,
    _os_reason,
    _refuse_objects,
)
from lstmshape.io.blocks import Array, IndexArray, InMemory, _bytes_of
from lstmshape.io.npyformat import (
    _MAX_HEADER_BYTES,
    _as_bytes,
    _npy_header_bytes,
    _NpyHeader,
    _NpyWriter,
    _read_npy_header,
)
from lstmshape.io.preads import _pread_exact
from lstmshape.io.sink import ArraySink
from lstmshape.limits import memory_limit
from lstmshape.refs import ArrayRef

_STDIN = "standard input"
#: Bytes from the start of the stream kept in memory for a second look (and the first read
#: whole, whatever its size).
_HEAD_BYTES = 16 * 2**20
_SKIP_BYTES = 2**20


class StdoutClosedError(OutputError, BrokenPipeError):
    """Standard output was closed by its reader (`| head`): a BrokenPipeError, so callers
    that exit quietly on a broken pipe treat it alike."""


class PipeStream:
    """A C-order array arriving on a stream (standard input), read in order.

    Reads along axis 0 take the next bytes of the stream (skipping forward as needed); a
    read of bytes already consumed is served from the kept head, or from the spool when
    `keep()` was called before the data was read. Other axes spool the whole stream first.
    """

    background = True  # reads release the GIL
    supports_rows = False

    def __init__(self, stream: BinaryIO, header: _NpyHeader) -> None:
        self.shape = header.shape
        self.dtype = header.dtype
        self._header = header
        self._stream = stream
        self._pos = 0  # data bytes consumed from the stream
        self._head = bytearray()
        self._spool: BinaryIO | None = None

    def align(self, axis: int) -> int:
        return 1

    def _inner(self, axis: int) -> int:
        return math.prod(self.shape[axis + 1 :]) * self.dtype.itemsize

    def keep(self) -> None:
        """Keep everything read from now on (and the head) in an anonymous temporary file,
        so every byte can be read again."""
        if self._spool is None:
            if self._pos > len(self._head):
                raise InputError(
                    f"{_STDIN} was already read; it can be read only once (save it to a file)"
                )
            self._spool = cast(BinaryIO, tempfile.TemporaryFile(prefix="lstmshape-stdin-"))
            self._spool.write(self._head)
            self._spool.flush()

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        if stop <= start:
            return
        dest = _bytes_of(out)
        if axis != 0:
            self._read_spooled(start, stop, axis, dest)
            return
        self._read_bytes(start * self._inner(0), dest)

    def _read_bytes(self, lo: int, dest: memoryview) -> None:
        """Data bytes `lo:lo + len(dest)`: those already consumed replayed, the rest read
        from the stream (skipping what lies before them)."""
        hi = lo + len(dest)
        kept = min(hi, self._pos) - lo
        if kept > 0:
            self._replay(lo, dest[:kept])
        if hi > self._pos:
            self._skip_to(max(lo, self._pos))
            self._consume(dest[max(kept, 0) :])

    def _read_spooled(self, start: int, stop: int, axis: int, dest: memoryview) -> None:
        """A block along another axis: one run per index of the axes before it, read from
        the whole stream spooled to a temporary file."""
        self.keep()
        self._skip_to(self._header.nbytes)
        assert self._spool is not None
        self._spool.flush()
        inner = self._inner(axis)
        run, stride = (stop - start) * inner, self.shape[axis] * inner
        fd = self._spool.fileno()
        for lead in range(math.prod(self.shape[:axis])):
            where = lead * stride + start * inner
            _pread_exact(fd, dest[lead * run : (lead + 1) * run], where, _STDIN)

    def _replay(self, offset: int, view: memoryview) -> None:
        """Bytes already consumed: from the spool, or from the kept head."""
        if self._spool is not None:
            self._spool.flush()
            _pread_exact(self._spool.fileno(), view, offset, _STDIN)
        elif offset + len(view) <= len(self._head):
            view[:] = self._head[offset : offset + len(view)]
        else:
            raise InputError(
                f"{_STDIN} was already read past byte {offset}; it can be read only once "
                "(save it to a file)"
            )

    def _skip_to(self, offset: int) -> None:
        scratch = bytearray(min(_SKIP_BYTES, max(offset - self._pos, 0)))
        while self._pos < offset:
            self._consume(memoryview(scratch)[: offset - self._pos])

    def _consume(self, view: memoryview) -> None:
        """The next len(view) bytes of the stream, kept as `keep` and the head say."""
        done = 0
        while done < len(view):
            try:
                got = self._stream.readinto(view[done:])  # type: ignore[attr-defined]
            except OSError as exc:
                raise InputError(f"cannot read {_STDIN}: {_os_reason(exc)}") from None
            if not got:
                header = self._header
                raise InputError(
                    f"{_STDIN} is truncated: its header promises {header.shape} "
                    f"{header.dtype} ({header.nbytes} bytes) but only {self._pos + done} "
                    "bytes follow"
                )
            done += got
        if self._spool is not None:
            self._spool.write(view)
        elif self._pos < _HEAD_BYTES:
            self._head += view
        self._pos += len(view)

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        """Rows of the array viewed as (prod(shape[:-1]), shape[-1]), one read each (hence
        `supports_rows = False`: the engine reads a stream in blocks)."""
        width = (self.shape[-1] if self.shape else 1) * self.dtype.itemsize
        dest = _bytes_of(out)
        for k, row in enumerate(rows.tolist()):
            self._read_bytes(row * width, dest[k * width : (k + 1) * width])

    def close(self) -> None:
        """Drop the spool (the stream itself is the process's: a later open reads on)."""
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()


_stdin_cache: tuple[object, _NpyHeader, PipeStream | np.ndarray] | None = None


def _stdin_stream() -> BinaryIO:
    """Standard input as bytes, unbuffered where it can be: a buffered reader reads ahead,
    past the end of the array into whatever follows it."""
    stream = getattr(sys.stdin, "buffer", sys.stdin)
    if stream is None:
        raise InputError("no data on standard input")
    return cast(BinaryIO, getattr(stream, "raw", stream))


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """At most `size` bytes, fewer only where the stream ends."""
    parts, got = [], 0
    while got < size:
        try:
            part = stream.read(size - got)
        except OSError as exc:
            raise InputError(f"cannot read {_STDIN}: {_os_reason(exc)}") from None
        if isinstance(part, str):
            raise InputError("standard input is a text stream; pipe a binary .npy stream into it")
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _read_header(stream: BinaryIO) -> _NpyHeader:
    """The stream's .npy header, reading exactly its bytes."""
    start = _read_up_to(stream, 8)  # magic string and version
    if not start:
        raise InputError("no data on standard input")
    size_bytes = 2 if start[6:8] == b"\x01\x00" else 4
    length_field = _read_up_to(stream, size_bytes) if len(start) == 8 else b""
    length = int.from_bytes(length_field, "little") if len(length_field) == size_bytes else 0
    body = _read_up_to(stream, min(length, _MAX_HEADER_BYTES + 1))
    return _read_npy_header(io.BytesIO(start + length_field + body), _STDIN, noun="stream")


def _open_stdin(ref: ArrayRef) -> ArraySource:
    """The stream on standard input; later opens in the process get the same stream."""
    global _stdin_cache
    stream = _stdin_stream()
    if _stdin_cache is None or _stdin_cache[0] is not stream:
        header = _read_header(stream)
        _refuse_objects(_STDIN, header.dtype)
        _stdin_cache = (stream, header, _stdin_reader(stream, header))
    _, header, data = _stdin_cache
    info = ArrayInfo(ref, header.shape, header.dtype, "npy")
    if isinstance(data, np.ndarray):
        return ArraySource(info, data, reader=InMemory(data))
    return ArraySource(info, None, reader=data)


def _stdin_reader(stream: BinaryIO, header: _NpyHeader) -> PipeStream | np.ndarray:
    """A stream to read in blocks; a 0-d, empty or Fortran-order array read whole (it has
    no blocks along N), within the memory limit."""
    reader = PipeStream(stream, header)
    if header.shape and header.nbytes and not (header.fortran and len(header.shape) > 1):
        # The head is read now: a short stream (most damaged ones) is refused at once, as a
        # short file is, before any output is checked or any warning is given.
        reader._consume(memoryview(bytearray(min(header.nbytes, _HEAD_BYTES))))
        return reader
    limit = memory_limit()
    if header.nbytes > limit:
        raise InputError(
            f"{_STDIN} holds a Fortran-order array of {header.nbytes} bytes, read whole into "
            f"memory; at most {limit} bytes are (LSTMSHAPE_MAX_MEMORY); send it in C order"
        )
    flat = np.empty(header.nbytes, np.uint8)
    reader._consume(_bytes_of(flat))
    shape = header.shape
    array = flat.view(header.dtype).reshape(shape[::-1] if header.fortran else shape)
    return array.T if header.fortran else array


def rereadable(source: Any) -> None:
    """Let `source` be read again from its start (a second pass): standard input keeps
    what it reads in an anonymous temporary file from now on. Files need nothing."""
    keep = getattr(getattr(source, "reader", None), "keep", None)
    if keep is not None:
        keep()


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
        self._stream = cast(BinaryIO, getattr(sys.stdout, "buffer", sys.stdout))
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

    def _send(self, data: Any, *, flush: bool = False) -> None:
        try:
            if not self._header_sent:
                self._header_sent = True
                self._stream.write(_npy_header_bytes(self.shape, self.dtype))
            self._stream.write(data)
            if flush:
                self._stream.flush()
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
        # The header alone, when no block came (a zero-size output).
        self._send(b"", flush=True)

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
