"""Read and write arrays: `.npy`, `.npz`, `.h5`/`.hdf5`, `.nc`, `.safetensors`, `.zarr`, `-` (a
`.npy` stream), and `.keras` archives (read only).

Reading never loads more than asked for: `list_arrays` reads headers only, `open_array`
memory-maps `.npy` files and uncompressed `.npz` members and slices HDF5 datasets, and
pickled (object) arrays are refused before any of their bytes are interpreted.

Writing is block-wise and atomic: an `ArraySink` writes into a temporary file beside the
target and publishes it with one rename when its `with` block ends cleanly, or deletes it
when the block raises (`atomic`).

The package holds one module per format (`npy`, `npz`, `h5`, `netcdf`, `safetensors`, `keras`,
`zarr`, `stdio` for `-`) over
a shared base (`base`, `sink`, `atomic`, `npyformat`, and the block readers' `blocks` and
`preads`); `reading`, `outputs` and `writing` hand each reference to its format. h5py and
zarr are imported only by the modules of their formats, and only when a file of that format
is used.
"""

from typing import Any

from lstmshape.io.base import ArrayInfo, ArraySource
from lstmshape.io.h5_links import allow_external, external_allowed
from lstmshape.io.reading import iter_arrays, list_arrays, load, open_array
from lstmshape.io.sink import ArraySink
from lstmshape.limits import memory_limit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lstmshape.io.keras import paired_bias
    from lstmshape.io.outputs import check_output, default_output_path
    from lstmshape.io.stdio import StdoutClosedError, rereadable, silence_stdout
    from lstmshape.io.writing import open_sink, save, save_members

# Writing imports every format's sink and output checks, and standard input and output
# spool through temporary files: loaded on first use, so a command that only reads files
# (inspect) does not pay for them at start-up.
_LAZY = {
    "StdoutClosedError": "lstmshape.io.stdio",
    "silence_stdout": "lstmshape.io.stdio",
    "rereadable": "lstmshape.io.stdio",
    "paired_bias": "lstmshape.io.keras",
    "check_output": "lstmshape.io.outputs",
    "default_output_path": "lstmshape.io.outputs",
    "open_sink": "lstmshape.io.writing",
    "save": "lstmshape.io.writing",
    "save_members": "lstmshape.io.writing",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'lstmshape.io' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "ArrayInfo",
    "ArraySink",
    "ArraySource",
    "StdoutClosedError",
    "allow_external",
    "check_output",
    "default_output_path",
    "external_allowed",
    "iter_arrays",
    "list_arrays",
    "load",
    "memory_limit",
    "open_array",
    "open_sink",
    "paired_bias",
    "rereadable",
    "save",
    "save_members",
    "silence_stdout",
]
