"""Atomic publishing: an output is written into a temporary file beside its target and
appears with one rename when its sink commits, or not at all.

Writing a KEY into an existing `.h5`/`.npz` copies the file to the temporary file first,
changes the copy and renames it over the original, so the original is either untouched or
wholly replaced, never half-written (an HDF5 file that is modified in place can be left
unreadable by a crash). The price is a copy of the existing file.

Writers of one target take a short lock (`sidefiles._TargetLock`) to create their temporary
files and to publish; temporary files of killed writers are removed by the next one. When the
target is a symlink to a file, that file is written (the link stays). A published file
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
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstmshape._version import __version__
from lstmshape.errors import InputError, OutputError
from lstmshape.io.base import Format, RefLike, _as_ref, _os_reason
from lstmshape.io.sidefiles import _remove_stale_temps, _TargetLock, make_temp
from lstmshape.io.sink import ArraySink
from lstmshape.refs import ArrayRef


@dataclass(frozen=True)
class _OutputPlan:
    """How an output will be written once the checks pass."""

    ref: ArrayRef  # KEY filled in for containers
    format: Format
    append_to: Path | None  # an existing container whose other arrays are kept
    replace: bool  # whether publishing may replace an existing file
    file: Path | None = None  # where the bytes go, when not at ref.path (a symlink's target)

    @property
    def path(self) -> Path:
        """The file that is written: `ref.path`, or the file a symlink there names."""
        return self.file or Path(self.ref.path)


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
        self._path = plan.path
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
                path, fd = make_temp(self._path, suffix)
            except OSError as exc:
                raise self._failure(exc) from None
            self._temps[path] = fd
            return path

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
