"""Fast block and row readers behind `io.ArraySource`: positioned reads into reused buffers.

The streaming engine (`lstmshape.stream`) reads an input in blocks of samples into buffers it
allocates once, and `last`/`first` read single (sample, timestep) rows. Each stored layout has
a reader that does this with as few copies and system calls as the format allows:

- `FileArray`: a C-order array at a byte offset of a file (a `.npy` file, a stored `.npz`
  member, a contiguous unfiltered HDF5 dataset). A block along axis 0 is one `preadv` into
  the caller's buffer; along axis k it is one read per index of the axes before k (T reads
  for a block of samples of a time-major (T, N, F) file). A block already in the page
  cache can instead be used in place (`map_block`): its pages are mapped up front and
  dropped from the process again by `unmap_block`. A map is never kept for the whole run,
  as `np.load(mmap_mode="r")` does: every page it touches stays in the resident set (4 GiB
  of RSS for a 4 GiB input), and a cold gather through a map reads the whole file
  (read-around of each fault).
- `ChunkedFile`: an unfiltered chunked HDF5 dataset read straight from the file, the chunk
  byte offsets taken once from the HDF5 chunk index (h5py's `read_direct` holds the GIL and
  reaches about 60% of a plain read; see bench/RESULTS.md).
- `ZipStream`: a deflated `.npz` member, decompressed in order block by block.
- `H5Direct`: any other HDF5 dataset (filters, external storage), through `read_direct`.
- `InMemory`: an array already in memory or memory-mapped (standard input, Fortran order).

Row reads (`read_rows`) sort the rows in file order, merge file-adjacent ones, and first try
each run with `RWF_NOWAIT` (served only from the page cache); runs that would block are then
read by a pool of threads, so a cold disk sees many requests at once instead of one.

h5py is never imported here: `io` passes the dataset objects in.
"""

from __future__ import annotations

import contextlib
import errno
import math
import mmap
import os
import threading
import zipfile
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError

Array = npt.NDArray[Any]
IndexArray = npt.NDArray[np.int64]

__all__ = [
    "ChunkedFile",
    "FileArray",
    "H5Direct",
    "InMemory",
    "Joined",
    "Reader",
    "ZipStream",
    "aligned_buffer",
]

_PAGE = 4096
# Runs that miss the page cache are read by up to this many threads: a virtual disk serves
# random 4 KiB reads about 8x faster at a queue depth of 32 than one at a time.
_MAX_READ_THREADS = 32
_RUNS_PER_THREAD = 16
# After this many consecutive page-cache misses the cached pass gives up (the file is cold).
_MAX_MISS_STREAK = 64
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux 5.14+; Python 3.13 names it


class Reader(Protocol):
    """What the engine needs of a stored array beyond its shape: reads into given buffers.

    `read_into` fills the C-contiguous `out` (shape: the array's, `stop - start` along
    `axis`). `read_rows` fills `out` (m, shape[-1]) with rows of the array viewed as
    (prod(shape[:-1]), shape[-1]); `supports_rows` says whether it does so without reading
    the rest. `background` says whether reads may run in another thread while the caller
    computes (they release the GIL). `align[axis]` is the storage unit along each axis:
    blocks that are multiples of it read each stored chunk once.
    """

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    background: bool
    supports_rows: bool

    def align(self, axis: int) -> int: ...

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None: ...

    def read_rows(self, rows: IndexArray, out: Array) -> None: ...

    def close(self) -> None: ...


def aligned_buffer(nbytes: int) -> Array:
    """A page-aligned uint8 buffer of `nbytes` (reads into aligned memory copy fastest)."""
    raw = np.empty(nbytes + _PAGE, dtype=np.uint8)
    skip = (-raw.ctypes.data) % _PAGE
    return raw[skip : skip + nbytes]


def _bytes_of(out: Array) -> memoryview:
    if not out.flags.c_contiguous:
        raise ValueError("reads go into C-contiguous buffers")
    return memoryview(out.reshape(-1).view(np.uint8))


# ----------------------------------------------------------------------------- positioned reads


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
            raise InputError(f"cannot read {where}: {exc.strerror or exc}") from None
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
    in_threads([lambda part=part: _read_runs(fd, part, dest, where) for part in parts])


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
                    raise InputError(f"cannot read {self.path}: {exc.strerror}") from None
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


