"""`lstmshape diff A B`: compare two saved outputs over their valid steps.

Exit status as `diff` and `h5diff`: 0 equal within tolerance, 1 different, 2 trouble (bad
input, as every command). The comparison itself is `lstmshape.compare`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import click

from lstmshape.cli import REF, Terminal, cli, mask_options
from lstmshape.errors import InputError
from lstmshape.refs import ArrayRef


def _allow_external(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    from lstmshape import io

    ctx.with_resource(io.allow_external(value))
    return value


@click.command("diff")
@click.argument("a_ref", metavar="A", type=REF)
@click.argument("b_ref", metavar="B", type=REF)
@mask_options
@click.option(
    "--layout-b",
    type=click.Choice(["ntf", "tnf"]),
    default=None,
    help="Layout of B when it differs from A's (--layout).",
)
@click.option("--rtol", type=float, default=1e-5, show_default=True, help="Relative tolerance.")
@click.option("--atol", type=float, default=1e-8, show_default=True, help="Absolute tolerance.")
@click.option("--equal-nan", is_flag=True, help="NaN in both at the same place counts as equal.")
@click.option(
    "--include-padding", is_flag=True, help="Compare every step, padding included (no mask)."
)
@click.option(
    "--worst",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="List this many of the largest differences.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No table on stderr.")
@click.option("--debug", is_flag=True, expose_value=False, help="Show tracebacks.")
@click.option(
    "--allow-external",
    is_flag=True,
    expose_value=False,
    callback=_allow_external,
    help="Let HDF5 inputs read other files (external links, virtual datasets).",
)
@click.pass_context
def diff(ctx: click.Context, a_ref: ArrayRef, b_ref: ArrayRef, **options: Any) -> None:
    """Compare two saved outputs over A's valid steps: exit 0 equal, 1 different, 2 trouble.

    Close means |A-B| <= atol + rtol*|B| (numpy.isclose). The mask (--mask, --lengths or
    --mask-value) is A's; padding is never compared unless --include-padding.

    \b
    Example:
      lstmshape diff keras_out.npy torch_out.npy --layout-b tnf \\
          --lengths lengths.npy --rtol 1e-4
    """
    from lstmshape import compare, io

    term = ctx.find_object(Terminal) or Terminal()
    if a_ref.is_stdio and b_ref.is_stdio:
        raise InputError("A and B cannot both be - (standard input holds one array)")
    with io.open_array(a_ref) as source_a, io.open_array(b_ref) as source_b:
        layout_b = options["layout_b"] or options["layout"]
        compare.check_shapes(source_a.shape, source_b.shape, options["layout"], layout_b)
        spec, mask_text = _mask_spec(source_a.shape, options)
        with _progress(term, options["quiet"], source_a.nbytes + source_b.nbytes) as advance:
            report = compare.diff_sources(
                source_a,
                source_b,
                layout=options["layout"],
                layout_b=layout_b,
                spec=spec,
                tolerance=compare.Tolerance(options["rtol"], options["atol"], options["equal_nan"]),
                worst=options["worst"],
                on_block=advance,
            )
    _report(report, (str(a_ref), str(b_ref)), mask_text, options)
    if not report.equal:
        ctx.exit(1)


def _report(report: Any, names: tuple[str, str], mask_text: str, options: dict[str, Any]) -> None:
    if options["as_json"]:
        from lstmshape.report import print_json

        payload = {"command": "diff", **report.to_dict(), "mask": mask_text}
        for side, name in zip("ab", names, strict=True):
            payload[side] = {"path": name, **payload[side]}
        print_json(payload)
    if not options["quiet"]:
        from lstmshape import render

        render.print_diff(report, names, mask_text)


def _progress(term: Terminal, quiet: bool, total: int) -> Any:
    """A progress bar on a terminal; elsewhere nothing (and rich is not imported)."""
    if quiet or not term.stderr_isatty:
        return contextlib.nullcontext(None)
    from lstmshape import render

    return render.progress_bar(total, "comparing", enabled=True)


def _mask_spec(shape: tuple[int, ...], options: dict[str, Any]) -> tuple[Any, str]:
    """A's mask (read whole: (N, T) or (N,)) for the comparison, and its description."""
    from lstmshape import compare

    mask_ref, lengths_ref, layout = options["mask_ref"], options["lengths_ref"], options["layout"]
    n, t, _ = compare.view_shape(shape, layout)
    spec = compare.mask_spec(
        shape,
        layout,
        mask=None if mask_ref is None else _load_whole(mask_ref, "mask", layout, n * t),
        lengths=None if lengths_ref is None else _load_whole(lengths_ref, "lengths", "ntf", n),
        mask_value=options["mask_value"],
        pad_side=options["pad_side"],
        include_padding=options["include_padding"],
    )
    if len(shape) != 3:
        return spec, "none (no time axis: every element)"
    return spec, _describe(mask_ref, lengths_ref, options["mask_value"], options)


def _describe(
    mask_ref: ArrayRef | None, lengths_ref: ArrayRef | None, value: str | None, options: Any
) -> str:
    if mask_ref is not None:
        return f"mask {mask_ref}"
    if lengths_ref is not None:
        return f"lengths {lengths_ref} ({options['pad_side']}-padded)"
    if value is not None:
        return f"padding value {value}"
    return "every step" if options["include_padding"] else "none (every step valid)"


# Below this size a mask or lengths array is read and checked in full (the messages then say
# what is wrong with it); above it, one holding the wrong number of values is refused unread.
_CHECK_UNREAD_BYTES = 1 << 24


def _load_whole(ref: ArrayRef, what: str, layout: str, values: int) -> Any:
    """A mask or lengths array, read whole (several files joined along N)."""
    import numpy as np

    from lstmshape import io, sources

    if isinstance(ref, sources.MultiRef):
        return sources.load_joined(ref, 1 if what == "mask" and layout == "tnf" else 0)
    with io.open_array(ref) as source:
        size, limit = math.prod(source.shape), io.memory_limit()
        if size != values and source.nbytes > _CHECK_UNREAD_BYTES:
            raise InputError(
                f"{what} {ref} has shape {tuple(source.shape)} ({size} values); "
                f"the data needs {values}"
            )
        if source.nbytes > limit:
            raise InputError(
                f"{what} {ref} holds {source.nbytes} bytes; it is read whole, and at most "
                f"{limit} bytes are read into memory at once (LSTMSHAPE_MAX_MEMORY)"
            )
        return np.asarray(source.read_all())


cli.add_command(diff)
