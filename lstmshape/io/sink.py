"""`ArraySink`: the block writer behind every output (files, standard output, Zarr stores).

It checks that blocks come in order along one axis and cover the output exactly once, casts
them to the output's dtype, and drops what was written when a step fails (an `OSError`
becomes an `OutputError`); subclasses put the blocks in place, publish, and discard.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from lstmshape.errors import OutputError
from lstmshape.interrupts import commit_point
from lstmshape.io.base import _os_reason
from lstmshape.refs import ArrayRef

if TYPE_CHECKING:
    import numpy.typing as npt

_T = TypeVar("_T")


class ArraySink(ABC):
    """Receives an array in blocks along one axis, in order; publishes it on commit.

    Use it as a context manager: a clean exit commits (the output appears atomically), an
    exception aborts (nothing is left behind). `target` is the reference being written,
    with the KEY filled in for containers.
    """

    def __init__(self, target: ArrayRef, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.target = target
        self.shape = shape
        self.dtype = dtype
        self._axis: int | None = None
        self._next = 0
        self._written = 0
        self._open = True

    def write(self, start: int, block: npt.ArrayLike, axis: int = 0) -> None:
        """Write `block` at `start:start + block.shape[axis]` along `axis`.

        Blocks come in order along one axis and cover the output exactly once; every other
        axis is whole. Axis 1 serves time-major (T, N, F) outputs written per sample block.
        A 0-d output takes one 0-d block at start 0. The block is cast to the sink's dtype
        (`same_kind`).
        """
        arr = self._check_block(start, np.asarray(block), axis)
        self._guarded(self._write, start, arr, axis)
        if self.shape:
            self._next = start + arr.shape[axis]
        self._written += arr.size

    def commit(self) -> str:
        """Publish the output; returns `str(target)`."""
        if not self._open:
            raise ValueError(f"{self.target} is already closed")
        expected = math.prod(self.shape)
        if self._written != expected:
            self.abort()
            raise ValueError(f"{self.target} received {self._written} of {expected} values")
        self._guarded(commit_point)  # an interrupt stops the run here, or not at all
        self._guarded(self._finish)
        self._open = False
        return str(self.target)

    def abort(self) -> None:
        """Drop everything written so far (idempotent)."""
        if self._open:
            self._open = False
            self._discard()

    def __enter__(self) -> ArraySink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.target} {self.shape} {self.dtype}>"

    # -- checks ----------------------------------------------------------------

    def _guarded(self, step: Callable[..., _T], *args: Any) -> _T:
        """Run a write step; on any failure drop the partial output (OSError -> OutputError)."""
        try:
            return step(*args)
        except OutputError:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise self._failure(exc) from None
        except BaseException:
            self.abort()
            raise

    def _check_block(self, start: int, arr: np.ndarray, axis: int) -> np.ndarray:
        if not self._open:
            raise ValueError(f"{self.target} is closed")
        if self.shape:
            self._check_place(start, arr.shape, axis)
        elif arr.shape != () or start != 0 or axis != 0 or self._written:
            raise ValueError(f"a block of shape {arr.shape} does not fit the 0-d {self.target}")
        if arr.dtype != self.dtype:
            if not np.can_cast(arr.dtype, self.dtype, "same_kind"):
                raise ValueError(f"cannot store {arr.dtype} data in the {self.dtype} {self.target}")
            arr = arr.astype(self.dtype)
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)

    def _check_place(self, start: int, shape: tuple[int, ...], axis: int) -> None:
        if not 0 <= axis < len(self.shape) or self._axis not in (None, axis):
            raise ValueError(f"cannot write {self.target} {self.shape} along axis {axis}")
        others = [i for i in range(len(self.shape)) if i != axis]
        if len(shape) != len(self.shape) or any(shape[i] != self.shape[i] for i in others):
            raise ValueError(f"a block of shape {shape} does not fit {self.shape} along {axis}")
        if start != self._next or start + shape[axis] > self.shape[axis]:
            raise ValueError(f"{self.target}: expected a block at {self._next}, got {start}")
        self._axis = axis

    # -- for subclasses --------------------------------------------------------

    @abstractmethod
    def _write(self, start: int, block: np.ndarray, axis: int) -> None:
        """Put one block in place."""

    @abstractmethod
    def _finish(self) -> None:
        """Make the complete output visible at its target."""

    @abstractmethod
    def _discard(self) -> None:
        """Remove everything written so far."""

    def _failure(self, exc: OSError) -> OutputError:
        return OutputError(f"cannot write {self.target}: {_os_reason(exc)}")
