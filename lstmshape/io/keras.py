"""Keras 3 `.keras` archives, read only, without Keras: the zip's `config.json` (JSON, never
deserialised into a model: Keras's own `load_model` had CVE-2025-1550 and CVE-2025-9906) names
the layers, and `model.weights.h5` inside the zip holds their weights, read with h5py.

Keras stores a layer's weights under a positional path built from its CLASS, not its name:
the layers of a Sequential or Functional model, in order, go to `layers/<class in snake
case>` with `_1`, `_2`, ... for repeats (`layers/dense`, `layers/dense_1`), each weight as
`vars/0`, `vars/1`, ... lstmshape rebuilds that mapping from the config and checks it against
the file (a Dense layer's kernel must be (F, units)), so a KEY can be:

- `LAYER` (a Dense layer's name in the config): its kernel (F, K); `project --weights
  model.keras:LAYER` also takes its bias unless `--bias` is given (`paired_bias`);
- `LAYER/kernel`, `LAYER/bias` (Dense), `LAYER/vars/N` or `LAYER/<path under it>` (any layer);
- a raw path in `model.weights.h5`, `layers/dense/vars/0`.

The weights file is read in place when stored (Keras writes it uncompressed) and inflated
into a temporary file otherwise, within LSTMSHAPE_MAX_MEMORY and refused when it would grow
more than 100 times (a zip bomb). `config.json` may hold at most 64 MiB.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lstmshape.errors import InputError
from lstmshape.io.base import (
    _COPY_BUFFER,
    ArrayInfo,
    ArraySource,
    _one_line,
    _pick,
    _text,
)
from lstmshape.io.h5 import _H5_DAMAGE, _h5_damage
from lstmshape.io.h5_links import _refuse_external_data, _refuse_external_links
from lstmshape.io.h5_listing import _h5_candidates, _h5_dataset_names
from lstmshape.io.h5_readers import H5Direct
from lstmshape.io.npz import _ZIP_ERRORS, _zip_data_offset
from lstmshape.limits import memory_limit
from lstmshape.refs import ArrayRef

_CONFIG = "config.json"
_WEIGHTS = "model.weights.h5"
MAX_CONFIG_BYTES = 64 * 2**20
# A deflated member that grows more than this many times, beyond this size, is a zip bomb
# (the bounds Keras's own loader applies).
_MAX_EXPANSION = 100
_BOMB_FLOOR_BYTES = 256 * 2**20
_MODELS = ("Sequential", "Functional", "Model")
_DENSE = "Dense"


@dataclass(frozen=True)
class KerasLayer:
    """A layer of the config: its name, class, config and group in `model.weights.h5`."""

    name: str
    class_name: str
    path: str
    config: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class KerasWeight:
    """One weight: how lstmshape names it (`key`), its dataset path, and its layer."""

    key: str
    path: str
    layer: KerasLayer | None


def _snake(name: str) -> str:
    """Keras's `naming.to_snake_case`."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _layers(config: Any) -> list[KerasLayer]:
    """The top-level layers of a Sequential/Functional model and their weight groups."""
    if not isinstance(config, dict) or config.get("class_name") not in _MODELS:
        return []
    inner = config.get("config")
    specs = inner.get("layers") if isinstance(inner, dict) else None
    layers: list[KerasLayer] = []
    used: dict[str, int] = {}
    for spec in specs if isinstance(specs, list) else []:
        if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str):
            continue
        raw = spec.get("config")
        cfg: dict[str, Any] = raw if isinstance(raw, dict) else {}
        snake = _snake(spec["class_name"])
        used[snake] = used.get(snake, -1) + 1
        group = snake if used[snake] == 0 else f"{snake}_{used[snake]}"
        name = cfg["name"] if isinstance(cfg.get("name"), str) else group
        layers.append(KerasLayer(name, spec["class_name"], f"layers/{group}", cfg))
    return layers


def _weight_key(path: str, layers: list[KerasLayer]) -> KerasWeight:
    for layer in layers:
        if path.startswith(layer.path + "/"):
            below = path[len(layer.path) + 1 :]
            named = {"vars/0": "kernel", "vars/1": "bias"} if layer.class_name == _DENSE else {}
            return KerasWeight(f"{layer.name}/{named.get(below, below)}", path, layer)
    return KerasWeight(path, path, None)


