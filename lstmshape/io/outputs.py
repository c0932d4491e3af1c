"""Output checks, before any work and again at commit: where an output goes, whether it may be
written, and how (`_plan_output` -> `_OutputPlan` for files, `_plan_zarr_output` ->
`_ZarrPlan` for `.zarr` stores); `check_output` runs them for callers. Also the default name
of an output (`default_output_path`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path, PurePath

from lstmshape.errors import InputError
from lstmshape.io.atomic import _OutputPlan
from lstmshape.io.base import (
    Format,
    RefLike,
    _as_ref,
    _check_output_dir,
    _file_kind,
    _format_of,
    _is_zarr,
    _normalize_key,
    _refuse_input_as_output,
)
from lstmshape.io.h5_sink import _h5_key_state
from lstmshape.io.netcdf import _nc_key_state
from lstmshape.io.netcdf_sink import check_netcdf_output
from lstmshape.io.npz import _npz_key_state, _npz_member
from lstmshape.io.reading import list_arrays
from lstmshape.io.safetensors import _safetensors_key_state
from lstmshape.io.zarr_outputs import _plan_zarr_output
from lstmshape.refs import ArrayRef

#: The KEY an output gets when none is given.
DEFAULT_KEYS: dict[Format, str] = {
    "npz": "arr_0",
    "h5": "/data",
    "nc": "/data",
    "safetensors": "data",
}
# The state of a KEY in an existing container: 'absent', 'dataset', 'group', 'blocked' (a
# parent is not a group) or 'foreign' (the file is not of the format).
_KEY_STATES: dict[Format, Callable[[Path, str], str]] = {
    "h5": _h5_key_state,
    "nc": _nc_key_state,
    "npz": _npz_key_state,
    "safetensors": _safetensors_key_state,
}
_KINDS: dict[Format, str] = {
    "h5": "an HDF5",
    "npz": "a .npz",
    "nc": "a netCDF-4",
    "safetensors": "a .safetensors",
}


def _input_key(inp: ArrayRef, fmt: Format) -> str | None:
    """The input's KEY in the output's format, resolved when the file holds one array."""
    if inp.key is not None or fmt == "npy":
        return _normalize_key(fmt, inp.key)
    try:
        infos = list_arrays(inp)
    except InputError:
        return None
    return _normalize_key(fmt, infos[0].ref.key) if len(infos) == 1 else None


def _other_key(ref: ArrayRef, fmt: Format) -> Callable[[ArrayRef], bool]:
    """Whether an input that is the output's file names another KEY of the container."""
    out_key = _normalize_key(fmt, ref.key)

    def other(inp: ArrayRef) -> bool:
        in_key = _input_key(inp, fmt)
        return fmt != "npy" and in_key is not None and out_key is not None and in_key != out_key

    return other


def _check_target_path(ref: ArrayRef) -> Path:
    """The file an output goes to: its path, or the file a symlink there names (so a KEY
    added through `link.h5` lands in the file the link names, and the link stays)."""
    target = _check_output_dir(ref)
    try:
        kind = _file_kind(target.stat().st_mode)
    except OSError:  # absent, or a dangling symlink
        return target
    if kind == "a directory":
        raise InputError(f"cannot write {ref.path}: it is a directory")
    if kind is not None:  # opening it to look inside, or renaming over it, is never meant
        raise InputError(
            f"cannot write {ref.path}: it is {kind}, not a regular file; "
            "use -o - for standard output"
        )
    return Path(os.path.realpath(target)) if target.is_symlink() else target


#: The longest name a zip member may have (its length is a 16-bit field).
_MAX_MEMBER_BYTES = 0xFFFF


def _check_npz_key(ref: ArrayRef, key: str) -> None:
    """A member name that unzip would put outside its directory, or too long for the zip
    format, is refused (numpy would store it as given)."""
    parts = key.replace("\\", "/").split("/")
    if key.startswith(("/", "\\")) or ".." in parts:
        raise InputError(
            f"cannot write {ref}: a .npz KEY is a member name inside the archive; it may not "
            "start with / or hold a .. part"
        )
    size = len(_npz_member(key).encode("utf-8", "surrogateescape"))
    if size > _MAX_MEMBER_BYTES:
        raise InputError(
            f"cannot write {ref.path}: a .npz KEY of {size - 4} bytes is too long "
            f"(a zip member name holds at most {_MAX_MEMBER_BYTES - 4} bytes after .npy)"
        )


