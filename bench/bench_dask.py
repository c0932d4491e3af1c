"""Throughput of `--engine dask` with 1 and 2 worker processes against the in-process engine.

    python bench/bench_dask.py [--size-mb 512] [--repeat 2] [--dir DIR]

Writes one (N, T=100, F=128) float32 input of about `--size-mb` (it fits in memory) as a
`.npy` file and as 4 `.zarr` shards, starts two LocalClusters (1 and 2 worker processes,
one thread each) and times the CLI on them with `--scheduler ADDRESS`, as a user with a
running cluster would; so the times include the CLI's start (about 0.3 s in-process, plus
the Client connection for dask) but not the cluster's. One more row per operation times
`--workers 2`, which starts a cluster inside the command.

Prints a Markdown table: best-of-`--repeat` wall time, throughput (input MB / s) and the
time relative to the in-process engine (> 1: slower).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lstmshape import io

T, F = 100, 128
SHARDS = 4
OPERATIONS = {
    "reduce mean": ["reduce", "-s", "mean", "--lengths", "{d}/lengths.npy"],
    "pool avg P=4": ["pool", "--pool-size", "4", "--lengths", "{d}/lengths.npy"],
    "project pca 16": ["project", "--pca", "16", "--lengths", "{d}/lengths.npy"],
}


def make_data(directory: Path, size_mb: float) -> int:
    n = int(size_mb * 2**20 // (T * F * 4))
    rng = np.random.default_rng(0)
    lengths = rng.integers(T // 2, T + 1, size=n)
    np.save(directory / "lengths.npy", lengths)
    header = {"descr": "<f4", "fortran_order": False, "shape": (n, T, F)}
    step = 512
    bounds = np.linspace(0, n, SHARDS + 1).astype(int)
    with (directory / "x.npy").open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for lo in range(0, n, step):
            block = rng.standard_normal((min(step, n - lo), T, F)).astype(np.float32)
            fh.write(block.tobytes())
    x = np.load(directory / "x.npy", mmap_mode="r")
    for i in range(SHARDS):
        io.save(np.asarray(x[bounds[i] : bounds[i + 1]]), f"{directory}/x-{i}.zarr:/out")
    return n


def timed(args: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=512)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    options = parser.parse_args(argv)

    from distributed import LocalCluster

    scratch = Path(options.dir or tempfile.mkdtemp(prefix="lstmshape-bench-dask-"))
    scratch.mkdir(parents=True, exist_ok=True)
    n = make_data(scratch, options.size_mb)
    size_mb = (scratch / "x.npy").stat().st_size / 2**20
    exe = [sys.executable, "-m", "lstmshape"]
    common = ["-q", "--force"]
    saved = dict(os.environ)
    clusters = {
        k: LocalCluster(
            n_workers=k,
            processes=True,
            threads_per_worker=1,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
        for k in (1, 2)
    }
    os.environ.clear()
    os.environ.update(saved)
    rows = []
    try:
        for name, op in OPERATIONS.items():
            args = [a.format(d=scratch) for a in op]
            cmd, rest = args[0], args[1:]
            base = timed([*exe, cmd, str(scratch / "x.npy"), *rest, "-o", f"{scratch}/o.npy",
                          *common], options.repeat)  # fmt: skip
            rows.append((name, "in-process", ".npy -> .npy", base, base))
            for k, cluster in clusters.items():
                dask = ["--engine", "dask", "--scheduler", cluster.scheduler_address]
                t = timed([*exe, cmd, str(scratch / "x.npy"), *rest, "-o", f"{scratch}/o.npy",
                           *dask, *common], options.repeat)  # fmt: skip
                rows.append((name, f"dask, {k} worker{'s' * (k > 1)}", ".npy -> .npy", t, base))
                t = timed([*exe, cmd, f"{scratch}/x-*.zarr:/out", *rest,
                           "-o", f"{scratch}/o.zarr", *dask, *common], options.repeat)  # fmt: skip
                rows.append((name, f"dask, {k} worker{'s' * (k > 1)}", "4 .zarr -> .zarr", t, base))
            t = timed([*exe, cmd, str(scratch / "x.npy"), *rest, "-o", f"{scratch}/o.npy",
                       "--engine", "dask", "--workers", "2", *common], 1)  # fmt: skip
            rows.append((name, "dask --workers 2 (starts a cluster)", ".npy -> .npy", t, base))
    finally:
        for cluster in clusters.values():
            cluster.close()
        if options.dir is None:
            shutil.rmtree(scratch, ignore_errors=True)

    print(f"Input: ({n}, {T}, {F}) float32, {size_mb:.0f} MB; {os.cpu_count()} cores; "
          f"best of {options.repeat}.\n")  # fmt: skip
    print("| operation | engine | input -> output | time (s) | MB/s | vs in-process |")
    print("|---|---|---|---:|---:|---:|")
    for name, engine, files, t, base in rows:
        print(f"| {name} | {engine} | {files} | {t:.2f} | {size_mb / t:.0f} | {t / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
