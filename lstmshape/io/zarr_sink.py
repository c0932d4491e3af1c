"""Zarr outputs, written atomically per array (checked and planned by `outputs`).

The array is written into a temporary directory store beside the target and published with
one directory rename when the sink commits.

- A new store (or one replaced under `--force`) appears whole: the old store is renamed
  aside, the new one renamed in, then the old one deleted. A crash between those two
  renames leaves the old store under a hidden `.NAME.*.old` name next to it.
- A new KEY in an existing group store: the missing parent groups of KEY are created in the
  store first (tiny metadata files that stay if the write then fails), then the finished
  array directory is renamed into place. Replacing an existing KEY (`--force`) moves the
  old array aside the same way. Other arrays of the store are never touched. A store with
  consolidated metadata gets it rewritten after the rename (not atomic with it).
- The temporary store must be on the same file system as the target (it is created in the
  target's directory), and the directory must be writable.

Outputs are written in the Zarr v3 format unless the group they are added to is v2, chunked
along the axis the blocks come in (one chunk per block), and carry the same provenance
attributes as `.h5` outputs: `source`, `operation`, `options` (JSON) and `version`.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError
from lstmshape.io.atomic import _fsync_dir, _new_mode
from lstmshape.io.sink import ArraySink
from lstmshape.io.zarr import (
    _zarr,
)
from lstmshape.refs import ArrayRef

#: Largest chunk a sink makes (bytes); bigger blocks are split into several chunks.
MAX_CHUNK_BYTES = 16 * 2**20


@dataclass(frozen=True)
class _ZarrPlan:
    """How a `.zarr` output is written: `mode` is 'new' (a new store, or a store replaced
    under force) or 'add' (an array put into an existing group store)."""

    ref: ArrayRef
    store: Path
    key: str  # node path in the store; '' = the root array
    mode: str
    replace_existing: bool  # the target (store or array) exists and is replaced
    zarr_format: int = 3


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
    ) -> None:
        super().__init__(plan.ref, shape, dtype)
        self._plan = plan
        self._attrs = dict(attrs)
        self._chunks = chunks
        self._array: Any = None
        try:
            self._tmp = Path(
                tempfile.mkdtemp(
                    dir=plan.store.parent, prefix=f".{plan.store.name}.", suffix=".tmp"
                )
            )
        except OSError as exc:
            self._open = False
            raise self._failure(exc) from None

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
            group = zarr.open_group(store=str(self._tmp), mode="w", zarr_format=fmt)
            return group.create_array(name=self._plan.key, **spec)
        return zarr.create_array(store=str(self._tmp), overwrite=True, zarr_format=fmt, **spec)

    # -- ArraySink hooks -------------------------------------------------------

    def _write(self, start: int, block: np.ndarray, axis: int) -> None:
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
        self._tmp.chmod(_new_mode(0o777))  # mkdtemp made it 0o700
        if self._plan.mode == "new":
            self._publish(self._tmp, self._plan.store)
        else:
            self._publish_into_group()
        _fsync_dir(self._plan.store.parent)

    def _publish(self, source: Path, target: Path) -> None:
        """Rename `source` to `target`; an existing target is moved aside, then deleted."""
        aside: Path | None = None
        if self._plan.replace_existing and (target.exists() or target.is_symlink()):
            aside = Path(
                tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old")
            )
            target.replace(aside / "x")
        elif target.exists():
            raise InputError(f"{self._plan.ref} exists; use --force to overwrite")
        try:
            source.replace(target)
        except BaseException:
            if aside is not None:  # put the old one back
                with contextlib.suppress(OSError):
                    (aside / "x").replace(target)
                    aside.rmdir()
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def _publish_into_group(self) -> None:
        zarr = _zarr()
        store = self._plan.store
        parent, _, _name = self._plan.key.rpartition("/")
        if parent:  # create the missing parent groups
            zarr.open_group(
                store=str(store), path=parent, mode="a", zarr_format=self._plan.zarr_format
            )
        self._publish(self._tmp, store / self._plan.key)
        if _has_consolidated_metadata(store):
            with warnings.catch_warnings():  # "not part of the v3 specification"
                warnings.simplefilter("ignore")
                zarr.consolidate_metadata(str(store))

    def _discard(self) -> None:
        self._array = None
        shutil.rmtree(self._tmp, ignore_errors=True)


def _has_consolidated_metadata(store: Path) -> bool:
    if (store / ".zmetadata").exists():
        return True
    meta = store / "zarr.json"
    try:
        return bool(json.loads(meta.read_text()).get("consolidated_metadata"))
    except (OSError, ValueError):
        return False
