"""Zarr outputs checked and planned, before any work and again at commit (`_ZarrPlan`).

A plan says whether the array makes a new store (or replaces one under `--force`) or goes
into an existing group store. Planning is done under the store's target lock, after the
store was recovered from an interrupted replacement (`zarr_publish.recover_interrupted`),
so every writer sees the store as the last complete write left it.

An output never goes through a symbolic link inside the store (allowed or not: zarr would
write wherever the link points), and a KEY is a node path inside the store: `.` and `..`
are not node names. A store path that is itself a symlink to a directory is written where
the link points, and the link stays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lstmshape.errors import InputError
from lstmshape.io.base import (
    RefLike,
    _check_output_dir,
    _is_zarr,
    _one_line,
    _refuse_input_as_output,
)
from lstmshape.io.sidefiles import _TargetLock
from lstmshape.io.zarr import (
    _display_key,
    _find_array,
    _is_array,
    _node_path,
    _open_root,
    _path_key,
    _store_kind,
    _zarr_key_state,
)
from lstmshape.io.zarr_publish import recover_interrupted
from lstmshape.refs import ArrayRef

#: Files zarr writes (or reads to decide what to write) in a group's directory.
_METADATA = ("zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata")


@dataclass(frozen=True)
class _ZarrPlan:
    """How a `.zarr` output is written: `mode` is 'new' (a new store, or a store replaced
    under force) or 'add' (an array put into an existing group store)."""

    ref: ArrayRef
    store: Path  # where the store is written (a symlink's target when ref.path is one)
    key: str  # node path in the store; '' = the root array
    mode: str
    replace_existing: bool  # the target (store or array) exists and is replaced
    zarr_format: int = 3


def _other_zarr_array(key: str) -> Callable[[ArrayRef], bool]:
    """Whether an input that is the output's store names another array of it (only the
    output's array is replaced), or is no Zarr store at all."""

    def other(inp: ArrayRef) -> bool:
        if not _is_zarr(inp):
            return True
        try:
            in_key = _node_path(_find_array(inp))  # '' for a root array
        except InputError:
            return False
        return bool(key and in_key and in_key != key and not in_key.startswith(key + "/"))

    return other


def _check_key(ref: ArrayRef, key: str) -> None:
    if ref.key is not None and not key:
        raise InputError(f"cannot write {ref}: KEY must name an array")
    if any(part in (".", "..") for part in key.split("/")):
        raise InputError(
            f"cannot write {ref}: a Zarr KEY is a node path inside the store; "
            "'.' and '..' are not node names"
        )


def _refuse_links_inside(out: ArrayRef, store: Path, key: str) -> None:
    """Refuse a symlink on the way to KEY inside the store, or where zarr writes metadata:
    zarr would write wherever it points."""
    parts = [part for part in key.split("/") if part]
    here = store
    for depth in range(len(parts) + 1):
        if depth:
            here = here / parts[depth - 1]
        for path in [here] * bool(depth) + [here / name for name in _METADATA]:
            if path.is_symlink():
                inside = path.relative_to(store).as_posix()
                raise InputError(
                    f"cannot write {out}: {inside} is a symbolic link inside the store; "
                    "lstmshape writes only into the named store"
                )
        if not here.is_dir():
            return


def _store_path(ref: ArrayRef) -> Path:
    """Where the store goes: its path, or the directory a symlink there names."""
    store = _check_output_dir(ref)
    if store.is_symlink() and store.is_dir():
        return Path(os.path.realpath(store))
    return store


def _plan_zarr_output(ref: ArrayRef, *, force: bool, inputs: Iterable[RefLike]) -> _ZarrPlan:
    store = _store_path(ref)
    key = _path_key(ref.key)
    _check_key(ref, key)
    out = ArrayRef(ref.path, _display_key(key))
    _refuse_input_as_output(out, inputs, other_array=_other_zarr_array(key))
    with _TargetLock(store):
        recover_interrupted(store)
        return _plan_store(ref, out, store, key, force)


def _plan_store(ref: ArrayRef, out: ArrayRef, store: Path, key: str, force: bool) -> _ZarrPlan:
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
    _refuse_links_inside(out, store, key)
    root = _open_root(ref.path)
    if not key or _is_array(root):
        if not force:
            what = "" if not key else " (it holds a single array, not a group)"
            raise InputError(f"{ref.path} exists{what}; use --force to overwrite")
        return _ZarrPlan(out, store, key, "new", replace_existing=True)
    try:
        state = _zarr_key_state(root, key)
    except Exception as exc:  # damaged metadata on the way: zarr raises many types
        raise InputError(f"cannot read {out}: {_one_line(exc)}") from None
    if state == "group":
        raise InputError(f"cannot write {out}: {_display_key(key)} is a group; name an array")
    if state == "blocked":
        raise InputError(f"cannot write {out}: a parent of {_display_key(key)} is an array")
    if state == "array" and not force:
        raise InputError(f"{out} exists; use --force to overwrite")
    fmt = int(getattr(root.metadata, "zarr_format", 3))
    return _ZarrPlan(out, store, key, "add", replace_existing=state == "array", zarr_format=fmt)
