"""Zarr directory stores (`.zarr`) as inputs and outputs, through the zarr library.

A reference is `PATH.zarr` (the store's root array, or its only array) or `PATH.zarr:KEY`
(an array in the store's group tree, `/lstm/output` or `lstm/output`). `lstmshape.io`
hands every `.zarr` path to this module, which gives the same objects as the other
formats: `ZarrSource` reads like `io.ArraySource`, `ZarrSink` writes like `io.ArraySink`,
`list_arrays` returns `io.ArrayInfo` entries (format "zarr").

Writing is atomic per array: the array is written into a temporary directory store beside
the target and published with one directory rename when the sink commits.

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

This is the only module that imports zarr, and `lstmshape.io` imports it only for `.zarr`
paths.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError, OutputError
from lstmshape.io import (
    ArrayInfo,
    ArraySink,
    ArraySource,
    RefLike,
    _fsync_dir,
    _provenance_attrs,
)
from lstmshape.refs import ArrayRef, parse_ref

__all__ = [
    "SUFFIX",
    "ZarrSink",
    "ZarrSource",
    "check_output",
    "is_zarr_ref",
    "list_arrays",
    "open_array",
    "open_sink",
]

SUFFIX = ".zarr"
_MAX_LISTED = 20
#: Largest chunk a sink makes (bytes); bigger blocks are split into several chunks.
MAX_CHUNK_BYTES = 16 * 2**20


def _zarr() -> Any:
    import zarr

    return zarr


def is_zarr_ref(ref: RefLike) -> bool:
    """True for a `.zarr` path (any case), with or without KEY."""
    r = ref if isinstance(ref, ArrayRef) else parse_ref(ref)
    return not r.is_stdio and r.suffix == SUFFIX


def _as_ref(ref: RefLike) -> ArrayRef:
    return ref if isinstance(ref, ArrayRef) else parse_ref(ref)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return f"{shown}, … ({more} more)" if more > 0 else shown


def _path_key(key: str | None) -> str:
    """A KEY as a zarr node path: `/a/b` -> `a/b`; None, `/` and `` -> `` (the root)."""
    return "" if key is None else key.strip("/")


def _display_key(path: str) -> str | None:
    """A zarr node path as lstmshape shows KEYs: `a/b` -> `/a/b`; the root -> None."""
    return "/" + path if path else None


# ----------------------------------------------------------------------------- reading


def _store_kind(path: Path) -> str:
    """'absent', 'file', 'empty' (an empty directory), 'zarr' or 'foreign' (another dir)."""
    if not (path.exists() or path.is_symlink()):
        return "absent"
    if not path.is_dir():
        return "file"
    names = {p.name for p in path.iterdir()}
    if not names:
        return "empty"
    if names & {"zarr.json", ".zgroup", ".zarray"}:
        return "zarr"
    return "foreign"


def _open_root(path: str) -> Any:
    """The store's root node (an Array or a Group), read-only."""
    kind = _store_kind(Path(path))
    if kind == "absent":
        raise InputError(f"{path} does not exist")
    if kind == "file":
        raise InputError(f"{path} is a file, not a Zarr directory store")
    if kind in ("empty", "foreign"):
        raise InputError(f"{path} is not a Zarr store (no zarr.json, .zgroup or .zarray)")
    zarr = _zarr()
    try:
        return zarr.open(store=path, mode="r")
    except Exception as exc:  # zarr raises many types for damaged metadata
        raise InputError(f"cannot open {path} as a Zarr store: {_one_line(exc)}") from None


def _is_array(node: Any) -> bool:
    return isinstance(node, _zarr().Array)


def _node_path(node: Any) -> str:
    return str(node.path).strip("/")


def _arrays_under(group: Any) -> list[Any]:
    """Every array in `group`'s tree, sorted by path."""
    try:
        members = list(group.members(max_depth=None))
    except Exception as exc:
        raise InputError(f"cannot list {group.store_path}: {_one_line(exc)}") from None
    arrays = [node for _name, node in members if _is_array(node)]
    return sorted(arrays, key=_node_path)


def _np_dtype(array: Any) -> np.dtype[Any]:
    return np.dtype(array.dtype)


def _is_candidate(array: Any) -> bool:
    dtype = _np_dtype(array)
    return not (dtype.hasobject or dtype.kind == "T")


def _refuse_objects(where: str, array: Any) -> None:
    if not _is_candidate(array):
        raise InputError(f"{where} holds Python objects or variable-length strings; refusing")


def _compression(array: Any) -> str | None:
    try:
        codecs = [type(c).__name__ for c in (array.compressors or ())]
    except Exception:
        return None
    return ",".join(codecs) or None


def _attrs(array: Any) -> dict[str, Any]:
    try:
        return dict(array.attrs.asdict())
    except Exception:
        return {}


