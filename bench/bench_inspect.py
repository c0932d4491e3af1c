"""`lstmshape inspect` against a plain read, over 1, 100 and 10,000 arrays of the same bytes.

    python bench/bench_inspect.py [--size 1GB] [--repeat 3] [--save bench/RESULTS.md] [--keep]

Generates float32 (N, 128, 64) samples of about `--size` in all (binary units), ~30%
post-padded with zeros, and stores the same samples as one `.npy`, and as `.h5` files and
`.npz` archives split into 1, 100 and 10,000 arrays. Then it times, as child processes
(wall time and peak RSS from `os.wait4`, bench/run.py's launcher), with the files in the page
cache: `lstmshape inspect FILE --json -q` (the report of every array) and the floor, a
plain sequential `readinto` loop over the same file into a reused 16 MiB buffer. Issue #16
item 3 asks that inspect's time grow linearly with the total bytes whatever the number of
arrays, and run at least 0.8x a plain read on one 1 GiB array: the table gives both ratios.
The generated data is deleted unless `--keep`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import FLOOR_READ, Run, best, parse_size, warm  # noqa: E402  (bench/run.py's helpers)

from lstmshape.units import format_bytes  # noqa: E402

DATA = BENCH / "data" / "inspect"
T, F = 128, 64
SAMPLE_BYTES = T * F * 4
SPLITS = (1, 100, 10_000)


def make_files(size: int) -> list[Path]:
    """One .npy, and .h5/.npz files of the same samples split into SPLITS arrays."""
    import h5py

    DATA.mkdir(parents=True, exist_ok=True)
    n = max(SPLITS[-1], size // SAMPLE_BYTES // SPLITS[-1] * SPLITS[-1])
    rng = np.random.default_rng(16)
    x = rng.standard_normal((n, T, F), dtype=np.float32)
    lengths = rng.integers(int(0.4 * T), T + 1, size=n)
    x[np.arange(T)[None, :] >= lengths[:, None]] = 0
    files = [DATA / "one.npy"]
    np.save(files[0], x)
    for k in SPLITS:
        parts = np.split(x, k)
        h5, npz = DATA / f"split-{k}.h5", DATA / f"split-{k}.npz"
        with h5py.File(h5, "w") as f:
            for i, part in enumerate(parts):
                f.create_dataset(f"r{i:05d}", data=part)
        np.savez(npz, **{f"r{i:05d}": part for i, part in enumerate(parts)})
        files += [h5, npz]
    return files


def measure(files: list[Path], repeat: int) -> list[tuple[Path, Run, Run]]:
    lstmshape = Path(sys.executable).with_name("lstmshape")
    rows = []
    for path in files:
        warm(path)
        inspected = best([lstmshape, "inspect", path, "--json", "-q"], repeat)
        floor = best([sys.executable, "-c", FLOOR_READ, path], repeat)
        rows.append((path, inspected, floor))
        print(f"{path.name}: inspect {inspected.wall:.2f} s, read {floor.wall:.2f} s", flush=True)
    return rows


def report(rows: list[tuple[Path, Run, Run]], repeat: int) -> str:
    one = rows[0][1].wall / rows[0][0].stat().st_size
    lines = [
        "## inspect over 1, 100 and 10,000 arrays (issue #16 item 3)",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M%z}, "
        f"`python bench/bench_inspect.py`, best of {repeat}, page cache warm",
        f"- machine: {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}; load average "
        f"{os.getloadavg()[0]:.1f}",
        "",
        "| file | arrays | bytes | inspect s | peak RSS MiB | plain read s | read / inspect "
        "| time per byte vs one .npy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for path, inspected, floor in rows:
        size = path.stat().st_size
        arrays = 1 if path.suffix == ".npy" else int(path.stem.split("-")[1])
        lines.append(
            f"| {path.name} | {arrays:,} | {format_bytes(size)} | {inspected.wall:.2f} | "
            f"{inspected.rss_mb:.0f} | {floor.wall:.2f} | {floor.wall / inspected.wall:.2f}x | "
            f"{inspected.wall / size / one:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1GB", type=parse_size)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    files = make_files(args.size)
    try:
        text = report(measure(files, args.repeat), args.repeat)
    finally:
        if not args.keep:
            for path in files:
                path.unlink(missing_ok=True)
    print(text)
    if args.save:
        with args.save.open("a", encoding="utf-8") as out:
            out.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
