"""Engines that run a `lstmshape.api.Plan` over an input too big for one pass.

- `inprocess` (the default): `lstmshape.stream`, a loop over blocks of samples in this
  process, with bounded memory.
- `dask`: `lstmshape.engines.dask_engine`, the same kernels per block on a dask cluster
  (`--engine dask`, with `--scheduler ADDRESS` or `--workers K`). Needs the `dask` extra
  (`pip install 'lstmshape[dask]'`); nothing imports dask unless this engine is chosen.

Both take the same arguments: an open source, a plan, a `stream.MaskSpec` and an open sink.
"""

ENGINES = ("inprocess", "dask")
