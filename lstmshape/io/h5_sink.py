"""HDF5 outputs: the state of a KEY in an existing file, and the sink, which writes the
dataset (and any further arrays) into a new file beside the target and, when the target's
other datasets are kept, merges it into a copy of the target at commit.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lstmshape.errors import InputError
from lstmshape.io.atomic import _FileSink, _OutputPlan
from lstmshape.io.base import _one_line
from lstmshape.io.h5_links import _h5_external_link


def _h5_key_state(path: Path, key: str) -> str:
    """'absent', 'dataset', 'group', 'blocked' (a parent is not a group) or 'foreign'."""
    import h5py

    if not h5py.is_hdf5(path):
        return "foreign"
    try:
        with h5py.File(path, "r") as f:
            link = _h5_external_link(f, key)
            if link is not None:  # HDF5 would write into the other file
                raise InputError(
                    f"cannot write {path}:{key}: {link}; lstmshape writes only into the named file"
                )
            parts = key.strip("/").split("/")
            for depth in range(1, len(parts) + 1):
                obj = f.get("/" + "/".join(parts[:depth]))
                if obj is None:
                    return "absent"
                if depth < len(parts) and not isinstance(obj, h5py.Group):
                    return "blocked"
            return "group" if isinstance(obj, h5py.Group) else "dataset"
    except InputError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot read {path}: {_one_line(exc)}") from None


class _H5Sink(_FileSink):
    """Writes the dataset (and `extras`) into a new HDF5 file; on commit, under the target
    lock, into a copy of the target as it is then when it is kept (a KEY added).

    The temporary files are private, so HDF5's own file locking is off for them (it would
    clash with the lock that marks them as a live writer's).
    """

    def __init__(
        self,
        plan: _OutputPlan,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        attrs: Mapping[str, Any],
        extras: Mapping[str, np.ndarray] | None = None,
        replan: Callable[[], _OutputPlan] | None = None,
    ) -> None:
        self._attrs = attrs
        super().__init__(plan, shape, dtype, extras, replan)

    def _start(self) -> None:
        import h5py

        self._file: Any = h5py.File(self._tmp, "w", locking=False)
        assert self.target.key is not None
        self._dset = self._create(self.target.key, shape=self.shape, dtype=self.dtype)
        for key, array in self._extras.items():
            self._create(key, data=array)

    def _create(self, key: str, **spec: Any) -> Any:
        dset = self._file.create_dataset(key, **spec)
        for name, value in self._attrs.items():
            dset.attrs[name] = value
        return dset

    def _write(self, start: int, block: np.ndarray, axis: int) -> None:
        if block.size == 0:
            return
        if not self.shape:
            self._dset[()] = block
            return
        where = (slice(None),) * axis + (slice(start, start + block.shape[axis]),)
        self._dset[where] = block

    def _seal(self, plan: _OutputPlan) -> None:
        self._close_file()
        if plan.append_to is None:
            return
        assert self.target.key is not None
        merged = self._make_temp(".tmp")
        shutil.copyfile(plan.append_to, merged)
        import h5py

        with (
            h5py.File(self._tmp, "r", locking=False) as ours,
            h5py.File(merged, "r+", locking=False) as kept,
        ):
            for key in (self.target.key, *self._extras):
                if key in kept:
                    del kept[key]  # an existing dataset, replaced under --force
                ours.copy(ours[key], kept, name=key)
        self._drop_temp(self._tmp)
        self._tmp = merged

    def _close_file(self) -> None:
        f, self._file = getattr(self, "_file", None), None
        if f is not None:
            f.close()
