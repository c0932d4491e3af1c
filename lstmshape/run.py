"""The one run path of reduce, pool, project and reshape.

plan (shapes only) -> resolve and check every output, exactly as the run will write it ->
summary (`on_plan`: the table is shown before any work) -> [dry run: stop] -> fit (PCA)
-> open the sink -> engine -> commit -> side outputs -> summary. The command line builds a
`Job` and an `OutputRequest` and renders what comes back; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lstmshape import engines, gather, timerows
from lstmshape.audit import PaddingAudit, audit_spec, sample_findings
from lstmshape.errors import InputError
from lstmshape.inputs import MaskRequest
from lstmshape.limits import refuse_large_output, refuse_over_memory
from lstmshape.masks import MaskSpec
from lstmshape.plan import Plan, as_ntf, with_basis
from lstmshape.plan.dims import extra_dims, output_dims
from lstmshape.progress import Advance, Progress, no_progress
from lstmshape.refs import ArrayRef, parse_ref
from lstmshape.report import Step, Summary
from lstmshape.sources import parts_of

__all__ = ["Advance", "Job", "OutputRequest", "Outputs", "Progress", "execute", "no_progress"]

#: The dtype of each side output a plan names (`Plan.extra_name`).
EXTRA_DTYPES = {"mask": np.dtype(np.bool_), "lengths": np.dtype(np.intp)}
#: Table labels of the side outputs, by operation.
_EXTRA_LABELS = {("pool", "mask"): "output mask"}


@dataclass(frozen=True)
class OutputRequest:
    """Where and how a command writes, and which engine runs it."""

    output_ref: ArrayRef | None = None
    force: bool = False
    dry_run: bool = False
    chunk_mb: float = 16.0
    as_json: bool = False
    stdout_is_terminal: bool = False
    strict: bool = False  # a warning of the padding audit is an error; nothing is written
    engine: str = "inprocess"
    scheduler: str | None = None
    workers: int | None = None
    connect_timeout: float | None = None  # seconds to reach --scheduler; None: the default

    def __post_init__(self) -> None:
        engines.check_choice(self.engine, self.scheduler, self.workers)
        if self.as_json and self.output_ref is not None and self.output_ref.is_stdio:
            raise InputError("--json writes to standard output; it cannot go with -o -")

    @property
    def chunk_bytes(self) -> int:
        return int(self.chunk_mb * 2**20)


@dataclass
class Job:
    """One command's work: its input (open), plan, mask and what else it reads or writes."""

    input_ref: ArrayRef
    source: Any
    plan: Plan
    spec: MaskSpec
    mask: MaskRequest
    extra_inputs: tuple[ArrayRef, ...] = ()
    extra_outs: dict[str, ArrayRef] = field(default_factory=dict)  # --mask-out, --lengths-out
    basis_out: ArrayRef | None = None  # --save-basis

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: object) -> None:
        self.source.close()


@dataclass(frozen=True)
class Target:
    """One checked output: `ref` as the run writes it, `shown` with a container's default
    KEY filled in (`-o out.h5` writes `out.h5:/data`)."""

    ref: ArrayRef
    shown: ArrayRef

    def __str__(self) -> str:
        return "<stdout>" if self.shown.is_stdio else str(self.shown)


@dataclass
class Outputs:
    """Every output a run writes, checked."""

    data: Target
    extras: dict[str, Target] = field(default_factory=dict)  # plan.extra_name -> where
    basis: Target | None = None
    chosen: list[str] = field(default_factory=list)  # outputs lstmshape named itself


def plan_summary(job: Job, outputs: Outputs | None = None) -> Summary:
    """The before/after table of a job, from its plan (and its outputs) alone."""
    plan = job.plan
    options = dict(plan.options)
    if plan.operation != "reshape" or plan.extra_name is not None:  # reshape reads a mask
        options["mask"] = job.mask.describe(job.spec)  # only to pack, or lengths only to pad
    stored = getattr(getattr(job.source, "info", None), "stored_dtype", None)
    note = f"{stored} on disk, read as {job.source.dtype} (exact)" if stored else ""
    summary = Summary(
        command=plan.operation,
        options=options,
        steps=[
            Step("input", tuple(job.source.shape), str(job.source.dtype), str(job.input_ref), note),
            Step("output", plan.out_shape, str(plan.out_dtype), ""),
        ],
    )
    if outputs is not None:
        summary.steps[-1].where = str(outputs.data)
        for name, target in outputs.extras.items():
            label = _EXTRA_LABELS.get((plan.operation, name), name)
            shape = plan.extra_shape or ()
            summary.steps.append(Step(label, shape, str(EXTRA_DTYPES[name]), str(target)))
    return summary


