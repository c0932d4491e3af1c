"""The one run path of reduce, pool, project and reshape.

plan (shapes only) -> summary -> [dry run: stop] -> fit (PCA) -> resolve and check every
output -> open the sink -> engine -> commit -> side outputs -> summary. The command line
builds a `Job` and an `OutputRequest` and renders what comes back; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from lstmshape import engines
from lstmshape.errors import InputError
from lstmshape.inputs import MaskRequest
from lstmshape.limits import refuse_large_output, refuse_over_memory
from lstmshape.masks import MaskSpec
from lstmshape.plan import Plan, as_ntf, with_basis
from lstmshape.refs import ArrayRef, parse_ref
from lstmshape.report import Step, Summary
from lstmshape.sources import parts_of

Advance = Callable[[int], None]
Progress = Callable[[int, str], AbstractContextManager[Advance]]


@contextmanager
def no_progress(_total: int, _label: str) -> Iterator[Advance]:
    yield lambda _nbytes: None


@dataclass(frozen=True)
class OutputRequest:
    """Where and how a command writes, and which engine runs it."""

    output_ref: ArrayRef | None = None
    force: bool = False
    dry_run: bool = False
    chunk_mb: float = 16.0
    as_json: bool = False
    stdout_is_terminal: bool = False
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
    warnings: list[str] = field(default_factory=list)

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: object) -> None:
        self.source.close()


def plan_summary(job: Job) -> Summary:
    """The before/after table of a job, from its plan alone."""
    plan = job.plan
    options = dict(plan.options)
    if plan.operation != "reshape":  # reshape reads a mask only to pack, and says so itself
        options["mask"] = job.mask.describe()
    return Summary(
        command=plan.operation,
        options=options,
        steps=[
            Step("input", tuple(job.source.shape), str(job.source.dtype), str(job.input_ref)),
            Step("output", plan.out_shape, str(plan.out_dtype), ""),
        ],
    )


def execute(
    job: Job,
    request: OutputRequest,
    *,
    progress: Progress = no_progress,
    warn: Callable[[str], None] = lambda _message: None,
) -> Summary:
    """Run a job to the end and say what it did; `--dry-run` stops after the plan."""
    summary = plan_summary(job)
    if request.dry_run:
        summary.messages.append("dry run: nothing computed or written")
        summary.dry_run = True
        return summary
    target = resolve_output(request, job.input_ref, job.plan.label)
    inputs = _inputs(job)
    _check_outputs(job, target, request, inputs)
    for message in job.warnings:
        warn(message)
    provenance: dict[str, Any] = {"source": str(job.input_ref), "operation": job.plan.operation}
    provenance["options"] = summary.options
    with engines.open_engine(request) as engine:
        plan = job.plan if job.plan.pca is None else _fit_pca(job, request, engine, progress)
        if plan.operation == "reshape":
            extra = _reshape(job, plan, target, request, inputs, provenance)
        else:
            extra = _stream(job, plan, target, request, inputs, provenance, engine, progress)
    summary.steps[-1].where = _where(target)
    for ref in job.extra_outs.values():
        _save(extra, ref, request, inputs, provenance)
        label = "output mask" if plan.operation == "pool" else str(plan.extra_name)
        summary.steps.append(Step(label, tuple(extra.shape), str(extra.dtype), _where(ref)))
    return summary


def resolve_output(request: OutputRequest, input_ref: ArrayRef, label: str) -> ArrayRef:
    """-o as given; else stdout when it is not a terminal; else a new file named for the job."""
    from lstmshape import io

    if request.output_ref is not None:
        return request.output_ref
    if not request.stdout_is_terminal and not request.as_json:
        return ArrayRef("-", None)
    return parse_ref(io.default_output_path(input_ref, label))


def _inputs(job: Job) -> list[ArrayRef]:
    """Every single file the job reads (none of them may be an output)."""
    refs = [job.input_ref, *job.extra_inputs]
    return [part for ref in refs for part in parts_of(ref)] + job.mask.inputs()


def _check_outputs(job: Job, target: ArrayRef, request: OutputRequest, inputs: list[Any]) -> None:
    """Fail before any work when an output cannot be written (each one the run writes)."""
    from lstmshape import io

    io.check_output(target, force=request.force, inputs=inputs)
    for name, ref in job.extra_outs.items():
        if name != job.plan.extra_name:
            raise InputError(f"--{name}-out does not apply to this {job.plan.operation}")
        io.check_output(ref, force=request.force, inputs=inputs)
    if job.basis_out is not None:
        io.check_output(job.basis_out, force=request.force, inputs=parts_of(job.input_ref))


def _stream(
    job: Job,
    plan: Plan,
    target: ArrayRef,
    request: OutputRequest,
    inputs: list[ArrayRef],
    provenance: dict[str, Any],
    engine: Any,
    progress: Progress,
) -> Any:
    from lstmshape import io

    # A stream on standard input shows it was cut short only when it ends.
    may_fail_late = (
        plan.nan_policy != "propagate"
        or (plan.rejects_empty and job.spec.validity is None)
        or job.input_ref.is_stdio
    )
    with (
        progress(job.source.nbytes, plan.operation) as advance,
        io.open_sink(
            target,
            plan.out_shape,
            plan.out_dtype,
            force=request.force,
            inputs=inputs,
            provenance=provenance,
            hold_stdout=may_fail_late,  # standard output waits for the whole-input checks
        ) as sink,
    ):
        return engine.run_plan(
            job.source, plan, job.spec, sink, chunk_bytes=request.chunk_bytes, on_block=advance
        )


def _reshape(
    job: Job,
    plan: Plan,
    target: ArrayRef,
    request: OutputRequest,
    inputs: list[ArrayRef],
    provenance: dict[str, Any],
) -> Any:
    """reshape holds its whole input in memory (reduce, pool and project stream it)."""
    why = "reshape holds its whole input in memory (reduce, pool and project stream it)"
    refuse_over_memory(job.source, str(job.input_ref), why)
    refuse_large_output(plan, why.replace("input", "output"))
    data = job.source.read_all()
    validity = None
    if plan.extra_name == "lengths":  # packing: the validity of the whole batch
        x_ntf = as_ntf(data, plan.layout)
        validity = job.spec.for_block(x_ntf, 0, x_ntf.shape[0])
    assert plan.kernel is not None  # reshape plans always carry theirs
    result = plan.kernel(data, validity)  # type: ignore[arg-type]
    out, extra = result if isinstance(result, tuple) else (result, None)
    _save(out, target, request, inputs, provenance)
    return extra


def _save(
    data: Any,
    target: ArrayRef,
    request: OutputRequest,
    inputs: list[ArrayRef],
    provenance: dict[str, Any],
) -> None:
    from lstmshape import io

    io.save(data, target, force=request.force, inputs=inputs, provenance=provenance)


def _fit_pca(job: Job, request: OutputRequest, engine: Any, progress: Progress) -> Plan:
    """The first pass of --pca: fit the basis on the valid steps, save it if asked, and
    bind it to the projection plan."""
    from lstmshape import io

    io.rereadable(job.source)  # the projection reads it again
    with progress(job.source.nbytes, "fitting PCA") as advance:
        basis = engine.fit_pca(
            job.source,
            job.plan.layout if len(job.source.shape) == 3 else "ntf",
            job.spec,
            job.plan.pca,
            chunk_bytes=request.chunk_bytes,
            on_block=advance,
        )
    if job.basis_out is not None:
        basis_inputs = parts_of(job.input_ref)
        io.save_members(job.basis_out, basis.as_dict(), force=request.force, inputs=basis_inputs)
    return with_basis(job.plan, basis.components, basis.bias)


def _where(ref: ArrayRef) -> str:
    return "<stdout>" if ref.is_stdio else str(ref)
