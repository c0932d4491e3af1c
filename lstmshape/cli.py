"""The command line: parse, load, call the library, save and render.

The only module that imports click. numpy, h5py and rich are imported inside the
commands, so `lstmshape --help` and `--version` start fast.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import wraps
from typing import TYPE_CHECKING, Any

import click

from lstmshape._version import __version__
from lstmshape.errors import InputError, LstmShapeError, OutputError
from lstmshape.refs import ArrayRef, parse_ref

if TYPE_CHECKING:
    from lstmshape.api import Plan
    from lstmshape.masks import Layout, PadSide
    from lstmshape.report import Summary
    from lstmshape.stream import MaskSpec

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
STRATEGIES = ("last", "first", "mean", "max", "min", "sum")
ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid")
PRESETS = (
    "flatten",
    "steps",
    "time-major",
    "batch-first",
    "split-directions",
    "merge-directions",
    "padded",
)


@dataclass
class Terminal:
    """Which standard streams are terminals, read once; tests pass their own."""

    stdin_isatty: bool = field(default_factory=lambda: _isatty(sys.stdin))
    stdout_isatty: bool = field(default_factory=lambda: _isatty(sys.stdout))
    stderr_isatty: bool = field(default_factory=lambda: _isatty(sys.stderr))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class RefType(click.ParamType):
    """`PATH[:KEY]` text -> ArrayRef; the file itself is opened later, by io."""

    name = "PATH[:KEY]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> ArrayRef:
        if isinstance(value, ArrayRef):
            return value
        try:
            return parse_ref(str(value))
        except InputError as error:
            self.fail(str(error), param, ctx)


REF = RefType()


class LstmShapeGroup(click.Group):
    """Turns every failure into one `Error:` line and an exit code (2 input, 1 other)."""

    def main(  # type: ignore[override]  # always exits, in every mode
        self, args: Any = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        extra.pop("standalone_mode", None)
        try:
            code = super().main(argv, prog_name or "lstmshape", standalone_mode=False, **extra)
        except click.exceptions.Abort:
            _fail("aborted", 1)
        except click.ClickException as error:
            _fail(error.format_message(), error.exit_code)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except LstmShapeError as error:
            if "--debug" in argv:
                raise
            _fail(str(error), 1 if isinstance(error, OutputError) else 2)
        except Exception as error:
            if "--debug" in argv:
                raise
            _fail(f"{type(error).__name__}: {error} (run with --debug for a traceback)", 1)
        sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    first_line = " ".join(message.split())
    click.echo(f"Error: {first_line}", err=True)
    sys.exit(code)


def _quiet_broken_pipe() -> None:
    """The reader went away (`| head`): stop without a traceback, as a failed write."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(1)


