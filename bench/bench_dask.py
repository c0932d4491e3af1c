"""Throughput of `--engine dask` with 1 and 2 worker processes against the in-process engine.

    python bench/bench_dask.py [--size-mb 4096] [--repeat 3] [--ops "reduce mean,..."] [--dir DIR]

Writes an (N, T=100, F=128) float32 input of about `--size-mb` as 4 `.npy` shards and as
4 `.zarr` shards (with per-shard lengths), and the same on a tiny input (4 x 8 samples).
Starts two LocalClusters (1 and 2 worker processes, one thread each) and times whole CLI
runs on them with `--scheduler ADDRESS`, as a user with a running cluster would, and the
same commands in-process. Every command also runs on the tiny input: its time (Python's
start, imports, connecting to the scheduler, building the graph) is subtracted, so what
is compared is the time the data takes. The runs of one round go one after the other
(in-process, 1 worker, 2 workers, each big then tiny); `--repeat` rounds, best of each.

Prints a Markdown table: net seconds (big minus tiny), throughput (input MB / net s), the
ratio of throughputs (1 worker against in-process, 2 workers against 1 worker), the net
CPU seconds of every process involved (the command, and for dask its workers and the
scheduler) and their ratio, which a machine shared with other jobs disturbs less than wall
time, and the peak RSS of the lstmshape process; then the workers' peak RSS.
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
from typing import Any, NamedTuple

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import LAUNCHER  # bench/run.py's launcher: wall, RSS, exit code, CPU

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


class Run(NamedTuple):
    wall: float  # seconds
    cpu: float  # seconds of CPU: the command's, its workers' and its scheduler's
    rss: int  # MiB, the lstmshape process


def timed(args: list[str], helpers: list[psutil.Process]) -> Run:
    """One command, with the CPU time its cluster's processes (`helpers`) spent meanwhile."""
    before = sum(sum(p.cpu_times()[:2]) for p in helpers)
    with tempfile.TemporaryFile() as errors:
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, *args], stdout=subprocess.PIPE, stderr=errors
        )
        wall, rss, code, cpu = done.stdout.decode().split()[-4:]
        if int(code) != 0:
            errors.seek(0)
            raise SystemExit(f"failed: {' '.join(args)}\n{errors.read().decode()}")
    spent = sum(sum(p.cpu_times()[:2]) for p in helpers) - before
    return Run(float(wall), float(cpu) + spent, int(rss) // 1024)


def command(op: list[str], directory: Path, fmt: str, engine: list[str]) -> list[str]:
    suffix, out = FORMATS[fmt]
    return [sys.executable, "-m", "lstmshape", op[0], f"{directory}/x-*{suffix}", *op[1:],
            "--lengths", f"{directory}/lengths-*.npy", "-o", str(directory / out),
            *engine, "-q", "--force"]  # fmt: skip


def _clusters() -> dict[str, Any]:
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


def _workers(cluster: Any) -> list[psutil.Process]:
    from distributed import Client

    with Client(cluster, set_as_default=False) as client:
        return [psutil.Process(pid) for pid in client.run(os.getpid).values()]


def _peak_mib(process: psutil.Process) -> int:
    """Peak RSS of a live process over its life (VmHWM; Linux)."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


def measure(
    operations: list[str], big: Path, tiny: Path, repeat: int
) -> tuple[dict[tuple[str, str, str], Run], dict[str, list[int]], list[float]]:
    """Best net run (big minus tiny) of every cell; workers' peak RSS; load after rounds."""
    clusters = _clusters()
    scheduler = [psutil.Process()]  # the LocalClusters' schedulers and nannies run here
    helpers = {"in-process": []} | {
        name: _workers(cluster) + scheduler for name, cluster in clusters.items()
    }
    engines = {"in-process": []} | {
        name: ["--engine", "dask", "--scheduler", cluster.scheduler_address]
        for name, cluster in clusters.items()
    }
    best: dict[tuple[str, str, str], Run] = {}
    loads = []
    try:
        for _ in range(repeat):
            for name in operations:
                for fmt in FORMATS:
                    for engine, extra in engines.items():
                        run = timed(command(OPERATIONS[name], big, fmt, extra), helpers[engine])
                        base = timed(command(OPERATIONS[name], tiny, fmt, extra), helpers[engine])
                        net = Run(run.wall - base.wall, run.cpu - base.cpu, run.rss)
                        key = (name, fmt, engine)
                        prev = best.get(key, net)
                        fastest = net if net.wall < prev.wall else prev
                        best[key] = fastest._replace(cpu=min(net.cpu, prev.cpu))
            loads.append(os.getloadavg()[0])
        peaks = {name: [_peak_mib(p) for p in helpers[name][:-1]] for name in clusters}
    finally:
        logging.getLogger("distributed").setLevel(logging.ERROR)
        for cluster in clusters.values():
            cluster.close()
    return best, peaks, loads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ops", default=",".join(OPERATIONS), help="comma-separated")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (kept)")
    options = parser.parse_args(argv)
    operations = options.ops.split(",")

    scratch = Path(options.dir or tempfile.mkdtemp(prefix="lstmshape-bench-dask-"))
    big, tiny = scratch / "big", scratch / "tiny"
    n = int(options.size_mb * 2**20 // (T * F * 4))
    try:
        make_data(big, n)
        make_data(tiny, TINY_N * SHARDS)
        size_mb = sum(p.stat().st_size for p in big.glob("x-*.npy")) / 2**20
        best, peaks, loads = measure(operations, big, tiny, options.repeat)
    finally:
        if options.dir is None:
            shutil.rmtree(scratch, ignore_errors=True)

    print(f"Input: ({n}, {T}, {F}) float32 in {SHARDS} shards, {size_mb:.0f} MiB, page cache "
          f"warm; {os.cpu_count()} cores; best of {options.repeat} rounds; load average "
          f"(1 min) after each round: {', '.join(f'{x:.1f}' for x in loads)}.\n")  # fmt: skip
    print("| operation | input -> output | engine | net s | MB/s | throughput ratio "
          "| net CPU s | CPU ratio | peak RSS MiB |")  # fmt: skip
    print("|---|---|---|---:|---:|---|---:|---|---:|")
    for name in operations:
        for fmt in FORMATS:
            cells = [best[(name, fmt, engine)] for engine in ENGINES]
            ratios = ["", f"{cells[0].wall / cells[1].wall:.2f}x in-process",
                      f"{cells[1].wall / cells[2].wall:.2f}x 1 worker"]  # fmt: skip
            cpu = ["", f"{cells[0].cpu / cells[1].cpu:.2f}x in-process",
                   f"{cells[1].cpu / cells[2].cpu:.2f}x 1 worker"]  # fmt: skip
            for engine, run, ratio, by_cpu in zip(ENGINES, cells, ratios, cpu, strict=True):
                print(f"| {name} | {fmt} | {engine} | {run.wall:.2f} | {size_mb / run.wall:.0f} "
                      f"| {ratio} | {run.cpu:.2f} | {by_cpu} | {run.rss} |")  # fmt: skip
    for name, mib in peaks.items():
        print(f"\nWorkers' peak RSS, {name}: {', '.join(f'{m} MiB' for m in mib)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
