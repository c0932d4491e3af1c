"""The padding audit's cost inside the real engine, and `last` with lengths as a row gather.

    python bench/bench_audit.py [--size 4GB] [--repeat 3] [--dir DIR]

Writes a post-padded float32 (N, 128, 256) .npy of about --size (about 30% padding) and its
lengths, then times the in-process engine (`stream.run_plan`, start-up excluded, page cache
warm) on `reduce -s mean --lengths`: without the audit, with it (the cost every run now
pays), and with no mask at all (the audit's no-mask path). It also checks that `last` with
lengths still reads single rows (`gather.can_gather`) and times it with its audit (the first
samples read once more). Best of --repeat, round-robin. Target: the audit costs at most 5% of
the streamed mean.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lstmshape import gather, io, stream
from lstmshape.audit import AuditSpec, PaddingAudit, sample_findings
from lstmshape.masks import MaskSpec
from lstmshape.plan import plan_reduce
from lstmshape.units import format_bytes
from lstmshape.validity import Validity

T, F = 128, 256


class Null:
    def write(self, start: int, block: np.ndarray, axis: int = 0) -> None:
        pass


def make(path: Path, nbytes: int) -> np.ndarray:
    n = max(1, nbytes // (T * F * 4))
    rng = np.random.default_rng(0)
    lengths = rng.integers(int(0.4 * T), T + 1, n)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, T, F))
    step = max(1, (64 * 2**20) // (T * F * 4))
    for start in range(0, n, step):
        block = rng.standard_normal((min(step, n - start), T, F), dtype=np.float32)
        block[np.arange(T)[None, :] >= lengths[start : start + step, None]] = 0
        out[start : start + step] = block
    out.flush()
    del out
    return lengths


def timed(path: Path, strategy: str, spec: MaskSpec, audit: AuditSpec | None) -> float:
    with io.open_array(str(path)) as source:
        plan = plan_reduce(source.shape, source.dtype, strategy, empty="zero")
        begin = time.perf_counter()
        if gather.can_gather(source, plan, spec):
            if audit is not None:
                sample_findings(source, plan, spec, audit)
            stream.run_plan(source, plan, spec, Null())
        else:
            accumulator = None if audit is None else PaddingAudit(audit)
            stream.run_plan(source, plan, spec, Null(), audit=accumulator)
            if accumulator is not None:
                accumulator.findings(spec.validity)
        return time.perf_counter() - begin


def parse_size(text: str) -> int:
    units = {"KB": 2**10, "MB": 2**20, "GB": 2**30}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "x.npy"
        lengths = make(path, parse_size(args.size))
        given = MaskSpec(validity=Validity.from_lengths(lengths, T))
        lengths_audit = AuditSpec("lengths", strategy="mean")
        cases = {
            "mean, lengths, no audit": ("mean", given, None),
            "mean, lengths, audit": ("mean", given, lengths_audit),
            "mean, no mask, no audit": ("mean", MaskSpec(), None),
            "mean, no mask, audit": ("mean", MaskSpec(), AuditSpec(None, strategy="mean")),
            "last, lengths, no audit": ("last", given, None),
            "last, lengths, audit": ("last", given, AuditSpec("lengths", strategy="last")),
        }
        with io.open_array(str(path)) as source:
            plan = plan_reduce(source.shape, source.dtype, "last")
            assert gather.can_gather(source, plan, given), "last with lengths must gather"
        timed(path, "mean", MaskSpec(), None)  # warm the page cache
        best = {name: float("inf") for name in cases}
        for _ in range(args.repeat):
            for name, case in cases.items():
                best[name] = min(best[name], timed(path, *case))
        size = path.stat().st_size
        print(f"input {format_bytes(size)} float32 (N, {T}, {F}), warm; best of {args.repeat}")
        for name, seconds in best.items():
            print(f"  {name:28s} {seconds:7.3f} s  {size / seconds / 2**30:5.2f} GiB/s")
        for what in ("mean, lengths", "mean, no mask", "last, lengths"):
            extra = best[f"{what}, audit"] / best[f"{what}, no audit"] - 1
            print(f"  audit cost, {what:14s} {100 * extra:+5.1f} %")


if __name__ == "__main__":
    main()
