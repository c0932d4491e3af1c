"""Plans: what an operation will produce, from shapes and dtypes alone.

A `Plan` is made by `plan_reduce`, `plan_pool`, `plan_project` or `plan_reshape` from the
input's shape and dtype (a header), using the kernels' `*_shape` / `*_dtype` companions; no
data is read and no kernel runs, so `--dry-run` and the shape table cost nothing. A plan
holds no state: `Plan.apply` runs its kernel on any block of samples, and the checks that
need the whole input (NaN policies, empty samples) come back as a table per block for the
engine's `checks.RunTally`. The same plan serves a whole in-memory array (`api`), the
streaming engine (`stream`) and the Dask engine alike.
"""

from lstmshape.plan.base import BlockResult, Plan, as_ntf, ntf_shape
from lstmshape.plan.over_time import plan_pool, plan_reduce
from lstmshape.plan.project import plan_project, with_basis
from lstmshape.plan.reshape import plan_reshape

__all__ = [
    "BlockResult",
    "Plan",
    "as_ntf",
    "ntf_shape",
    "plan_pool",
    "plan_project",
    "plan_reduce",
    "plan_reshape",
    "with_basis",
]