def _plan_existing_key(ref: ArrayRef, fmt: Format, target: Path, force: bool) -> _OutputPlan:
    """An existing file and an output KEY: add or (with force) replace that array."""
    key = ref.key
    assert key is not None
    state = _KEY_STATES[fmt](target, key)
    if state == "foreign":
        if not force:
            kind = _KINDS[fmt]
            raise InputError(f"{ref.path} exists and is not {kind} file; use --force to overwrite")
        return _OutputPlan(ref, fmt, None, True)
    if state == "group":
        raise InputError(f"cannot write {ref}: {key} is a group; name a dataset")
    if state == "blocked":
        raise InputError(f"cannot write {ref}: a parent of {key} is a dataset, not a group")
    if state == "dataset" and fmt == "nc":
        raise InputError(
            f"cannot write {ref}: {key} exists, and netCDF cannot delete a variable; "
            "write another KEY, or the whole file (no KEY, --force)"
        )
    if state == "dataset" and not force:
        raise InputError(f"{ref} exists; use --force to overwrite")
    return _OutputPlan(ref, fmt, target, True)


def _plan_output(ref: ArrayRef, *, force: bool, inputs: Iterable[RefLike]) -> _OutputPlan:
    if ref.is_stdio:
        return _OutputPlan(ref, "npy", None, False)
    fmt = _format_of(ref, verb="write")
    if fmt == "npy" and ref.key is not None:
        raise InputError(f"cannot write {ref}: a .npy file holds one array and takes no KEY")
    target = _check_target_path(ref)
    if fmt != "npy" and ref.key is not None and _normalize_key(fmt, ref.key) in ("/", ""):
        raise InputError(f"cannot write {ref}: KEY must name an array")
    if fmt == "nc":
        check_netcdf_output(ref)
    _refuse_input_as_output(ref, inputs, other_array=_other_key(ref, fmt))
    named = ref.key is not None
    key = _normalize_key(fmt, ref.key) if named else DEFAULT_KEYS.get(fmt)
    if fmt == "npz" and key is not None:
        _check_npz_key(ref, key)
    plan = _plan_file(ArrayRef(ref.path, key), fmt, target, force, named=named)
    return plan if target == Path(ref.path) else dataclasses.replace(plan, file=target)


def _plan_file(out: ArrayRef, fmt: Format, target: Path, force: bool, named: bool) -> _OutputPlan:
    if not (target.exists() or target.is_symlink()):
        return _OutputPlan(out, fmt, None, force)
    if not named or fmt == "npy":
        if not force:
            raise InputError(f"{out.path} exists; use --force to overwrite")
        return _OutputPlan(out, fmt, None, True)
    return _plan_existing_key(out, fmt, target, force)


def check_output(ref: RefLike, *, force: bool = False, inputs: Iterable[RefLike] = ()) -> ArrayRef:
    """Refuse an output before any work is done; returns the reference that will be
    written (a container's default KEY filled in).

    Refused (InputError): an unsupported suffix, a missing output directory, an existing
    file (or HDF5/.npz KEY) without `force`, a KEY that names an HDF5 group, a non-HDF5
    file at an `.h5` path without `force`, and an output that is one of `inputs` (also
    through another spelling, a symlink or a hard link). A new KEY in an existing `.h5` or
    `.npz` needs no `force`; the input file may be the output container when both name
    different KEYs.
    """
    ref = _as_ref(ref)
    if _is_zarr(ref):
        return _plan_zarr_output(ref, force=force, inputs=inputs).ref
    return _plan_output(ref, force=force, inputs=inputs).ref


def default_output_path(
    input_ref: RefLike,
    operation: str,
    suffix: str = ".npy",
    cwd: str | os.PathLike[str] = ".",
    *,
    exists: Callable[[str], bool] = os.path.exists,
) -> str:
    """A new file name in `cwd` from the input's name and the operation, never clobbering.

    >>> default_output_path("data/samples_post.npy", "reduce-last", exists=lambda p: False)
    'samples_post.reduce-last.npy'
    >>> taken = {"run_lstm_out.pool.npy"}
    >>> default_output_path("run.h5:/lstm/out", "pool", exists=taken.__contains__)
    'run_lstm_out.pool-1.npy'
    """
    ref = _as_ref(input_ref)
    stem = "stdin" if ref.is_stdio else PurePath(ref.path).stem
    if ref.key:
        stem = f"{stem}_{_slug(ref.key)}"
    base = f"{_slug(stem)}.{_slug(operation)}"
    for n in itertools.count():
        candidate = str(Path(cwd) / f"{base}{f'-{n}' if n else ''}{suffix}")
        if not exists(candidate):
            return candidate
    raise AssertionError("unreachable")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "array"
