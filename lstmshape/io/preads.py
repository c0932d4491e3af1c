"""Positioned reads into the caller's buffers, shared by the file readers (`npy.FileArray`,
`h5_readers.ChunkedFile`).

Scattered reads (`scatter_reads`, behind row reads) sort the pieces in file order, merge
file-adjacent ones, and first try each run with `RWF_NOWAIT` (served only from the page
cache); runs that would block are then read by a pool of threads, so a cold disk sees many
requests at once instead of one.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import threading
from collections.abc import Callable, Sequence

import numpy as np

from lstmshape.errors import InputError
from lstmshape.io.base import _os_reason
from lstmshape.io.blocks import IndexArray

# Runs that miss the page cache are read by up to this many threads: a virtual disk serves
# random 4 KiB reads about 8x faster at a queue depth of 32 than one at a time.
_MAX_READ_THREADS = 32
_RUNS_PER_THREAD = 16
# After this many consecutive page-cache misses the cached pass gives up (the file is cold).
_MAX_MISS_STREAK = 64
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """One positioned read into `view`; the number of bytes read."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    data = os.pread(fd, len(view), offset)  # platforms without preadv
    view[: len(data)] = data
    return len(data)


def _pread_exact(fd: int, view: memoryview, offset: int, where: str) -> None:
    """Fill `view` from `offset`; a file that ends first is an InputError (truncated)."""
    done, size = 0, len(view)
    while done < size:
        try:
            got = _pread_into(fd, view[done:], offset + done)
        except OSError as exc:
            raise InputError(f"cannot read {where}: {_os_reason(exc)}") from None
        if got == 0:
            raise InputError(f"{where} is truncated: it ended at byte {offset + done}")
        done += got


def _merge_runs(
    file_off: IndexArray, dest_off: IndexArray, length: IndexArray
) -> tuple[IndexArray, IndexArray, IndexArray]:
    """Sort pieces by file offset and merge those adjacent both in the file and in `dest`."""
    order = np.argsort(file_off, kind="stable")
    fo, do, ln = file_off[order], dest_off[order], length[order]
    if fo.size < 2:
        return fo, do, ln
    joins = (fo[1:] == fo[:-1] + ln[:-1]) & (do[1:] == do[:-1] + ln[:-1])
    starts = np.flatnonzero(np.concatenate(([True], ~joins)))
    return fo[starts], do[starts], np.add.reduceat(ln, starts)


def _read_cached(
    fd: int, runs: list[tuple[int, int, int]], dest: memoryview
) -> list[tuple[int, int, int]]:
    """Read the runs already in the page cache; return those that would block."""
    if not _NOWAIT:
        return runs
    missed: list[tuple[int, int, int]] = []
    streak = 0
    for i, (fo, do, ln) in enumerate(runs):
        if streak >= _MAX_MISS_STREAK:
            missed.extend(runs[i:])
            break
        try:
            got = os.preadv(fd, [dest[do : do + ln]], fo, _NOWAIT)
        except BlockingIOError:
            got = 0
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                return missed + runs[i:]  # this file system cannot say; read them all
            raise
        streak = streak + 1 if got == 0 else 0
        if got < ln:
            missed.append((fo + got, do + got, ln - got))
    return missed


def scatter_reads(
    fd: int,
    file_off: IndexArray,
    dest_off: IndexArray,
    length: IndexArray,
    dest: memoryview,
    where: str,
    *,
    concurrent: bool = True,
) -> None:
    """Read pieces of a file (`length` bytes at `file_off`) into `dest` at `dest_off`.

    Pieces are read in file order, merged where adjacent. With `concurrent`, runs in the page
    cache are read first without blocking and the rest by a pool of threads.
    """
    fo, do, ln = _merge_runs(file_off, dest_off, length)
    runs = list(zip(fo.tolist(), do.tolist(), ln.tolist(), strict=True))
    if concurrent and len(runs) > _RUNS_PER_THREAD:
        runs = _read_cached(fd, runs, dest)
    if not concurrent or len(runs) <= _RUNS_PER_THREAD:
        _read_runs(fd, runs, dest, where)
        return
    threads = min(_MAX_READ_THREADS, math.ceil(len(runs) / _RUNS_PER_THREAD))
    step = math.ceil(len(runs) / threads)
    parts = [runs[i : i + step] for i in range(0, len(runs), step)]
    in_threads([functools.partial(_read_runs, fd, part, dest, where) for part in parts])


def in_threads(tasks: Sequence[Callable[[], None]]) -> None:
    """Run `tasks` in one thread each; re-raise the first failure once all have ended.

    (Plain threads: `concurrent.futures` imports `logging`, 6 ms of start-up.)
    """
    errors: list[BaseException] = []

    def guarded(task: Callable[[], None]) -> None:
        try:
            task()
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(task,), daemon=True) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _read_runs(fd: int, runs: Sequence[tuple[int, int, int]], dest: memoryview, where: str) -> None:
    for fo, do, ln in runs:
        _pread_exact(fd, dest[do : do + ln], fo, where)


class _FileHandle:
    """Two descriptors of one file, opened on first use: one read in order (the kernel's
    read-ahead helps) and one for scattered rows (read-ahead off: it would read megabytes
    around every row of a cold file)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def fd(self, kind: str = "seq") -> int:
        with self._lock:
            if kind not in self._fds:
                try:
                    fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                except OSError as exc:
                    raise InputError(f"cannot read {self.path}: {_os_reason(exc)}") from None
                advice = "POSIX_FADV_RANDOM" if kind == "rows" else "POSIX_FADV_SEQUENTIAL"
                if hasattr(os, "posix_fadvise"):
                    with contextlib.suppress(OSError):
                        os.posix_fadvise(fd, 0, 0, getattr(os, advice))
                self._fds[kind] = fd
            return self._fds[kind]

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
