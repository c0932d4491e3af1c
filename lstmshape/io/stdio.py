"""Standard input and output as `-`: a `.npy` stream read whole from stdin (once per
process), and one streamed to stdout block by block; a broken pipe is a quiet
`StdoutClosedError`.
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
from lstmshape.io.base import _COPY_BUFFER, ArrayInfo, ArraySource, _os_reason, _refuse_objects
from lstmshape.io.blocks import InMemory
from lstmshape.io.npyformat import (
    _as_bytes,
    _check_length,
    _npy_header_bytes,
    _NpyWriter,
    _read_npy_header,
)
from lstmshape.io.sink import ArraySink
from lstmshape.refs import ArrayRef

_STDIN = "standard input"


class StdoutClosedError(OutputError, BrokenPipeError):
    """Standard output was closed by its reader (`| head`): a BrokenPipeError, so callers
    that exit quietly on a broken pipe treat it alike."""


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
    return ArraySource(info, array, reader=InMemory(array))


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
