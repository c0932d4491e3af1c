"""Time the padding audit against the masked mean it rides along with, block by block.

    python bench/bench_padding.py [--n 2048 --t 128 --f 256] [--dtype float32]
        [--kind post|pre|repeat] [--layout ntf|tnf] [--block-mb 16] [--repeat 5]

The audit is what every run adds: `padding.summarise(block, validity_rows)` on each block the
engine has read anyway, `Ends.concat` of the block summaries, then `infer` and `audit` once.
It is compared with a streamed masked mean over the same data (each block copied out of a
memory-mapped .npy in the page cache, then `reduce_steps(..., "mean")`), and with the mean
kernel alone on the in-memory array. Target: the audit costs at most 5% of the streamed mean.
The exact summary (inspect, an automatic mask) is shown for information: its cost follows
the padding. Lengths are uniform in [0.4 T, T] (about 30% padding), padding zeros (or the
last valid step repeated, --kind repeat).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lstmshape.masks import build_validity
from lstmshape.padding import Ends, audit, infer, summarise
from lstmshape.strategies.reduce import reduce_steps
from lstmshape.validity import Validity


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of `repeat` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def padded(n: int, t: int, f: int, kind: str, dtype: str, seed: int) -> tuple[np.ndarray, Validity]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, t, f), dtype=np.float32).astype(dtype, copy=False)
    lengths = rng.integers(int(0.4 * t), t + 1, size=n)
    steps = np.arange(t)[None, :]
    if kind == "repeat":
        last = np.minimum(steps, (lengths - 1)[:, None])
        x = np.take_along_axis(x, last[..., None], axis=1)
    elif kind == "post":
        x[steps >= lengths[:, None]] = 0
    else:
        x[steps < (t - lengths)[:, None]] = 0
    side = "pre" if kind == "pre" else "post"
    return x, build_validity(x, lengths=lengths, pad_side=side)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--t", type=int, default=128)
    parser.add_argument("--f", type=int, default=256)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--kind", choices=("post", "pre", "repeat"), default="post")
    parser.add_argument(
        "--layout", choices=("ntf", "tnf"), default="ntf", help="tnf: x is a transposed view"
    )
    parser.add_argument("--block-mb", type=float, default=16.0, help="block size of the stream")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x, validity = padded(args.n, args.t, args.f, args.kind, args.dtype, args.seed)
    side = validity.pad_side
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, x if args.layout == "ntf" else np.ascontiguousarray(x.transpose(1, 0, 2)))
        stored = np.load(path, mmap_mode="r")
        if args.layout == "tnf":
            x = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
        mapped = stored if args.layout == "ntf" else stored.transpose(1, 0, 2)
        rows = max(1, int(args.block_mb * 2**20) // (args.t * args.f * x.itemsize))
        starts = range(0, args.n, rows)

        def streamed_mean() -> None:
            for i in starts:
                block = np.array(mapped[i : i + rows])
                reduce_steps(block, validity.rows(i, i + rows), "mean")

        def audit_with(given: Validity | None, exact: bool = False) -> Callable[[], object]:
            def run() -> object:
                parts = [
                    summarise(x[i : i + rows], given and given.rows(i, i + rows), exact=exact)
                    for i in starts
                ]
                detected = infer(Ends.concat(parts))
                source = None if given is None else "lengths"
                return audit(detected, given, side, source, "mean")

            return run

        stream_time = best_of(streamed_mean, args.repeat)
        kernel_time = best_of(lambda: reduce_steps(x, validity, "mean"), args.repeat)
        rows_out = [
            ("audit, lengths given", audit_with(validity), 0.05),
            ("audit, no mask", audit_with(None), 0.05),
            ("exact summary (info)", audit_with(None, exact=True), None),
        ]
        size_mb = x.nbytes / 2**20
        print(
            f"x {x.dtype} {tuple(stored.shape)} {args.layout} ({size_mb:.0f} MB), {args.kind} "
            f"padding, blocks of {rows} samples, best of {args.repeat}"
        )
        print(
            f"streamed masked mean {stream_time * 1e3:.1f} ms; mean kernel alone "
            f"{kernel_time * 1e3:.1f} ms"
        )
        header = f"{'step':<22} {'time ms':>8} {'of stream':>10} {'of kernel':>10} {'target':>7}"
        print(header + "  ok")
        print("-" * (len(header) + 4))
        failures = 0
        for label, fn, target in rows_out:
            spent = best_of(fn, args.repeat)
            share = spent / stream_time
            ok = target is None or share <= target
            failures += not ok
            goal = "-" if target is None else f"{target:.0%}"
            print(
                f"{label:<22} {spent * 1e3:>8.2f} {share:>10.1%} {spent / kernel_time:>10.1%} "
                f"{goal:>7}  {'yes' if ok else 'NO'}"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
