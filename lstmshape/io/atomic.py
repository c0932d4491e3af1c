"""Atomic publishing: an output is written into a temporary file beside its target and
appears with one rename when its sink commits, or not at all.

Writing a KEY into an existing `.h5`/`.npz` copies the file to the temporary file first,
changes the copy and renames it over the original, so the original is either untouched or
wholly replaced, never half-written (an HDF5 file that is modified in place can be left
unreadable by a crash). The price is a copy of the existing file.

Writers of one target take a short lock (`_TargetLock`) to create their temporary files and
to publish; temporary files of killed writers are removed by the next one. A published file
gets the mode `open()` would give (or keeps the mode of the file it replaces), and the
rename is made durable. HDF5 and Zarr outputs carry provenance attributes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstmshape._version import __version__
from lstmshape.errors import InputError, OutputError
from lstmshape.io.base import Format, RefLike, _as_ref, _file_kind, _os_reason
from lstmshape.io.sink import ArraySink
from lstmshape.refs import ArrayRef

try:
    import fcntl
except ImportError:  # Windows: writers go unlocked (see _TargetLock)
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class _OutputPlan:
    """How an output will be written once the checks pass."""

    ref: ArrayRef  # KEY filled in for containers
    format: Format
    append_to: Path | None  # an existing container whose other arrays are kept
    replace: bool  # whether publishing may replace an existing file


def _new_mode(full: int) -> int:
    """`full` minus the umask: the mode open() (0o666) or mkdir (0o777) would give a new file
    or directory (mkstemp and mkdtemp make 0o600 and 0o700)."""
    # Reading the umask means setting it; the window is one call long.
    mask = os.umask(0)
    os.umask(mask)
    return full & ~mask


def _fsync_file(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename durable; best effort (not every platform can open a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _lock_supported() -> bool:
    return fcntl is not None


class _TargetLock:
    """An exclusive advisory lock for the writers of one target file (POSIX `flock`).

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

    Re-entrant within one sink: nested `with` blocks on the same object count.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = target.parent / f".{target.name}.lock"
        self._fd: int | None = None
        self._depth = 0

    def __enter__(self) -> _TargetLock:
        if self._depth == 0 and _lock_supported():
            self._fd = self._acquire()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):  # another user's sidecar in a sticky directory
                if _names_file(self.path, fd):
                    self.path.unlink()
            os.close(fd)  # releases the lock

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


def _temp_pattern(target: Path) -> re.Pattern[str]:
    """The names `tempfile.mkstemp` gives a writer's temporary files for `target`."""
    return re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.(?:tmp|part)")


def _remove_stale_temps(target: Path) -> None:
    """Delete the temporary files that killed writers of `target` left behind.

    A live writer holds a `flock` on each of its temporary files from the moment it made
    them (under the target lock, which the caller holds); a killed one lost its locks with
    its life. So a temporary file whose lock can be taken belongs to nobody.
    """
    if not _lock_supported():
        return
    pattern = _temp_pattern(target)
    try:
        paths = [path for path in target.parent.iterdir() if pattern.fullmatch(path.name)]
    except OSError:
        return
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live writer's (or a file system without locks: keep it)
                continue
            if _names_file(path, fd):
                with contextlib.suppress(OSError):
                    path.unlink()
        finally:
            os.close(fd)


def _write_reason(exc: OSError) -> str:
    """Why a write failed, in a few words: HDF5 buries the errno in a long message."""
    code = exc.errno
    if code is None:
        found = re.search(r"errno = (\d+),", str(exc))
        code = int(found.group(1)) if found else None
    if code == errno.EFBIG:
        return "File too large (a file size limit was reached)"
    if code in (errno.ENOSPC, errno.EDQUOT) or (exc.strerror is None and code is not None):
        return os.strerror(code)
    return _os_reason(exc)


