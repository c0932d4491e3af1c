""".safetensors files as inputs: the header read and checked before any data is touched,
tensors read at their offsets, listings, and the state of a KEY in an existing file.

The format: 8 bytes (little-endian u64) giving the header's length N, N bytes of JSON
(`{"NAME": {"dtype": "F32", "shape": [...], "data_offsets": [BEGIN, END]}, ...,
"__metadata__": {str: str}}`), then the data: every tensor C-order, little-endian, packed
without holes or overlaps. A header is refused unless it holds exactly that, so a lying one
costs nothing; a file shorter than its tensors is reported as truncated.

Tensors are read like `.npy` data (`npy.FileArray`: positioned reads into the engine's
buffers). bfloat16 tensors are read as float32, exactly, block by block (`Bf16Array`); the
8-, 6- and 4-bit float types are listed in messages but not read.

The `safetensors` package is not used: its reader maps the whole file (every page read stays
in the resident set, 4 GiB of RSS for a 4 GiB file) and its writer takes whole arrays in
memory, while lstmshape streams both ways. The tests check files written and read by it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstmshape.errors import InputError
from lstmshape.io.base import ArrayInfo, ArraySource, _one_line, _os_reason, _pick
from lstmshape.io.blocks import Array, IndexArray, InMemory, Reader
from lstmshape.io.npy import FileArray
from lstmshape.refs import ArrayRef

#: The largest header the format allows (the reference implementation's limit).
MAX_HEADER_BYTES = 100_000_000
#: The metadata entry that holds a tensor's provenance: `lstmshape:NAME` -> JSON object.
PROVENANCE_PREFIX = "lstmshape:"

# dtype code -> what numpy reads it as. BF16 is widened to float32.
_NUMPY: dict[str, str] = {
    "BOOL": "|b1",
    "U8": "|u1",
    "I8": "|i1",
    "I16": "<i2",
    "U16": "<u2",
    "F16": "<f2",
    "BF16": "<f4",
    "I32": "<i4",
    "U32": "<u4",
    "F32": "<f4",
    "C64": "<c8",
    "F64": "<f8",
    "I64": "<i8",
    "U64": "<u8",
}
# Bits per element of every dtype the format defines (numpy holds none of the small floats).
_BITS: dict[str, int] = {
    **{code: 8 * (2 if code == "BF16" else np.dtype(d).itemsize) for code, d in _NUMPY.items()},
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "E8M0": 8,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "F4": 4,
}
#: numpy dtype -> code, for writing.
CODES: dict[np.dtype[Any], str] = {
    np.dtype(d): code for code, d in _NUMPY.items() if code != "BF16"
}


@dataclass(frozen=True)
class StTensor:
    """One header entry: name, dtype code, shape and its byte range in the data."""

    name: str
    code: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def readable(self) -> bool:
        return self.code in _NUMPY

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype it is read as (float32 for bfloat16)."""
        return np.dtype(_NUMPY[self.code])


@dataclass(frozen=True)
class StHeader:
    """A checked header: the tensors in file order, the metadata, where the data starts."""

    tensors: dict[str, StTensor]
    metadata: dict[str, str]
    data_start: int


