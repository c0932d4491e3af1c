"""Shared options, declared once and stacked on the commands, and what they become:
a `PATH[:KEY]` parameter type, the `MaskRequest` and the `OutputRequest` of the library."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from typing import TYPE_CHECKING, Any

import click

from lstmshape.cli.display import Display
from lstmshape.cli.group import Terminal
from lstmshape.errors import InputError
from lstmshape.refs import ArrayRef, parse_ref
from lstmshape.vocabulary import EMPTY_POLICIES, ENGINES, LAYOUTS, NAN_POLICIES, PAD_SIDES

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


class RefType(click.ParamType):
    """`PATH[:KEY]` text -> ArrayRef; the file itself is opened later, by io.

    In shell completion it offers file names, and after `FILE:` the arrays inside a
    container (`lstmshape.cli.completion`).
    """

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

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from lstmshape.cli.completion import complete_ref

        return complete_ref(incomplete)


REF = RefType()


class Choice(click.Choice):  # type: ignore[type-arg]
    """A choice that suggests the closest word for a misspelt one (`meen` -> `mean`) and
    accepts `aliases` (other names for a choice, e.g. `mean` for pool's `avg`)."""

    def __init__(self, choices: Sequence[str], aliases: Mapping[str, str] | None = None) -> None:
        super().__init__(choices)
        self.aliases = dict(aliases or {})

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        value = self.aliases.get(value, value) if isinstance(value, str) else value
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as error:
            import difflib

            words = [*map(str, self.choices), *self.aliases]
            close = difflib.get_close_matches(str(value), words, n=1, cutoff=0.6)
            if not close:
                raise
            self.fail(f"{error.message} Did you mean {close[0]!r}?", param, ctx)


def join_inputs(
    ctx: click.Context | None, param: click.Parameter | None, value: tuple[ArrayRef, ...]
) -> ArrayRef | None:
    """Several paths or globs -> one reference, joined along N (`lstmshape.sources`)."""
    if not value:
        return None
    from lstmshape.sources import expand_refs, join_refs

    return join_refs(expand_refs(value), text=" ".join(str(v) for v in value))


def expand_inputs(
    ctx: click.Context | None, param: click.Parameter | None, value: tuple[ArrayRef, ...]
) -> tuple[ArrayRef, ...]:
    """Globs -> the paths they match (inspect shows each file)."""
    from lstmshape.sources import expand_refs

    return tuple(expand_refs(value))


def stack(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(function: Any) -> Any:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


#: INPUT of reduce/pool/project: one or more PATH[:KEY] or globs, concatenated along N.
inputs_argument = click.argument(
    "input_ref", metavar="INPUT...", nargs=-1, required=True, type=REF, callback=join_inputs
)

layout_option = click.option(
    "--layout",
    type=Choice(LAYOUTS),
    default="ntf",
    show_default=True,
    help="ntf = (N, T, F) batch-first; tnf = (T, N, F) time-major. Masks follow it.",
)

mask_options = stack(
    layout_option,
    click.option(
        "--mask",
        "mask_ref",
        type=REF,
        multiple=True,
        callback=join_inputs,
        help="(N, T) bool or 0/1 mask; nonzero = valid. Several files or a glob: joined along N.",
    ),
    click.option(
        "--lengths",
        "lengths_ref",
        type=REF,
        multiple=True,
        callback=join_inputs,
        help="(N,) valid lengths per sample. Several files or a glob: joined along N. "
        "'auto': from the padding the data shows.",
    ),
    click.option(
        "--mask-value",
        type=str,
        default=None,
        help="A step is padding when ALL its features equal this value (nan works).",
    ),
    click.option(
        "--pad-side",
        type=Choice(PAD_SIDES),
        default="post",
        show_default=True,
        help="With --lengths: padding after (post) or before (pre).",
    ),
)

nan_policy_option = click.option(
    "--nan-policy",
    type=Choice(NAN_POLICIES),
    default="propagate",
    show_default=True,
    help="NaN in a valid step: propagate it, omit the step (as padding) or raise an error.",
)


def empty_option(help_text: str) -> Callable[[Any], Any]:
    return click.option(
        "--empty",
        type=Choice(EMPTY_POLICIES),
        default="error",
        show_default=True,
        help=help_text,
    )


def mask_out_option(help_text: str) -> Callable[[Any], Any]:
    return click.option("--mask-out", type=REF, default=None, help=help_text)


def _allow_external(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    from lstmshape import io

    ctx.with_resource(io.allow_external(value))  # for this command only
    return value


report_options = stack(
    click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout."),
    click.option(
        "-q",
        "--quiet",
        count=True,
        help="-q: no table on stderr (warnings and chosen output names stay); -qq: errors only.",
    ),
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

output_options = stack(
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
        "--strict",
        is_flag=True,
        help="A warning of the padding audit is an error (exit 2, nothing written).",
    ),
    click.option(
        "--chunk-mb",
        type=click.FloatRange(min=0.001),
        default=16.0,
        show_default=True,
        help="Block size for streaming along N.",
    ),
    report_options,
)

engine_options = stack(
    click.option(
        "--engine",
        type=Choice(ENGINES),
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
    click.option(
        "--connect-timeout",
        metavar="SECONDS",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        show_default="10",
        help="With --scheduler: how long to try reaching it before giving up.",
    ),
)

_OUTPUT_NAMES = ("output_ref", "force", "dry_run", "strict", "chunk_mb", "as_json")
_ENGINE_NAMES = ("engine", "scheduler", "workers", "connect_timeout")
_MASK_NAMES = ("layout", "mask_ref", "lengths_ref", "mask_value", "pad_side")


class Requests:
    """What the shared options of a command asked for, and how its run is shown.

    A plain class, not a dataclass: every command's start-up would pay for creating it.
    """

    def __init__(self, term: Terminal, output: Any, mask: Any, display: Display) -> None:
        self.term = term
        self.output = output  # run.OutputRequest
        self.mask = mask  # inputs.MaskRequest
        self.display = display


def requests(function: Callable[..., None]) -> Callable[..., None]:
    """Gather the shared options into the library's requests before the command runs;
    refuse options that would be ignored (`lstmshape.cli.rules`)."""

    @wraps(function)
    def wrapper(**params: Any) -> None:
        from lstmshape.cli.rules import refuse_ignored
        from lstmshape.inputs import MaskRequest
        from lstmshape.run import OutputRequest

        ctx = click.get_current_context()
        refuse_ignored(ctx, params)
        term = ctx.find_object(Terminal) or Terminal()
        output = {
            name: params.pop(name) for name in _OUTPUT_NAMES + _ENGINE_NAMES if name in params
        }
        mask = MaskRequest(**{name: params.pop(name) for name in _MASK_NAMES})
        made = Requests(
            term=term,
            output=OutputRequest(**output, stdout_is_terminal=term.stdout_isatty),
            mask=mask,
            display=Display(term, params.pop("quiet"), output["as_json"]),
        )
        function(made, **params)

    return wrapper