def execute(
    job: Job,
    request: OutputRequest,
    *,
    progress: Progress = no_progress,
    warn: Callable[[str], None] = lambda _message: None,
    on_plan: Callable[[Summary], None] = lambda _summary: None,
) -> Summary:
    """Run a job to the end and say what it did.

    Every output is resolved and checked first, exactly as the run writes it, so a dry run
    fails where the real run would. `on_plan` gets the summary before any work starts (a
    long run shows what it is doing); `--dry-run` stops there.
    """
    inputs = _inputs(job)
    outputs = plan_outputs(job, request, inputs)
    summary = plan_summary(job, outputs)
    verb = "would write" if request.dry_run else "wrote"
    summary.notices = [f"{verb} {text}" for text in outputs.chosen]
    if request.dry_run:
        summary.messages.append("dry run: nothing computed or written")
        summary.dry_run = True
        on_plan(summary)
        return summary
    on_plan(summary)
    provenance: dict[str, Any] = {"source": str(job.input_ref), "operation": job.plan.operation}
    provenance["options"] = summary.options
    if "lengths" in outputs.extras:
        provenance["lengths"] = str(outputs.extras["lengths"].shown)
    target = outputs.data.ref
    with engines.open_engine(request) as engine:
        plan, basis = job.plan, None
        if plan.pca is not None:
            plan, basis = _fit_pca(job, request, engine, progress)
        audit = PaddingAudit(audit_spec(plan, job.mask))
        if plan.operation == "reshape":
            shape, extra = _reshape(job, plan, target, request, inputs, provenance, audit)
            summary.steps[1].shape = shape  # a padding value packs to a row count found now
        else:
            extra = _stream(job, plan, target, request, inputs, provenance, engine, audit, progress)
    summary.warnings = audit.reported
    for finding in audit.reported:
        warn(finding.message)
    # The side outputs follow the data, so that an interrupt leaves all or nothing
    # (`lstmshape.interrupts`: from the first commit on the run finishes).
    for name, side in outputs.extras.items():
        linked = {**provenance, f"{name}_of": str(outputs.data.shown)}
        _save(extra, side.ref, request, inputs, linked, extra_dims(plan))
    if basis is not None and outputs.basis is not None:
        _save_basis(basis, outputs.basis.ref, request, job)
    return summary


def resolve_output(request: OutputRequest, input_ref: ArrayRef, label: str) -> ArrayRef:
    """-o as given; else stdout when it is not a terminal; else a new file named for the job."""
    from lstmshape import io

    if request.output_ref is not None:
        if request.output_ref.is_stdio and request.stdout_is_terminal:
            raise InputError(
                "-o - writes binary .npy data, and standard output is a terminal; "
                "pipe it (| lstmshape inspect -) or name a file with -o"
            )
        return request.output_ref
    if not request.stdout_is_terminal and not request.as_json:
        return ArrayRef("-", None)
    return parse_ref(io.default_output_path(input_ref, label))


def plan_outputs(job: Job, request: OutputRequest, inputs: list[ArrayRef]) -> Outputs:
    """Resolve and check every output the run writes, before any work (and in a dry run):
    an existing output without --force, a missing folder, an input as output, a side
    output that does not apply, packed lengths with nowhere to go."""
    from lstmshape import io

    def check(ref: ArrayRef, reads: list[ArrayRef] = inputs) -> Target:
        return Target(ref, io.check_output(ref, force=request.force, inputs=reads))

    outputs = Outputs(check(resolve_output(request, job.input_ref, job.plan.label)))
    if request.output_ref is None and not outputs.data.ref.is_stdio:
        outputs.chosen.append(f"{outputs.data} (no -o given)")
    for name, ref in job.extra_outs.items():
        if name != job.plan.extra_name:
            raise InputError(f"--{name}-out does not apply to this {job.plan.operation}")
        outputs.extras[name] = check(ref)
    if job.plan.extra_name == "lengths" and "lengths" not in outputs.extras:
        outputs.extras["lengths"] = check(lengths_beside(outputs.data.shown))
        outputs.chosen.append(f"the lengths to {outputs.extras['lengths']} (beside the data)")
    if job.basis_out is not None:
        outputs.basis = check(job.basis_out, parts_of(job.input_ref))
    return outputs


def lengths_beside(data: ArrayRef) -> ArrayRef:
    """Where packed steps keep their per-sample lengths: `KEY_lengths` in the same container
    (`--to padded` reads them from there). A `.npy` file or standard output has no room."""
    if data.key:
        return ArrayRef(data.path, f"{data.key}_lengths")
    where = "standard output" if data.is_stdio else str(data)
    raise InputError(
        f"--drop-padding into {where} would lose the per-sample lengths (the only record of "
        "where each sample ends): give --lengths-out FILE, or write to a container "
        "(.h5, .npz, .zarr with a KEY) that stores them beside the data"
    )


