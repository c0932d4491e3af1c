"""Engines that run a `lstmshape.plan.Plan` over an input too big for one pass.

- `inprocess` (the default): `lstmshape.stream`, a loop over blocks of samples in this
  process, with bounded memory.
- `dask`: `lstmshape.engines.dask_engine`, the same kernels per block on a dask cluster
  (`--engine dask`, with `--scheduler ADDRESS` or `--workers K`). Needs the `dask` extra
  (`pip install 'lstmshape[dask]'`); nothing imports dask unless this engine is chosen.

Both offer `run_plan(source, plan, spec, sink, *, chunk_bytes, on_block)` and
`fit_pca(source, layout, spec, k, *, chunk_bytes, on_block)`, and own the run's tally.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from types import SimpleNamespace
from typing import Any

from lstmshape.errors import InputError
from lstmshape.vocabulary import ENGINES


def check_choice(engine: str, scheduler: str | None, workers: int | None) -> None:
    """The engine options fit together: --scheduler or --workers, and only with dask."""
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine != "dask" and (scheduler or workers):
        raise InputError("--scheduler and --workers go with --engine dask")
    if scheduler and workers:
        raise InputError("give --scheduler (a running cluster) or --workers, not both")
    if engine == "dask":  # before any work: the command line names the extra to install
        for module in ("dask", "distributed"):
            _require(module)


def _require(module: str) -> None:
    """ModuleNotFoundError for an optional module that is not installed (not imported yet)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or blocked in sys.modules
        found = False
    if not found:
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)


@contextmanager
def open_engine(request: Any) -> Iterator[Any]:
    """The engine a request asks for, with `run_plan` and `fit_pca`; a dask session is
    connected on first use and closed on exit."""
    if request.engine != "dask":
        from lstmshape import stream

        yield SimpleNamespace(run_plan=stream.run_plan, fit_pca=stream.fit_pca)
        return
    try:
        from lstmshape.engines import dask_engine
    except ImportError as error:
        raise InputError(
            f"--engine dask needs the dask extra: pip install 'lstmshape[dask]' ({error})"
        ) from None
    with dask_engine.Session(
        scheduler=request.scheduler,
        workers=request.workers,
        connect_timeout=request.connect_timeout,
    ) as session:
        yield SimpleNamespace(
            run_plan=partial(dask_engine.run_plan, session=session),
            fit_pca=partial(dask_engine.fit_pca, session=session),
        )
