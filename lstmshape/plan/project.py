"""Plans that change the feature axis: saved weights, or a PCA basis fitted first."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmshape.errors import InputError
from lstmshape.masks import Layout
from lstmshape.plan.base import Array, Kernel, Plan, in_layout, ntf_shape
from lstmshape.strategies import pca as pca_kernels
from lstmshape.strategies import project as project_kernels
from lstmshape.validity import Validity


def _projection(
    weights: Array, bias: Array | None, activation: str, weights_layout: str, masked: bool
) -> Kernel:
    def kernel(x: Array, validity: Validity) -> Array:
        return project_kernels.project_linear(
            x,
            weights,
            bias,
            activation,
            weights_layout=weights_layout,
            validity=validity if masked and x.ndim == 3 else None,
        )

    return kernel


def plan_project(
    shape: tuple[int, ...],
    dtype: npt.DTypeLike,
    weights: Array | None = None,
    bias: Array | None = None,
    *,
    pca: int | None = None,
    activation: str = "linear",
    weights_layout: str = "keras",
    layout: Layout = "ntf",
    masked: bool = False,
) -> Plan:
    """Plan a projection of the feature axis: (N, T, F) -> (N, T, K), or (N, F) -> (N, K).

    Give `weights` (and `bias`), or `pca=K` for a basis that the run fits first (see
    `Plan.with_weights`). With `masked` the padded steps of the output hold 0.

    >>> plan_project((2, 5, 8), "float16", pca=3).out_shape
    (2, 5, 3)
    """
    shape = tuple(shape)
    if len(shape) not in (2, 3):
        raise InputError(f"project needs (N, F) or 3-D data; got shape {shape}")
    if (weights is None) == (pca is None):
        raise InputError("give exactly one of --weights or --pca")
    if bias is not None and weights is None:
        raise InputError("--bias goes with --weights")
    if masked and len(shape) == 2:
        raise InputError("a mask needs 3-D data (N, T, F); this input is 2-D")
    shape_ntf = ntf_shape(shape, layout, command="project") if len(shape) == 3 else shape
    if pca is not None:
        out_ntf = pca_kernels.pca_shape(shape_ntf, pca)
        weights_layout, weights_shape = "keras", [shape_ntf[-1], out_ntf[-1]]
        kernel = None
    else:
        assert weights is not None  # exactly one of weights and pca
        out_ntf = project_kernels.project_shape(shape_ntf, np.shape(weights), weights_layout)
        project_kernels.check_parameters(
            weights, bias, out_ntf[-1], activation, project_kernels.compute_dtype(np.dtype(dtype))
        )
        weights_shape = list(np.shape(weights))
        kernel = _projection(weights, bias, activation, weights_layout, masked)
    options: dict[str, Any] = {
        "activation": activation,
        "weights_layout": weights_layout,
        "layout": layout,
        "weights_shape": weights_shape,
    }
    if pca is not None:
        options["pca"] = pca
    return Plan(
        operation="project",
        in_shape=shape,
        in_dtype=np.dtype(dtype),
        layout=layout,
        out_shape=in_layout(out_ntf, layout),
        out_dtype=project_kernels.project_dtype(dtype),
        keeps_time=len(shape) == 3,
        kernel=kernel,
        options=options,
        pca=pca,
        masked=masked,
    )


def with_basis(plan: Plan, weights: Array, bias: Array | None) -> Plan:
    """A PCA projection plan with its fitted basis bound (Keras (F, K) weights and bias)."""
    activation = plan.options["activation"]
    return replace(plan, kernel=_projection(weights, bias, activation, "keras", plan.masked))
