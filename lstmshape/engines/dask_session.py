"""Where `--engine dask` runs: a dask.distributed Client (a `--scheduler` address, or a
LocalCluster of `--workers` processes), else dask's threaded scheduler in this process."""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from lstmshape.errors import InputError

#: How many blocks per worker are in flight when results come back here in order.
BLOCKS_PER_WORKER = 2
#: How long to try reaching a --scheduler address.
CONNECT_TIMEOUT = "10s"


class Session:
    """Where the work runs: a `dask.distributed` Client (`scheduler` address, or a
    LocalCluster of `workers` processes, one thread each), else dask's threaded scheduler
    in this process. Started on first use; `close()` stops what it started."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None) -> None:
        self.scheduler = scheduler
        self.workers = workers
        self._client: Any = None
        self._cluster: Any = None

    @property
    def client(self) -> Any:
        """The distributed Client, connected on first use; None for the threaded scheduler."""
        if self._client is None and (self.scheduler or self.workers):
            self._connect()
        return self._client

    def _connect(self) -> None:
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                self._client = Client(self.scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise InputError(
                    f"cannot reach the dask scheduler at {self.scheduler}: {reason}"
                ) from None
            return
        saved = dict(os.environ)
        try:
            self._cluster = LocalCluster(
                n_workers=self.workers,
                processes=True,
                threads_per_worker=1,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            )
        finally:  # distributed sets MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS, ... for its
            os.environ.clear()  # workers in this process's environment; keep ours as it was
            os.environ.update(saved)
        self._client = Client(self._cluster, set_as_default=False)

    @property
    def n_workers(self) -> int:
        client = self.client
        if client is None:
            return os.cpu_count() or 1
        return max(1, len(client.scheduler_info().get("workers", {})))

    def compute(self, collections: Sequence[Any]) -> list[Any]:
        """Compute dask collections together (shared inputs are read once)."""
        if not collections:
            return []
        client = self.client
        if client is None:
            import dask

            return list(dask.compute(*collections, scheduler="threads"))
        futures = client.compute(list(collections))
        try:
            return list(client.gather(futures))
        finally:
            client.cancel(futures)

    def ordered(self, items: Iterable[Sequence[Any]]) -> Iterator[list[Any]]:
        """Compute each item (a list of collections) and yield the results in order, with
        at most `BLOCKS_PER_WORKER * n_workers` items in flight."""
        window = BLOCKS_PER_WORKER * self.n_workers
        client = self.client
        if client is None:
            batch: list[Sequence[Any]] = []
            for item in items:
                batch.append(item)
                if len(batch) >= window:
                    yield from self._threaded(batch)
                    batch = []
            yield from self._threaded(batch)
            return
        pending: deque[Any] = deque()
        try:
            for item in items:
                pending.append(client.compute(list(item)))
                if len(pending) >= window:
                    yield list(client.gather(pending.popleft()))
            while pending:
                yield list(client.gather(pending.popleft()))
        finally:
            for futures in pending:
                client.cancel(futures)

    @staticmethod
    def _threaded(batch: list[Sequence[Any]]) -> Iterator[list[Any]]:
        if not batch:
            return
        import dask

        flat = [c for item in batch for c in item]
        results = iter(dask.compute(*flat, scheduler="threads"))
        for item in batch:
            yield [next(results) for _ in item]

    def close(self) -> None:
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
