"""`lstmshape diff` of two large inputs against the floor of reading both files.

    python bench/bench_diff.py [--size 256MB] [--repeat 3] [--no-cold] [--save bench/RESULTS.md]
        [--keep]

Generates two float32 (N, 128, 256) `.npy` files of about `--size` each (binary units: 4GB =
4 GiB) under bench/data: A, with ~30% post-padding (zeros) and its lengths, and B, the same
outputs with every valid element moved by a relative error below 1e-6 (what another
framework or a re-run on other hardware gives: equal within the default tolerance, yet
every element differs), and a time-major copy of B. Then it times, as child processes (wall
time, and peak RSS from `os.wait4`, as bench/run.py does):

- the floor: one process reading A then B with a plain sequential `readinto` loop into a
  reused 16 MiB buffer;
- `lstmshape diff A B -q` (the common case: equal within tolerance), with `--lengths`,
  with B time-major (`--layout-b tnf`), and with `--rtol 0 --atol 0`, where every valid
  element differs and each piece takes the exact, element-by-element path;

warm (both files in the page cache) and, unless `--no-cold`, cold (both evicted with
`posix_fadvise(DONTNEED)`). Prints a Markdown table and the targets of issue #14 (at least
0.8x the speed of reading both files, bounded peak RSS) with PASS/MISS. `--save` appends
the section to a file. The generated data is deleted unless `--keep`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import (  # noqa: E402  (bench/run.py: the project's measuring helpers)
    FLOOR_READ,
    LAUNCHER,
    cached_fraction,
    evict,
    parse_size,
    warm,
)

from lstmshape.units import format_bytes  # noqa: E402

DATA = BENCH / "data"
T, F = 128, 256
SAMPLE_BYTES = T * F * 4
RSS_LIMIT_MB = 512


@dataclass
class Inputs:
    a: Path
    b: Path
    b_tnf: Path
    lengths: Path
    n: int

    @property
    def paths(self) -> list[Path]:
        return [self.a, self.b, self.b_tnf, self.lengths]


def make_inputs(size: int) -> Inputs:
    """A and B (and B time-major), written 256 samples at a time."""
    DATA.mkdir(parents=True, exist_ok=True)
    n = max(1, size // SAMPLE_BYTES)
    stem = DATA / f"diff-{n}x{T}x{F}"
    inputs = Inputs(
        Path(f"{stem}.a.npy"), Path(f"{stem}.b.npy"), Path(f"{stem}.b-tnf.npy"),
        Path(f"{stem}.lengths.npy"), n,
    )  # fmt: skip
    rng = np.random.default_rng(14)
    lengths = rng.integers(int(0.4 * T), T + 1, size=n)  # ~30% padding on average
    np.save(inputs.lengths, lengths)
    started = time.perf_counter()
    if not all(p.exists() for p in inputs.paths):
        base = rng.standard_normal((256, T, F), dtype=np.float32)
        noise = rng.uniform(-1e-6, 1e-6, size=base.shape).astype(np.float32)
        files = {
            "a": np.lib.format.open_memmap(inputs.a, "w+", np.float32, (n, T, F)),
            "b": np.lib.format.open_memmap(inputs.b, "w+", np.float32, (n, T, F)),
            "t": np.lib.format.open_memmap(inputs.b_tnf, "w+", np.float32, (T, n, F)),
        }
        for lo in range(0, n, 256):
            block = base[: min(256, n - lo)] + np.float32(lo % 7)
            block[np.arange(T)[None, :] >= lengths[lo : lo + len(block), None]] = 0
            moved = block + block * noise[: len(block)]
            files["a"][lo : lo + len(block)] = block
            files["b"][lo : lo + len(block)] = moved
            files["t"][:, lo : lo + len(block)] = moved.transpose(1, 0, 2)
        for array in files.values():
            array.flush()
        del files
    took = time.perf_counter() - started
    each = format_bytes(n * SAMPLE_BYTES)
    print(f"inputs: 2 x N={n} x {T} x {F} float32, {each} each ({took:.0f} s)")
    return inputs


@dataclass
class Run:
    wall: float
    rss_mb: float
    code: int


def run(cmd: list[object]) -> Run:
    """Wall time and peak RSS of `cmd` as a grandchild (bench/run.py's launcher)."""
    launch = [sys.executable, "-c", LAUNCHER, *(str(c) for c in cmd)]
    done = subprocess.run(launch, capture_output=True, text=True, cwd=DATA, check=False)
    wall, rss, code, _cpu = done.stdout.split("\n")[-2].split()
    if int(code) not in (0, 1):
        raise RuntimeError(f"{cmd} failed ({code}): {done.stderr.strip()[-2000:]}")
    return Run(float(wall), int(rss) / 1024, int(code))


@dataclass
class Case:
    key: str
    label: str
    cmd: list[object]
    expect: int  # the exit code the case must give


def cases(inputs: Inputs) -> list[Case]:
    ls = str(Path(sys.executable).with_name("lstmshape"))
    diff = [ls, "diff", inputs.a, inputs.b, "-q"]
    floor = [sys.executable, "-c", FLOOR_READ, inputs.a, inputs.b]
    return [
        Case("floor", "read A and B (plain readinto loop)", floor, 0),
        Case("diff", "lstmshape diff A B", diff, 0),
        Case("diff-L", "lstmshape diff A B --lengths", [*diff, "--lengths", inputs.lengths], 0),
        Case("diff-tnf", "lstmshape diff A B(T,N,F) --layout-b tnf",
             [ls, "diff", inputs.a, inputs.b_tnf, "--layout-b", "tnf", "-q"], 0),
        Case("diff-exact", "lstmshape diff A B --rtol 0 --atol 0 (all differ)",
             [*diff, "--rtol", "0", "--atol", "0"], 1),
    ]  # fmt: skip


def prepare(cache: str, paths: list[Path]) -> None:
    for path in paths:
        if cache == "cold":
            evict(path)
        elif cached_fraction(path) < 1.0:
            warm(path)


def measure(inputs: Inputs, cache: str, repeat: int) -> dict[str, Run]:
    """Each case `repeat` times, round-robin (drift in the machine's load hits all alike)."""
    chosen = cases(inputs) if cache == "warm" else cases(inputs)[:2]
    runs: dict[str, list[Run]] = {c.key: [] for c in chosen}
    for _ in range(repeat):
        for case in chosen:
            files = [inputs.a, inputs.b_tnf if case.key == "diff-tnf" else inputs.b]
            prepare(cache, files)
            result = run(case.cmd)
            if result.code != case.expect:
                raise RuntimeError(f"{case.label}: exit {result.code}, expected {case.expect}")
            runs[case.key].append(result)
    return {key: Run(min(r.wall for r in rs), max(r.rss_mb for r in rs), rs[0].code)
            for key, rs in runs.items()}  # fmt: skip


def report(inputs: Inputs, results: dict[str, dict[str, Run]], repeat: int) -> str:
    total = 2 * inputs.n * SAMPLE_BYTES
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"## lstmshape diff: 2 x {format_bytes(total / 2)} float32 (N, {T}, {F})",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M%z}",
        f"- machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, numpy {np.__version__}",
        f"- load average at the end (1, 5, 15 min): {load}",
        f"- best of {repeat} runs; wall time of the whole command (start-up included), peak "
        "RSS from os.wait4; x floor = floor time / diff time (> 1: faster than the floor)",
        "- B = A with every valid element moved by a relative error below 1e-6 (equal within "
        "the default tolerance); ~30% post-padding",
        "",
        "| case | cache | wall s | GB/s (A+B) | x floor | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    labels = {c.key: c.label for c in cases(inputs)}
    for cache, runs in results.items():
        floor = runs["floor"].wall
        for key, r in runs.items():
            ratio = f"{floor / r.wall:.2f}"
            lines.append(
                f"| {labels[key]} | {cache} | {r.wall:.3f} | {total / r.wall / 1e9:.2f} | "
                f"{ratio} | {r.rss_mb:.0f} |"
            )
    lines += ["", "Targets (issue #14):", ""]
    for cache, runs in results.items():
        ratio = runs["floor"].wall / runs["diff"].wall
        verdict = "PASS" if ratio >= 0.8 else "MISS"
        lines.append(
            f"- {verdict} diff {cache}: >= 0.8x the speed of reading both files: {ratio:.2f}x"
        )
    rss = max(r.rss_mb for runs in results.values() for k, r in runs.items() if k != "floor")
    verdict = "PASS" if rss <= RSS_LIMIT_MB else "MISS"
    lines.append(f"- {verdict} peak RSS of diff <= {RSS_LIMIT_MB} MiB: {rss:.0f} MiB "
                 f"(the inputs: {format_bytes(total)})")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("256MB"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-cold", action="store_true", help="skip the cold runs")
    parser.add_argument("--save", type=Path, default=None, help="append the section here")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args(argv)
    inputs = make_inputs(args.size)
    try:
        results = {"warm": measure(inputs, "warm", args.repeat)}
        if not args.no_cold:
            results["cold"] = measure(inputs, "cold", args.repeat)
    finally:
        if not args.keep:
            for path in inputs.paths:
                path.unlink(missing_ok=True)
    text = report(inputs, results, args.repeat)
    print(text)
    if args.save:
        with args.save.open("a") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
