"""What `lstmshape diff` found, as data: the tolerance, the report and its differences.

Kept apart from the statistics (`diffstats`) so that the report's shape reads in one place;
no numpy here. NaN and infinities go to JSON as the strings "nan", "inf" and "-inf".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from lstmshape.errors import InputError


@dataclass(frozen=True)
class Tolerance:
    """`|a - b| <= atol + rtol * |b|` (numpy.isclose); `equal_nan`: NaN equals NaN."""

    rtol: float = 1e-5
    atol: float = 1e-8
    equal_nan: bool = False

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"--{name} must be a finite number >= 0; got {value}")


@dataclass(frozen=True)
class Difference:
    """One compared element: where (batch-first sample/step/feature, and the index into A
    as stored), both values and their absolute and relative difference."""

    sample: int
    step: int | None
    feature: int | None
    index: tuple[int, ...]
    a: float
    b: float
    abs_diff: float
    rel_diff: float

    def where(self) -> str:
        """`sample 3, step 7, feature 2`; `index (…)` for data of another rank."""
        if self.feature is None:
            return f"index {self.index}"
        step = "" if self.step is None else f", step {self.step}"
        return f"sample {self.sample}{step}, feature {self.feature}"

    def to_dict(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        fields["index"] = list(self.index)
        for name in ("a", "b", "abs_diff", "rel_diff"):
            fields[name] = json_number(fields[name])
        return fields


def json_number(value: float | None) -> float | str | None:
    """A float for JSON: NaN and infinities as the strings "nan", "inf", "-inf"."""
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


@dataclass(frozen=True)
class DiffReport:
    """What a comparison found. `equal`: every compared element is close."""

    tolerance: Tolerance
    compared_dtype: str
    has_time: bool
    samples: int
    steps: int
    elements: int
    differing_samples: int
    differing_steps: int
    differing_elements: int
    nan_mismatches: int
    max_abs_diff: float | None
    max_rel_diff: float | None
    worst: tuple[Difference, ...]
    histogram: tuple[tuple[str, int], ...]
    inputs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def equal(self) -> bool:
        return self.differing_elements == 0

    def to_dict(self) -> dict[str, Any]:
        tol = self.tolerance
        return {
            "equal": self.equal,
            **self.inputs,
            "compared_dtype": self.compared_dtype,
            "tolerance": {"rtol": tol.rtol, "atol": tol.atol, "equal_nan": tol.equal_nan},
            "compared": {
                "samples": self.samples,
                "steps": self._steps(self.steps),
                "elements": self.elements,
            },
            "differing": {
                "samples": self.differing_samples,
                "steps": self._steps(self.differing_steps),
                "elements": self.differing_elements,
                "nan_mismatches": self.nan_mismatches,
            },
            "max_abs_diff": json_number(self.max_abs_diff),
            "max_rel_diff": json_number(self.max_rel_diff),
            "worst": [d.to_dict() for d in self.worst],
            "histogram": [{"max_abs_diff": label, "samples": n} for label, n in self.histogram],
        }

    def _steps(self, count: int) -> int | None:
        return count if self.has_time else None
