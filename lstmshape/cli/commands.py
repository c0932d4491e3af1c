"""The commands that compute (reduce, pool, project, reshape): each builds a job from its
options, runs it and reports."""

from __future__ import annotations

from typing import Any

import click

from lstmshape.cli.group import cli
from lstmshape.cli.help import CONTEXT_SETTINGS
from lstmshape.cli.options import (
    REF,
    Choice,
    Requests,
    empty_option,
    engine_options,
    inputs_argument,
    mask_options,
    mask_out_option,
    nan_policy_option,
    output_options,
    requests,
)
from lstmshape.errors import InputError
from lstmshape.refs import ArrayRef
from lstmshape.vocabulary import (
    ACTIVATIONS,
    PADDINGS,
    POOL_OPS,
    RESHAPE_TARGETS,
    STRATEGIES,
    WEIGHTS_LAYOUTS,
)


def _execute(made: Requests, job: Any) -> None:
    """Run a job (closing its input after) and show it: the shared tail of every command."""
    from lstmshape.run import execute

    shown = made.display
    with job:
        summary = execute(
            job, made.output, progress=shown.progress, warn=shown.warn, on_plan=shown.table
        )
    shown.finish(summary)


@cli.command(context_settings=CONTEXT_SETTINGS)
@inputs_argument
@click.option(
    "-s",
    "--strategy",
    type=Choice(STRATEGIES),
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
@empty_option("What a sample with no valid step gives.")
@nan_policy_option
@mask_options
@output_options
@engine_options
@requests
def reduce(made: Requests, input_ref: ArrayRef, **options: Any) -> None:
    """Many-to-one: (N, T, F) -> (N, F), one vector per sample from its valid steps.

    \b
    Example:
      lstmshape reduce samples/post_padded.npy --strategy last \\
          --lengths samples/post_lengths.npy -o last.npy
    """
    from lstmshape.jobs import reduce_job

    _execute(made, reduce_job(input_ref, made.mask, **options))


@cli.command(context_settings=CONTEXT_SETTINGS)
@inputs_argument
@click.option(
    "--op",
    type=Choice(POOL_OPS, aliases={"mean": "avg"}),
    default="avg",
    show_default=True,
    help="avg (mean works too) or max over the valid steps of each sample or window.",
)
@click.option(
    "--pool-size",
    type=click.IntRange(min=1),
    default=None,
    help="Window length P; without it, global pooling over time.",
)
@click.option("--strides", type=int, default=None, help="Window step S (default P).")
@click.option(
    "--padding",
    type=Choice(PADDINGS),
    default="valid",
    show_default=True,
    help="With --pool-size: valid = whole windows only; same = T' = ceil(T / S), windows "
    "may reach past the sequence (Keras).",
)
@empty_option("Global pooling: what a sample with no valid step gives.")
@mask_out_option("Write the (N, T') window mask here.")
@nan_policy_option
@mask_options
@output_options
@engine_options
@requests
def pool(made: Requests, input_ref: ArrayRef, **options: Any) -> None:
    """Pool over time: global (N, T, F) -> (N, F), or windowed -> (N, T', F) as Keras.

    \b
    Example:
      lstmshape pool samples/post_padded.npy --op max --mask samples/post_mask.npy
      lstmshape pool samples/post_padded.npy --pool-size 4 --padding same
    """
    from lstmshape.jobs import pool_job

    _execute(made, pool_job(input_ref, made.mask, **options))


@cli.command(context_settings=CONTEXT_SETTINGS)
@inputs_argument
@click.option("--weights", "weights_ref", type=REF, help="Kernel (F, K), Keras layout.")
@click.option("--bias", "bias_ref", type=REF, help="Bias (K,).")
@click.option(
    "--weights-layout",
    type=Choice(WEIGHTS_LAYOUTS),
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
@click.option(
    "--activation",
    type=Choice(ACTIVATIONS),
    default="linear",
    show_default=True,
    help="Applied to each projected step.",
)
@mask_options
@output_options
@engine_options
@requests
def project(made: Requests, input_ref: ArrayRef, **options: Any) -> None:
    """Change the feature axis: (N, T, F) -> (N, T, K) with saved weights or PCA.

    With a mask, padded steps of the output hold 0.

    \b
    Example:
      lstmshape project samples/post_padded.npy --pca 4 --lengths samples/post_lengths.npy
    """
    from lstmshape.jobs import project_job

    _execute(made, project_job(input_ref, made.mask, **options))


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("input_ref", metavar="INPUT", type=REF)
@click.option(
    "--to",
    "preset",
    type=Choice(RESHAPE_TARGETS),
    default=None,
    help="A preset output arrangement.",
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
@mask_out_option("With --to padded: write the (N, T) mask.")
@mask_options
@output_options
@requests
def reshape(
    made: Requests,
    input_ref: ArrayRef,
    axis_sizes: tuple[str, ...],
    lengths_out: ArrayRef | None,
    mask_out: ArrayRef | None,
    **options: Any,
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
    from lstmshape.jobs import reshape_job

    outs = {"lengths": lengths_out, "mask": mask_out}
    sizes = _parse_sizes(axis_sizes)
    _execute(made, reshape_job(input_ref, made.mask, sizes=sizes, extra_outs=outs, **options))


def _parse_sizes(pairs: tuple[str, ...]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not name or not value.strip().isdigit():
            raise InputError(f"-a takes NAME=SIZE with a whole number; got {pair!r}")
        sizes[name.strip()] = int(value)
    return sizes
