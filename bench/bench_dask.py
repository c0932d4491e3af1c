"""Throughput of `--engine dask` with 1 and 2 worker processes against the in-process engine.

    python bench/bench_dask.py [--size-mb 4096] [--repeat 3] [--dir DIR]

Writes an (N, T=100, F=128) float32 input of about `--size-mb` as 4 `.npy` shards and as
4 `.zarr` shards (with per-shard lengths), and the same on a tiny input (4 x 8 samples).
Starts two LocalClusters (1 and 2 worker processes, one thread each) and times whole CLI
runs on them with `--scheduler ADDRESS`, as a user with a running cluster would, and the
same commands in-process. Every command also runs on the tiny input: its time (Python's
start, imports, connecting to the scheduler, building the graph) is subtracted, so what
is compared is the time the data takes. The runs of one round go one after the other
(in-process, 1 worker, 2 workers, each big then tiny); `--repeat` rounds, best of each.

Prints a Markdown table: net seconds (big minus tiny), throughput (input MB / net s), the
ratio of throughputs (1 worker against in-process, 2 workers against 1 worker), and the
peak RSS of the lstmshape process; then the workers' peak RSS.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lstmshape import io

T, F = 100, 128
SHARDS = 4
TINY_N = 8  # samples per shard of the tiny input
OPERATIONS = {
    "reduce mean": ["reduce", "-s", "mean"],
    "pool avg P=4": ["pool", "--pool-size", "4"],
    "project pca 16": ["project", "--pca", "16"],
}
FORMATS = {"4 .npy -> .npy": (".npy", "o.npy"), "4 .zarr -> .zarr": (".zarr:/out", "o.zarr")}
ENGINES = ("in-process", "dask, 1 worker", "dask, 2 workers")


def _write_npy(path: Path, n: int, rng: np.random.Generator) -> None:
    header = {"descr": "<f4", "fortran_order": False, "shape": (n, T, F)}
    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for lo in range(0, n, 512):
            fh.write(rng.standard_normal((min(512, n - lo), T, F)).astype(np.float32).tobytes())


def make_data(directory: Path, n: int) -> None:
    """4 .npy and 4 .zarr shards of n samples in all, and their lengths (kept when a
    previous run left them in `--dir`: the last .zarr shard is written last)."""
    directory.mkdir(parents=True, exist_ok=True)
    shards = sorted(directory.glob("x-*.npy"))
    have = sum(np.load(p, mmap_mode="r").shape[0] for p in shards)
    if (directory / f"x-{SHARDS - 1}.zarr").exists() and have == n:
        return
    rng = np.random.default_rng(0)
    bounds = np.linspace(0, n, SHARDS + 1).astype(int)
    for i in range(SHARDS):
        rows = int(bounds[i + 1] - bounds[i])
        np.save(directory / f"lengths-{i}.npy", rng.integers(T // 2, T + 1, size=rows))
        _write_npy(directory / f"x-{i}.npy", rows, rng)
        x = np.load(directory / f"x-{i}.npy", mmap_mode="r")
        io.save(np.asarray(x), f"{directory}/x-{i}.zarr:/out")


# A child's ru_maxrss starts at its parent's resident set (exec keeps the high-water mark):
# this small launcher forks the measured command and reports its own child.
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def timed(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MiB) of one command."""
    with tempfile.TemporaryFile() as errors:
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, *args], stdout=subprocess.PIPE, stderr=errors
        )
        wall, rss, code = done.stdout.decode().split()[-3:]
        if int(code) != 0:
            errors.seek(0)
            raise SystemExit(f"failed: {' '.join(args)}\n{errors.read().decode()}")
    return float(wall), int(rss) // 1024


def command(op: list[str], directory: Path, fmt: str, engine: list[str]) -> list[str]:
    suffix, out = FORMATS[fmt]
    return [sys.executable, "-m", "lstmshape", op[0], f"{directory}/x-*{suffix}", *op[1:],
            "--lengths", f"{directory}/lengths-*.npy", "-o", str(directory / out),
            *engine, "-q", "--force"]  # fmt: skip