def _bad(path: str, why: str) -> InputError:
    return InputError(f"{path} is not a valid .safetensors file: {why}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise ValueError(f"the name {twice!r} appears twice")
    return dict(pairs)


def _parse_json(path: str, raw: bytes) -> dict[str, Any]:
    if not raw.startswith(b"{"):
        raise _bad(path, "its header does not start with '{'")
    try:
        parsed = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _bad(path, f"its header is not JSON ({_one_line(exc)})") from None
    if not isinstance(parsed, dict):
        raise _bad(path, "its header is not a JSON object")
    return parsed


def _metadata(path: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad(path, "__metadata__ must map names to strings")
    return value


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry(path: str, name: str, spec: Any) -> StTensor:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise _bad(path, f"tensor {name!r} needs exactly dtype, shape and data_offsets")
    code, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if not isinstance(code, str) or code not in _BITS:
        raise _bad(path, f"tensor {name!r} has an unknown dtype {code!r}")
    if not isinstance(shape, list) or not all(_is_count(s) for s in shape):
        raise _bad(path, f"tensor {name!r} has a shape that is not a list of sizes: {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
        raise _bad(path, f"tensor {name!r} has data_offsets that are not [BEGIN, END]")
    begin, end = offsets
    need = math.prod(shape) * _BITS[code]
    if end < begin or (need % 8 == 0 and end - begin != need // 8):
        raise _bad(
            path,
            f"tensor {name!r} ({code} {tuple(shape)}) needs {need // 8} bytes, "
            f"its data_offsets span {end - begin}",
        )
    return StTensor(name, code, tuple(shape), begin, end)


def _check_packed(path: str, tensors: list[StTensor], data_bytes: int) -> None:
    """The data holds exactly the tensors, each after the other (no holes, no overlaps)."""
    expected = 0
    for tensor in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if tensor.begin != expected:
            raise _bad(
                path,
                f"tensor {tensor.name!r} starts at byte {tensor.begin} of the data where "
                f"{expected} was expected (tensors must be packed without holes or overlaps)",
            )
        expected = tensor.end
    if expected > data_bytes:
        raise InputError(
            f"{path} is truncated: its tensors need {expected} bytes of data, "
            f"only {data_bytes} follow the header"
        )
    if expected < data_bytes:
        raise _bad(path, f"{data_bytes - expected} bytes follow its last tensor")


def read_header(path: str) -> StHeader:
    """Read and check the header of the `.safetensors` file `path` (no data is read)."""
    try:
        with Path(path).open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            first = fh.read(8)
            if len(first) < 8:
                raise _bad(path, f"it has {len(first)} bytes, fewer than a header's length")
            length = int.from_bytes(first, "little")
            if length > MAX_HEADER_BYTES:
                raise _bad(
                    path, f"its header length says {length} bytes (at most {MAX_HEADER_BYTES})"
                )
            if 8 + length > size:
                raise InputError(
                    f"{path} is truncated: its header is {length} bytes, the file has {size}"
                )
            raw = fh.read(length)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {_os_reason(exc)}") from None
    parsed = _parse_json(path, raw)
    metadata = _metadata(path, parsed.pop("__metadata__", None))
    tensors = [_entry(path, name, spec) for name, spec in parsed.items()]
    _check_packed(path, tensors, size - 8 - length)
    return StHeader({t.name: t for t in tensors}, metadata, 8 + length)


# ----------------------------------------------------------------------------- provenance


def tensor_attrs(header: StHeader, name: str) -> dict[str, Any]:
    """What `inspect` shows as a tensor's attributes: the file's metadata, with lstmshape's
    provenance entry of this tensor unpacked (and those of other tensors left out)."""
    attrs: dict[str, Any] = {}
    for key, value in header.metadata.items():
        if not key.startswith(PROVENANCE_PREFIX):
            attrs[key] = value
        elif key == PROVENANCE_PREFIX + name:
            attrs.update(_unpacked(key, value))
    return attrs


def _unpacked(key: str, value: str) -> dict[str, Any]:
    try:
        fields = json.loads(value)
    except (ValueError, RecursionError):
        return {key: value}
    return fields if isinstance(fields, dict) else {key: value}


def provenance_metadata(names: list[str], attrs: Mapping[str, Any]) -> dict[str, str]:
    """The metadata entries that record where `names` came from (one JSON object each)."""
    text = json.dumps({k: str(v) for k, v in attrs.items()}, sort_keys=True)
    return {PROVENANCE_PREFIX + name: text for name in names}


# ----------------------------------------------------------------------------- reading


class Bf16Array:
    """A bfloat16 tensor read as float32: the 16 stored bits are the float32's upper half,
    so the widening is exact. Reads go through a `FileArray` of the raw uint16 values."""

    background = True
    supports_rows = True

    def __init__(self, raw: FileArray) -> None:
        self._raw = raw
        self.shape = raw.shape
        self.dtype = np.dtype("<f4")

    def align(self, axis: int) -> int:
        return 1

    @staticmethod
    def _widen(raw: Array, out: Array) -> None:
        bits = out.view(np.uint32)
        bits[...] = raw
        bits <<= 16

    def read_into(self, start: int, stop: int, axis: int, out: Array) -> None:
        raw = np.empty(out.shape, np.uint16)
        self._raw.read_into(start, stop, axis, raw)
        self._widen(raw, out)

    def read_rows(self, rows: IndexArray, out: Array) -> None:
        raw = np.empty(out.shape, np.uint16)
        self._raw.read_rows(rows, raw)
        self._widen(raw, out)

    def close(self) -> None:
        self._raw.close()


def _reader(
    path: str, header: StHeader, tensor: StTensor, where: str, shape: tuple[int, ...]
) -> Reader:
    offset = header.data_start + tensor.begin
    if tensor.code == "BF16":
        return Bf16Array(FileArray(path, offset, shape, "<u2", where))
    return FileArray(path, offset, shape, tensor.dtype, where)


def _info(path: str, header: StHeader, tensor: StTensor) -> ArrayInfo:
    return ArrayInfo(
        ArrayRef(path, tensor.name),
        tensor.shape,
        tensor.dtype,
        "safetensors",
        attrs=tensor_attrs(header, tensor.name),
        stored_dtype="bfloat16" if tensor.code == "BF16" else None,
    )


def _candidates(header: StHeader) -> list[str]:
    return sorted(name for name, t in header.tensors.items() if t.readable)


def _tensor(ref: ArrayRef, header: StHeader) -> StTensor:
    """The tensor KEY names, or the only readable one."""
    if ref.key is not None and ref.key in header.tensors:
        tensor = header.tensors[ref.key]
        if not tensor.readable:
            raise InputError(
                f"{ref} holds {tensor.code} data, which numpy cannot hold; convert it to "
                "float16/32 before saving"
            )
        return tensor
    name = _pick(ref.path, ref.key, _candidates(header), what="tensors")
    return header.tensors[name]


def _open_safetensors(ref: ArrayRef) -> ArraySource:
    header = read_header(ref.path)
    tensor = _tensor(ref, header)
    info = _info(ref.path, header, tensor)
    if tensor.shape and tensor.end > tensor.begin:
        reader = _reader(ref.path, header, tensor, str(info.ref), tensor.shape)
        return ArraySource(info, None, reader=reader)
    # A scalar or an empty tensor: its (at most one) value is read now, served from memory.
    data = np.empty(tensor.shape, info.dtype)
    if data.size:
        one = _reader(ref.path, header, tensor, str(info.ref), (1,))
        try:
            one.read_into(0, 1, 0, data.reshape(1))
        finally:
            one.close()
    return ArraySource(info, data, reader=InMemory(data))


def _list_safetensors(ref: ArrayRef) -> list[ArrayInfo]:
    header = read_header(ref.path)
    if ref.key is not None:
        return [_info(ref.path, header, _tensor(ref, header))]
    return [_info(ref.path, header, header.tensors[name]) for name in _candidates(header)]


def _safetensors_key_state(path: Path, key: str) -> str:
    """'absent', 'dataset' or 'foreign' (not a readable .safetensors file)."""
    try:
        header = read_header(str(path))
    except InputError:
        return "foreign"
    return "dataset" if key in header.tensors else "absent"
