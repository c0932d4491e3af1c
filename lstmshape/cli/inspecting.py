"""`lstmshape inspect`: what a saved output holds, and where its padding is."""

from __future__ import annotations

from typing import Any

import click

from lstmshape.cli.display import Display
from lstmshape.cli.group import Terminal, cli
from lstmshape.cli.help import CONTEXT_SETTINGS
from lstmshape.cli.options import (
    REF,
    expand_inputs,
    mask_options,
    mask_out_option,
    report_options,
)
from lstmshape.refs import ArrayRef


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, type=REF, callback=expand_inputs)
@click.option("--lengths-out", type=REF, default=None, help="Write the detected lengths here.")
@mask_out_option("Write the detected (N, T) mask here ((T, N) with --layout tnf).")
@click.option(
    "--brief", is_flag=True, help="One line per array from the headers alone (no data read)."
)
@click.option("--force", is_flag=True, help="Overwrite an existing --lengths-out/--mask-out.")
@click.option("--strict", is_flag=True, help="A given mask that disagrees is an error (exit 2).")
@mask_options
@report_options
@click.pass_obj
def inspect(
    term: Terminal,
    inputs: tuple[ArrayRef, ...],
    as_json: bool,
    quiet: int,
    lengths_out: ArrayRef | None,
    mask_out: ArrayRef | None,
    force: bool,
    strict: bool,
    brief: bool,
    **mask: Any,
) -> None:
    """Show shape, dtype, size, padding, valid lengths and NaN/Inf counts.

    A file without KEY shows every array in it; a KEY glob (runs.h5:/run*/out) those it
    matches. Attributes (lstmshape's provenance), chunks and compression show too. With
    --lengths or --mask, check that mask against the padding the data shows;
    --lengths-out/--mask-out write the detected one.

    \b
    Example:
      lstmshape inspect samples/post_padded.npy samples/runs.h5
      lstmshape inspect samples/pre_padded.npy --lengths-out lengths.npy
      lstmshape inspect --brief 'samples/runs.h5:/*/output'
    """
    from lstmshape.handover import Handover, inspect_refs
    from lstmshape.inputs import MaskRequest

    given = MaskRequest(**mask)
    handover = Handover(given if given.given else None, lengths_out, mask_out, force, strict)
    shown = Display(term, quiet, as_json)
    if brief:
        from lstmshape.listing import brief_entries

        reports = brief_entries(inputs)
    else:
        reports = inspect_refs(
            inputs, layout=given.layout, handover=handover, progress=shown.progress
        )
    if as_json:
        from lstmshape.report import print_json

        print_json(reports[0] if len(reports) == 1 else reports)
    if not quiet:
        from lstmshape import render

        (render.print_brief if brief else render.print_inspect)(reports)
