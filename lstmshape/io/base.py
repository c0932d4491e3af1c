"""What every format shares: references, descriptions, open sources, and the rules of
messages and refusals.

`ArrayInfo` describes a stored array from its headers alone; `ArraySource` is an open one,
read in blocks along an axis. The helpers put a reference, a listing or an exception into
the one-line form of the error contract, and hold the refusals every format applies alike:
for inputs, pickled data, a missing or ambiguous KEY, a missing file, an unsupported suffix;
for outputs, a missing directory, Python objects, and an output that is one of the inputs.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lstmshape.errors import InputError
from lstmshape.io.blocks import Reader
from lstmshape.refs import ArrayRef, parse_ref

if TYPE_CHECKING:  # pathlib costs milliseconds of start-up; reading needs only os
    from pathlib import Path

Format = Literal["npy", "npz", "h5", "zarr", "safetensors", "nc", "keras"]
RefLike = ArrayRef | str | os.PathLike[str]

# Suffix -> format of the single files (.zarr stores are directories, told apart by `_is_zarr`).
_FORMATS: dict[str, Format] = {
    ".npy": "npy",
    ".npz": "npz",
    ".h5": "h5",
    ".hdf5": "h5",
    ".nc": "nc",
    ".safetensors": "safetensors",
    ".keras": "keras",
}
_READ_ONLY: frozenset[Format] = frozenset({"keras"})
_FORMAT_LISTS = {
    "read": ".npy, .npz, .h5/.hdf5, .nc, .safetensors, .keras or .zarr",
    "write": ".npy, .npz, .h5/.hdf5, .nc, .safetensors or .zarr",
}
# PyTorch's own files are pickles (`torch.save`): refused by name, before a byte is read.
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt")
_PICKLE_HINT = (
    "it is a PyTorch pickle, which lstmshape never loads (unpickling runs code); convert the "
    "tensor once where torch is trusted: safetensors.torch.save_file({'x': t}, 'x.safetensors') "
    "or np.save('x.npy', t.numpy())"
)
_MAX_LISTED = 20
_COPY_BUFFER = 1 << 20


@dataclass(frozen=True)
class ArrayInfo:
    """What is known about a stored array without reading its data.

    `ref` names it exactly (the KEY filled in when it was implicit); `chunks`,
    `compression` and `attrs` are only set for HDF5/netCDF datasets and Zarr arrays (`attrs`
    also for `.safetensors`, from the header's metadata, and `.keras` weights). `dims` names
    the axes where the format does (netCDF dimensions). `stored_dtype` is the dtype on disk
    when it differs from `dtype` (a bfloat16 tensor is read as float32, exactly).
    """

    ref: ArrayRef
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    format: Format
    chunks: tuple[int, ...] | None = None
    compression: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict, compare=False)
    dims: Sequence[str] | None = field(default=None, compare=False)
    stored_dtype: str | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Size of the data in bytes (`prod(shape) * itemsize`)."""
        return math.prod(self.shape) * self.dtype.itemsize

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for `inspect --json`)."""
        return {
            "path": self.ref.path,
            "key": self.ref.key,
            "ref": str(self.ref),
            "format": self.format,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "nbytes": self.nbytes,
            "chunks": None if self.chunks is None else list(self.chunks),
            "compression": self.compression,
            "attrs": dict(self.attrs),
            "dims": None if self.dims is None else list(self.dims),
            "stored_dtype": self.stored_dtype,
        }


# ----------------------------------------------------------------------------- small helpers


def _as_ref(ref: RefLike) -> ArrayRef:
    return ref if isinstance(ref, ArrayRef) else parse_ref(ref)


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (HDF5 and numpy messages can span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _text(name: str | bytes) -> str:
    """A name for a message: h5py gives bytes for an HDF5 name that is not UTF-8."""
    return name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else name


def _os_reason(exc: OSError) -> str:
    return exc.strerror or _one_line(exc)


def _listing(names: list[str]) -> str:
    shown = ", ".join(_text(name) for name in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return f"{shown}, … ({more} more)" if more > 0 else shown


# .zarr stores are read by lstmshape.io.zarr and written by lstmshape.io.zarr_sink.
def _is_zarr(ref: ArrayRef) -> bool:
    return not ref.is_stdio and ref.suffix == ".zarr"


def _format_of(ref: ArrayRef, *, verb: Literal["read", "write"] = "read") -> Format:
    fmt = _FORMATS.get(ref.suffix)
    if ref.suffix in _PICKLE_SUFFIXES:
        raise InputError(f"cannot {verb} {ref.path}: {_PICKLE_HINT}")
    if fmt is None:
        found = ref.suffix or "no suffix"
        raise InputError(
            f"cannot {verb} {ref.path}: unsupported format ({found}); "
            f"expected {_FORMAT_LISTS[verb]}"
        )
    if verb == "write" and fmt in _READ_ONLY:
        raise InputError(
            f"cannot write {ref.path}: {ref.suffix} archives are read only; "
            f"write {_FORMAT_LISTS['write']}"
        )
    return fmt


def _normalize_key(fmt: Format, key: str | None) -> str | None:
    """One spelling per key: `/a/b` for HDF5 and netCDF, `a` (not `a.npy`) for .npz members;
    safetensors tensor names and .keras weight names as written."""
    if key is None:
        return None
    if fmt in ("h5", "nc"):
        return "/" + key.strip("/")
    if fmt == "npz":
        return key[: -len(".npy")] if key.endswith(".npy") else key
    return key


def _refuse_objects(where: str, dtype: np.dtype[Any]) -> None:
    if dtype.hasobject:
        raise InputError(f"{where} holds Python objects (pickled data); refusing to load")


def _pick(path: str, key: str | None, candidates: list[str], what: str = "arrays") -> str:
    """The candidate KEY names, or the only candidate when KEY is None."""
    if key is not None:
        if key in candidates:
            return key
        holds = f"it holds: {_listing(candidates)}" if candidates else f"it holds no {what}"
        raise InputError(f"{path} has no array {key!r}; {holds}")
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(f"{path} holds no {what}")
    raise InputError(
        f"{path} holds {len(candidates)} {what}; name one as {path}:KEY: {_listing(candidates)}"
    )


def _file_kind(mode: int) -> str | None:
    """What a file that is not a regular file is, in words (None for a regular file)."""
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def _check_input_file(path: str) -> None:
    """Refuse a missing, unreadable, empty input, or anything but a regular file, with a
    one-line message. Only regular files are opened: a FIFO would block the run forever
    and a device never ends (`-` is the way to read a stream)."""
    try:
        st = os.stat(path)  # noqa: PTH116 (no pathlib on the read path: start-up time)
        kind = _file_kind(st.st_mode)
        if kind == "a directory":
            raise InputError(f"{path} is a directory, not an array file")
        if kind is not None:
            raise InputError(
                f"{path} is {kind}, not a regular file; lstmshape reads only regular files "
                "(pipe a .npy stream into - instead)"
            )
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{path} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {_os_reason(exc)}") from None
    if st.st_size == 0:
        raise InputError(f"{path} is empty")


# ----------------------------------------------------------------------------- output rules


def _same_file(a: str, b: str) -> bool:
    """True when both paths name one file (any spelling, symlink or hard link)."""
    try:
        return os.path.samefile(a, b)  # noqa: PTH121 (no pathlib: start-up time)
    except OSError:
        return False


def _refuse_input_as_output(
    ref: ArrayRef, inputs: Iterable[RefLike], *, other_array: Callable[[ArrayRef], bool]
) -> None:
    """Refuse an output that is one of `inputs` (any spelling, symlink or hard link), unless
    `other_array(input)` says the input is another array of the same container: each format
    rewrites a container through a copy, so its other arrays stay readable."""
    for raw in inputs:
        inp = _as_ref(raw)
        if inp.is_stdio or not _same_file(inp.path, ref.path) or other_array(inp):
            continue
        raise InputError(f"cannot write {ref}: it is the input {inp}; choose another output")


def _check_output_dir(ref: ArrayRef) -> Path:
    """The output's path, refused when the directory it goes into is missing or its name is
    longer than the file system allows."""
    from pathlib import Path

    target = Path(ref.path)
    parent = target.parent
    if not parent.exists():
        raise InputError(f"cannot write {ref.path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"cannot write {ref.path}: {parent} is not a directory")
    size, limit = len(os.fsencode(target.name)), _name_max(parent)
    if size > limit:
        raise InputError(
            f"cannot write {ref.path}: its name is {size} bytes long; the file system takes "
            f"names of at most {limit} bytes"
        )
    return target


def _name_max(directory: Path) -> int:
    """The longest file name (in bytes) the file system of `directory` takes."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _refuse_object_output(ref: ArrayRef, dtype: np.dtype[Any]) -> None:
    if dtype.hasobject:
        raise InputError(f"cannot write {ref}: Python objects are never stored")


