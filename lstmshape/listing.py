"""What the headers of stored arrays say, without reading their data: the entries of
`inspect --brief` (one per array), and the header facts `inspect` adds to its reports
(chunking, compression, dimension names, the dtype on disk, attributes and lstmshape's
provenance). Drawing them is `render`'s job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lstmshape.refs import ArrayRef

#: Attributes HDF5 dimension scales and netCDF-4 keep for their own bookkeeping: not shown.
BOOKKEEPING = frozenset(
    {"CLASS", "NAME", "DIMENSION_LIST", "REFERENCE_LIST", "_Netcdf4Coordinates", "_Netcdf4Dimid"}
)
#: The attributes lstmshape writes on every output (`io.atomic._provenance_attrs`).
PROVENANCE = ("source", "operation", "options", "version")


def brief_entries(refs: Iterable[ArrayRef]) -> list[dict[str, Any]]:
    """One entry per array behind `refs`, from headers alone (no attribute values either)."""
    from lstmshape import io

    entries = []
    for ref in refs:
        for info in io.list_arrays(ref):
            entry = {
                "ref": str(info.ref),
                "format": info.format,
                "shape": list(info.shape),
                "dtype": str(info.dtype),
                "nbytes": info.nbytes,
            }
            entry.update(header_fields(info, with_attrs=False))
            entries.append(entry)
    return entries


def header_fields(info: Any, *, with_attrs: bool = True) -> dict[str, Any]:
    """The facts of an `io.ArrayInfo` beyond shape and dtype, JSON-ready.

    `attrs` leaves out HDF5's dimension-scale bookkeeping; `provenance` is lstmshape's record
    (source, operation, options parsed from JSON, version) when the array has one;
    `attrs_error` says why attributes could not be read.
    """
    fields: dict[str, Any] = {
        "chunks": None if info.chunks is None else [int(c) for c in info.chunks],
        "compression": info.compression,
        "dims": None if info.dims is None else list(info.dims),
        "stored_dtype": info.stored_dtype,
    }
    if with_attrs:
        attrs = {k: v for k, v in dict(info.attrs).items() if k not in BOOKKEEPING}
        fields["attrs"] = attrs
        fields["provenance"] = provenance_of(attrs)
        fields["attrs_error"] = getattr(info.attrs, "error", None)
    return fields


def provenance_of(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """lstmshape's provenance in `attrs`, its options parsed, or None.

    >>> provenance_of({"source": "x.npy", "operation": "reduce", "options": '{"k": 1}',
    ...                "version": "0.1.0", "units": "1"})["options"]
    {'k': 1}
    """
    if not all(isinstance(attrs.get(name), str) for name in PROVENANCE):
        return None
    import json  # only for a file lstmshape wrote: not at every inspect's start-up

    record: dict[str, Any] = {name: attrs[name] for name in PROVENANCE}
    try:
        record["options"] = json.loads(record["options"])
    except ValueError:
        pass  # shown as the text it is
    return record