def _clusters() -> dict[str, object]:
    from distributed import LocalCluster

    saved = dict(os.environ)
    clusters = {
        name: LocalCluster(
            n_workers=k,
            processes=True,
            threads_per_worker=1,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
        for name, k in (("dask, 1 worker", 1), ("dask, 2 workers", 2))
    }
    os.environ.clear()  # distributed sets OMP_NUM_THREADS, MALLOC_TRIM_THRESHOLD_, ...
    os.environ.update(saved)
    return clusters


def _worker_peaks(cluster: object) -> list[int]:
    """Peak RSS (MiB) of each worker process over its life (VmHWM; same host)."""
    from distributed import Client

    with Client(cluster, set_as_default=False) as client:  # type: ignore[arg-type]
        pids = client.run(os.getpid).values()
    peaks = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) // 1024)
    return peaks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    options = parser.parse_args(argv)

    scratch = Path(options.dir or tempfile.mkdtemp(prefix="lstmshape-bench-dask-"))
    big, tiny = scratch / "big", scratch / "tiny"
    n = int(options.size_mb * 2**20 // (T * F * 4))
    make_data(big, n)
    make_data(tiny, TINY_N * SHARDS)
    size_mb = sum(p.stat().st_size for p in big.glob("x-*.npy")) / 2**20
    clusters = _clusters()
    engines = {"in-process": []} | {
        name: ["--engine", "dask", "--scheduler", c.scheduler_address]  # type: ignore[attr-defined]
        for name, c in clusters.items()
    }
    best: dict[tuple[str, str, str], tuple[float, int]] = {}
    loads = []
    try:
        for _ in range(options.repeat):
            for name, op in OPERATIONS.items():
                for fmt in FORMATS:
                    for engine, extra in engines.items():
                        wall, rss = timed(command(op, big, fmt, extra))
                        start_up, _ = timed(command(op, tiny, fmt, extra))
                        key = (name, fmt, engine)
                        net = wall - start_up
                        if key not in best or net < best[key][0]:
                            best[key] = (net, rss)
            loads.append(os.getloadavg()[0])
        peaks = {name: _worker_peaks(c) for name, c in clusters.items()}
    finally:
        for cluster in clusters.values():
            cluster.close()  # type: ignore[attr-defined]
        if options.dir is None:
            shutil.rmtree(scratch, ignore_errors=True)

    print(f"Input: ({n}, {T}, {F}) float32 in {SHARDS} shards, {size_mb:.0f} MiB; "
          f"{os.cpu_count()} cores; best of {options.repeat} rounds; load average (1 min) "
          f"after each round: {', '.join(f'{x:.1f}' for x in loads)}.\n")  # fmt: skip
    print("| operation | input -> output | engine | net s | MB/s | throughput ratio "
          "| peak RSS MiB |")  # fmt: skip
    print("|---|---|---|---:|---:|---|---:|")
    for name in OPERATIONS:
        for fmt in FORMATS:
            base = best[(name, fmt, "in-process")][0]
            one = best[(name, fmt, "dask, 1 worker")][0]
            ratios = {"in-process": "", "dask, 1 worker": f"{base / one:.2f}x in-process",
                      "dask, 2 workers": f"{one / best[(name, fmt, 'dask, 2 workers')][0]:.2f}x "
                      "1 worker"}  # fmt: skip
            for engine in ENGINES:
                net, rss = best[(name, fmt, engine)]
                print(f"| {name} | {fmt} | {engine} | {net:.2f} | {size_mb / net:.0f} "
                      f"| {ratios[engine]} | {rss} |")  # fmt: skip
    for name, mib in peaks.items():
        print(f"\nWorkers' peak RSS, {name}: {', '.join(f'{m} MiB' for m in mib)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
