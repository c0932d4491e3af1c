"""What a command does, as data: the before/after steps and the `--json` object.

Kept apart from `render` so that quiet and JSON-only runs never import rich; the progress
hooks the engines call while they work are in `progress` (inspect needs only those).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any


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