@click.group(cls=LstmShapeGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="lstmshape")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Inspect and reshape saved LSTM/GRU outputs, padding-aware.

    Data goes to standard output or a file; tables go to standard error.
    """
    if ctx.obj is None:
        ctx.obj = Terminal()


def main() -> None:
    cli.main()


# ---------------------------------------------------------------- several inputs


def _join_inputs(
    ctx: click.Context | None, param: click.Parameter | None, value: tuple[ArrayRef, ...]
) -> ArrayRef | None:
    """Several paths or globs -> one reference, joined along N (`lstmshape.sources`)."""
    if not value:
        return None
    from lstmshape.sources import expand_refs, join_refs

    return join_refs(expand_refs(value), text=" ".join(str(v) for v in value))


def _expand_inputs(
    ctx: click.Context | None, param: click.Parameter | None, value: tuple[ArrayRef, ...]
) -> tuple[ArrayRef, ...]:
    """Globs -> the paths they match (inspect shows each file)."""
    from lstmshape.sources import expand_refs

    return tuple(expand_refs(value))


#: INPUT of reduce/pool/project: one or more PATH[:KEY] or globs, concatenated along N.
inputs_argument = click.argument(
    "input_ref", metavar="INPUT...", nargs=-1, required=True, type=REF, callback=_join_inputs
)


def _open_input(ref: ArrayRef, layout: str) -> Any:
    """io.open_array, or a `sources.MultiSource` when `ref` joins several files."""
    from lstmshape import io, sources

    if isinstance(ref, sources.MultiRef):
        return sources.open_sources(ref, layout)
    return io.open_array(ref)


def _all_parts(refs: list[ArrayRef | None]) -> list[ArrayRef]:
    """Every single file behind `refs` (for the input-is-not-the-output checks)."""
    from lstmshape.sources import parts_of

    return [part for ref in refs for part in parts_of(ref)]


# ---------------------------------------------------------------- shared options


def _stack(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(function: Any) -> Any:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


layout_option = click.option(
    "--layout",
    type=click.Choice(["ntf", "tnf"]),
    default="ntf",
    show_default=True,
    help="ntf = (N, T, F) batch-first; tnf = (T, N, F) time-major. Masks follow it.",
)

mask_options = _stack(
    layout_option,
    click.option(
        "--mask",
        "mask_ref",
        type=REF,
        multiple=True,
        callback=_join_inputs,
        help="(N, T) bool or 0/1 mask; nonzero = valid. Several files or a glob: joined along N.",
    ),
    click.option(
        "--lengths",
        "lengths_ref",
        type=REF,
        multiple=True,
        callback=_join_inputs,
        help="(N,) valid lengths per sample. Several files or a glob: joined along N.",
    ),
    click.option(
        "--mask-value",
        type=str,
        default=None,
        help="A step is padding when ALL its features equal this value (nan works).",
    ),
    click.option(
        "--pad-side",
        type=click.Choice(["post", "pre"]),
        default="post",
        show_default=True,
        help="With --lengths: padding after (post) or before (pre).",
    ),
)

nan_policy_option = click.option(
    "--nan-policy",
    type=click.Choice(["propagate", "omit", "raise"]),
    default="propagate",
    show_default=True,
    help="NaN in a valid step: propagate it, omit the step (as padding) or raise an error.",
)


def _allow_external(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    from lstmshape import io

    ctx.with_resource(io.allow_external(value))  # for this command only
    return value


report_options = _stack(
    click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout."),
    click.option("-q", "--quiet", is_flag=True, help="No table on stderr."),
    click.option("--debug", is_flag=True, expose_value=False, help="Show tracebacks."),
    click.option(
        "--allow-external",
        is_flag=True,
        expose_value=False,
        callback=_allow_external,
        help="Let HDF5 inputs read other files (external links, virtual datasets, "
        "external storage).",
    ),
)

output_options = _stack(
    click.option(
        "-o",
        "--output",
        "output_ref",
        type=REF,
        help="PATH[:KEY] (.npy .npz .h5) or - for .npy on stdout.",
    ),
    click.option("--force", is_flag=True, help="Overwrite an existing output (or h5 KEY)."),
    click.option("--dry-run", is_flag=True, help="Show the shapes; compute and write nothing."),
    click.option(
        "--chunk-mb",
        type=click.FloatRange(min=0.001),
        default=16.0,
        show_default=True,
        help="Block size for streaming along N.",
    ),
    report_options,
)


engine_options = _stack(
    click.option(
        "--engine",
        type=click.Choice(["inprocess", "dask"]),
        default="inprocess",
        show_default=True,
        help="inprocess: stream in this process. dask: the same kernels per block on a "
        "dask cluster (needs lstmshape[dask]).",
    ),
    click.option(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="With --engine dask: a running dask scheduler, e.g. tcp://10.0.0.5:8786.",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="With --engine dask: start a local cluster of K worker processes.",
    ),
)


def _check_engine(request: OutputRequest) -> None:
    if request.engine != "dask" and (request.scheduler or request.workers):
        raise click.UsageError("--scheduler and --workers go with --engine dask")
    if request.scheduler and request.workers:
        raise click.UsageError("give --scheduler (a running cluster) or --workers, not both")


def _dask_session(output: OutputRequest) -> Any:
    """One dask Session per command (a Client, or a LocalCluster it started), closed with it."""
    ctx = click.get_current_context()
    session = ctx.meta.get("lstmshape.dask")
    if session is None:
        try:
            from lstmshape.engines.dask_engine import Session
        except ImportError as error:
            raise InputError(
                f"--engine dask needs the dask extra: pip install 'lstmshape[dask]' ({error})"
            ) from None
        session = Session(scheduler=output.scheduler, workers=output.workers)
        ctx.meta["lstmshape.dask"] = session
        ctx.call_on_close(session.close)
    return session


def _engine_run_plan(output: OutputRequest) -> Callable[..., Any]:
    """`stream.run_plan`, or its dask twin (same arguments) under --engine dask."""
    if output.engine != "dask":
        from lstmshape.stream import run_plan

        return run_plan
    session = _dask_session(output)
    from functools import partial

    from lstmshape.engines import dask_engine

    return partial(dask_engine.run_plan, session=session)


@dataclass
class OutputRequest:
    output_ref: ArrayRef | None
    force: bool
    dry_run: bool
    chunk_mb: float
    as_json: bool
    quiet: bool
    engine: str = "inprocess"  # engine_options: reduce, pool, project
    scheduler: str | None = None
    workers: int | None = None

    @classmethod
    def pop(cls, params: dict[str, Any]) -> OutputRequest:
        engine = {k: params.pop(k) for k in ("engine", "scheduler", "workers") if k in params}
        request = cls(
            **{
                name: params.pop(name)
                for name in ("output_ref", "force", "dry_run", "chunk_mb", "as_json", "quiet")
            },
            **engine,
        )
        _check_engine(request)
        return request


@dataclass
class MaskRequest:
    layout: Layout
    mask_ref: ArrayRef | None
    lengths_ref: ArrayRef | None
    mask_value: str | None
    pad_side: PadSide

    @classmethod
    def pop(cls, params: dict[str, Any]) -> MaskRequest:
        return cls(
            **{
                name: params.pop(name)
                for name in ("layout", "mask_ref", "lengths_ref", "mask_value", "pad_side")
            }
        )

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.mask_ref, self.lengths_ref, self.mask_value))

    def inputs(self) -> list[ArrayRef]:
        return [ref for ref in (self.mask_ref, self.lengths_ref) if ref is not None]

    def describe(self) -> str:
        """The mask source in words, for the table and the provenance attributes."""
        if self.mask_ref is not None:
            return f"mask {self.mask_ref}"
        if self.lengths_ref is not None:
            return f"lengths {self.lengths_ref} ({self.pad_side}-padded)"
        if self.mask_value is not None:
            return f"padding value {self.mask_value}"
        return "none (every step valid)"


def _requests(function: Callable[..., None]) -> Callable[..., None]:
    """Gather the shared options into MaskRequest/OutputRequest before the command runs."""

    @wraps(function)
    def wrapper(**params: Any) -> None:
        term = click.get_current_context().find_object(Terminal) or Terminal()
        output = OutputRequest.pop(params)
        if output.as_json and output.output_ref is not None and output.output_ref.is_stdio:
            raise click.UsageError("--json writes to standard output; it cannot go with -o -")
        mask = MaskRequest.pop(params) if "layout" in params and "mask_ref" in params else None
        function(term=term, output=output, mask=mask, **params)

    return wrapper


# ---------------------------------------------------------------- shared steps


def _mask_spec(request: MaskRequest, shape_ntf: tuple[int, ...]) -> MaskSpec:
    """Load the mask source (small arrays, read whole) into a MaskSpec for the engine."""
    from lstmshape import io
    from lstmshape.masks import build_validity
    from lstmshape.stream import MaskSpec

    sources = [
        s for s in (request.mask_ref, request.lengths_ref, request.mask_value) if s is not None
    ]
    if len(sources) > 1:
        raise InputError("give at most one of --mask, --lengths, --mask-value")
    if request.mask_value is not None:
        return MaskSpec(mask_value=_parse_float(request.mask_value, "--mask-value"))
    if not sources:
        return MaskSpec()
    n, t = shape_ntf[0], shape_ntf[1]
    n_axis = 1 if request.layout == "tnf" else 0
    mask = (
        None
        if request.mask_ref is None
        else _load_small(io, request.mask_ref, "mask", n_axis, values=n * t)
    )
    lengths = (
        None
        if request.lengths_ref is None
        else _load_small(io, request.lengths_ref, "lengths", values=n)
    )
    validity = build_validity(
        None, n=n, t=t, mask=mask, lengths=lengths, pad_side=request.pad_side, layout=request.layout
    )
    if len(validity.counts()) != n:
        raise InputError(
            f"lengths have {len(validity.counts())} entries; the data has N={n} samples"
        )
    return MaskSpec(validity=validity)


def _load_small(
    io: Any, ref: ArrayRef, what: str, axis: int = 0, *, values: int | None = None
) -> Any:
    """A mask, lengths, weights or bias array, read whole. `values`: how many it must hold."""
    import numpy as np

    from lstmshape.sources import MultiRef, load_joined

    if isinstance(ref, MultiRef):  # several files joined along N (axis)
        return load_joined(ref, axis)
    with io.open_array(ref) as source:
        _refuse_unread(source, what, values)
        return np.asarray(source.read_all())


# Below this size a mask or lengths array is read and checked in full (the messages say
# what is wrong with it); above it, one holding the wrong number of values is refused unread.
_CHECK_UNREAD_BYTES = 1 << 24


def _refuse_unread(source: Any, what: str, values: int | None) -> None:
    """Refuse an array that is read whole before reading it: a header can declare any size,
    and a compressed one can inflate far beyond its file."""
    size = int(math.prod(source.shape))
    if values is not None and size != values and source.nbytes > _CHECK_UNREAD_BYTES:
        raise InputError(
            f"{what} {source.info.ref} has shape {tuple(source.shape)} ({size} values); "
            f"the data needs {values}"
        )
    _refuse_over_memory(source, f"{what} {source.info.ref}", "it is read whole")


def _refuse_over_memory(source: Any, what: str, why: str) -> None:
    from lstmshape import io

    limit = io.memory_limit()
    if source.nbytes > limit:
        raise InputError(
            f"{what} holds {_size(source.nbytes)}; {why}, and at most {_size(limit)} is read "
            "into memory at once (LSTMSHAPE_MAX_MEMORY)"
        )


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _parse_float(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{option} takes a number or nan; got {text!r}") from None


def _resolve_output(
    term: Terminal, request: OutputRequest, input_ref: ArrayRef, operation: str
) -> ArrayRef:
    """-o as given; else stdout when it is not a terminal; else a new file named for the job."""
    from lstmshape import io

    if request.output_ref is not None:
        return request.output_ref
    if not term.stdout_isatty and not request.as_json:
        return ArrayRef("-", None)
    return parse_ref(io.default_output_path(input_ref, operation))


def _summary(
    command: str,
    input_ref: ArrayRef,
    in_shape: tuple[int, ...],
    in_dtype: Any,
    out_shape: tuple[int, ...],
    out_dtype: Any,
    options: dict[str, Any],
) -> Summary:
    from lstmshape.report import Step, Summary

    return Summary(
        command=command,
        options=options,
        steps=[
            Step("input", tuple(in_shape), str(in_dtype), str(input_ref)),
            Step("output", tuple(out_shape), str(out_dtype), ""),
        ],
    )


def _report(summary: Summary, request: OutputRequest, *, dry_run: bool = False) -> None:
    from lstmshape.report import print_json

    if dry_run:
        summary.messages.append("dry run: nothing computed or written")
    if request.as_json:
        payload = summary.to_dict()
        payload["dry_run"] = dry_run
        print_json(payload)
    if not request.quiet:
        from lstmshape import render

        render.print_summary(summary)


@contextmanager
def _progress(term: Terminal, request: OutputRequest, total: int, label: str) -> Iterator[Any]:
    if not term.stderr_isatty or request.quiet:
        yield lambda _nbytes: None
        return
    from lstmshape import render

    with render.progress_bar(total, label, enabled=True) as advance:
        yield advance


def _run_streamed(
    term: Terminal,
    input_ref: ArrayRef,
    source: Any,
    plan: Plan,
    spec: MaskSpec,
    output: OutputRequest,
    mask: MaskRequest,
    *,
    extra_inputs: tuple[ArrayRef, ...] = (),
    mask_out: ArrayRef | None = None,
    warning: str | None = None,
) -> None:
    """The shared tail of reduce/pool/project: plan -> check output -> stream -> report."""
    from lstmshape import io

    summary = _summary(
        plan.operation,
        input_ref,
        source.shape,
        source.dtype,
        plan.out_shape,
        plan.out_dtype,
        {**plan.options, "mask": mask.describe()},
    )
    if output.dry_run:
        _report(summary, output, dry_run=True)
        return
    target = _resolve_output(term, output, input_ref, _operation_name(plan))
    inputs = _all_parts([input_ref, *mask.inputs(), *extra_inputs])
    io.check_output(target, force=output.force, inputs=inputs)
    if mask_out is not None:
        io.check_output(mask_out, force=output.force, inputs=inputs)
    if warning and not output.quiet:
        click.echo(f"Warning: {warning}", err=True)
    provenance = {"source": str(input_ref), "operation": plan.operation, "options": summary.options}
    with (
        _progress(term, output, source.nbytes, plan.operation) as advance,
        io.open_sink(
            target,
            plan.out_shape,
            plan.out_dtype,
            force=output.force,
            inputs=inputs,
            provenance=provenance,
            hold_stdout=_checks_at_end(plan, spec),
        ) as sink,
    ):
        out_mask = _engine_run_plan(output)(
            source, plan, spec, sink, chunk_bytes=int(output.chunk_mb * 2**20), on_block=advance
        )
        plan.finish()  # whole-input checks (--nan-policy) before the output is published
    summary.steps[-1].where = _where(target)
    if mask_out is not None and out_mask is not None:
        io.save(out_mask, mask_out, force=output.force, inputs=inputs, provenance=provenance)
        _add_step(summary, "output mask", out_mask.shape, out_mask.dtype, _where(mask_out))
    _report(summary, output)


def _checks_at_end(plan: Plan, spec: MaskSpec) -> bool:
    """True when the run can still fail after its last block: standard output must then wait."""
    return plan.on_finish is not None or (plan.rejects_empty and spec.validity is None)


def _add_step(summary: Summary, label: str, shape: Any, dtype: Any, where: str) -> None:
    from lstmshape.report import Step

    summary.steps.append(Step(label, tuple(shape), str(dtype), where))


def _operation_name(plan: Plan) -> str:
    for key in ("strategy", "op"):
        if key in plan.options:
            return f"{plan.operation}-{plan.options[key]}"
    return plan.operation


def _where(ref: ArrayRef) -> str:
    return "<stdout>" if ref.is_stdio else str(ref)


@contextmanager
def _open_3d(
    input_ref: ArrayRef, layout: str, command: str
) -> Iterator[tuple[Any, tuple[int, ...]]]:
    from lstmshape.api import ntf_shape

    with _open_input(input_ref, layout) as source:
        yield source, ntf_shape(tuple(source.shape), layout, command=command)  # type: ignore[arg-type]


# ---------------------------------------------------------------- commands


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, type=REF, callback=_expand_inputs)
@layout_option
@report_options
@click.pass_obj
def inspect(
    term: Terminal, inputs: tuple[ArrayRef, ...], layout: str, as_json: bool, quiet: bool
) -> None:
    """Show shape, dtype, size, padding, valid lengths and NaN/Inf counts.

    An .h5 or .npz without KEY shows every array in it.

    \b
    Example:
      lstmshape inspect samples/post_padded.npy samples/runs.h5
    """
    from lstmshape import io
    from lstmshape.inspection import inspect_array
    from lstmshape.report import print_json

    reports = []
    for ref in inputs:
        for info in io.list_arrays(ref):
            with io.open_array(info.ref) as source:
                report = inspect_array(source, layout=layout).to_dict()
            report.update(ref=str(info.ref), key=info.ref.key, format=info.format)
            if info.format == "h5" and ref.key is None:
                report["file_tree_of"] = info.ref.path
            reports.append(report)
    if as_json:
        print_json(reports[0] if len(reports) == 1 else reports)
    if not quiet:
        from lstmshape import render

        render.print_inspect(reports)


@cli.command(context_settings=CONTEXT_SETTINGS)
@inputs_argument
@click.option(
    "-s",
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="last",
    show_default=True,
    help="last/first valid step, or mean/max/min/sum over valid steps.",
)
@click.option(
    "--bidirectional",
    is_flag=True,
    help="Features [:F/2] forward, [F/2:] backward: last takes the backward half at "
    "the FIRST valid step (PyTorch h_n).",
)
@click.option("--keepdims", is_flag=True, help="Keep a time axis of 1: (N, 1, F).")
@click.option(
    "--empty",
    type=click.Choice(["error", "nan", "zero"]),
    default="error",
    show_default=True,
    help="What a sample with no valid step gives.",
)
@nan_policy_option
@mask_options
@output_options
@engine_options
@_requests
def reduce(
    term: Terminal,
    output: OutputRequest,
    mask: MaskRequest,
    input_ref: ArrayRef,
    strategy: str,
    bidirectional: bool,
    keepdims: bool,
    empty: str,
    nan_policy: str,
) -> None:
    """Many-to-one: (N, T, F) -> (N, F), one vector per sample from its valid steps.

    \b
    Example:
      lstmshape reduce samples/post_padded.npy --strategy last \\
          --lengths samples/post_lengths.npy -o last.npy
    """
    from lstmshape.api import plan_reduce

    with _open_3d(input_ref, mask.layout, "reduce") as (source, shape_ntf):
        plan = plan_reduce(
            source.shape,
            source.dtype,
            strategy,
            layout=mask.layout,  # type: ignore[arg-type]
            bidirectional=bidirectional,
            keepdims=keepdims,
            empty=empty,
            nan_policy=nan_policy,
        )
        spec = _mask_spec(mask, shape_ntf)
        warning = None
        if strategy == "last" and not mask.given and not output.quiet:
            warning = _padding_warning(source, mask.layout, shape_ntf)
        _run_streamed(term, input_ref, source, plan, spec, output, mask, warning=warning)


def _padding_warning(source: Any, layout: str, shape_ntf: tuple[int, ...]) -> str | None:
    """Look at the first few MB of samples for trailing padding that `last` would return."""
    from lstmshape.api import as_ntf
    from lstmshape.masks import padding_warning
    from lstmshape.stream import rows_per_block

    rows = min(shape_ntf[0], rows_per_block(shape_ntf, source.dtype.itemsize, 4 * 2**20))
    sample = source.read(0, rows, axis=1 if layout == "tnf" else 0)
    return padding_warning(as_ntf(sample, layout)) if sample.size else None  # type: ignore[arg-type]


@cli.command(context_settings=CONTEXT_SETTINGS)
@inputs_argument
@click.option("--op", type=click.Choice(["avg", "max"]), default="avg", show_default=True)
@click.option(
    "--pool-size",
    type=click.IntRange(min=1),
    default=None,
    help="Window length P; without it, global pooling over time.",
)
@click.option("--strides", type=int, default=None, help="Window step S (default P).")
@click.option("--padding", type=click.Choice(["valid", "same"]), default="valid", show_default=True)
@click.option(
    "--empty",
    type=click.Choice(["error", "nan", "zero"]),
    default="error",
    show_default=True,
    help="Global pooling: what a sample with no valid step gives.",
)
@click.option("--mask-out", type=REF, default=None, help="Write the (N, T') window mask here.")
@nan_policy_option
@mask_options
@output_options
@engine_options
@_requests
def pool(
    term: Terminal,
    output: OutputRequest,
    mask: MaskRequest,
    input_ref: ArrayRef,
    op: str,
    pool_size: int | None,
    strides: int | None,
    padding: str,
    empty: str,
    mask_out: ArrayRef | None,
    nan_policy: str,
) -> None:
    """Pool over time: global (N, T, F) -> (N, F), or windowed -> (N, T', F) as Keras.

    \b
    Example:
      lstmshape pool samples/post_padded.npy --op max --mask samples/post_mask.npy
      lstmshape pool samples/post_padded.npy --pool-size 4 --padding same
    """
    from lstmshape.api import plan_pool

    if strides is not None and strides < 1:
        raise InputError(f"--strides must be at least 1; got {strides}")
    if mask_out is not None and pool_size is None:
        raise InputError("--mask-out needs --pool-size (global pooling has no time axis)")
    with _open_3d(input_ref, mask.layout, "pool") as (source, shape_ntf):
        plan = plan_pool(
            source.shape,
            source.dtype,
            op,
            pool_size=pool_size,
            strides=strides,
            padding=padding,
            layout=mask.layout,
            empty=empty,
            nan_policy=nan_policy,
        )  # type: ignore[arg-type]
        spec = _mask_spec(mask, shape_ntf)
        _run_streamed(term, input_ref, source, plan, spec, output, mask, mask_out=mask_out)


@cli.command(context_settings=CONTEXT_SETTINGS)
@inputs_argument
@click.option("--weights", "weights_ref", type=REF, help="Kernel (F, K), Keras layout.")
@click.option("--bias", "bias_ref", type=REF, help="Bias (K,).")
@click.option(
    "--weights-layout",
    type=click.Choice(["keras", "torch"]),
    default="keras",
    show_default=True,
    help="torch = a Linear.weight of shape (K, F).",
)
@click.option(
    "--pca",
    type=click.IntRange(min=1),
    default=None,
    help="Project on K principal components fitted on the valid steps.",
)
@click.option(
    "--save-basis",
    type=REF,
    default=None,
    help="With --pca: write the fitted basis (.npz or .h5: weights, bias, mean, ...).",
)
@click.option("--activation", type=click.Choice(ACTIVATIONS), default="linear", show_default=True)
@mask_options
@output_options
@engine_options
@_requests
def project(
    term: Terminal,
    output: OutputRequest,
    mask: MaskRequest,
    input_ref: ArrayRef,
    weights_ref: ArrayRef | None,
    bias_ref: ArrayRef | None,
    weights_layout: str,
    pca: int | None,
    save_basis: ArrayRef | None,
    activation: str,
) -> None:
    """Change the feature axis: (N, T, F) -> (N, T, K) with saved weights or PCA.

    With a mask, padded steps of the output hold 0.

    \b
    Example:
      lstmshape project samples/post_padded.npy --pca 4 --lengths samples/post_lengths.npy
    """
    from lstmshape import io
    from lstmshape.api import plan_project

    if (weights_ref is None) == (pca is None):
        raise InputError("give exactly one of --weights or --pca")
    if pca is None and save_basis is not None:
        raise InputError("--save-basis goes with --pca")
    if bias_ref is not None and weights_ref is None:
        raise InputError("--bias goes with --weights")
    with _open_input(input_ref, mask.layout) as source:
        shape_ntf = _project_shape_ntf(source.shape, mask.layout)
        spec = _mask_spec(mask, shape_ntf) if len(source.shape) == 3 else _no_mask(mask)
        extra: tuple[ArrayRef, ...] = ()
        if pca is not None:
            basis = _fit_pca(term, output, source, mask.layout, spec, pca)
            weights, bias = basis.components, basis.bias
            if save_basis is not None and not output.dry_run:
                basis_inputs = _all_parts([input_ref])
                io.check_output(save_basis, force=output.force, inputs=basis_inputs)
                io.save_members(
                    save_basis, _basis_members(basis), force=output.force, inputs=basis_inputs
                )
        else:
            weights = _load_small(io, weights_ref, "weights")  # type: ignore[arg-type]
            bias = None if bias_ref is None else _load_small(io, bias_ref, "bias")
            extra = tuple(r for r in (weights_ref, bias_ref) if r is not None)
        plan = plan_project(
            source.shape,
            source.dtype,
            weights,
            bias,
            activation=activation,
            weights_layout="keras" if pca else weights_layout,
            layout=mask.layout,
            zero_padding=mask.given,
        )  # type: ignore[arg-type]
        if pca is not None:
            plan.options["pca"] = pca
        _run_streamed(term, input_ref, source, plan, spec, output, mask, extra_inputs=extra)


def _basis_members(basis: Any) -> dict[str, Any]:
    """A fitted PCA basis as arrays: `--weights FILE:weights --bias FILE:bias` reuses it."""
    return {
        "weights": basis.components,
        "bias": basis.bias,
        "mean": basis.mean,
        "explained_variance": basis.explained_variance,
        "explained_variance_ratio": basis.explained_variance_ratio,
    }


def _project_shape_ntf(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    from lstmshape.api import ntf_shape

    if len(shape) == 2:
        return shape
    return ntf_shape(shape, layout, command="project")  # type: ignore[arg-type]


def _no_mask(request: MaskRequest) -> MaskSpec:
    from lstmshape.stream import MaskSpec

    if request.given:
        raise InputError("a mask needs 3-D data (N, T, F); this input is 2-D")
    return MaskSpec()


def _fit_pca(
    term: Terminal, output: OutputRequest, source: Any, layout: Layout, spec: MaskSpec, k: int
) -> Any:
    """First pass of --pca: accumulate the covariance of the valid steps block by block."""
    from lstmshape.strategies.project import PcaAccumulator
    from lstmshape.stream import iter_blocks

    if output.engine == "dask":  # a distributed pass: partial statistics merged in a tree
        from lstmshape.engines import dask_engine

        chunk_bytes = int(output.chunk_mb * 2**20)
        session = _dask_session(output)
        return dask_engine.fit_pca(
            source, layout, spec, k, session=session, chunk_bytes=chunk_bytes
        )

    features = source.shape[-1]
    accumulator = PcaAccumulator(features)
    with _progress(term, output, source.nbytes, "fitting PCA") as advance:
        blocks = iter_blocks(
            source,
            layout if len(source.shape) == 3 else "ntf",
            spec,
            chunk_bytes=int(output.chunk_mb * 2**20),
            on_block=advance,
        )
        for _start, _stop, x_ntf, validity in blocks:
            accumulator.update(x_ntf, None if validity.is_all_valid else validity)
    return accumulator.finish(k)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("input_ref", metavar="INPUT", type=REF)
@click.option(
    "--to", "preset", type=click.Choice(PRESETS), default=None, help="A preset output arrangement."
)
@click.option("--pattern", type=str, default=None, help='An einops pattern, e.g. "n t f -> t n f".')
@click.option(
    "-a",
    "--axis-size",
    "axis_sizes",
    multiple=True,
    metavar="NAME=SIZE",
    help="Size of a named axis in --pattern (repeatable).",
)
@click.option(
    "--drop-padding",
    is_flag=True,
    help="With --to steps and a mask: keep only valid steps, (sum of lengths, F).",
)
@click.option(
    "--lengths-out",
    type=REF,
    default=None,
    help="With --drop-padding: write the per-sample lengths here.",
)
@click.option(
    "--timesteps",
    type=click.IntRange(min=0),
    default=None,
    help="With --to padded: the padded length T (default: the longest).",
)
@click.option("--mask-out", type=REF, default=None, help="With --to padded: write the (N, T) mask.")
@mask_options
@output_options
@_requests
def reshape(
    term: Terminal,
    output: OutputRequest,
    mask: MaskRequest,
    input_ref: ArrayRef,
    preset: str | None,
    pattern: str | None,
    axis_sizes: tuple[str, ...],
    drop_padding: bool,
    lengths_out: ArrayRef | None,
    timesteps: int | None,
    mask_out: ArrayRef | None,
) -> None:
    """Rearrange axes: a preset (--to) or an einops pattern (--pattern).

    `--to padded` is the inverse of `--to steps --drop-padding`: packed (sum L, F) with
    --lengths back to (N, T, F).

    \b
    Example:
      lstmshape reshape samples/post_padded.npy --to steps --drop-padding \\
          --lengths samples/post_lengths.npy -o packed.npy
      lstmshape reshape samples/bidirectional.npy --pattern "n t (d h) -> n t d h" -a d=2
    """
    from lstmshape import io

    if (preset is None) == (pattern is None):
        raise InputError("give exactly one of --to or --pattern")
    sizes = _parse_sizes(axis_sizes)
    with io.open_array(input_ref) as source:
        out_shape, compute = _reshape_job(
            tuple(source.shape), preset, pattern, sizes, mask, drop_padding, timesteps
        )
        options = {
            "to": preset,
            "pattern": pattern,
            "sizes": sizes,
            "drop_padding": drop_padding,
            "layout": mask.layout,
        }
        summary = _summary(
            "reshape", input_ref, source.shape, source.dtype, out_shape, source.dtype, options
        )
        if output.dry_run:
            _report(summary, output, dry_run=True)
            return
        _refuse_over_memory(
            source,
            str(input_ref),
            "reshape holds its whole input in memory (reduce, pool and project stream it)",
        )
        out, side_outputs = compute(source.read_all())
    side_targets = {"lengths": lengths_out, "mask": mask_out}
    _save_reshaped(term, output, input_ref, mask, out, side_outputs, side_targets, summary)


ReshapeCompute = Callable[[Any], "tuple[Any, dict[str, Any]]"]


def _reshape_job(
    shape: tuple[int, ...],
    preset: str | None,
    pattern: str | None,
    sizes: dict[str, int],
    mask: MaskRequest,
    drop_padding: bool,
    timesteps: int | None,
) -> tuple[tuple[int, ...], ReshapeCompute]:
    """The output shape, known without reading data, and the function that makes it."""
    from lstmshape.strategies import reshape as kernels

    if drop_padding and preset != "steps":
        raise InputError("--drop-padding goes with --to steps")
    if pattern is not None:
        shape_out = kernels.pattern_shape(shape, pattern, sizes)
        return shape_out, lambda data: (kernels.rearrange_pattern(data, pattern, sizes), {})
    if preset == "padded":
        return _pad_job(shape, mask, timesteps)
    if drop_padding:
        return _pack_job(shape, mask)
    assert preset is not None  # exactly one of --to and --pattern was given
    layout, chosen = mask.layout, preset
    shape_out = kernels.preset_shape(shape, chosen, layout)
    return shape_out, lambda data: (kernels.reshape_preset(data, chosen, layout=layout), {})


def _pad_job(
    shape: tuple[int, ...], mask: MaskRequest, timesteps: int | None
) -> tuple[tuple[int, ...], ReshapeCompute]:
    from lstmshape.strategies import reshape as kernels

    if mask.lengths_ref is None:
        raise InputError("--to padded needs --lengths (the lengths of the packed samples)")
    lengths = _load_small(_io(), mask.lengths_ref, "lengths")
    n, t, *features = kernels.pad_shape(shape, lengths, timesteps)
    time_major = mask.layout == "tnf"

    def compute(data: Any) -> tuple[Any, dict[str, Any]]:
        padded, out_mask = kernels.pad_steps(data, lengths, t=timesteps, pad_side=mask.pad_side)  # type: ignore[arg-type]
        if time_major:
            padded, out_mask = padded.transpose(1, 0, 2), out_mask.T
        return padded, {"mask": out_mask}

    return ((t, n, *features) if time_major else (n, t, *features)), compute


def _pack_job(shape: tuple[int, ...], mask: MaskRequest) -> tuple[tuple[int, ...], ReshapeCompute]:
    from lstmshape.api import as_ntf, ntf_shape
    from lstmshape.strategies import reshape as kernels

    shape_ntf = ntf_shape(shape, mask.layout, command="reshape --drop-padding")  # type: ignore[arg-type]
    if not mask.given:
        raise InputError("--drop-padding needs --mask, --lengths or --mask-value")
    spec = _mask_spec(mask, shape_ntf)
    layout = mask.layout

    def compute(data: Any) -> tuple[Any, dict[str, Any]]:
        x_ntf = as_ntf(data, layout)  # type: ignore[arg-type]
        packed, lengths = kernels.pack_steps(x_ntf, spec.for_block(x_ntf, 0, shape_ntf[0]))
        return packed, {"lengths": lengths}

    if spec.validity is None:  # --mask-value: the count needs the data
        return (-1, shape_ntf[2]), compute
    return kernels.pack_shape(shape_ntf, spec.validity), compute


def _io() -> Any:
    from lstmshape import io

    return io


def _save_reshaped(
    term: Terminal,
    output: OutputRequest,
    input_ref: ArrayRef,
    mask: MaskRequest,
    out: Any,
    side_outputs: dict[str, Any],
    side_targets: dict[str, ArrayRef | None],
    summary: Summary,
) -> None:
    io = _io()
    target = _resolve_output(term, output, input_ref, "reshape")
    inputs = [input_ref, *mask.inputs()]
    io.check_output(target, force=output.force, inputs=inputs)
    chosen = {name: ref for name, ref in side_targets.items() if ref is not None}
    for name, ref in chosen.items():
        if name not in side_outputs:
            raise InputError(f"--{name}-out does not apply to this reshape")
        io.check_output(ref, force=output.force, inputs=inputs)
    provenance = {"source": str(input_ref), "operation": "reshape", "options": summary.options}
    io.save(out, target, force=output.force, inputs=inputs, provenance=provenance)
    summary.steps[-1].where = _where(target)
    for name, ref in chosen.items():
        io.save(side_outputs[name], ref, force=output.force, inputs=inputs, provenance=provenance)
        _add_step(summary, name, side_outputs[name].shape, side_outputs[name].dtype, _where(ref))
    _report(summary, output)


def _parse_sizes(pairs: tuple[str, ...]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not name or not value.strip().isdigit():
            raise InputError(f"-a takes NAME=SIZE with a whole number; got {pair!r}")
        sizes[name.strip()] = int(value)
    return sizes


from lstmshape import cli_diff  # noqa