# ----------------------------------------------------------------------------- readers


class FileArray:
    """A C-order array stored contiguously at byte `offset` of the file `path`."""

    background = True
    supports_rows = True

    def __init__(self, path: str, offset: int, shape: tuple[int, ...], dtype: Any, where: str):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.offset = int(offset)
        self.where = where
        self._file = _FileHandle(path)
        self._map: mmap.mmap | None = None
        # Mapped blocks need page-cache probes (RWF_NOWAIT) and aligned data.
        aligned = self.offset % max(self.dtype.alignment, 1) == 0
        self.maps = hasattr(mmap, "MADV_DONTNEED") and bool(_NOWAIT) and aligned

    def align(self, axis: int) -> int:
        return 1

    def _inner(self, axis: int) -> int:
        return math.prod(self.shape[axis + 1 :]) * self.dtype.itemsize

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        """One read per index of the axes before `axis` (one read for axis 0)."""
        dest = _bytes_of(out)
        inner = self._inner(axis)
        run = (stop - start) * inner
        if run == 0:
            return
        stride = self.shape[axis] * inner
        fd = self._file.fd()
        base = self.offset + start * inner
        for lead in range(math.prod(self.shape[:axis])):
            _pread_exact(fd, dest[lead * run : (lead + 1) * run], base + lead * stride, self.where)

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        row_bytes = self._inner(len(self.shape) - 2) if len(self.shape) > 1 else 0
        m = rows.size
        if m == 0 or row_bytes == 0:
            return
        file_off = self.offset + rows.astype(np.int64) * row_bytes
        dest_off = np.arange(m, dtype=np.int64) * row_bytes
        length = np.full(m, row_bytes, dtype=np.int64)
        fd = self._file.fd("rows")
        scatter_reads(fd, file_off, dest_off, length, _bytes_of(out), self.where)

    # -- mapped blocks: pages already in the page cache are used where they are --------

    def _runs(self, start: int, stop: int, axis: int) -> list[tuple[int, int]]:
        """(file offset, bytes) of each contiguous run of a block along `axis`."""
        inner = self._inner(axis)
        run, stride = (stop - start) * inner, self.shape[axis] * inner
        base = self.offset + start * inner
        return [(base + lead * stride, run) for lead in range(math.prod(self.shape[:axis]))]

    def cached(self, start: int, stop: int, axis: int) -> bool:
        """Whether the block's pages are in the page cache (sampled without waiting).

        A file that shrank reads as not cached, so the block goes through `read_into`,
        which reports the truncation instead of faulting on a page past the end.
        """
        if not _NOWAIT or stop <= start:
            return False
        runs = self._runs(start, stop, axis)
        picks = runs if len(runs) <= 4 else [runs[0], runs[len(runs) // 2], runs[-1]]
        probes = [o + k * (n - 1) // 3 for o, n in picks for k in range(4)]
        fd, one = self._file.fd(), bytearray(1)
        try:
            return all(os.preadv(fd, [one], probe, _NOWAIT) == 1 for probe in probes)
        except OSError:  # would block, or the file system cannot say
            return False

    def _mapping(self) -> mmap.mmap:
        if self._map is None:
            self._map = mmap.mmap(self._file.fd(), 0, access=mmap.ACCESS_READ)
        return self._map

    def map_block(self, start: int, stop: int, axis: int) -> Array:
        """A read-only view of the block in a map of the file, its pages mapped up front.

        Costs a page-table update per page instead of a copy per byte; `unmap_block` drops
        the pages from the resident set again (they stay in the page cache).
        """
        mapping = self._mapping()
        self._advise(start, stop, axis, _POPULATE_READ)
        inner = self._inner(axis)
        shape = (*self.shape[:axis], stop - start, *self.shape[axis + 1 :])
        full = [math.prod(self.shape[k + 1 :]) * self.dtype.itemsize for k in range(len(shape))]
        return np.ndarray(
            shape, self.dtype, buffer=mapping, offset=self.offset + start * inner, strides=full
        )

    def unmap_block(self, start: int, stop: int, axis: int) -> None:
        """Drop a mapped block's pages from this process (not from the page cache)."""
        self._advise(start, stop, axis, mmap.MADV_DONTNEED)

    def _advise(self, start: int, stop: int, axis: int, advice: int) -> None:
        mapping, page = self._mapping(), mmap.PAGESIZE
        for offset, nbytes in self._runs(start, stop, axis):
            lo = offset - offset % page
            hi = min(len(mapping), -(-(offset + nbytes) // page) * page)
            if hi <= lo:
                continue
            try:
                mapping.madvise(advice, lo, hi - lo)
            except OSError:  # MADV_POPULATE_READ needs Linux 5.14: the kernel faults them in
                if advice != _POPULATE_READ:
                    raise
                return

    def close(self) -> None:
        mapping, self._map = self._map, None
        if mapping is not None:
            with contextlib.suppress(BufferError):  # views still alive unmap when collected
                mapping.close()
        self._file.close()


class ChunkedFile:
    """An unfiltered chunked HDF5 dataset, its chunks read from the file at their offsets.

    `chunk_offsets()` gives the byte offset of every chunk, indexed by chunk grid position
    (-1 for a chunk never written, which reads as `fill`); it is called on first use.
    """

    background = True
    supports_rows = True

    def __init__(
        self,
        path: str,
        shape: tuple[int, ...],
        dtype: Any,
        chunks: tuple[int, ...],
        chunk_offsets: Callable[[], IndexArray],
        fill: Any,
        where: str,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.chunks = tuple(int(c) for c in chunks)
        self.where = where
        self._fill = fill
        self._offsets_of = chunk_offsets
        self._offsets: IndexArray | None = None
        self._file = _FileHandle(path)
        self._scratch: Array | None = None
        self._whole: FileArray | bool | None = False  # False: not looked at yet

    @property
    def contiguous(self) -> FileArray | None:
        """The dataset as one run of bytes, when its chunks hold whole samples and lie back
        to back in order (as h5py writes them): it then reads like a `.npy` file."""
        if self._whole is False:
            self._whole = self._as_file_array()
        return self._whole  # type: ignore[return-value]

    def _as_file_array(self) -> FileArray | None:
        if self.chunks[1:] != self.shape[1:] or math.prod(self.shape) == 0:
            return None
        flat = self.offsets.reshape(-1)
        expected = flat[0] + np.arange(flat.size, dtype=np.int64) * self.chunk_bytes
        if flat[0] < 0 or not np.array_equal(flat, expected):
            return None
        return FileArray(self._file.path, int(flat[0]), self.shape, self.dtype, self.where)

    @property
    def maps(self) -> bool:
        whole = self.contiguous
        return whole is not None and whole.maps

    @maps.setter
    def maps(self, value: bool) -> None:
        if self.contiguous is not None:
            self.contiguous.maps = value

    def cached(self, start: int, stop: int, axis: int) -> bool:
        whole = self.contiguous
        return whole is not None and whole.cached(start, stop, axis)

    def map_block(self, start: int, stop: int, axis: int) -> Array:
        assert self.contiguous is not None
        return self.contiguous.map_block(start, stop, axis)

    def unmap_block(self, start: int, stop: int, axis: int) -> None:
        assert self.contiguous is not None
        self.contiguous.unmap_block(start, stop, axis)

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks, strict=True))

    @property
    def offsets(self) -> IndexArray:
        if self._offsets is None:
            self._offsets = self._offsets_of()
        return self._offsets

    @property
    def chunk_bytes(self) -> int:
        return math.prod(self.chunks) * self.dtype.itemsize

    def align(self, axis: int) -> int:
        return self.chunks[axis]

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        if stop <= start:
            return
        if self.contiguous is not None:
            self.contiguous.read_into(start, stop, axis, out)
            return
        c = self.chunks[axis]
        along = range(start // c, -(-stop // c))
        grid = self.grid
        coords = np.ndindex(*grid[:axis], len(along), *grid[axis + 1 :])
        direct = axis == 0 and self.chunks[1:] == self.shape[1:]
        if direct:
            self._read_direct(start, stop, along, out)
            return
        for coord in coords:
            chunk = (*coord[:axis], coord[axis] + along.start, *coord[axis + 1 :])
            self._copy_chunk(chunk, start, stop, axis, out)

    def _read_direct(self, start: int, stop: int, along: range, out: Array) -> None:
        """Chunks holding whole samples: each is one run of `out`, read in place."""
        inner = math.prod(self.shape[1:]) * self.dtype.itemsize
        c = self.chunks[0]
        idx = np.arange(along.start, along.stop, dtype=np.int64)
        lo = np.maximum(idx * c, start)
        hi = np.minimum((idx + 1) * c, stop)
        base = self.offsets.reshape(-1)[idx]
        file_off = base + (lo - idx * c) * inner
        dest_off = (lo - start) * inner
        length = (hi - lo) * inner
        missing = base < 0
        if missing.any():
            flat = out.reshape(out.shape[0], -1)
            for a, b in zip(lo[missing] - start, hi[missing] - start, strict=True):
                flat[a:b] = self._fill
        keep = ~missing
        scatter_reads(
            self._file.fd(),
            file_off[keep],
            dest_off[keep],
            length[keep],
            _bytes_of(out),
            self.where,
            concurrent=False,
        )

    def _chunk_array(self, chunk: tuple[int, ...]) -> Array:
        """The whole stored chunk (edge chunks are stored at full size)."""
        if self._scratch is None:
            self._scratch = aligned_buffer(self.chunk_bytes)
        data = self._scratch.view(self.dtype).reshape(self.chunks)
        offset = int(self.offsets[chunk])
        if offset < 0:
            data[...] = self._fill
        else:
            _pread_exact(self._file.fd(), _bytes_of(data), offset, self.where)
        return data

    def _copy_chunk(
        self, chunk: tuple[int, ...], start: int, stop: int, axis: int, out: Array
    ) -> None:
        src, dst = [], []
        for k, (g, c, size) in enumerate(zip(chunk, self.chunks, self.shape, strict=True)):
            lo, hi = g * c, min((g + 1) * c, size)
            if k == axis:
                lo, hi = max(lo, start), min(hi, stop)
                dst.append(slice(lo - start, hi - start))
            else:
                dst.append(slice(lo, hi))
            src.append(slice(lo - g * c, hi - g * c))
        out[tuple(dst)] = self._chunk_array(chunk)[tuple(src)]

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        m = rows.size
        if m == 0:
            return
        if self.contiguous is not None:
            self.contiguous.read_rows(rows, out)
            return
        lead = np.unravel_index(rows.astype(np.int64), self.shape[:-1])
        cells = [idx // c for idx, c in zip(lead, self.chunks[:-1], strict=True)]
        inside = [idx % c for idx, c in zip(lead, self.chunks[:-1], strict=True)]
        strides = [math.prod(self.chunks[k + 1 :]) for k in range(len(self.chunks) - 1)]
        within = sum(i.astype(np.int64) * s for i, s in zip(inside, strides, strict=True))
        item, width, last = self.dtype.itemsize, self.shape[-1], self.chunks[-1]
        row_bytes = width * item
        pieces = []
        for p in range(self.grid[-1]):
            base = self.offsets[(*cells, np.full(m, p))]
            span = min(last, width - p * last) * item
            dest = np.arange(m, dtype=np.int64) * row_bytes + p * last * item
            missing = base < 0
            if missing.any():
                flat = out.reshape(-1).view(np.uint8)
                fill = np.full(span // item, self._fill, self.dtype).view(np.uint8)
                for d in dest[missing].tolist():
                    flat[d : d + span] = fill
            keep = ~missing
            count = int(keep.sum())
            pieces.append((base[keep] + within[keep] * item, dest[keep], np.full(count, span)))
        file_off, dest_off, length = (np.concatenate(parts) for parts in zip(*pieces, strict=True))
        scatter_reads(
            self._file.fd("rows"),
            file_off.astype(np.int64),
            dest_off,
            length.astype(np.int64),
            _bytes_of(out),
            self.where,
        )

    def close(self) -> None:
        if isinstance(self._whole, FileArray):
            self._whole.close()
        self._file.close()


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
            raise InputError(f"cannot read {self.where}: {exc}") from None

    def _spilled(self) -> FileArray:
        """The member decompressed once into a temporary file, read like a .npy file."""
        if self._spill is None:
            import shutil
            import tempfile

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


class H5Direct:
    """Any HDF5 dataset through h5py's `read_direct` (filtered or external storage)."""

    background = False  # h5py holds the GIL while HDF5 reads
    supports_rows = False

    def __init__(self, dataset: Any, where: str) -> None:
        self._dset = dataset
        self.shape = tuple(int(s) for s in dataset.shape)
        self.dtype = np.dtype(dataset.dtype)
        self.where = where
        self._chunks = dataset.chunks

    def align(self, axis: int) -> int:
        return int(self._chunks[axis]) if self._chunks else 1

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        if out.size == 0:
            return
        selection = (slice(None),) * axis + (slice(start, stop),)
        try:
            self._dset.read_direct(out, source_sel=selection)
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"cannot read {self.where}: {' '.join(str(exc).split())}") from None

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        lead = np.unravel_index(rows.astype(np.int64), self.shape[:-1])
        for k, index in enumerate(zip(*(i.tolist() for i in lead), strict=True)):
            out[k] = self._dset[index]

    def close(self) -> None:
        self._dset = None


class InMemory:
    """An array already in memory or memory-mapped (standard input, Fortran order)."""

    background = False
    supports_rows = True

    def __init__(self, array: Array) -> None:
        self._array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)

    def align(self, axis: int) -> int:
        return 1

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        out[...] = self._array[(slice(None),) * axis + (slice(start, stop),)]

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        out[...] = self._array[np.unravel_index(rows.astype(np.int64), self.shape[:-1])]

    def close(self) -> None:
        self._array = None  # type: ignore[assignment]


class Joined:
    """Several readers joined along `axis` (sharded inputs, `sources.MultiSource`).

    Blocks are split among the parts they span; rows go to the part holding them. Nothing is
    mapped: every block is copied, so the resident set stays bounded for any number of parts.
    """

    maps = False

    def __init__(self, parts: Sequence[Reader], offsets: Sequence[int], axis: int) -> None:
        self.parts = list(parts)
        self.offsets = [int(o) for o in offsets]
        self.axis = axis
        first = self.parts[0]
        self.shape = (*first.shape[:axis], self.offsets[-1], *first.shape[axis + 1 :])
        self.dtype = np.dtype(first.dtype)
        self.background = all(part.background for part in self.parts)
        self.supports_rows = all(part.supports_rows for part in self.parts)

    def align(self, axis: int) -> int:
        units = {part.align(axis) for part in self.parts}
        return units.pop() if len(units) == 1 else 1

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        if axis != self.axis:
            for i, part in enumerate(self.parts):
                lo, hi = self.offsets[i], self.offsets[i + 1]
                piece = np.empty(np.take(out, range(lo, hi), axis=self.axis).shape, self.dtype)
                part.read_into(start, stop, axis, piece)
                out[(slice(None),) * self.axis + (slice(lo, hi),)] = piece
            return
        for i, part in enumerate(self.parts):
            lo, hi = max(start, self.offsets[i]), min(stop, self.offsets[i + 1])
            if lo >= hi:
                continue
            where = (slice(None),) * axis + (slice(lo - start, hi - start),)
            target = out[where]
            if target.flags.c_contiguous:
                part.read_into(lo - self.offsets[i], hi - self.offsets[i], axis, target)
            else:
                piece = np.empty(target.shape, self.dtype)
                part.read_into(lo - self.offsets[i], hi - self.offsets[i], axis, piece)
                out[where] = piece

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        index = list(np.unravel_index(rows.astype(np.int64), self.shape[:-1]))
        which = np.searchsorted(self.offsets, index[self.axis], side="right") - 1
        for i, part in enumerate(self.parts):
            mine = np.flatnonzero(which == i)
            if mine.size == 0:
                continue
            local = [idx[mine] for idx in index]
            local[self.axis] = local[self.axis] - self.offsets[i]
            part_rows = np.ravel_multi_index(tuple(local), part.shape[:-1])
            got = np.empty((mine.size, self.shape[-1]), self.dtype)
            part.read_rows(part_rows.astype(np.int64), got)
            out[mine] = got

    def close(self) -> None:
        for part in self.parts:
            part.close()
