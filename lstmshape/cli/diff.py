"""`lstmshape diff A B`: compare two saved outputs over A's valid steps (`lstmshape.compare`).

Exit status as `diff` and `h5diff`: 0 equal within tolerance, 1 different (no `Error:`
line), 2 trouble.
"""

from __future__ import annotations

from typing import Any

import click

from lstmshape.cli.display import Display
from lstmshape.cli.group import Terminal, cli
from lstmshape.cli.help import CONTEXT_SETTINGS
from lstmshape.cli.options import REF, Choice, mask_options, report_options
from lstmshape.refs import ArrayRef
from lstmshape.vocabulary import LAYOUTS


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("a_ref", metavar="A", type=REF)
@click.argument("b_ref", metavar="B", type=REF)
@mask_options
@click.option(
    "--layout-b",
    type=Choice(LAYOUTS),
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
@report_options
@click.pass_context
def diff(
    ctx: click.Context,
    a_ref: ArrayRef,
    b_ref: ArrayRef,
    layout_b: str | None,
    rtol: float,
    atol: float,
    equal_nan: bool,
    include_padding: bool,
    worst: int,
    as_json: bool,
    quiet: int,
    **mask: Any,
) -> None:
    """Compare two saved outputs over A's valid steps: exit 0 equal, 1 different, 2 trouble.

    Close means |A-B| <= atol + rtol*|B| (numpy.isclose). The mask (--mask, --lengths or
    --mask-value) is A's; padding is never compared unless --include-padding.

    \b
    Example:
      lstmshape diff keras_out.npy torch_out.npy --layout-b tnf \\
          --lengths lengths.npy --rtol 1e-4
    """
    from lstmshape.diffreport import Tolerance
    from lstmshape.diffrun import run_diff
    from lstmshape.inputs import MaskRequest

    shown = Display(ctx.find_object(Terminal) or Terminal(), quiet, as_json)
    report, mask_text = run_diff(
        a_ref,
        b_ref,
        MaskRequest(**mask),
        layout_b=layout_b,  # type: ignore[arg-type]
        tolerance=Tolerance(rtol, atol, equal_nan),
        include_padding=include_padding,
        worst=worst,
        progress=shown.progress,
    )
    _report(report, (str(a_ref), str(b_ref)), mask_text, as_json, quiet)
    if not report.equal:
        ctx.exit(1)


def _report(report: Any, names: tuple[str, str], mask: str, as_json: bool, quiet: int) -> None:
    if as_json:
        from lstmshape.report import print_json

        payload = {"command": "diff", **report.to_dict(), "mask": mask}
        for side, name in zip("ab", names, strict=True):
            payload[side] = {"path": name, **payload[side]}
        print_json(payload)
    if not quiet:
        from lstmshape import render

        render.print_diff(report, names, mask)
