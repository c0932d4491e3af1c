"""Datasets of an HDF5 file found by name, with a cost that grows with the file's size and
no faster: names come from one low-level visit (no h5py object per node), and a dataset is
opened only to check that it is a candidate, in tree order, stopping as soon as the answer
is known (a file of 100,000 datasets without KEY needs two to say there is more than one).

A candidate holds data (not an empty dataspace) of a dtype without Python objects.
"""

from __future__ import annotations

from typing import Any

from lstmshape.errors import InputError
from lstmshape.io.base import (
    _MAX_LISTED,
    _listing,
    _normalize_key,
    _one_line,
    _pick,
    _refuse_objects,
)
from lstmshape.io.h5_links import _refuse_external_links
from lstmshape.refs import ArrayRef

# A dataset path: str, or bytes for an HDF5 name that is not UTF-8 (as h5py gives it); it
# goes wherever h5py took `Dataset.name` before, so it is typed as loosely.
Name = Any


def _h5_is_candidate(obj: Any) -> bool:
    return obj.shape is not None and not obj.dtype.hasobject


def _decoded(name: bytes) -> Name:
    """An HDF5 name as h5py spells it: text when it is UTF-8, else the bytes."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return name


def _h5_dataset_names(group: Any) -> list[Name]:
    """The path of every dataset under `group`, in tree order (depth first, names sorted;
    each object once, through hard links only: soft and external links are not followed,
    as h5py's `visititems` does not).

    HDF5's own visit (`H5Ovisit`) builds every object's full path from the root, which costs
    the square of the depth (10,000 nested groups: a minute); here each group's links are
    listed relative to it, and a path is joined only for a dataset.
    """
    from h5py import h5g, h5l, h5o

    base = group.name.rstrip("/")
    parents: list[tuple[int, bytes]] = [(-1, b"")]  # node -> (its parent node, its name)
    seen: set[tuple[int, int]] = set()
    found: list[Name] = []
    pending: list[tuple[Any, bytes, int]] = _links_of(group.id, 0)[::-1]
    try:
        while pending:
            gid, name, parent = pending.pop()
            if gid.links.get_info(name).type != h5l.TYPE_HARD:
                continue
            info = h5o.get_info(gid, name)
            if (info.fileno, info.addr) in seen:
                continue
            seen.add((info.fileno, info.addr))
            parents.append((parent, name))
            node = len(parents) - 1
            if info.type == h5o.TYPE_DATASET:
                found.append(_path(base, parents, node))
            elif info.type == h5o.TYPE_GROUP:
                pending.extend(_links_of(h5g.open(gid, name), node)[::-1])
    except (OSError, KeyError, RuntimeError, ValueError) as exc:
        raise InputError(f"cannot list {group.file.filename}: {_one_line(exc)}") from None
    return found


def _links_of(gid: Any, node: int) -> list[tuple[Any, bytes, int]]:
    """(group, link name, node) for every link of the group `gid`, in name order."""
    names: list[bytes] = []
    gid.links.iterate(names.append)
    return [(gid, name, node) for name in names]


def _path(base: str, parents: list[tuple[int, bytes]], node: int) -> Name:
    """The path of `node` (under the group at `base`), as h5py spells names."""
    parts: list[bytes] = []
    while node > 0:
        node, name = parents[node]
        parts.append(name)
    path = _decoded(b"/".join(reversed(parts)))
    return f"{base}/{path}" if isinstance(path, str) else base.encode() + b"/" + path


def _h5_candidates(f: Any, names: list[Name], stop_after: int | None = None) -> list[Name]:
    """The names of `names` that are candidates, in order; at most `stop_after` of them."""
    found: list[Name] = []
    for name in names:
        if _h5_is_candidate(f[name]):
            found.append(name)
            if stop_after is not None and len(found) >= stop_after:
                break
    return found


def _h5_held(f: Any, names: list[Name]) -> str:
    """What a group holds, for a message: every candidate, or the first ones and how many
    datasets there are in all (checking each of 100,000 would cost more than the answer)."""
    shown = _h5_candidates(f, names, stop_after=_MAX_LISTED + 1)
    if len(shown) <= _MAX_LISTED:
        return _listing(shown)
    return f"{_listing(shown[:_MAX_LISTED])}, … ({len(names)} datasets in all)"


def _h5_get(f: Any, ref: ArrayRef, key: str) -> Any:
    _refuse_external_links(f, ref.path, key)
    try:
        obj = f.get(key)
    except (KeyError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot read {ref.path}:{key}: {_one_line(exc)}") from None
    if obj is None:
        names = _h5_dataset_names(f)
        holds = f"it holds: {_h5_held(f, names)}" if names else "it holds no datasets"
        raise InputError(f"{ref.path} has no dataset {key}; {holds}")
    return obj


def _h5_only_candidate(f: Any, path: str) -> Name:
    """The KEY of the only candidate in the file, or an InputError naming the first ones."""
    names = _h5_dataset_names(f)
    found = _h5_candidates(f, names, stop_after=_MAX_LISTED + 1)
    if len(found) > _MAX_LISTED:
        raise InputError(
            f"{path} holds more than {_MAX_LISTED} arrays ({len(names)} datasets in all); "
            f"name one as {path}:KEY: {_listing(found[:_MAX_LISTED])}, …"
        )
    return _pick(path, None, found)  # type: ignore[arg-type]


def _h5_dataset(f: Any, ref: ArrayRef) -> tuple[Name, Any]:
    """The dataset `ref` names (KEY, or the only candidate) and its normalized KEY."""
    import h5py

    key = _normalize_key("h5", ref.key)
    if key is None:
        name = _h5_only_candidate(f, ref.path)
        return name, f[name]
    obj = _h5_get(f, ref, key)
    where = f"{ref.path}:{key}"
    if isinstance(obj, h5py.Group):
        names = _h5_dataset_names(obj)
        inside = f"name a dataset in it: {_listing(names)}" if names else "it holds no datasets"
        raise InputError(f"{where} is a group, not a dataset; {inside}")
    if not isinstance(obj, h5py.Dataset):
        raise InputError(f"{where} is not a dataset")
    _refuse_objects(where, obj.dtype)
    if obj.shape is None:
        raise InputError(f"{where} holds no data (an empty dataspace)")
    return key, obj