# ----------------------------------------------------------------------------- sources


class ArraySource:
    """An open stored array: `info`, `shape`, `dtype` and block reads along an axis.

    Use it as a context manager; it keeps its file open until closed.
    """

    def __init__(
        self,
        info: ArrayInfo,
        data: Any,
        close: Callable[[], None] | None = None,
        reader: Reader | None = None,
        unwritten: Callable[[int, int], Any] | None = None,
    ) -> None:
        self.info = info
        self._data = data  # an ndarray/np.memmap, an h5py.Dataset, or None: read via reader
        self._close = close
        self._reader = reader
        self._unwritten = unwritten
        self._closed = False

    @property
    def reader(self) -> Reader | None:
        """The block/row reader the streaming engine uses (`lstmshape.io.blocks.Reader`)."""
        return self._reader

    @property
    def shape(self) -> tuple[int, ...]:
        return self.info.shape

    def unwritten(self, start: int, stop: int) -> Any:
        """The fill value when indices `start:stop` along axis 0 were never written (storage
        that holds no bytes for them: they read as that value), else None."""
        return None if self._unwritten is None else self._unwritten(start, stop)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.info.dtype

    @property
    def ndim(self) -> int:
        return self.info.ndim

    @property
    def nbytes(self) -> int:
        return self.info.nbytes

    def read(self, start: int = 0, stop: int | None = None, axis: int = 0) -> np.ndarray:
        """Indices `start:stop` along `axis`, all of the other axes (a view for .npy files).

        Axis 1 serves time-major (T, N, F) data read in blocks of samples.
        """
        if not 0 <= axis < self.ndim:
            raise InputError(
                f"{self.info.ref} has shape {self.shape}; it has no axis {axis} to read along"
            )
        lo, hi, _ = slice(start, stop).indices(self.shape[axis])
        hi = max(lo, hi)
        if self._data is None and not self._closed:
            return self._read_fresh(lo, hi, axis)
        return self._get((slice(None),) * axis + (slice(lo, hi),))

    def read_all(self) -> np.ndarray:
        """The whole array (memory-mapped for .npy files, read into memory for HDF5)."""
        if isinstance(self._data, np.ndarray):
            return self._data
        if self._data is None and not self._closed and self.ndim:
            return self._read_fresh(0, self.shape[0], 0)
        return self._get(())

    def _read_fresh(self, start: int, stop: int, axis: int) -> np.ndarray:
        """Indices `start:stop` along `axis` read by the reader into a new array."""
        assert self._reader is not None
        shape = (*self.shape[:axis], stop - start, *self.shape[axis + 1 :])
        out = np.empty(shape, self.dtype)
        self._reader.read_into(start, stop, axis, out)
        return out

    def _get(self, selection: Any) -> np.ndarray:
        if self._data is None:
            raise ValueError(f"{self.info.ref} is closed")
        try:
            return np.asarray(self._data[selection])
        except OSError as exc:
            raise InputError(f"cannot read {self.info.ref}: {_one_line(exc)}") from None

    def close(self) -> None:
        """Release the file; arrays already returned stay valid."""
        self._data = None
        self._closed = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> ArraySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ArraySource {self.info.ref} {self.shape} {self.dtype}>"
