"""Where `--engine dask` runs: a dask.distributed Client (a `--scheduler` address, or a
LocalCluster of `--workers` processes), else dask's threaded scheduler in this process.

Every run ends, with one line: reaching a scheduler is bounded by `--connect-timeout` (the
scheduler is asked who it is before a Client is made, so an address where something
accepts and never answers, or answers something else, fails in that time), and a run in
which no task finishes for `LSTMSHAPE_DASK_NO_PROGRESS` seconds (a frozen worker, every
worker gone) fails saying what it waited for. dask's own log lines, warnings and the
tracebacks of its objects' finalizers are kept off standard error while a session lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from lstmshape.errors import InputError, OutputError

#: How many blocks per worker are in flight when results come back here in order.
BLOCKS_PER_WORKER = 2
#: How long to try reaching a --scheduler address (--connect-timeout).
CONNECT_TIMEOUT = "10s"
#: Seconds without any task finishing before a run on a cluster is given up.
NO_PROGRESS_TIMEOUT = 300.0
NO_PROGRESS_VARIABLE = "LSTMSHAPE_DASK_NO_PROGRESS"
#: How often a waiting run looks at the cluster's progress.
_POLL_SECONDS = 1.0


def no_progress_timeout() -> float:
    """LSTMSHAPE_DASK_NO_PROGRESS (seconds), else NO_PROGRESS_TIMEOUT."""
    text = os.environ.get(NO_PROGRESS_VARIABLE, "").strip()
    if not text:
        return NO_PROGRESS_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InputError(f"{NO_PROGRESS_VARIABLE} takes a number of seconds; got {text!r}")
    return seconds


def _seconds(timeout: float | str | None) -> float:
    """A timeout in seconds (dask's strings like '10s' too)."""
    if timeout is None:
        timeout = CONNECT_TIMEOUT
    if isinstance(timeout, str):
        from dask.utils import parse_timedelta

        return float(parse_timedelta(timeout))
    return float(timeout)


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def probe_scheduler(address: str, timeout: float) -> None:
    """Connect to `address` and ask it who it is, all within `timeout` seconds; an address
    that cannot be reached, does not answer or is not a dask scheduler is an InputError."""
    from distributed.comm import connect

    async def ask() -> Any:
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        except Exception:  # whatever it sent cannot be a message
            return None
        finally:
            comm.abort()

    where = f"cannot reach the dask scheduler at {address}"
    try:
        answer = asyncio.run(asyncio.wait_for(ask(), timeout))
    except (TimeoutError, asyncio.TimeoutError):
        raise InputError(f"{where}: no answer within {timeout:g} s (--connect-timeout)") from None
    except (OSError, ValueError) as exc:  # nobody listens there; an unknown scheme
        raise InputError(f"{where}: {_reason(exc)}") from None
    except Exception:  # its handshake was no message at all (a frame of exabytes...)
        answer = None
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        raise InputError(f"{where}: what answers there is not a dask scheduler")


@contextlib.contextmanager
def quiet_dask() -> Iterator[None]:
    """Keep dask's log lines, warnings and finalizer tracebacks (an unclosed Client's
    `__del__`) off standard error: lstmshape reports one line of its own."""
    loggers = [logging.getLogger(name) for name in ("distributed", "tornado", "asyncio")]
    saved = [(log, log.handlers[:], log.level, log.propagate) for log in loggers]
    hook = sys.unraisablehook
    for log in loggers:
        log.handlers = [logging.NullHandler()]
        log.setLevel(logging.CRITICAL + 1)
        log.propagate = False
    sys.unraisablehook = _quiet_unraisable(hook)
    try:
        with warnings.catch_warnings():
            for module in ("distributed", "dask", "tornado"):
                warnings.filterwarnings("ignore", module=module)
            yield
    finally:
        for log, handlers, level, propagate in saved:
            log.handlers, log.level, log.propagate = handlers, level, propagate
        sys.unraisablehook = hook


def _quiet_unraisable(hook: Any) -> Any:
    def unraisable(info: Any) -> None:
        module = getattr(type(info.object), "__module__", "") or ""
        owner = getattr(info.object, "__module__", "") or ""
        if not any(m.startswith(("distributed", "dask", "tornado")) for m in (module, owner)):
            hook(info)

    return unraisable


class Session:
    """Where the work runs: a `dask.distributed` Client (`scheduler` address, or a
    LocalCluster of `workers` processes, one thread each), else dask's threaded scheduler
    in this process. Started on first use; `close()` stops what it started.

    `connect_timeout` bounds reaching a scheduler (seconds; None: CONNECT_TIMEOUT), and
    `no_progress` how long a run may go without a task finishing (None: the
    LSTMSHAPE_DASK_NO_PROGRESS variable, else NO_PROGRESS_TIMEOUT).
    """

    def __init__(
        self,
        scheduler: str | None = None,
        workers: int | None = None,
        *,
        connect_timeout: float | None = None,
        no_progress: float | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.workers = workers
        self.connect_timeout = connect_timeout
        self.no_progress = no_progress_timeout() if no_progress is None else float(no_progress)
        self._client: Any = None
        self._cluster: Any = None
        self._quiet = contextlib.ExitStack()
        self._direct: bool | None = None

    @property
    def client(self) -> Any:
        """The distributed Client, connected on first use; None for the threaded scheduler."""
        if self._client is None and (self.scheduler or self.workers):
            self._connect()
        return self._client

    @property
    def where(self) -> str:
        """The cluster, in words."""
        return f"the dask cluster at {self.scheduler}" if self.scheduler else "the local cluster"

    def _connect(self) -> None:
        from distributed import Client, LocalCluster

        self._quiet.enter_context(quiet_dask())
        if self.scheduler:
            timeout = _seconds(self.connect_timeout)
            probe_scheduler(self.scheduler, timeout)
            try:
                self._client = Client(self.scheduler, timeout=timeout, set_as_default=False)
            except (OSError, TimeoutError, asyncio.TimeoutError, ValueError) as exc:
                raise InputError(
                    f"cannot reach the dask scheduler at {self.scheduler}: {_reason(exc)}"
                ) from None
            return
        saved = dict(os.environ)
        try:
            self._cluster = LocalCluster(
                n_workers=self.workers,
                processes=True,
                threads_per_worker=1,
                dashboard_address=":0",
                silence_logs=logging.CRITICAL,
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

    @property
    def direct(self) -> bool:
        """Whether results come straight from the workers: when this host reaches a worker.
        (dask's default routes every result through the scheduler, a second copy of the
        data over the network and through the scheduler's CPU.)"""
        if self._direct is None:
            import socket

            from distributed.comm.addressing import get_address_host_port

            self._direct = False
            for address in list(self.client.scheduler_info().get("workers", {}))[:1]:
                try:
                    with socket.create_connection(get_address_host_port(address), timeout=2):
                        self._direct = True
                except (OSError, ValueError):
                    pass
        return self._direct

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
            self._wait(futures, futures)
            return list(client.gather(futures, direct=self.direct))
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

        def next_result() -> list[Any]:
            self._wait(pending[0], [f for futures in pending for f in futures])
            return list(client.gather(pending.popleft(), direct=self.direct))

        try:
            for item in items:
                pending.append(client.compute(list(item)))
                if len(pending) >= window:
                    yield next_result()
            while pending:
                yield next_result()
        finally:
            for futures in pending:
                client.cancel(futures)

    def _wait(self, futures: Sequence[Any], in_flight: Sequence[Any]) -> None:
        """Return when `futures` are done (or failed); raise when none of `in_flight` and
        no task on the cluster has finished for `no_progress` seconds."""
        finished = threading.Event()
        for future in futures:
            future.add_done_callback(lambda _future: finished.set())  # in a thread of its own
        watch = _Progress(self, in_flight)
        while not all(future.done() for future in futures):
            if finished.wait(timeout=min(_POLL_SECONDS, self.no_progress)):
                finished.clear()
            else:
                watch.check()

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
        try:
            if client is not None:
                with contextlib.suppress(Exception):  # a cluster that is gone: nothing to say
                    client.close(timeout=_seconds(self.connect_timeout))
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.close(timeout=_seconds(self.connect_timeout))
        finally:
            self._quiet.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Progress:
    """Whether a run on a cluster moves: futures finishing here, or tasks changing state on
    the scheduler (its transition counter); `check` raises after `no_progress` seconds of
    neither."""

    def __init__(self, session: Session, futures: Sequence[Any]) -> None:
        self.session = session
        self.futures = list(futures)
        self.state = self._state()
        self.since = time.monotonic()

    def _state(self) -> tuple[int, int | None]:
        return sum(f.done() for f in self.futures), self._transitions()

    def _transitions(self) -> int | None:
        """The scheduler's count of task transitions; None when it cannot be asked."""
        client = self.session.client

        def count(dask_scheduler: Any) -> int:
            return int(dask_scheduler.transition_counter)

        try:
            return int(client.sync(client._run_on_scheduler, count, callback_timeout=5))
        except Exception:  # no pickled functions on that scheduler, or it does not answer
            return None

    def check(self) -> None:
        state = self._state()
        now = time.monotonic()
        if state != self.state:
            self.state, self.since = state, now
            return
        if now - self.since >= self.session.no_progress:
            raise OutputError(self._message())

    def _message(self) -> str:
        session = self.session
        waiting = sum(not f.done() for f in self.futures)
        try:
            workers = len(session.client.scheduler_info().get("workers", {}))
        except Exception:
            workers = -1
        limit = f"{session.no_progress:g} s ({NO_PROGRESS_VARIABLE})"
        if workers == 0:
            return (
                f"{session.where} has no workers: {waiting} tasks waited {limit} for one; "
                "start workers, or use --workers"
            )
        on = f"{workers} workers" if workers > 0 else "its workers"
        return (
            f"no task finished on {session.where} for {limit}: {waiting} tasks were still "
            f"waiting on {on} (a worker may be frozen or overloaded)"
        )