def _info(store: str, array: Any) -> ArrayInfo:
    return ArrayInfo(
        ArrayRef(store, _display_key(_node_path(array))),
        tuple(int(s) for s in array.shape),
        _np_dtype(array),
        "zarr",  # type: ignore[arg-type]
        chunks=tuple(int(c) for c in array.chunks),
        compression=_compression(array),
        attrs=_attrs(array),
    )


def _get_node(root: Any, ref: ArrayRef, key: str) -> Any:
    """The node at `key` in the root group, or an InputError listing the arrays."""
    try:
        return root[key]
    except KeyError:
        names = [str(_display_key(_node_path(a))) for a in _arrays_under(root)]
        holds = f"it holds: {_listing(names)}" if names else "it holds no arrays"
        raise InputError(f"{ref.path} has no array {_display_key(key)!r}; {holds}") from None
    except Exception as exc:
        raise InputError(f"cannot read {ref.path}:{_display_key(key)}: {_one_line(exc)}") from None


def _find_array(ref: ArrayRef) -> Any:
    """The array `ref` names: its KEY, the root array, or the only array in the tree."""
    root = _open_root(ref.path)
    key = _path_key(ref.key)
    if not key:
        if _is_array(root):
            _refuse_objects(ref.path, root)
            return root
        candidates = [a for a in _arrays_under(root) if _is_candidate(a)]
        names = [str(_display_key(_node_path(a))) for a in candidates]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise InputError(f"{ref.path} holds no arrays")
        raise InputError(
            f"{ref.path} holds {len(names)} arrays; name one as {ref.path}:KEY: {_listing(names)}"
        )
    if _is_array(root):
        raise InputError(f"{ref.path} holds a single array, not a group; drop ':{ref.key}'")
    node = _get_node(root, ref, key)
    where = f"{ref.path}:{_display_key(key)}"
    if not _is_array(node):
        names = [str(_display_key(_node_path(a))) for a in _arrays_under(node)]
        inside = f"name an array in it: {_listing(names)}" if names else "it holds no arrays"
        raise InputError(f"{where} is a group, not an array; {inside}")
    _refuse_objects(where, node)
    return node


class ZarrSource(ArraySource):
    """An open Zarr array: `io.ArraySource` reading through the zarr Array by slicing.

    `array` is the zarr Array itself (for `dask.array.from_zarr`).
    """

    def __init__(self, info: ArrayInfo, array: Any) -> None:
        super().__init__(info, array)

    @property
    def array(self) -> Any:
        if self._data is None:
            raise ValueError(f"{self.info.ref} is closed")
        return self._data

    def read_all(self) -> np.ndarray:
        return self._get(...)

    def _get(self, selection: Any) -> np.ndarray:
        array = self.array
        try:
            return np.asarray(array[...] if not self.shape else array[selection])
        except Exception as exc:  # a missing or damaged chunk, a vanished store
            raise InputError(f"cannot read {self.info.ref}: {_one_line(exc)}") from None

    def __repr__(self) -> str:
        return f"<ZarrSource {self.info.ref} {self.shape} {self.dtype}>"


def open_array(ref: RefLike) -> ZarrSource:
    """Open one array of a `.zarr` store for reading (`PATH.zarr` or `PATH.zarr:KEY`).

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> with open_sink(f"{d}/x.zarr:/lstm/out", (3, 2), "f4") as sink:
    ...     sink.write(0, np.arange(6).reshape(3, 2))
    >>> with open_array(f"{d}/x.zarr") as src: src.info.ref.key, src.read(1, 2).tolist()
    ('/lstm/out', [[2.0, 3.0]])
    """
    ref = _as_ref(ref)
    array = _find_array(ref)
    return ZarrSource(_info(ref.path, array), array)


def list_arrays(ref: RefLike) -> list[ArrayInfo]:
    """Every candidate array in the store (or under KEY when it names a group), by path."""
    ref = _as_ref(ref)
    root = _open_root(ref.path)
    key = _path_key(ref.key)
    if _is_array(root):
        return [_info(ref.path, _find_array(ref))]
    node = root if not key else _get_node(root, ref, key)
    if _is_array(node):
        return [_info(ref.path, _find_array(ref))]
    return [_info(ref.path, a) for a in _arrays_under(node) if _is_candidate(a)]


# ----------------------------------------------------------------------------- output checks


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


def _same_path(a: str, b: str) -> bool:
    try:
        return Path(a).samefile(b)
    except OSError:
        return False


def _input_key(inp: ArrayRef) -> str | None:
    """The node path an input names ('' for a root array); None when it cannot be told."""
    try:
        return _node_path(_find_array(inp))
    except InputError:
        return None


def _refuse_input_as_output(ref: ArrayRef, key: str, inputs: Iterable[RefLike]) -> None:
    for raw in inputs:
        inp = _as_ref(raw)
        if inp.is_stdio or not is_zarr_ref(inp) or not _same_path(inp.path, ref.path):
            continue
        in_key = _input_key(inp)
        # Another KEY of the same group store is safe: only the output's array is replaced.
        if key and in_key and in_key != key and not in_key.startswith(key + "/"):
            continue
        raise InputError(f"cannot write {ref}: it is the input {inp}; choose another output")