class _FileSink(ArraySink):
    """A sink writing a temporary file beside the target, renamed over it on commit.

    `extras` are further whole arrays (KEY -> array) stored in the same container. `replan`
    checks the output again at commit, under the target lock, against the file as it is
    then (another writer may have created it, or added a KEY, meanwhile).
    """

    def __init__(
        self,
        plan: _OutputPlan,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        extras: Mapping[str, np.ndarray] | None = None,
        replan: Callable[[], _OutputPlan] | None = None,
    ) -> None:
        super().__init__(plan.ref, shape, dtype)
        self._plan = plan
        self._replan = replan or (lambda: plan)
        self._path = Path(plan.ref.path)
        self._extras = dict(extras or {})
        self._lock = _TargetLock(self._path)
        self._temps: dict[Path, int] = {}  # temporary file -> the fd holding its flock
        try:
            with self._lock:
                self._tmp = self._make_temp(".tmp")
                _remove_stale_temps(self._path)
            self._start()
        except BaseException as exc:
            self._open = False
            self._discard()
            if isinstance(exc, OSError) and not isinstance(exc, OutputError):
                raise self._failure(exc) from None
            raise

    def _make_temp(self, suffix: str) -> Path:
        """A new temporary file beside the target, locked as long as this sink lives."""
        with self._lock:
            try:
                fd, name = tempfile.mkstemp(
                    dir=self._path.parent, prefix=f".{self._path.name}.", suffix=suffix
                )
            except OSError as exc:
                raise self._failure(exc) from None
            if _lock_supported():
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._temps[Path(name)] = fd
            return Path(name)

    def _drop_temp(self, path: Path) -> None:
        """Delete a temporary file (before its lock goes, so no one else can take it)."""
        path.unlink(missing_ok=True)
        self._forget_temp(path)

    def _forget_temp(self, path: Path) -> None:
        """Stop tracking a temporary file and release its lock (it is kept on disk)."""
        fd = self._temps.pop(path, None)
        if fd is not None:
            os.close(fd)

    def _release_temps(self) -> None:
        for path in list(self._temps):
            self._drop_temp(path)

    @abstractmethod
    def _start(self) -> None:
        """Create the temporary file and write what precedes the blocks."""

    @abstractmethod
    def _close_file(self) -> None:
        """Flush and close the temporary file."""

    def _seal(self, plan: _OutputPlan) -> None:
        """Complete the temporary file for `plan` (containers take in the target's other
        arrays here)."""
        self._close_file()

    def _finish(self) -> None:
        with self._lock:
            plan = self._replan()
            self._seal(plan)
            if plan.replace and self._path.exists():
                shutil.copymode(self._path, self._tmp)  # a replaced file keeps its permissions
            else:
                self._tmp.chmod(_new_mode(0o666))
            _fsync_file(self._tmp)
            # Unlock it before it takes the target's name: HDF5 readers take a shared lock
            # on what they open. No cleaner can remove it meanwhile (we hold the target lock).
            self._forget_temp(self._tmp)
            self._publish(plan)
            _fsync_dir(self._path.parent)
        self._release_temps()

    def _publish(self, plan: _OutputPlan) -> None:
        if plan.replace:
            self._tmp.replace(self._path)
            return
        # Without --force, a hard link fails if the target appeared meanwhile: no clobbering.
        try:
            self._path.hardlink_to(self._tmp)
        except FileExistsError:
            raise InputError(f"{self._path} exists; use --force to overwrite") from None
        except OSError:  # a file system without hard links
            if self._path.exists():
                raise InputError(f"{self._path} exists; use --force to overwrite") from None
            self._tmp.replace(self._path)
            return
        self._tmp.unlink()

    def _discard(self) -> None:
        with contextlib.suppress(Exception):  # the write already failed; report that failure
            self._close_file()
        self._release_temps()

    def _failure(self, exc: OSError) -> OutputError:
        return OutputError(f"cannot write {self.target}: {_write_reason(exc)}")


def _provenance_attrs(
    inputs: Iterable[RefLike], provenance: Mapping[str, Any] | None
) -> dict[str, str]:
    """HDF5 attributes saying where a dataset came from: source, operation, options, version."""
    extra = dict(provenance or {})
    refs = [_as_ref(r) for r in inputs]
    default_source = ", ".join(
        "-" if r.is_stdio else str(ArrayRef(str(Path(r.path).absolute()), r.key)) for r in refs
    )
    attrs = {
        "source": str(extra.pop("source", None) or default_source),
        "operation": str(extra.pop("operation", "")),
        "options": json.dumps(extra.pop("options", {}), sort_keys=True, default=str),
        "version": __version__,
    }
    for name, value in extra.items():
        attrs[str(name)] = value if isinstance(value, str) else json.dumps(value, default=str)
    return attrs
