"""Putting a finished Zarr store (or one array directory of a store) in place, so that a
kill at any moment leaves the old one or the new one, never neither.

A directory cannot be renamed over a non-empty one. Where the system can swap two paths in
one step (Linux `renameat2(RENAME_EXCHANGE)`), the new directory and the old one trade
places and the old one, now at the writer's temporary name, is deleted: a writer killed
before deleting it leaves a stale temporary directory, which the next writer removes.
Elsewhere the old directory is first moved into a locked `.NAME.<8 random characters>.old`
directory beside the store together with a note of where it came from, then the new one is
renamed in; a writer killed between those two renames leaves the old data there, and the
next writer of the store (`recover_interrupted`) puts it back when nothing took its place.

Every step runs under the store's target lock (`sidefiles._TargetLock`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
from pathlib import Path

from lstmshape.errors import InputError
from lstmshape.io.sidefiles import _lock_supported, make_temp, side_stem

try:
    import fcntl
except ImportError:  # Windows: nothing is locked, nothing is recovered
    fcntl = None  # type: ignore[assignment]

_ASIDE = ".old"
_OLD, _ORIGIN = "x", "origin"


def _exchange(source: Path, target: Path) -> bool:
    """Swap `source` and `target` in one step; False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)  # glibc 2.28+
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    done = renameat2(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), rename_exchange)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # file system or kernel
        return False
    raise OSError(code, os.strerror(code), str(target))


def put_in_place(source: Path, target: Path, *, store: Path, replace: bool) -> None:
    """Move the directory `source` to `target` (the store, or an array inside `store`).

    An existing `target` is replaced only with `replace`; otherwise it is refused. The old
    `target` is deleted once the new one is in place.
    """
    exists = target.exists() or target.is_symlink()
    if exists and not replace:
        raise InputError(f"{target} exists; use --force to overwrite")
    if not exists:
        source.rename(target)
        return
    if _exchange(source, target):
        shutil.rmtree(source, ignore_errors=True)  # the old one, now at the temporary name
        return
    _replace_in_two_steps(source, target, store)


def _replace_in_two_steps(source: Path, target: Path, store: Path) -> None:
    aside, fd = make_temp(store, _ASIDE, directory=True)
    try:
        origin = target.relative_to(store).as_posix() if target != store else ""
        (aside / _ORIGIN).write_text(origin, encoding="utf-8")
        target.rename(aside / _OLD)
        try:
            source.rename(target)
        except BaseException:
            with contextlib.suppress(OSError):  # put the old one back
                (aside / _OLD).rename(target)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        os.close(fd)


def recover_interrupted(store: Path) -> None:
    """Put back the old store (or array) that a writer killed between the two renames of a
    replacement left aside, when nothing took its place; drop it otherwise. Directories
    of live writers (locked) are left alone. The caller holds the store's target lock."""
    if not _lock_supported():
        return
    prefix, parent = f".{side_stem(store)}.", store.parent
    try:
        names = [p for p in parent.iterdir() if _is_aside(p.name, prefix)]
    except OSError:
        return
    for aside in names:
        _recover_one(aside, store)


def _is_aside(name: str, prefix: str) -> bool:
    middle = name[len(prefix) : -len(_ASIDE)]
    return name.startswith(prefix) and name.endswith(_ASIDE) and len(middle) == 8


def _recover_one(aside: Path, store: Path) -> None:
    try:
        fd = os.open(aside, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer's
            return
        old, target = aside / _OLD, _origin(aside, store)
        if os.path.lexists(old):
            if target is None:  # no note we can trust: keep the data where it is
                return
            if not os.path.lexists(target):
                try:
                    old.rename(target)
                except OSError:  # its group is gone too: keep the data where it is
                    return
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        os.close(fd)


def _origin(aside: Path, store: Path) -> Path | None:
    """Where the data in `aside` came from: the store or a path inside it (None: unknown)."""
    try:
        origin = (aside / _ORIGIN).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    parts = origin.split("/") if origin else []
    if any(part in ("", ".", "..") for part in parts):
        return None
    return store.joinpath(*parts)
