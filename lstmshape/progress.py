"""The progress hooks the engines and inspect call while they work: a `Progress` gives
one pass over the data its `Advance`, and `Counted` makes a source's reads report their
bytes. Apart from `report` (what a command did) so that inspect does not load it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

#: `advance(nbytes)`: that many more input bytes are done.
Advance = Callable[[int], None]
#: `progress(total_bytes, label)`: a context giving the `Advance` of one pass over the data.
Progress = Callable[[int, str], AbstractContextManager[Advance]]


@contextmanager
def no_progress(_total: int, _label: str) -> Iterator[Advance]:
    yield lambda _nbytes: None


class Counted:
    """An `io.ArraySource` whose block reads report their bytes to `advance`."""

    def __init__(self, source: Any, advance: Advance) -> None:
        self.shape, self.dtype = source.shape, source.dtype
        self._source, self._advance = source, advance

    @property
    def reader(self) -> Any:
        """The source's block reader (None: none); blocks read by it are counted by
        `advance`."""
        return getattr(self._source, "reader", None)

    def advance(self, nbytes: int) -> None:
        self._advance(nbytes)

    def read(self, start: int, stop: int) -> Any:
        block = self._source.read(start, stop)
        self._advance(block.nbytes)
        return block

    def read_all(self) -> Any:
        block = self._source.read_all()
        self._advance(block.nbytes)
        return block

    def unwritten(self, start: int, stop: int) -> Any:
        """The source's fill value for rows storage never wrote (None: written or unknown)."""
        unwritten = getattr(self._source, "unwritten", None)
        return None if unwritten is None else unwritten(start, stop)
