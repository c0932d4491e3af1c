"""What a command does, as data: the before/after steps, the `--json` object, and the
progress hooks the engines call while they work.

Kept apart from `render` so that quiet and JSON-only runs never import rich.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
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


@dataclass
class Step:
    """One row of a before/after table: a label, a shape, a dtype and where it lives."""

    label: str
    shape: tuple[int, ...]
    dtype: str
    where: str = ""
    note: str = ""


@dataclass
class Summary:
    """What a command did, for the table on stderr and the `--json` object on stdout."""

    command: str
    steps: list[Step] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)  # shown under the table
    notices: list[str] = field(default_factory=list)  # said even under -q: names chosen
    dry_run: bool = False
    warnings: list[Any] = field(default_factory=list)  # findings: `.code`, `.message`

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: `command`, then each step keyed by its label."""
        payload: dict[str, Any] = {"command": self.command}
        for step in self.steps:
            payload[step.label] = {
                "shape": list(step.shape),
                "dtype": step.dtype,
                "path": step.where or None,
            }
            if step.note:
                payload[step.label]["note"] = step.note
        payload["options"] = self.options
        payload["warnings"] = [{"code": w.code, "message": w.message} for w in self.warnings]
        return payload


def print_json(payload: Any) -> None:
    import json  # only for --json: not every command pays its import at start-up

    sys.stdout.write(json.dumps(payload, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)