def _key_state(root: Any, key: str) -> str:
    """'absent', 'array', 'group' or 'blocked' (a parent of key is an array)."""
    parts = key.split("/")
    node = root
    for depth, part in enumerate(parts):
        try:
            node = node[part]
        except KeyError:
            return "absent"
        if depth < len(parts) - 1 and _is_array(node):
            return "blocked"
    return "array" if _is_array(node) else "group"


def _plan_output(ref: ArrayRef, *, force: bool, inputs: Iterable[RefLike]) -> _ZarrPlan:
    store = Path(ref.path)
    parent = store.parent
    if not parent.exists():
        raise InputError(f"cannot write {ref.path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"cannot write {ref.path}: {parent} is not a directory")
    key = _path_key(ref.key)
    if ref.key is not None and not key:
        raise InputError(f"cannot write {ref}: KEY must name an array")
    out = ArrayRef(ref.path, _display_key(key))
    _refuse_input_as_output(out, key, inputs)
    kind = _store_kind(store)
    if kind in ("absent", "empty"):
        return _ZarrPlan(out, store, key, "new", replace_existing=kind == "empty")
    if kind == "foreign":
        raise InputError(
            f"cannot write {ref.path}: it is a directory that is not a Zarr store; "
            "refusing to replace it"
        )
    if kind == "file":
        if not force:
            raise InputError(f"{ref.path} exists and is not a Zarr store; use --force to overwrite")
        return _ZarrPlan(out, store, key, "new", replace_existing=True)
    root = _open_root(ref.path)
    if not key or _is_array(root):
        if not force:
            what = "" if not key else " (it holds a single array, not a group)"
            raise InputError(f"{ref.path} exists{what}; use --force to overwrite")
        return _ZarrPlan(out, store, key, "new", replace_existing=True)
    state = _key_state(root, key)
    if state == "group":
        raise InputError(f"cannot write {out}: {_display_key(key)} is a group; name an array")
    if state == "blocked":
        raise InputError(f"cannot write {out}: a parent of {_display_key(key)} is an array")
    if state == "array" and not force:
        raise InputError(f"{out} exists; use --force to overwrite")
    fmt = int(getattr(root.metadata, "zarr_format", 3))
    return _ZarrPlan(out, store, key, "add", replace_existing=state == "array", zarr_format=fmt)


def check_output(ref: RefLike, *, force: bool = False, inputs: Iterable[RefLike] = ()) -> None:
    """Refuse a `.zarr` output before any work is done (the rules of `io.check_output`).

    A new KEY in an existing group store needs no `force`; an existing KEY, an existing
    store written without KEY, or a store whose root is an array written with a KEY does.
    A directory that is not a Zarr store is never replaced.
    """
    _plan_output(_as_ref(ref), force=force, inputs=inputs)


# ----------------------------------------------------------------------------- writing


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
            self._array = self._guarded_create(chunks or self._chunks)
        return self._array

    def mark_written(self) -> None:
        """Declare the whole array written by someone else (see `zarr_array`)."""
        self._written = math.prod(self.shape)

    def _guarded_create(self, chunks: tuple[int, ...] | None) -> Any:
        try:
            return self._create(chunks or default_chunks(self.shape, self.dtype))
        except OSError as exc:
            self.abort()
            raise self._failure(exc) from None
        except BaseException:
            self.abort()
            raise

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
        self._tmp.chmod(_new_dir_mode())  # mkdtemp made it 0o700
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

    def _failure(self, exc: OSError) -> OutputError:
        reason = exc.strerror or _one_line(exc)
        return OutputError(f"cannot write {self.target}: {reason}")


def _has_consolidated_metadata(store: Path) -> bool:
    if (store / ".zmetadata").exists():
        return True
    meta = store / "zarr.json"
    try:
        import json

        return bool(json.loads(meta.read_text()).get("consolidated_metadata"))
    except (OSError, ValueError):
        return False


def _new_dir_mode() -> int:
    """0o777 minus the umask: the mode mkdir would give."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def open_sink(
    ref: RefLike,
    shape: tuple[int, ...],
    dtype: npt.DTypeLike,
    *,
    force: bool = False,
    inputs: Iterable[RefLike] = (),
    provenance: Mapping[str, Any] | None = None,
    chunks: tuple[int, ...] | None = None,
) -> ZarrSink:
    """Open a `.zarr` output for block-wise writing (the arguments of `io.open_sink`).

    Without KEY the store's root is the array; with KEY the store is a group and the array
    sits at KEY. `chunks` overrides the one-chunk-per-block default.
    """
    ref = _as_ref(ref)
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise InputError(f"cannot write {ref}: Python objects are never stored")
    inputs = list(inputs)
    plan = _plan_output(ref, force=force, inputs=inputs)
    shape = tuple(int(s) for s in shape)
    return ZarrSink(plan, shape, dt, _provenance_attrs(inputs, provenance), chunks=chunks)
