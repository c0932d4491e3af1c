"""The `.npy` sink: the stream written block by block, at each block's offset, into the
temporary file that `atomic` publishes. Apart from `npy` (reading) so that reading a
`.npy` file does not import the writing side."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from lstmshape.io.atomic import _FileSink
from lstmshape.io.npyformat import _NpyWriter


class _NpySink(_FileSink):
    """Writes the .npy stream, blocks at their offsets, into the temporary file (or the
    file `_npy_file` names, for sinks that build something else from it)."""

    def _start(self) -> None:
        self._fh: BinaryIO | None = self._npy_file().open("r+b")
        self._writer = _NpyWriter(self._fh, self.shape, self.dtype)

    def _npy_file(self) -> Path:
        return self._tmp

    def _write(self, start: int, block: np.ndarray, axis: int) -> None:
        self._writer.write(start, block, axis)

    def _close_file(self) -> None:
        fh, self._fh = getattr(self, "_fh", None), None
        if fh is not None:
            fh.close()
