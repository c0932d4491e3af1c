"""The comparing threads of `lstmshape diff`: each block in parts of whole samples.

The accumulators (`diffstats.DiffAccumulator`) each work in a thread of their own, this one
and a pool started once for the run; each takes the next part of a block when done with
one, so a thread held up leaves its parts to the others (numpy releases the GIL in its
loops). A second thread pays only when the process gets a second core: on a machine busy
with other work, the threads share one core's worth of time and their hand-offs (the GIL,
the wake-ups) cost about 8% more CPU time for nothing (bench/RESULTS.md). So the blocks are
timed: while the threads got less than `MIN_CORES` cores of CPU time over a block, the next
ones are compared in this thread alone, trying the others again every `RETRY_EVERY` blocks.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import numpy.typing as npt

from lstmshape.diffstats import DiffAccumulator
from lstmshape.validity import Validity

Array = npt.NDArray[Any]
BlockUpdate = Callable[[int, Array, Array, "Validity | None"], None]


class BlockParts:
    """`with BlockParts(accumulators, min_part) as update: update(start, a, b, rows)`.

    A block is split only into parts of at least `min_part` elements.
    """

    #: Parts per thread and block: more balance the threads, each costs a call's overhead.
    PER_THREAD = 2
    #: CPU time per wall-clock time over a block below which the threads are not parallel.
    MIN_CORES = 1.3
    RETRY_EVERY = 16

    def __init__(self, accumulators: list[DiffAccumulator], min_part: int) -> None:
        self.accumulators, self.min_part = accumulators, min_part
        self.pool: Any = None
        self.parallel, self.blocks = True, 0

    def __enter__(self) -> BlockUpdate:
        if len(self.accumulators) > 1:
            from concurrent.futures import ThreadPoolExecutor

            workers = len(self.accumulators) - 1
            self.pool = ThreadPoolExecutor(workers, thread_name_prefix="lstmshape-diff")
        return self.update

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def update(self, start: int, a: Array, b: Array, rows: Validity | None) -> None:
        """Compare one block (n, T, F) of samples `start` on."""
        self.blocks += 1
        threads = len(self.accumulators)
        retry = self.blocks % self.RETRY_EVERY == 0
        if threads == 1 or a.size < 2 * self.min_part or not (self.parallel or retry):
            self.accumulators[0].update(a, b, rows, start)
            return
        wall, cpu = time.perf_counter(), time.process_time()
        self._in_threads(start, a, b, rows)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.parallel = cpu >= self.MIN_CORES * wall

    def _in_threads(self, start: int, a: Array, b: Array, rows: Validity | None) -> None:
        n, threads = len(a), len(self.accumulators)
        parts = max(2, min(threads * self.PER_THREAD, n, a.size // self.min_part))
        edges = [n * k // parts for k in range(parts + 1)]
        # one iterator shared by the threads: `next` on a list's iterator is atomic
        ranges = iter(list(itertools.pairwise(edges)))

        def work(accumulator: DiffAccumulator) -> None:
            for lo, hi in ranges:
                part = None if rows is None else rows.rows(lo, hi)
                accumulator.update(a[lo:hi], b[lo:hi], part, start + lo)

        pending = [self.pool.submit(work, other) for other in self.accumulators[1:]]
        try:
            work(self.accumulators[0])
        finally:
            for future in pending:
                future.result()  # a part's error is raised here (after every part ended)
