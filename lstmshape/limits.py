"""What may be held in memory at once: the checks against LSTMSHAPE_MAX_MEMORY
(`memory_limit`) made from shapes, before anything is read or allocated.

A header can declare any size, and a compressed file can inflate far beyond its own, so
every read that cannot be split is checked first: an array read whole (reshape's input,
masks, weights), one sample (the smallest block the engines read), one stored chunk (HDF5
and Zarr decompress a chunk whole), and what a plan holds in memory (reshape's output, one
sample's output). Each refusal names the size and the limit.
"""

from __future__ import annotations

import math
import os
from typing import Any

from lstmshape.errors import InputError
from lstmshape.units import format_bytes, parse_size

_LIMIT_NAME = "LSTMSHAPE_MAX_MEMORY"


def memory_limit() -> int:
    """Bytes that one read into memory may take: LSTMSHAPE_MAX_MEMORY (e.g. 8G, 512MB,
    1.5GiB or a number of bytes; binary units, `units.parse_size`), else half the machine's
    memory.

    Whole-array reads (reshape's input, masks, weights) and streamed blocks rounded up to
    whole stored chunks are refused above it: a header can declare any size, and a
    compressed file can inflate far beyond its own.
    """
    text = os.environ.get("LSTMSHAPE_MAX_MEMORY", "").strip()
    if text:
        try:
            return parse_size(text)
        except ValueError:
            raise InputError(
                f"{_LIMIT_NAME} takes a size like 8G, 512MB, 1.5GiB or a number of "
                f"bytes; got {text!r}"
            ) from None
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def _over(limit: int) -> str:
    return f"at most {format_bytes(limit)} is read into memory at once ({_LIMIT_NAME})"


def _name(source: Any) -> str:
    """How a message names a source: its PATH[:KEY], or "the input" for in-memory arrays."""
    info = getattr(source, "info", None)
    return info.ref if info is not None else "the input"


def refuse_over_memory(source: Any, what: str, why: str) -> None:
    """Refuse a source that is read whole when it holds more than the limit."""
    limit = memory_limit()
    if source.nbytes > limit:
        raise InputError(f"{what} holds {format_bytes(source.nbytes)}; {why}, and {_over(limit)}")


def refuse_huge_reads(source: Any, axis: int, entry: str = "sample") -> None:
    """Refuse a source whose smallest read does not fit the limit: one index along `axis`
    (one `entry`), or one stored chunk of any of its parts (decompressed whole)."""
    limit = memory_limit()
    shape, itemsize = tuple(source.shape), source.dtype.itemsize
    if len(shape) > axis:
        one = math.prod(size for i, size in enumerate(shape) if i != axis) * itemsize
        if one > limit:
            raise InputError(
                f"one {entry} of {_name(source)} holds {format_bytes(one)} "
                f"(shape {shape}); an engine reads at least one whole, and {_over(limit)}"
            )
    for part in getattr(source, "sources", None) or [source]:
        chunks = getattr(getattr(part, "info", None), "chunks", None)
        chunk = math.prod(chunks) * itemsize if chunks else 0
        if chunk > limit:
            raise InputError(
                f"{_name(part)} is stored in chunks of {format_bytes(chunk)} "
                f"(chunk shape {tuple(chunks or ())}), each decompressed whole, and "
                f"{_over(limit)}; rechunk it (h5repack -l, or rewrite the Zarr array)"
            )


def refuse_huge_chunk_rows(source: Any, unit: int, per_sample: int) -> None:
    """Blocks are rounded up to whole stored chunks; refuse chunks so long along N that one
    such block would not fit in memory (a chunk spanning every sample of a huge or
    decompression-bomb dataset), rather than reading it all at once."""
    need, limit = unit * per_sample, memory_limit()
    if need > limit:
        raise InputError(
            f"{_name(source)} is stored in chunks of {unit} samples "
            f"({need / 2**20:.0f} MiB of data each), more than the "
            f"{limit / 2**20:.0f} MiB that is read into memory at once "
            f"({_LIMIT_NAME}); rechunk it along N (h5repack -l) or raise the limit"
        )


def refuse_large_output(plan: Any, why: str) -> None:
    """Refuse a plan whose output (with its side output) does not fit the limit, for
    commands that hold their whole output in memory (reshape)."""
    size = math.prod(plan.out_shape) * plan.out_dtype.itemsize
    if plan.extra_shape is not None:
        size += math.prod(plan.extra_shape)  # the bool mask or int lengths, at least a byte
    limit = memory_limit()
    if size > limit:
        shape = tuple(plan.out_shape)
        raise InputError(
            f"{plan.operation}'s output {shape} {plan.out_dtype} would hold "
            f"{format_bytes(size)}; {why}, and {_over(limit)}"
        )


def output_bytes_per_sample(plan: Any, n: int) -> int:
    """Bytes of output one input sample makes (all of its output rows)."""
    return math.prod(plan.out_shape) * plan.out_dtype.itemsize // max(n, 1)


def refuse_huge_sample_output(plan: Any, n: int) -> None:
    """Refuse a plan whose output for one sample does not fit the limit (the engines write
    at least one sample's output at once)."""
    one, limit = output_bytes_per_sample(plan, n), memory_limit()
    if one > limit:
        raise InputError(
            f"{plan.operation}'s output for one sample would hold {format_bytes(one)} "
            f"(output {tuple(plan.out_shape)} {plan.out_dtype}); an engine writes at least "
            f"one sample's output at once, and {_over(limit)}"
        )
