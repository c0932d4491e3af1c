"""`--engine dask` ends, with one line, whatever is at the other end.

Promises tested here (docs/safety.md, "Every run ends"), each command in a real process
under a timeout, so a regression fails instead of hanging the suite:
- a `--scheduler` address where something accepts and never answers fails after
  `--connect-timeout`; one that answers something else, or an unknown scheme, fails at once;
  no `Client.__del__` traceback or other dask output reaches standard error;
- a run in which no task finishes for LSTMSHAPE_DASK_NO_PROGRESS seconds fails (exit 1)
  saying what it waited for: a frozen worker (SIGSTOP), a scheduler without workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import lstmshape

pytest.importorskip("distributed")

TIMEOUT = 120


def run(args: list[object], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    try:
        done = subprocess.run(
            lstmshape(*args),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={**os.environ, **env},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"lstmshape {' '.join(map(str, args))} hung for {TIMEOUT} s")
    done.seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return done


def one_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    lines = done.stderr.splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


@contextlib.contextmanager
def listener(answer: bytes | None) -> Iterator[int]:
    """A TCP port that accepts connections and never answers (None) or sends `answer`."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)
            if answer is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.fixture
def here(tmp_path: Path) -> Path:
    np.save(tmp_path / "x.npy", np.ones((20, 5, 3), np.float32))
    return tmp_path


def reduce_on(address: str, *extra: str) -> list[str]:
    return ["reduce", "x.npy", "-s", "mean", "-o", "o.npy", "-q", "--engine", "dask",
            "--scheduler", address, *extra]  # fmt: skip


def test_an_address_that_never_answers_fails_after_the_connect_timeout(here):
    with listener(None) as port:
        done = run(reduce_on(f"tcp://127.0.0.1:{port}", "--connect-timeout", "2"), here)
    line = one_error(done, 2)
    assert line == (
        f"Error: cannot reach the dask scheduler at tcp://127.0.0.1:{port}: no answer within "
        "2 s (--connect-timeout)"
    )
    assert not (here / "o.npy").exists()


def test_an_address_that_answers_garbage_fails_in_one_line(here):
    with listener(b"HTTP/1.1 200 OK\r\n\r\nnot a dask scheduler\n" * 20) as port:
        done = run(reduce_on(f"tcp://127.0.0.1:{port}"), here)
    line = one_error(done, 2)
    assert line.endswith("what answers there is not a dask scheduler")
    assert "Client.__del__" not in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_scheme_fails_in_one_line(here):
    line = one_error(run(reduce_on("foo://127.0.0.1:1"), here), 2)
    assert line.startswith(
        "Error: cannot reach the dask scheduler at foo://127.0.0.1:1: unknown address scheme 'foo'"
    )


def test_the_connect_timeout_must_be_positive(here):
    done = run(reduce_on("tcp://127.0.0.1:1", "--connect-timeout", "0"), here)
    assert done.returncode == 2 and "--connect-timeout" in done.stderr


# ----------------------------------------------------------------------------- a real cluster


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def dask_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]]


@contextlib.contextmanager
def cluster(workers: int) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A scheduler and `workers` worker processes (no nanny: SIGSTOP freezes the worker)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [
        subprocess.Popen(
            dask_cli("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"),
            **quiet,
        )
    ]
    try:
        _wait_for_port(port)
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    dask_cli("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"),
                    **quiet,
                )
            )
        if workers:
            _wait_for_workers(address, workers)
        yield address, procs[1:]
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait(timeout=30)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail("the dask scheduler did not start")


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as client:
        client.wait_for_workers(count, timeout=60)


@pytest.mark.slow
def test_a_run_works_on_the_cluster_started_here(here):
    with cluster(1) as (address, _workers):
        done = run(reduce_on(address), here)
    assert done.returncode == 0, done.stderr
    assert np.load(here / "o.npy").tolist() == np.ones((20, 3)).tolist()


@pytest.mark.slow
def test_a_frozen_worker_fails_the_run_after_the_no_progress_time(here):
    np.save(here / "x.npy", np.ones((400, 50, 32), np.float32))
    with cluster(1) as (address, workers):
        workers[0].send_signal(signal.SIGSTOP)
        done = run(reduce_on(address, "--chunk-mb", "0.5"), here, LSTMSHAPE_DASK_NO_PROGRESS="4")
    line = one_error(done, 1)
    assert line.startswith(
        f"Error: no task finished on the dask cluster at {address} for 4 s "
        "(LSTMSHAPE_DASK_NO_PROGRESS): "
    )
    assert line.endswith(
        "tasks were still waiting on 1 workers (a worker may be frozen or overloaded)"
    )
    assert not (here / "o.npy").exists()


@pytest.mark.slow
def test_a_cluster_without_workers_fails_saying_so(here):
    with cluster(0) as (address, _workers):
        done = run(reduce_on(address), here, LSTMSHAPE_DASK_NO_PROGRESS="3")
    line = one_error(done, 1)
    assert line.startswith(f"Error: the dask cluster at {address} has no workers: ")
    assert line.endswith(
        "waited 3 s (LSTMSHAPE_DASK_NO_PROGRESS) for one; start workers, or use --workers"
    )
