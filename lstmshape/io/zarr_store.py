"""The directory store Zarr inputs are read through: zarr's `LocalStore`, but every key is
checked before its file is opened.

A store is a directory of small files, and a store handed over by someone else can hold
symbolic links: to another store, to any file the user can read, to `/dev/zero` (a chunk
that never ends) or to a FIFO (a read that never returns). As for HDF5 external links, a
symlink inside the store is refused unless `--allow-external` is given (the store's own path
may be a link: the user named it); anything that is not a regular file or a directory (a
FIFO, a device, also reached through an allowed link) is always refused.

This module imports zarr at the top: `lstmshape.io.zarr` loads it for `.zarr` paths only.
It is a module of its own so that the store pickles by reference for dask workers.
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zarr.storage import LocalStore

from lstmshape.io.base import _file_kind

_HINT = "lstmshape reads only inside the store unless --allow-external is given"


class StoreEntryError(ValueError):
    """A key of a store names a symbolic link (not allowed here) or no regular file."""


def check_entry(root: Path, key: str, allow_links: bool) -> None:
    """Refuse `key` when a part of its path inside `root` is a symbolic link (unless
    `allow_links`) or its file is neither a regular file nor a directory. A missing key
    passes: the store reports it missing as usual."""
    path = root
    parts = [part for part in key.split("/") if part]
    for depth, part in enumerate(parts, start=1):
        path = path / part
        try:
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                if not allow_links:
                    where = "/".join(parts[:depth])
                    raise StoreEntryError(
                        f"{where} is a symbolic link to {path.readlink()}; {_HINT}"
                    )
                mode = path.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            return
        kind = _file_kind(mode)
        if kind not in (None, "a directory"):
            raise StoreEntryError(f"{'/'.join(parts[:depth])} is {kind}, not a regular file")


class InsideStore(LocalStore):
    """A read-only `LocalStore` that refuses symlinks (unless `allow_links`) and anything
    but regular files, key by key, before opening them (see the module docstring)."""

    def __init__(self, root: Path | str, *, allow_links: bool = False) -> None:
        super().__init__(root, read_only=True)
        self.allow_links = allow_links

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other) and self.allow_links == getattr(other, "allow_links", None)

    def get_sync(self, key: str, *, prototype: Any = None, byte_range: Any = None) -> Any:
        check_entry(self.root, key, self.allow_links)
        return super().get_sync(key, prototype=prototype, byte_range=byte_range)

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        check_entry(self.root, key, self.allow_links)
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(
        self, prototype: Any, key_ranges: Iterable[tuple[str, Any]]
    ) -> list[Any]:
        ranges = list(key_ranges)
        for key, _ in ranges:
            check_entry(self.root, key, self.allow_links)
        return list(await super().get_partial_values(prototype, ranges))

    async def exists(self, key: str) -> bool:
        check_entry(self.root, key, self.allow_links)
        return await asyncio.to_thread((self.root / key).is_file)
