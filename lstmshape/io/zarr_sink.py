"""Zarr outputs, written atomically per array (checked and planned by `zarr_outputs`).

The array is written into a temporary directory store beside the target, `.NAME.<random>.tmp` (8
random characters), locked by the writer for as long as it lives (a killed writer's is removed
by the next writer of the store, as for the other formats), and published at commit, under
the store's target lock, after the output was planned again against the store as it is then
(another writer may have created it, or the KEY, meanwhile: with `--force` the last writer
wins).

- A new store (or one replaced under `--force`) appears whole: `zarr_publish.put_in_place`
  swaps it with the old one in one step where the system can, else in two renames that the
  next writer completes if a kill falls between them.
- A new KEY in an existing group store: the missing parent groups of KEY are created in the
  store first (tiny metadata files that stay if the write then fails), then the finished
  array directory is put in place the same way. Other arrays of the store are never
  touched. A store with consolidated metadata gets it rewritten after the rename (not
  atomic with it).
- The temporary store is created in the target's directory (the same file system), which
  must be writable.

Outputs are written in the Zarr v3 format unless the group they are added to is v2, chunked
along the axis the blocks come in (one chunk per block), and carry the same provenance
attributes as `.h5` outputs: `source`, `operation`, `options` (JSON) and `version`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.errors import OutputError
from lstmshape.io.atomic import _fsync_dir, _new_mode
from lstmshape.io.sidefiles import _remove_stale_temps, _TargetLock, make_temp
from lstmshape.io.sink import ArraySink
from lstmshape.io.zarr import _zarr
from lstmshape.io.zarr_outputs import _ZarrPlan
from lstmshape.io.zarr_publish import put_in_place

#: Largest chunk a sink makes (bytes); bigger blocks are split into several chunks.
MAX_CHUNK_BYTES = 16 * 2**20


def _chunk_extent(shape: tuple[int, ...], itemsize: int, axis: int, extent: int) -> int:
    """Chunk length along `axis` for blocks of `extent`: one chunk per block, split when
    a block is larger than MAX_CHUNK_BYTES."""
    per_index = math.prod(s for i, s in enumerate(shape) if i != axis) * itemsize
    extent = max(1, min(extent, shape[axis]))
    pieces = max(1, math.ceil(extent * per_index / MAX_CHUNK_BYTES))
    return max(1, math.ceil(extent / pieces))


def default_chunks(
    shape: tuple[int, ...], dtype: npt.DTypeLike, axis: int = 0, extent: int | None = None
) -> tuple[int, ...]:
    """Chunks that are whole along every axis but `axis`, `extent` long along it."""
    if not shape:
        return ()
    itemsize = np.dtype(dtype).itemsize
    extent = shape[axis] if extent is None else extent
    chunks = [max(1, s) for s in shape]
    chunks[axis] = _chunk_extent(shape, itemsize, axis, extent)
    return tuple(chunks)


class ZarrSink(ArraySink):
    """Writes one array into a temporary Zarr store beside the target; publishes on commit.

    The array is created on the first block, chunked along that block's axis with one
    chunk per block (unless `chunks` is given), so every block write is whole chunks.
    """

    def __init__(
        self,
        plan: _ZarrPlan,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        attrs: Mapping[str, Any],
        chunks: tuple[int, ...] | None = None,
        replan: Callable[[], _ZarrPlan] | None = None,
    ) -> None:
        super().__init__(plan.ref, shape, dtype)
        self._plan = plan
        self._replan = replan or (lambda: plan)
        self._attrs = dict(attrs)
        self._chunks = chunks
        self._array: Any = None
        self._lock = _TargetLock(plan.store)
        self._temps: list[tuple[Path, int]] = []  # temporary stores and their locks' fds
        try:
            self._tmp = self._make_temp()
            with self._lock:
                _remove_stale_temps(plan.store)
        except BaseException as exc:
            self._open = False
            self._discard()
            if isinstance(exc, OSError) and not isinstance(exc, OutputError):
                raise self._failure(exc) from None
            raise

    def _make_temp(self) -> Path:
        """A new temporary store beside the target, locked as long as this sink lives."""
        with self._lock:
            path, fd = make_temp(self._plan.store, ".tmp", directory=True)
        self._temps.append((path, fd))
        return path

    # -- the zarr array --------------------------------------------------------

    def zarr_array(self, chunks: tuple[int, ...] | None = None) -> Any:
        """The zarr array being written (created now if needed), for writers that fill it
        themselves (`dask.array.store`); call `mark_written` before `commit`."""
        if self._array is None:
            chunks = chunks or self._chunks or default_chunks(self.shape, self.dtype)
            self._array = self._guarded(self._create, chunks)
        return self._array

    def mark_written(self) -> None:
        """Declare the whole array written by someone else (see `zarr_array`)."""
        self._written = math.prod(self.shape)

    def _create(self, chunks: tuple[int, ...]) -> Any:
        zarr = _zarr()
        spec = {
            "shape": self.shape,
            "chunks": chunks,
            "dtype": self.dtype,
            "attributes": self._attrs,
        }
        fmt = self._plan.zarr_format
        if self._plan.mode == "new" and self._plan.key:
            # Never "w" or overwrite: zarr would recreate the directory, and the lock that
            # marks it as a live writer's would stay on the removed one.
            group = zarr.open_group(store=str(self._tmp), mode="w-", zarr_format=fmt)
            return group.create_array(name=self._plan.key, **spec)
        return zarr.create_array(store=str(self._tmp), zarr_format=fmt, **spec)

    # -- ArraySink hooks -------------------------------------------------------

    def _write(self, start: int, block: np.ndarray, axis: int) -> None:
        with _interrupts_deferred():
            self._write_block(start, block, axis)

    def _write_block(self, start: int, block: np.ndarray, axis: int) -> None:
        if self._array is None:
            extent = block.shape[axis] if self.shape else 0
            chunks = self._chunks or (
                default_chunks(self.shape, self.dtype, axis, extent) if self.shape else ()
            )
            self._array = self._create(chunks)
        if not self.shape:
            self._array[...] = block
            return
        if block.size == 0:
            return
        where = (slice(None),) * axis + (slice(start, start + block.shape[axis]),)
        self._array[where] = block

    def _finish(self) -> None:
        if self._array is None:
            self._array = self._create(self._chunks or default_chunks(self.shape, self.dtype))
        self._array = None
        with self._lock:
            plan = self._replan()  # the store as it is now, under the lock
            if plan.mode == "new":
                put_in_place(
                    self._as_store(plan),
                    plan.store,
                    store=plan.store,
                    replace=plan.replace_existing,
                )
            else:
                self._publish_into_group(plan)
            _fsync_dir(plan.store.parent)
        self._discard()  # what is left of the temporary stores

    def _array_dir(self) -> Path:
        """Where the finished array is in the temporary store."""
        nested = self._plan.mode == "new" and self._plan.key
        return self._tmp / self._plan.key if nested else self._tmp

    def _as_store(self, plan: _ZarrPlan) -> Path:
        """The temporary store as a whole store for `plan` ('new'): itself, or, when it
        was made to go into a group that has gone since, a new group store holding it."""
        if self._plan.mode == "new" or not plan.key:
            self._tmp.chmod(_new_mode(0o777))  # mkdtemp made it 0o700
            return self._tmp
        wrapper = self._make_temp()
        zarr = _zarr()
        zarr.open_group(store=str(wrapper), mode="w-", zarr_format=plan.zarr_format)
        self._make_parents(wrapper, plan)
        self._tmp.chmod(_new_mode(0o777))
        self._tmp.rename(wrapper / plan.key)
        wrapper.chmod(_new_mode(0o777))
        return wrapper

    def _publish_into_group(self, plan: _ZarrPlan) -> None:
        store = plan.store
        self._make_parents(store, plan)
        array = self._array_dir()
        array.chmod(_new_mode(0o777))
        put_in_place(array, store / plan.key, store=store, replace=plan.replace_existing)
        if _has_consolidated_metadata(store):
            with warnings.catch_warnings():  # "not part of the v3 specification"
                warnings.simplefilter("ignore")
                _zarr().consolidate_metadata(str(store))

    @staticmethod
    def _make_parents(store: Path, plan: _ZarrPlan) -> None:
        """Create the missing parent groups of KEY in `store`."""
        parent, _, _name = plan.key.rpartition("/")
        if parent:
            _zarr().open_group(
                store=str(store), path=parent, mode="a", zarr_format=plan.zarr_format
            )

    def _discard(self) -> None:
        self._array = None
        for path, fd in self._temps:
            shutil.rmtree(path, ignore_errors=True)
            os.close(fd)
        self._temps = []


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold an interrupt (SIGINT) back until zarr has finished writing a block.

    zarr writes on its own event-loop thread; an interrupt would stop only the wait for it,
    and writes still under way would recreate the temporary store after the sink removed
    it. The interrupt is delivered as soon as the block is written (to the handler that was
    in place), so the run still ends at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda _signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, caught[0])
        elif caught and previous == signal.SIG_DFL:
            raise KeyboardInterrupt


def _has_consolidated_metadata(store: Path) -> bool:
    if (store / ".zmetadata").exists():
        return True
    meta = store / "zarr.json"
    try:
        return bool(json.loads(meta.read_text()).get("consolidated_metadata"))
    except (OSError, ValueError):
        return False
