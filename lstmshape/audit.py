"""The padding audit of a run: the mask the user gave, checked against the data it reads.

An engine adds every block it reads anyway (`PaddingAudit.add`: the cheap end summary of
`lstmshape.padding`, a few steps per sample: every block of the first `DENSE_SAMPLES`
samples, then every `SPARSE_EVERY`-th, up to `MAX_SAMPLES` so that memory stays bounded);
at the end `findings` decides once over the merged summary and asks `padding.audit` what
contradicts the mask source. A row gather (`last`/`first` with a known mask) reads too
little for that, and the dask engine's blocks stay on its workers: both audit their first
samples instead (`sample_findings`, about 4 MiB of them, read once more).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape import padding
from lstmshape.errors import InputError
from lstmshape.masks import MaskSpec
from lstmshape.plan import Plan, as_ntf, ntf_shape
from lstmshape.validity import Validity

#: How much of the input a row gather reads again to audit its mask.
SAMPLE_BYTES = 4 * 2**20
#: The samples a run's audit summarises at most (about 64 bytes each), so memory stays bounded.
MAX_SAMPLES = 2**18
#: Past its first `DENSE_SAMPLES` samples, the audit summarises every `SPARSE_EVERY`-th block
#: (spread over the whole input): on a fast kernel a summary costs about a sixth of it.
DENSE_SAMPLES, SPARSE_EVERY = 4096, 16

# What a command's result does with the padding it is given, as the audit words it:
# windows and global pools average or take the maximum, a PCA fit averages.
_POOL_STRATEGY = {"avg": "mean", "max": "max"}


@dataclass(frozen=True)
class AuditSpec:
    """What the user said about the padding, for the audit's messages and judgement."""

    mask_source: str | None  # None, "mask", "lengths" or "mask-value"
    pad_side: str = "post"
    mask_value: str | None = None
    layout: str = "ntf"
    strategy: str | None = None  # None: a command that maps every step alone


def audit_spec(plan: Plan, mask: Any) -> AuditSpec:
    """The audit of a plan run with the mask request `mask` (an `inputs.MaskRequest`)."""
    source = None
    if mask.auto:
        source = "auto"  # the mask is the detector's own: nothing to audit
    elif mask.mask_ref is not None:
        source = "mask"
    elif mask.lengths_ref is not None:
        source = "lengths"
    elif mask.mask_value is not None:
        source = "mask-value"
    return AuditSpec(source, mask.pad_side, mask.mask_value, mask.layout, _strategy(plan))


def _strategy(plan: Plan) -> str | None:
    if plan.operation == "reduce":
        return str(plan.options["strategy"])
    if plan.operation == "pool":
        return _POOL_STRATEGY[str(plan.options["op"])]
    if plan.operation == "project" and plan.pca is not None:
        return "mean"
    return None


@dataclass
class PaddingAudit:
    """The end summaries of every block a run read, in order; `findings` at the end."""

    spec: AuditSpec
    parts: list[padding.Ends] = field(default_factory=list)
    counts: list[npt.NDArray[np.intp]] = field(default_factory=list)
    reported: list[padding.Finding] = field(default_factory=list)
    blocks: int = 0

    def report(self, findings: list[padding.Finding], strict: bool) -> None:
        """Keep the run's findings; under `--strict` the first is an error (raised inside
        the sink's `with`, so nothing is written)."""
        if strict and findings:
            raise InputError(f"{findings[0].message} (--strict)")
        self.reported = findings

    def add(self, x_ntf: npt.NDArray[Any], validity: Validity) -> None:
        """Summarise a block the engine read (`validity`: the mask it was given or found),
        up to `MAX_SAMPLES` samples in all, so that memory stays bounded."""
        seen = sum(len(counts) for counts in self.counts)
        self.blocks += 1
        sparse = seen >= DENSE_SAMPLES and self.blocks % SPARSE_EVERY
        room = MAX_SAMPLES - seen
        if x_ntf.ndim != 3 or room <= 0 or sparse:
            return
        if x_ntf.shape[0] > room:
            x_ntf, validity = x_ntf[:room], validity.rows(0, room)
        self.parts.append(padding.summarise(x_ntf, validity if self.given else None))
        self.counts.append(validity.counts())

    @property
    def given(self) -> bool:
        """Whether the user gave a mask source (the summary then judges it)."""
        return self.spec.mask_source is not None

    def findings(self, validity: Validity | None) -> list[padding.Finding]:
        """What the data read contradicts; `validity`: the given mask, None when it came
        block by block (a padding value)."""
        if not self.parts or self.spec.mask_source == "auto":
            return []
        if validity is None:  # masks found block by block: their counts stand for them
            counts = np.concatenate(self.counts)
            validity = Validity(n=len(counts), t=self.parts[0].t, lengths=counts).compact()
        detected = padding.infer(padding.Ends.concat(self.parts))
        spec = self.spec
        return padding.audit(
            detected,
            validity,
            spec.pad_side,
            spec.mask_source,  # type: ignore[arg-type]
            spec.strategy,
            mask_value=spec.mask_value,
            layout=spec.layout,
        )


def sample_findings(
    source: Any, plan: Plan, spec: MaskSpec, audit: AuditSpec
) -> list[padding.Finding]:
    """The audit of a row gather: its first samples, about `SAMPLE_BYTES` of them."""
    from lstmshape.blocks import read_copy, rows_per_block

    n, t, f = ntf_shape(plan.in_shape, plan.layout, command=plan.operation)
    rows = min(n, rows_per_block((n, t, f), source.dtype.itemsize, SAMPLE_BYTES))
    if rows == 0 or t == 0:
        return []
    from lstmshape.limits import refuse_huge_reads

    refuse_huge_reads(source, 1 if plan.layout == "tnf" else 0)
    sample = as_ntf(read_copy(source, 0, rows, 1 if plan.layout == "tnf" else 0), plan.layout)
    validity = spec.for_block(sample, 0, rows)
    accumulator = PaddingAudit(audit)
    accumulator.add(sample, validity)
    return accumulator.findings(None if spec.validity is None else validity)
