"""Zarr directory stores (`.zarr`) as inputs, through the zarr library.

A reference is `PATH.zarr` (the store's root array, or its only array) or `PATH.zarr:KEY`
(an array in the store's group tree, `/lstm/output` or `lstm/output`). Stores are read
through `zarr_store.InsideStore`: symlinks inside a store are refused unless
`--allow-external` is given, and anything but regular files always. Stores give the
objects every format gives: `ZarrSource` reads like `ArraySource`, and listings are
`ArrayInfo` entries (format "zarr"). Writing is in `zarr_sink`.

zarr is imported inside the functions that use it, so it is loaded for `.zarr` paths only.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from lstmshape.errors import InputError
from lstmshape.io.base import ArrayInfo, ArraySource, RefLike, _as_ref, _listing, _one_line, _pick
from lstmshape.refs import ArrayRef

_SETTLE_SECONDS = 10.0  # the longest a failed read waits for zarr's others to end


def _zarr() -> Any:
    """Import zarr on first use: only `.zarr` paths need it."""
    import zarr

    return zarr


def _failed(exc: BaseException) -> str:
    """The one-line reason of a failed zarr call, once zarr's other reads have ended: a
    failed read leaves its sibling chunk reads running, and asyncio would report them on
    standard error at exit ("Task was destroyed but it is pending")."""
    from zarr.core.sync import sync

    async def wait_for_the_others() -> None:
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=_SETTLE_SECONDS)

    with contextlib.suppress(Exception):
        sync(wait_for_the_others())
    return _one_line(exc)


def _path_key(key: str | None) -> str:
    """A KEY as a zarr node path: `/a/b` -> `a/b`; None, `/` and `` -> `` (the root)."""
    return "" if key is None else key.strip("/")


def _display_key(path: str) -> str | None:
    """A zarr node path as lstmshape shows KEYs: `a/b` -> `/a/b`; the root -> None."""
    return "/" + path if path else None


def _names(arrays: list[Any]) -> list[str]:
    """The KEYs of arrays in a group tree, as messages show them."""
    return [str(_display_key(_node_path(a))) for a in arrays]


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
    from lstmshape.io.h5_links import external_allowed
    from lstmshape.io.zarr_store import InsideStore

    store = InsideStore(path, allow_links=external_allowed())
    try:
        return zarr.open(store=store, mode="r")
    except Exception as exc:  # zarr raises many types for damaged metadata
        raise InputError(f"cannot open {path} as a Zarr store: {_failed(exc)}") from None


def _is_array(node: Any) -> bool:
    return isinstance(node, _zarr().Array)


def _node_path(node: Any) -> str:
    return str(node.path).strip("/")


def _arrays_under(group: Any) -> list[Any]:
    """Every array in `group`'s tree, sorted by path."""
    try:
        members = list(group.members(max_depth=None))
    except Exception as exc:
        where = getattr(group.store, "root", group.store_path)
        raise InputError(f"cannot list {where}: {_failed(exc)}") from None
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
        "zarr",
        chunks=tuple(int(c) for c in array.chunks),
        compression=_compression(array),
        attrs=_attrs(array),
    )


def _get_node(root: Any, ref: ArrayRef, key: str) -> Any:
    """The node at `key` in the root group, or an InputError listing the arrays."""
    try:
        return root[key]
    except KeyError:
        names = _names(_arrays_under(root))
        holds = f"it holds: {_listing(names)}" if names else "it holds no arrays"
        raise InputError(f"{ref.path} has no array {_display_key(key)!r}; {holds}") from None
    except Exception as exc:
        raise InputError(f"cannot read {ref.path}:{_display_key(key)}: {_failed(exc)}") from None


def _find_array(ref: ArrayRef) -> Any:
    """The array `ref` names: its KEY, the root array, or the only array in the tree."""
    root = _open_root(ref.path)
    key = _path_key(ref.key)
    if not key:
        if _is_array(root):
            _refuse_objects(ref.path, root)
            return root
        candidates = [a for a in _arrays_under(root) if _is_candidate(a)]
        names = _names(candidates)
        return candidates[names.index(_pick(ref.path, None, names))]
    if _is_array(root):
        raise InputError(f"{ref.path} holds a single array, not a group; drop ':{ref.key}'")
    node = _get_node(root, ref, key)
    where = f"{ref.path}:{_display_key(key)}"
    if not _is_array(node):
        names = _names(_arrays_under(node))
        inside = f"name an array in it: {_listing(names)}" if names else "it holds no arrays"
        raise InputError(f"{where} is a group, not an array; {inside}")
    _refuse_objects(where, node)
    return node


def _zarr_key_state(root: Any, key: str) -> str:
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


class ZarrSource(ArraySource):
    """An open Zarr array: an `ArraySource` reading through the zarr Array by slicing.

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
            raise InputError(f"cannot read {self.info.ref}: {_failed(exc)}") from None

    def __repr__(self) -> str:
        return f"<ZarrSource {self.info.ref} {self.shape} {self.dtype}>"


def _open_zarr(ref: RefLike) -> ZarrSource:
    """Open one array of a `.zarr` store for reading (`PATH.zarr` or `PATH.zarr:KEY`).

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> from lstmshape.io import open_sink
    >>> with open_sink(f"{d}/x.zarr:/lstm/out", (3, 2), "f4") as sink:
    ...     sink.write(0, np.arange(6).reshape(3, 2))
    >>> with _open_zarr(f"{d}/x.zarr") as src: src.info.ref.key, src.read(1, 2).tolist()
    ('/lstm/out', [[2.0, 3.0]])
    """
    ref = _as_ref(ref)
    array = _find_array(ref)
    return ZarrSource(_info(ref.path, array), array)


def _list_zarr(ref: RefLike) -> list[ArrayInfo]:
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