def _inputs(job: Job) -> list[ArrayRef]:
    """Every single file the job reads (none of them may be an output)."""
    refs = [job.input_ref, *job.extra_inputs]
    return [part for ref in refs for part in parts_of(ref)] + job.mask.inputs()


def _stream(
    job: Job,
    plan: Plan,
    target: ArrayRef,
    request: OutputRequest,
    inputs: list[ArrayRef],
    provenance: dict[str, Any],
    engine: Any,
    audit: PaddingAudit,
    progress: Progress,
) -> Any:
    from lstmshape import io

    may_fail_late = request.strict or plan.nan_policy != "propagate"
    may_fail_late |= plan.rejects_empty and job.spec.validity is None
    # A stream on standard input shows it was cut short only when it ends.
    may_fail_late |= job.input_ref.is_stdio
    # A gather reads too little to audit, a fold reads time rows (not whole samples), and
    # the dask engine's blocks stay on its workers: they audit their first samples instead.
    sampled = request.engine == "dask" or gather.can_gather(job.source, plan, job.spec)
    sampled |= request.engine != "dask" and timerows.can_fold(
        job.source, plan, job.spec, request.chunk_bytes
    )
    if sampled:
        audit.report(sample_findings(job.source, plan, job.spec, audit.spec), request.strict)
    with (
        progress(job.source.nbytes, _pass_label(plan)) as advance,
        io.open_sink(
            target,
            plan.out_shape,
            plan.out_dtype,
            force=request.force,
            inputs=inputs,
            provenance=provenance,
            hold_stdout=may_fail_late,  # standard output waits for the whole-input checks
            dims=output_dims(plan),
        ) as sink,
    ):
        extra = engine.run_plan(
            job.source,
            plan,
            job.spec,
            sink,
            chunk_bytes=request.chunk_bytes,
            on_block=advance,
            **({} if sampled else {"audit": audit}),
        )
        if not sampled:
            audit.report(audit.findings(job.spec.validity), request.strict)
        return extra


def _pass_label(plan: Plan) -> str:
    return "pass 2 of 2: projecting" if plan.pca is not None else plan.operation


def _reshape(
    job: Job,
    plan: Plan,
    target: ArrayRef,
    request: OutputRequest,
    inputs: list[ArrayRef],
    provenance: dict[str, Any],
    audit: PaddingAudit,
) -> tuple[tuple[int, ...], Any]:
    """reshape holds its whole input in memory (reduce, pool and project stream it)."""
    why = "reshape holds its whole input in memory (reduce, pool and project stream it)"
    refuse_over_memory(job.source, str(job.input_ref), why)
    refuse_large_output(plan, why.replace("input", "output"))
    data = job.source.read_all()
    validity = None
    if data.ndim == 3 and plan.options["to"] != "padded":
        x_ntf = as_ntf(data, plan.layout)
        validity = job.spec.for_block(x_ntf, 0, x_ntf.shape[0])
        audit.add(x_ntf, validity)
        audit.report(audit.findings(job.spec.validity), request.strict)
    assert plan.kernel is not None  # reshape plans always carry theirs
    result = plan.kernel(data, validity)  # type: ignore[arg-type]
    out, extra = result if isinstance(result, tuple) else (result, None)
    _save(out, target, request, inputs, provenance, output_dims(plan))
    return tuple(out.shape), extra


def _save(
    data: Any,
    target: ArrayRef,
    request: OutputRequest,
    inputs: list[ArrayRef],
    provenance: dict[str, Any],
    dims: tuple[str, ...] | None = None,
) -> None:
    from lstmshape import io

    io.save(data, target, force=request.force, inputs=inputs, provenance=provenance, dims=dims)


def _fit_pca(job: Job, request: OutputRequest, engine: Any, progress: Progress) -> tuple[Plan, Any]:
    """The first pass of --pca: fit the basis on the valid steps and bind it to the
    projection plan (the second pass); returns the plan and the basis."""
    from lstmshape import io

    io.rereadable(job.source)  # the projection reads it again
    with progress(job.source.nbytes, "pass 1 of 2: fitting PCA") as advance:
        basis = engine.fit_pca(
            job.source,
            job.plan.layout if len(job.source.shape) == 3 else "ntf",
            job.spec,
            job.plan.pca,
            chunk_bytes=request.chunk_bytes,
            on_block=advance,
        )
    return with_basis(job.plan, basis.components, basis.bias), basis


def _save_basis(basis: Any, ref: ArrayRef, request: OutputRequest, job: Job) -> None:
    from lstmshape import io

    inputs = parts_of(job.input_ref)
    io.save_members(ref, basis.as_dict(), force=request.force, inputs=inputs)
