"""HDF5 objects that read other files: external links, virtual datasets whose sources are
other files, datasets with external raw storage.

Inputs may use them only inside `allow_external()` (`--allow-external`); outputs never
follow an external link. h5py is imported where used (it is slow to import).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from lstmshape.errors import InputError
from lstmshape.io.base import _listing, _one_line, _text

# Whether they are allowed in this context (the dask engine hands the answer to its workers).
_allow_external: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "lstmshape_allow_external", default=False
)
_EXTERNAL_HINT = "lstmshape reads only the named file unless --allow-external is given"
_MAX_LINK_DEPTH = 16  # HDF5's own limit on nested soft/external link traversals


@contextlib.contextmanager
def allow_external(allowed: bool = True) -> Iterator[None]:
    """Let HDF5 inputs read other files (external links, virtual datasets whose sources are
    other files, datasets with external raw storage) inside the `with` block.

    By default such inputs are refused: a file handed over by someone else could otherwise
    make lstmshape read any file the user can read, or block on a FIFO. Outputs never
    follow an external link, allowed or not.
    """
    token = _allow_external.set(allowed)
    try:
        yield
    finally:
        _allow_external.reset(token)


def external_allowed() -> bool:
    """Whether this context lets HDF5 inputs read other files (`allow_external`)."""
    return _allow_external.get()


def _h5_external_link(f: Any, key: str, depth: int = 0) -> str | None:
    """The first external link on the way to `key`, described, or None; soft links are
    followed by their target paths, so nothing outside `f` is opened to find out.

    Each step looks one name up in the group reached so far, so a KEY as deep as the file
    allows costs one lookup per level (a lookup from the root per level would cost the
    square of the depth).
    """
    import h5py

    node, here = f, ""
    parts = [p for p in key.split("/") if p]
    for index, part in enumerate(parts):
        parent, here = here, f"{here}/{part}"
        link = node.get(part, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            return f"{here} is an external link to {link.filename}:{link.path}"
        if isinstance(link, h5py.SoftLink) and depth < _MAX_LINK_DEPTH:
            target = link.path if link.path.startswith("/") else f"{parent}/{link.path}"
            found = _h5_external_link(f, target, depth + 1)
            if found is not None:
                return found
        if index + 1 == len(parts):
            return None
        node = node.get(part)
        if not isinstance(node, h5py.Group):  # a dataset (or a dangling soft link) midway
            return None
    return None


def _refuse_external_links(f: Any, path: str, key: str) -> None:
    if _allow_external.get():
        return
    try:
        link = _h5_external_link(f, key)
    except (KeyError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot read {path}:{key}: {_one_line(exc)}") from None
    if link is not None:
        raise InputError(f"{path}:{key}: {link}; {_EXTERNAL_HINT}")


def _refuse_external_data(f: Any, where: str, dset: Any) -> None:
    """Refuse a dataset whose data lives in other files (unless allowed)."""
    if _allow_external.get():
        return
    reason = None
    if dset.file.id != f.id:  # reached through a link that the path check did not see
        reason = f"lives in another file ({_text(dset.file.filename)})"
    elif dset.is_virtual:
        files = sorted({_text(s.file_name) for s in dset.virtual_sources()} - {"."})
        if files:
            reason = f"is a virtual dataset reading other files ({_listing(files)})"
    if reason is None and dset.external:
        names = [_text(name) for name, *_ in dset.external]
        reason = f"keeps its data in other files ({_listing(names)})"
    if reason is not None:
        raise InputError(f"{where} {reason}; {_EXTERNAL_HINT}")
