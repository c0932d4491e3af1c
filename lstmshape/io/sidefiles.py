"""The files a writer keeps beside its target: the lock sidecar `.NAME.lock`, its temporary
files and directories `.NAME.<8 random characters>.tmp|part`, and the removal of those a
killed writer left behind.

Every side name starts from `side_stem(target)`: the target's name, or, when that name is
so long that a side name would pass the file system's limit on a name, a shortened name
that ends in a digest of the full one (so it still belongs to that target alone).

A writer holds a `flock` on each temporary file or directory from the moment it makes it
(under the target lock), so one whose lock can be taken belongs to nobody: its writer was
killed. Temporary files and directories of live writers, and of other targets, are never
touched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, ClassVar

from lstmshape.errors import InputError, OutputError
from lstmshape.interrupts import Interrupted
from lstmshape.io.base import _file_kind, _name_max, _os_reason

try:
    import fcntl
except ImportError:  # Windows: writers go unlocked (see _TargetLock)
    fcntl = None  # type: ignore[assignment]

#: The most a side name adds to its stem: "." + "." + 8 random characters + ".part".
_SIDE_ROOM = 15
_DIGEST = 8


def _lock_supported() -> bool:
    return fcntl is not None


def side_stem(target: Path) -> str:
    """The stem of `target`'s side names: its name, shortened (ending in `~` and a digest of
    the whole name) when a side name would otherwise be too long for the file system.

    >>> side_stem(Path("out.npy"))
    'out.npy'
    >>> stem = side_stem(Path("x" * 250 + ".npy")); len(stem), stem[-9:]
    (240, '~70141b34')
    """
    raw = os.fsencode(target.name)
    room = _name_max(target.parent) - _SIDE_ROOM
    if len(raw) <= room:
        return target.name
    digest = hashlib.sha256(raw).hexdigest()[:_DIGEST]
    return os.fsdecode(raw[: room - _DIGEST - 1]) + "~" + digest


class _TargetLock:
    """An exclusive advisory lock for the writers of one target (POSIX `flock`).

    It is held for short moments only: while a writer creates its temporary files and clears
    stale ones, and at commit, from re-reading the target through to the rename that replaces
    it. So two writers adding KEYs to one container never copy the same old file and
    replace it one after the other (the second would drop the first's dataset); their
    computations still run side by side.

    The lock lives on a sidecar `.NAME.lock` beside the target. The holder removes it before
    letting go, and a waiter that then gets the lock on the removed file sees that the path
    names another file (or none) and tries again, so no lock file stays behind and no two
    writers ever hold it at once. A writer killed while holding it loses the lock with its
    life; the next one finds the sidecar free and removes it.

    HDF5's own file locks cannot do this: they guard a file while HDF5 has it open, and the
    container is only ever opened in a private copy; and they fail instead of waiting.
    Where `flock` is missing (Windows) or refused (some network file systems), writers go on
    unlocked: each write stays atomic, but concurrent KEYs into one container can be lost.

    Re-entrant within one thread: nested `with` blocks on locks of the same target count
    (a sink holding it at commit plans the output again, which takes it too).
    """

    # (thread, sidecar) -> [fd or None, depth]: the locks this process holds
    _held: ClassVar[dict[tuple[int, Path], list[Any]]] = {}

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = target.parent / f".{side_stem(target)}.lock"

    def __enter__(self) -> _TargetLock:
        key = (threading.get_ident(), self.path.absolute())
        held = self._held.get(key)
        if held is None:
            try:
                fd = self._acquire() if _lock_supported() else None
            except (Interrupted, KeyboardInterrupt):  # leave no sidecar behind
                self._remove_if_free()
                raise
            held = self._held[key] = [fd, 0]
        held[1] += 1
        return self

    def _remove_if_free(self) -> None:
        """Remove the sidecar unless a writer holds it (one about to lock it sees it gone)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return
        with contextlib.suppress(OSError):  # OSError from flock: another writer holds it
            if _file_kind(os.fstat(fd).st_mode) is None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._let_go(fd)
                return
        os.close(fd)

    def _let_go(self, fd: int) -> None:
        """Remove the sidecar if `fd` holds its lock, then close `fd` (releasing the lock)."""
        with contextlib.suppress(OSError):  # another user's sidecar in a sticky directory
            if _names_file(self.path, fd):
                self.path.unlink()
        os.close(fd)

    def __exit__(self, *exc: object) -> None:
        key = (threading.get_ident(), self.path.absolute())
        held = self._held[key]
        held[1] -= 1
        if held[1]:
            return
        del self._held[key]
        if held[0] is not None:
            self._let_go(held[0])

    def _acquire(self) -> int | None:
        while True:
            fd = self._open_sidecar()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # no locks on this file system: write unlocked
                os.close(fd)
                return None
            if _names_file(self.path, fd):
                return fd
            os.close(fd)  # the holder removed the sidecar as we waited: lock the new one

    def _open_sidecar(self) -> int:
        """Open (or create) the sidecar without following a link and without blocking, and
        refuse anything but a regular file there: a symlink would make every writer loop
        (the link never names the file it opened) and create the link's target, a FIFO
        would block forever."""
        # Read-only is enough for flock, and lets other users open an existing sidecar.
        flags = os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR):
                self._refuse("a symbolic link" if exc.errno == errno.ELOOP else "a directory")
            # an unwritable directory: the write itself would fail
            raise OutputError(f"cannot write {self.target}: {_os_reason(exc)}") from None
        kind = _file_kind(os.fstat(fd).st_mode)
        if kind is not None:
            os.close(fd)
            self._refuse(kind)
        return fd

    def _refuse(self, kind: str) -> None:
        raise InputError(
            f"cannot write {self.target}: its lock file {self.path} is {kind}, not a regular "
            "file; remove it and run again"
        )


def _names_file(path: Path, fd: int) -> bool:
    """True when `path` still names the open file `fd`."""
    try:
        now = path.stat(follow_symlinks=False)
    except OSError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def make_temp(target: Path, suffix: str, *, directory: bool = False) -> tuple[Path, int]:
    """A new temporary file (or directory) beside `target` and the descriptor holding its
    lock; the caller holds the target lock and closes the descriptor when done with it."""
    stem, parent = f".{side_stem(target)}.", target.parent
    if directory:
        path = Path(tempfile.mkdtemp(dir=parent, prefix=stem, suffix=suffix))
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        fd, name = tempfile.mkstemp(dir=parent, prefix=stem, suffix=suffix)
        path = Path(name)
    if _lock_supported():
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return path, fd


def _temp_pattern(target: Path) -> re.Pattern[str]:
    """The names `make_temp` gives a writer's temporary files and directories for `target`."""
    return re.compile(rf"\.{re.escape(side_stem(target))}\.[a-z0-9_]{{8}}\.(?:tmp|part)")


def _remove_stale_temps(target: Path) -> None:
    """Delete the temporary files and directories that killed writers of `target` left
    behind: those whose lock can be taken (the caller holds the target lock)."""
    if not _lock_supported():
        return
    pattern = _temp_pattern(target)
    try:
        paths = [path for path in target.parent.iterdir() if pattern.fullmatch(path.name)]
    except OSError:
        return
    for path in paths:
        _remove_if_abandoned(path)


def _remove_if_abandoned(path: Path) -> None:
    """Remove a temporary file or directory when no live writer holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer's (or a file system without locks: keep it)
            return
        if not _names_file(path, fd):
            return
        if stat.S_ISDIR(mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    finally:
        os.close(fd)