# ----------------------------------------------------------------------------- the archive


def _open_zip(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (*_ZIP_ERRORS, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a Keras archive (a zip file): {_one_line(exc)}") from None


def _member(zf: zipfile.ZipFile, path: str, name: str, why: str) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(name)
    except KeyError:
        raise InputError(f"{path} holds no {name}: {why}") from None


def _read_config(zf: zipfile.ZipFile, path: str) -> Any:
    info = _member(zf, path, _CONFIG, "it is not a Keras 3 archive")
    if info.file_size > MAX_CONFIG_BYTES:
        raise InputError(
            f"{path}: {_CONFIG} says it holds {info.file_size} bytes; at most "
            f"{MAX_CONFIG_BYTES} are read"
        )
    try:
        with zf.open(info) as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        return json.loads(raw.decode("utf-8"))
    except (*_ZIP_ERRORS, OSError, ValueError, RecursionError) as exc:
        raise InputError(f"cannot read {path}:{_CONFIG}: {_one_line(exc)}") from None


class _Window(io.RawIOBase):
    """A read-only file of `size` bytes at `offset` of an open file (a stored zip member)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd, self._offset, self._size, self._pos = fd, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._size - self._pos))
        got = os.preadv(self._fd, [view[:count]], self._offset + self._pos) if count else 0
        self._pos += got
        return got

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


@contextlib.contextmanager
def _weights_file(zf: zipfile.ZipFile, path: str) -> Iterator[Any]:
    """`model.weights.h5` opened with h5py: in place when stored, else inflated to disk."""
    import h5py

    info = _member(zf, path, _WEIGHTS, "sharded or .npz weights are not read")
    with contextlib.ExitStack() as stack:
        offset = None
        if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
            offset = _zip_data_offset(path, info)
        if offset is not None:
            fd = os.open(path, os.O_RDONLY)
            stack.callback(os.close, fd)
            fileobj: Any = stack.enter_context(_Window(fd, offset, info.compress_size))
        else:
            fileobj = stack.enter_context(_inflated(zf, path, info))
        try:
            f = stack.enter_context(h5py.File(fileobj, "r"))
        except _H5_DAMAGE as exc:
            raise InputError(f"cannot read {path}:{_WEIGHTS}: {_one_line(exc)}") from None
        yield f


@contextlib.contextmanager
def _inflated(zf: zipfile.ZipFile, path: str, info: zipfile.ZipInfo) -> Iterator[Any]:
    limit = memory_limit()
    bomb = info.file_size > _BOMB_FLOOR_BYTES and info.file_size > _MAX_EXPANSION * max(
        info.compress_size, 1
    )
    if bomb or info.file_size > limit:
        raise InputError(
            f"{path}:{_WEIGHTS} would inflate from {info.compress_size} to {info.file_size} "
            f"bytes; refused (a zip bomb, or more than LSTMSHAPE_MAX_MEMORY={limit})"
        )
    with tempfile.TemporaryFile(prefix="lstmshape-") as spill:
        try:
            with zf.open(info) as member:
                shutil.copyfileobj(member, spill, _COPY_BUFFER)
        except (*_ZIP_ERRORS, OSError) as exc:
            raise InputError(f"cannot read {path}:{_WEIGHTS}: {_one_line(exc)}") from None
        spill.seek(0)
        yield spill


# ----------------------------------------------------------------------------- weights


def _weights(f: Any, layers: list[KerasLayer]) -> list[KerasWeight]:
    paths = [_text(name).lstrip("/") for name in _h5_candidates(f, _h5_dataset_names(f))]
    return [_weight_key(p, layers) for p in paths]


def _resolve(ref: ArrayRef, weights: list[KerasWeight], layers: list[KerasLayer]) -> KerasWeight:
    """The weight KEY names: a listed name, a Dense layer's name (its kernel), a raw path."""
    by_key = {w.key: w for w in weights}
    if ref.key is None:
        return by_key[_pick(ref.path, None, list(by_key), what="weights")]
    key = ref.key.strip("/")
    if key in by_key:
        return by_key[key]
    layer = next((x for x in layers if x.name == key), None)
    if layer is not None:
        own = [w.key for w in weights if w.layer is layer]
        if layer.class_name == _DENSE and f"{key}/kernel" in by_key:
            return by_key[f"{key}/kernel"]
        holds = f"name one of its weights: {', '.join(own)}" if own else "it has no weights"
        raise InputError(f"{ref} is a {layer.class_name} layer, not a Dense one; {holds}")
    by_path = {w.path: w for w in weights}
    if key in by_path:
        return by_path[key]
    return by_key[_pick(ref.path, key, list(by_key), what="weights")]


def _check_dense(ref: ArrayRef, weight: KerasWeight, shape: tuple[int, ...]) -> None:
    """A Dense kernel must be (F, units) and its bias (units,): else the layer order of the
    archive is not the one the config gives, and the weight may be another layer's."""
    layer = weight.layer
    if layer is None or layer.class_name != _DENSE:
        return
    units = layer.config.get("units")
    part = weight.key.rsplit("/", 1)[-1]
    fits = {"kernel": len(shape) == 2 and shape[1] == units, "bias": shape == (units,)}
    if not fits.get(part, True):
        raise InputError(
            f"{ref}: {weight.path} has shape {shape}, not a {part} of a Dense layer of "
            f"{units} units; the archive does not follow the layer order of its config "
            f"(name the weight by its path in {_WEIGHTS})"
        )


def _info(path: str, weight: KerasWeight, dset: Any) -> ArrayInfo:
    layer = weight.layer
    attrs = {"path": weight.path}
    if layer is not None:
        attrs.update(layer=layer.name, **{"class": layer.class_name})
    shape = tuple(int(s) for s in dset.shape)
    return ArrayInfo(ArrayRef(path, weight.key), shape, dset.dtype, "keras", attrs=attrs)


def _open_keras(ref: ArrayRef) -> ArraySource:
    with contextlib.ExitStack() as stack:
        zf = stack.enter_context(_open_zip(ref.path))
        layers = _layers(_read_config(zf, ref.path))
        f = stack.enter_context(_weights_file(zf, ref.path))
        with _h5_damage(ref.path):
            weight = _resolve(ref, _weights(f, layers), layers)
            _refuse_external_links(f, ref.path, "/" + weight.path)
            dset = f["/" + weight.path]
            where = f"{ref.path}:{weight.key}"
            _refuse_external_data(f, where, dset)
            info = _info(ref.path, weight, dset)
            _check_dense(info.ref, weight, info.shape)
        source = ArraySource(info, dset, close=stack.pop_all().close, reader=H5Direct(dset, where))
        return source
    raise AssertionError("unreachable")


def _list_keras(ref: ArrayRef) -> list[ArrayInfo]:
    with _open_zip(ref.path) as zf:
        layers = _layers(_read_config(zf, ref.path))
        with _weights_file(zf, ref.path) as f, _h5_damage(ref.path):
            weights = _weights(f, layers)
            chosen = weights if ref.key is None else [_resolve(ref, weights, layers)]
            infos = [_info(ref.path, w, f["/" + w.path]) for w in chosen]
    for weight, info in zip(chosen, infos, strict=True):
        _check_dense(info.ref, weight, info.shape)
    return infos


def paired_bias(ref: ArrayRef) -> ArrayRef | None:
    """The bias that goes with a Dense layer's kernel named by the layer in a `.keras` archive
    (`model.keras:LAYER` or `model.keras:LAYER/kernel` -> `model.keras:LAYER/bias`); None for
    any other reference (a raw weight path included), or a layer without bias."""
    if ref.is_stdio or ref.suffix != ".keras" or ref.key is None:
        return None
    kernel = _list_keras(ref)[0]
    layer = kernel.attrs.get("layer")
    named = ref.key.strip("/") in (layer, f"{layer}/kernel")
    if kernel.attrs.get("class") != _DENSE or kernel.ref.key != f"{layer}/kernel" or not named:
        return None
    bias = ArrayRef(ref.path, f"{layer}/bias")
    try:
        _list_keras(bias)
    except InputError:
        return None
    return bias
