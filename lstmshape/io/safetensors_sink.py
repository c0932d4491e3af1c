"""`.safetensors` outputs: the header first (shape and dtype are known before any block), then
the blocks at their offsets, into a temporary file renamed into place on commit.

A KEY written into an existing file keeps its other tensors: at commit, under the target
lock, a new file is built from the target as it is then (its other tensors copied byte for
byte) and this one's data. Each tensor's provenance is one metadata entry,
`lstmshape:NAME` -> `{"source", "operation", "options", "version"}` as JSON, so tensors added
later never overwrite the record of those already there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from lstmshape.errors import InputError
from lstmshape.io.atomic import _FileSink, _OutputPlan
from lstmshape.io.base import _COPY_BUFFER
from lstmshape.io.npyformat import _as_bytes, _NpyWriter
from lstmshape.io.safetensors import CODES, PROVENANCE_PREFIX, provenance_metadata, read_header
from lstmshape.refs import ArrayRef

_ALIGN = 8  # the data starts 8-byte aligned, as the reference writer pads its header


def stored_dtype(ref: ArrayRef, dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The little-endian dtype `dtype` is stored as, or an InputError naming what fits."""
    little = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
    if little not in CODES:
        raise InputError(
            f"cannot write {ref}: .safetensors has no {dtype} type (it holds bool, "
            "(u)int8-64, float16/32/64 and complex64); write .npy, .npz, .h5 or .nc"
        )
    return little


Entry = tuple[str, str, tuple[int, ...], int]  # name, dtype code, shape, bytes


def entry(name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Entry:
    """A header entry for an array lstmshape writes (`dtype` from `stored_dtype`)."""
    return name, CODES[dtype], tuple(shape), int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def header_bytes(
    entries: Iterable[Entry], metadata: Mapping[str, str]
) -> tuple[bytes, dict[str, int]]:
    """The length field and JSON header for tensors packed in the order given, and each
    one's offset in the data.

    >>> head, at = header_bytes([entry("x", (2,), np.dtype("<f4"))], {})
    >>> head[8:].decode().strip(), at, len(head) % 8
    ('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', {'x': 0}, 0)
    """
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offsets, at = {}, 0
    for name, code, shape, nbytes in entries:
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [at, at + nbytes]}
        offsets[name] = at
        at += nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % _ALIGN)
    return len(text).to_bytes(8, "little") + text, offsets


class _SafetensorsSink(_FileSink):
    """Writes the header and the array (then `extras`) into a temporary `.safetensors` file."""

    def __init__(
        self,
        plan: _OutputPlan,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        attrs: Mapping[str, Any],
        extras: Mapping[str, np.ndarray] | None = None,
        replan: Callable[[], _OutputPlan] | None = None,
    ) -> None:
        dtype = stored_dtype(plan.ref, dtype)
        extras = {
            k: np.array(a, stored_dtype(plan.ref, a.dtype), order="C")  # 0-d stays 0-d
            for k, a in (extras or {}).items()
        }
        assert plan.ref.key is not None
        self._metadata = provenance_metadata([plan.ref.key, *extras], attrs)
        super().__init__(plan, shape, dtype, extras, replan)

    def _ours(self) -> list[Entry]:
        assert self.target.key is not None
        rest = [entry(k, a.shape, a.dtype) for k, a in self._extras.items()]
        return [entry(self.target.key, self.shape, self.dtype), *rest]

    def _start(self) -> None:
        header, offsets = header_bytes(self._ours(), self._metadata)
        self._data_start = len(header)
        self._offsets = offsets
        self._fh: BinaryIO | None = self._tmp.open("r+b")
        self._writer = _NpyWriter(self._fh, self.shape, self.dtype, header=header)
        for key, array in self._extras.items():
            self._fh.seek(self._data_start + offsets[key])
            self._fh.write(_as_bytes(array))

    def _write(self, start: int, block: np.ndarray, axis: int) -> None:
        self._writer.write(start, block, axis)

    def _close_file(self) -> None:
        fh, self._fh = getattr(self, "_fh", None), None
        if fh is not None:
            fh.close()

    def _seal(self, plan: _OutputPlan) -> None:
        self._close_file()
        if plan.append_to is None:
            return
        merged = self._make_temp(".tmp")
        _merge(plan.append_to, self._tmp, self._data_start, self._ours(), self._metadata, merged)
        self._drop_temp(self._tmp)
        self._tmp = merged


def _merge(
    kept_from: Path,
    ours_in: Path,
    ours_start: int,
    ours: list[Entry],
    metadata: Mapping[str, str],
    merged: Path,
) -> None:
    """Write `merged`: the tensors of `kept_from` not named in `ours`, then ours (copied from
    the data of `ours_in`, which starts at `ours_start`); the metadata of both, ours
    replacing the provenance entries of the tensors it replaces."""
    try:
        old = read_header(str(kept_from))
    except InputError as exc:
        raise InputError(f"cannot keep the tensors of {kept_from}: {exc}") from None
    names = {name for name, *_ in ours}
    kept = sorted((t for t in old.tensors.values() if t.name not in names), key=lambda t: t.begin)
    replaced = {PROVENANCE_PREFIX + name for name in names}
    meta = {k: v for k, v in old.metadata.items() if k not in replaced} | dict(metadata)
    kept_entries = [(t.name, t.code, t.shape, t.end - t.begin) for t in kept]
    header, _ = header_bytes([*kept_entries, *ours], meta)
    with merged.open("wb") as out:
        out.write(header)
        with kept_from.open("rb") as src:
            for tensor in kept:
                _copy_range(src, out, old.data_start + tensor.begin, tensor.end - tensor.begin)
        with ours_in.open("rb") as src:
            _copy_range(src, out, ours_start, sum(nbytes for *_, nbytes in ours))


def _copy_range(src: BinaryIO, out: BinaryIO, start: int, nbytes: int) -> None:
    src.seek(start)
    left = nbytes
    while left > 0:
        chunk = src.read(min(left, _COPY_BUFFER))
        if not chunk:
            raise InputError(f"{src.name} is truncated")
        out.write(chunk)
        left -= len(chunk)
