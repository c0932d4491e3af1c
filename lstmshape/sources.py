"""Several input files read as one array, concatenated along N.

Sharded outputs (`part-000.npy`, `part-001.npy`, ... or `shards/*.zarr:/out`) are one
batch to lstmshape: `expand_refs` turns paths and globs (of paths, and of KEYs inside a file:
`runs.h5:/run*/lstm/output`) into a list of references,
`join_refs` wraps several into one `MultiRef`, and `open_sources` opens them as a
`MultiSource`, which reads like `io.ArraySource` (`shape`, `dtype`, `nbytes`,
`read(start, stop, axis)`, `read_all`), so the engines need not know there are several
files. Masks and lengths files are joined the same way (`load_joined`).

Every input must agree with the first on everything but N: rank, the other axes, dtype.
A mismatch is an `InputError` naming the file. A glob matches in sorted (byte) order, as a
shell in the C locale expands it: name shards with zero-padded numbers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstmshape.errors import InputError
from lstmshape.refs import ArrayRef

__all__ = [
    "MultiRef",
    "MultiSource",
    "describe_matches",
    "expand_refs",
    "join_refs",
    "key_matches",
    "load_joined",
    "n_axis",
    "open_sources",
    "parts_of",
]

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class MultiRef(ArrayRef):
    """Several arrays joined along N; `path`/`key` are the first one's (for default names).

    `text` is what the user typed (globs unexpanded), used in messages and provenance.

    >>> r = join_refs([ArrayRef("a.npy"), ArrayRef("b.npy")], text="part-*.npy")
    >>> str(r), [str(p) for p in r.parts]
    ('part-*.npy', ['a.npy', 'b.npy'])
    """

    parts: tuple[ArrayRef, ...] = ()
    text: str = ""

    def __str__(self) -> str:
        return self.text or " ".join(str(p) for p in self.parts)

    @property
    def display(self) -> str:
        return str(self)


def parts_of(ref: ArrayRef | None) -> list[ArrayRef]:
    """The single references behind `ref` (itself unless it is a MultiRef)."""
    if ref is None:
        return []
    return list(ref.parts) if isinstance(ref, MultiRef) else [ref]


def _has_glob(path: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in path)


def expand_refs(refs: Iterable[ArrayRef]) -> list[ArrayRef]:
    """Each reference as written, or every path its glob matches (sorted), and in each file
    every array its KEY glob matches (`runs.h5:/run*/lstm/output`, sorted by KEY).

    A path that exists as written is never treated as a glob, nor a KEY that names an array
    as written. A glob that matches nothing is an InputError.
    """
    expanded: list[ArrayRef] = []
    for ref in refs:
        if isinstance(ref, MultiRef):
            expanded.extend(ref.parts)
            continue
        if ref.is_stdio or not _has_glob(ref.path) or os.path.lexists(ref.path):
            expanded.extend(_expand_key(ref))
            continue
        import glob  # only for a pattern: not at every start-up

        matches = sorted(glob.glob(ref.path))  # noqa: PTH207 (absolute patterns too)
        if not matches:
            raise InputError(f"no file matches {ref.path}")
        for match in matches:
            expanded.extend(_expand_key(ArrayRef(match, ref.key)))
    return expanded


def key_matches(key: str, pattern: str) -> bool:
    """Whether an array's KEY matches a KEY glob: `*`, `?` and `[...]` within one level of
    the path (`/run*/out` matches `/run1/out`, not `/run1/x/out`); a leading `/` is optional.

    >>> key_matches("/run1/lstm/output", "run*/lstm/output"), key_matches("/a/b/c", "/a/*")
    (True, False)
    """
    import fnmatch

    keys, patterns = key.strip("/").split("/"), pattern.strip("/").split("/")
    return len(keys) == len(patterns) and all(
        fnmatch.fnmatchcase(k, p) for k, p in zip(keys, patterns, strict=True)
    )


def _expand_key(ref: ArrayRef) -> list[ArrayRef]:
    """The arrays of `ref.path` its KEY glob matches (the reference itself without a glob)."""
    if ref.is_stdio or ref.key is None or not _has_glob(ref.key):
        return [ref]
    from lstmshape import io

    keys = [str(info.ref.key) for info in io.list_arrays(ArrayRef(ref.path))]
    if any(k.strip("/") == ref.key.strip("/") for k in keys):
        return [ref]  # an array is named so, brackets and all
    matches = sorted(k for k in keys if key_matches(k, ref.key))
    if not matches:
        shown = ", ".join(keys[:10]) + (f", … ({len(keys) - 10} more)" if len(keys) > 10 else "")
        raise InputError(f"no array of {ref.path} matches {ref.key}; it holds: {shown or 'none'}")
    return [ArrayRef(ref.path, k) for k in matches]


def join_refs(refs: Sequence[ArrayRef], *, text: str | None = None) -> ArrayRef:
    """One reference for several: the reference itself when there is one, else a MultiRef."""
    refs = list(refs)
    if not refs:
        raise InputError("no input given")
    if len(refs) == 1:
        return refs[0]
    if any(r.is_stdio for r in refs):
        raise InputError("standard input (-) cannot be joined with other inputs")
    first = refs[0]
    return MultiRef(first.path, first.key, parts=tuple(refs), text=text or "")


def n_axis(ndim: int, layout: str) -> int:
    """The axis of N: 1 for 3-D time-major data (T, N, F), else 0."""
    return 1 if layout == "tnf" and ndim == 3 else 0


# ----------------------------------------------------------------------------- reading


class MultiSource:
    """Several open sources read as one array, concatenated along `axis`.

    `sources` and `refs` are the parts, `offsets[i]` where part i starts along `axis`.
    Closing it closes every part.
    """

    def __init__(self, sources: Sequence[Any], refs: Sequence[ArrayRef], axis: int) -> None:
        if not sources:
            raise ValueError("MultiSource needs at least one source")
        self.sources = list(sources)
        self.refs = list(refs)
        self.axis = axis
        first = self.sources[0]
        self._check(first)
        sizes = [int(s.shape[axis]) for s in self.sources]
        self.offsets = [0, *np.cumsum(sizes).tolist()]
        shape = list(first.shape)
        shape[axis] = self.offsets[-1]
        self._shape = tuple(int(s) for s in shape)
        self._dtype = np.dtype(first.dtype)
        from lstmshape.io import ArrayInfo

        joined = join_refs(self.refs) if len(self.refs) > 1 else self.refs[0]
        self.info = ArrayInfo(joined, self._shape, self._dtype, first.info.format)

    def _check(self, first: Any) -> None:
        for ref, src in zip(self.refs[1:], self.sources[1:], strict=True):
            where = str(ref)
            if len(src.shape) != len(first.shape):
                raise InputError(
                    f"{where} has shape {tuple(src.shape)} but {self.refs[0]} has "
                    f"{tuple(first.shape)}; joined inputs need the same number of axes"
                )
            others = [i for i in range(len(first.shape)) if i != self.axis]
            if any(src.shape[i] != first.shape[i] for i in others):
                raise InputError(
                    f"{where} has shape {tuple(src.shape)} but {self.refs[0]} has "
                    f"{tuple(first.shape)}; inputs joined along N (axis {self.axis}) must agree "
                    "on every other axis"
                )
            if np.dtype(src.dtype) != np.dtype(first.dtype):
                raise InputError(
                    f"{where} is {np.dtype(src.dtype)} but {self.refs[0]} is "
                    f"{np.dtype(first.dtype)}; joined inputs need one dtype"
                )

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def nbytes(self) -> int:
        return math.prod(self._shape) * self._dtype.itemsize

    def read(self, start: int = 0, stop: int | None = None, axis: int = 0) -> np.ndarray:
        """Indices `start:stop` along `axis` (a view of one part when the range is inside it)."""
        if not 0 <= axis < self.ndim:
            raise InputError(f"{self.info.ref} has shape {self.shape}; it has no axis {axis}")
        lo, hi, _ = slice(start, stop).indices(self._shape[axis])
        hi = max(lo, hi)
        if axis != self.axis:
            pieces = [src.read(lo, hi, axis=axis) for src in self.sources]
            return np.concatenate(pieces, axis=self.axis)
        pieces = []
        for i, src in enumerate(self.sources):
            begin, end = self.offsets[i], self.offsets[i + 1]
            if end <= lo or begin >= hi:
                continue
            pieces.append(src.read(max(lo, begin) - begin, min(hi, end) - begin, axis=axis))
        if len(pieces) == 1:
            return np.asarray(pieces[0])
        if not pieces:
            return np.asarray(self.sources[0].read(0, 0, axis=axis))
        return np.concatenate(pieces, axis=axis)

    def read_all(self) -> np.ndarray:
        return self.read(0, self._shape[self.axis], axis=self.axis)

    def close(self) -> None:
        for src in self.sources:
            src.close()

    def __enter__(self) -> MultiSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MultiSource {len(self.sources)} parts {self.shape} {self.dtype}>"


def open_sources(ref: ArrayRef, layout: str = "ntf", *, axis: int | None = None) -> Any:
    """Open `ref` for reading: an `io.ArraySource` for one array, a MultiSource for several.

    The parts are joined along N (`n_axis` of the first part's rank and `layout`) unless
    `axis` is given.
    """
    from lstmshape import io

    refs = parts_of(ref)
    opened: list[Any] = []
    try:
        for part in refs:
            opened.append(io.open_array(part))
        if len(opened) == 1:
            return opened[0]
        join_axis = n_axis(len(opened[0].shape), layout) if axis is None else axis
        for part, src in zip(refs, opened, strict=True):
            if len(src.shape) <= join_axis:
                raise InputError(
                    f"{part} has shape {tuple(src.shape)}; inputs are joined along axis "
                    f"{join_axis} (N), which it lacks"
                )
        return MultiSource(opened, refs, join_axis)
    except BaseException:
        for src in opened:
            src.close()
        raise


def describe_matches(ref: ArrayRef, what: str, axis: int | None = None) -> str | None:
    """`the input s?.npy matched 2 files: s1.npy (100), s2.npy (50)`: what several files or
    a glob stand for, with each file's size along N (`axis`, or as `open_sources` joins
    data), read from headers; None for a single file."""
    from lstmshape import io

    parts = parts_of(ref)
    if len(parts) < 2:
        return None
    sizes = []
    for part in parts:
        try:
            with io.open_array(part) as source:
                join = n_axis(len(source.shape), "ntf") if axis is None else axis
                size = str(source.shape[join]) if len(source.shape) > join else "no axis N"
        except InputError:
            size = "unreadable"
        sizes.append(f"{part} ({size})")
    return f"{what} {ref} matched {len(parts)} files: {', '.join(sizes)}"


def load_joined(ref: ArrayRef, axis: int = 0) -> np.ndarray:
    """A whole small array (mask, lengths), its parts concatenated along `axis`."""
    with open_sources(ref, axis=axis) as src:
        return np.asarray(src.read_all())
