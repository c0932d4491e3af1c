"""HDF5 reads that a damaged file can turn into an endless loop inside HDF5 (a variable-length
attribute value whose global heap is broken; see tests/fuzz_corpus/h5-attribute-heap-loop),
run in a forked child with a time limit, so `inspect` can show attributes and still answer.

The child does the read and sends the result back as JSON; a child that does not answer in
`GUARD_SECONDS` is killed and the read reported as failed. Where there is no `fork` (Windows)
the read runs in this process, unguarded.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import time
import warnings
from collections.abc import Callable
from typing import Any

from lstmshape.io.base import _one_line

GUARD_SECONDS = 5.0


class GuardedReadError(Exception):
    """The guarded read failed, or did not finish in time (the message says which)."""


def run_guarded(task: Callable[[], Any], timeout: float = GUARD_SECONDS) -> Any:
    """`task()` (which returns JSON-ready data) in a forked child; its result, or
    GuardedReadError."""
    if not hasattr(os, "fork"):
        return task()
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():  # Python 3.12 warns about fork() beside other threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read_fd)
            try:
                payload = {"ok": task()}
            except BaseException as exc:
                payload = {"error": _one_line(exc)}
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(json.dumps(payload, default=str).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        data = _read_until(read_fd, time.monotonic() + timeout)
    finally:
        os.close(read_fd)
        if data is None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if data is None:
        raise GuardedReadError(f"HDF5 did not answer within {timeout:g} s (a damaged file?)")
    try:
        payload = json.loads(data or b"{}")
    except ValueError:
        payload = {}
    if "ok" not in payload:
        raise GuardedReadError(payload.get("error", "the reading process failed"))
    return payload["ok"]


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything the child writes before it closes the pipe; None past the deadline."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
