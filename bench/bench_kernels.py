"""Time the masked reduce kernels against plain NumPy on one (N, T, F) batch.

    python bench/bench_kernels.py [--n 4096 --t 128 --f 256] [--dtype float32]
        [--layout ntf|tnf] [--repeat 5]

Prints one table: each masked kernel, its best-of-k time, the reference it is compared with,
and the speed ratio (reference time / kernel time, so > 1 means the kernel is faster) next to
its target. About 30% of the steps are padding (lengths uniform in [0.4 T, T]; the holey
mask drops 30% of steps at random).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lstmshape.masks import build_validity
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--t", type=int, default=128)
    parser.add_argument("--f", type=int, default=256)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--layout", choices=("ntf", "tnf"), default="ntf", help="tnf: x is a transposed view"
    )
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    n, t, f = args.n, args.t, args.f
    shape = (n, t, f) if args.layout == "ntf" else (t, n, f)
    x = rng.standard_normal(shape, dtype=np.float32).astype(args.dtype, copy=False)
    if args.layout == "tnf":
        x = x.transpose(1, 0, 2)
    lengths = rng.integers(int(0.4 * t), t + 1, size=n)
    by_lengths = build_validity(x, lengths=lengths)
    holey = rng.random((n, t)) < 0.7
    holey[:, 0] = True  # no empty samples, so no policy is needed
    by_holes = build_validity(x, mask=holey)
    assert by_holes.mask is not None, "the holey mask must stay a mask"
    m = by_lengths.as_mask()
    padding = 1.0 - float(m.mean())

    def kernel(validity: Validity, strategy: str, data: np.ndarray = x) -> Callable[[], object]:
        return lambda: reduce_steps(data, validity, strategy)  # type: ignore[arg-type]

    def naive_mean() -> object:
        return (x * m[..., None]).sum(1) / m.sum(1, keepdims=True)

    references = {
        "naive (x*m).sum/m.sum": naive_mean,
        "x.sum(axis=1)": lambda: x.sum(axis=1),
        "x.max(axis=1)": lambda: x.max(axis=1),
    }
    # Time-major goal (issue #16): each kernel at >= 0.9x its speed on the same data stored
    # batch-first (a C-order copy, timed here as the reference).
    by_layout: list[tuple[str, str, Validity]] = []
    if args.layout == "tnf":
        batch_first = np.ascontiguousarray(x)
        for label, strategy, validity in (
            ("mean, lengths", "mean", by_lengths),
            ("mean, holey mask", "mean", by_holes),
            ("max, lengths", "max", by_lengths),
            ("max, holey mask", "max", by_holes),
        ):
            references[f"batch-first {label}"] = kernel(validity, strategy, batch_first)
            by_layout.append((label, strategy, validity))
    ref_times = {name: best_of(fn, args.repeat) for name, fn in references.items()}

    # (kernel label, kernel, reference, target ratio)
    rows = [
        ("mean, lengths", kernel(by_lengths, "mean"), "naive (x*m).sum/m.sum", 5.0),
        ("mean, lengths", kernel(by_lengths, "mean"), "x.sum(axis=1)", 0.9),
        ("mean, holey mask", kernel(by_holes, "mean"), "x.sum(axis=1)", 0.9),
        ("max, lengths", kernel(by_lengths, "max"), "x.max(axis=1)", 0.7),
        ("max, holey mask", kernel(by_holes, "max"), "x.max(axis=1)", 0.3),
        ("last, lengths", kernel(by_lengths, "last"), "x.sum(axis=1)", 10.0),
        ("last, holey mask", kernel(by_holes, "last"), "x.sum(axis=1)", 10.0),
    ]
    rows += [
        (label, kernel(validity, strategy), f"batch-first {label}", 0.9)
        for label, strategy, validity in by_layout
    ]
    timed: dict[str, float] = {}
    size_mb = x.nbytes / 2**20
    print(
        f"x {x.dtype} {x.shape} {args.layout} ({size_mb:.0f} MB), {padding:.0%} padding, "
        f"best of {args.repeat}"
    )
    header = f"{'kernel':<18} {'time ms':>8}  {'vs reference':<28} {'ref ms':>8} {'ratio':>7}"
    print(header + f" {'target':>7}  ok")
    print("-" * (len(header) + 12))
    failures = 0
    for label, fn, ref, target in rows:
        key = label
        if key not in timed:
            timed[key] = best_of(fn, args.repeat)
        ratio = ref_times[ref] / timed[key]
        ok = ratio >= target
        failures += not ok
        print(
            f"{label:<18} {timed[key] * 1e3:>8.1f}  {ref:<28} {ref_times[ref] * 1e3:>8.1f} "
            f"{ratio:>6.2f}x {target:>6.1f}x  {'yes' if ok else 'NO'}"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
