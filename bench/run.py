"""The end-to-end benchmark: lstmshape against what a user would otherwise run, in one table.

    python bench/run.py [--size 256MB] [--repeat 3] [--no-cold] [--rss-size 8GB]
        [--save bench/RESULTS.md] [--keep] [--steps engine,tnf,startup]

Generates float32 (N, 128, 256) inputs of about `--size` (binary units: 4GB = 4 GiB) under
bench/data: a `.npy` with ~30% post-padding and its lengths, a chunked uncompressed `.h5`
copy (chunks of 8 samples, 1 MiB) and a time-major copy. Then, in this one run, it times
each command as a child process (wall time, and peak RSS from `os.wait4`):

- `lstmshape reduce` (mean, max, last --lengths), installed non-editable into a scratch
  virtual environment as a user would have it;
- the NumPy one-liner a user would write (`np.load` + reduction + `np.save`), and
  `einops.reduce` where it applies;
- the floors: a plain sequential `readinto` loop over the file into a reused buffer, and
  for `.h5` h5py's own best sequential `read_direct` of whole chunks into a reused buffer;

warm (the file read once first) and cold (evicted with `posix_fadvise(DONTNEED)` after
`fsync`; the eviction is checked by asking the page cache for pages without waiting).
Start-up is compared with `python -c "import numpy"`. Every target of issue #5 is printed
with its measured value and PASS/MISS. The generated data is deleted unless `--keep`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lstmshape import units

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
T, F = 128, 256
SAMPLE_BYTES = T * F * 4
H5_CHUNK_SAMPLES = 8
GIB = 2**30
STARTUP_ROUNDS = 20

# A child's ru_maxrss starts at its parent's resident set (fork copies it, exec keeps the
# high-water mark): this small launcher forks the measured command and reports its own child.
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
cpu = usage.ru_utime + usage.ru_stime
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status), cpu)
"""

# The floor of the other benches: the files named, read in order with a plain sequential
# `readinto` loop into one reused 16 MiB buffer; prints the seconds it took.
FLOOR_READ = """
import sys, time
buf = memoryview(bytearray(1 << 24))
start = time.perf_counter()
for path in sys.argv[1:]:
    with open(path, "rb", buffering=0) as fh:
        while fh.readinto(buf):
            pass
print(time.perf_counter() - start)
"""

FLOOR_NPY = """
import os, sys, time
path, size = sys.argv[1], int(sys.argv[2])
buf = memoryview(bytearray(size))
fd = os.open(path, os.O_RDONLY)
start = time.perf_counter()
with os.fdopen(fd, "rb", buffering=0) as fh:
    while fh.readinto(buf):
        pass
print(time.perf_counter() - start)
"""

FLOOR_H5 = """
import sys, time
import h5py, numpy as np
path, chunks_per_read = sys.argv[1], int(sys.argv[2])
with h5py.File(path, "r") as f:
    d = f["data"]
    rows = d.chunks[0] * chunks_per_read
    buf = np.empty((rows, *d.shape[1:]), d.dtype)
    start = time.perf_counter()
    for lo in range(0, d.shape[0], rows):
        hi = min(lo + rows, d.shape[0])
        d.read_direct(buf, np.s_[lo:hi], np.s_[0 : hi - lo])
print(time.perf_counter() - start)
"""

ONE_LINERS = {
    "mean": "import numpy as np, sys; np.save(sys.argv[2], np.load(sys.argv[1]).mean(axis=1))",
    "max": "import numpy as np, sys; np.save(sys.argv[2], np.load(sys.argv[1]).max(axis=1))",
    "last": (
        "import numpy as np, sys; x = np.load(sys.argv[1]); L = np.load(sys.argv[3]); "
        "np.save(sys.argv[2], x[np.arange(len(L)), L - 1])"
    ),
    "mean-L": (
        "import numpy as np, sys; x = np.load(sys.argv[1]); L = np.load(sys.argv[3]); "
        "m = np.arange(x.shape[1]) < L[:, None]; "
        "np.save(sys.argv[2], (x * m[..., None]).sum(axis=1) / L[:, None])"
    ),
    "last-mmap": (
        "import numpy as np, sys; x = np.load(sys.argv[1], mmap_mode='r'); "
        "L = np.load(sys.argv[3]); np.save(sys.argv[2], x[np.arange(len(L)), L - 1])"
    ),
    "mean-h5": (
        "import h5py, numpy as np, sys; f = h5py.File(sys.argv[1], 'r'); "
        "np.save(sys.argv[2], f['data'][()].mean(axis=1))"
    ),
}
EINOPS = {
    op: (
        "import numpy as np, sys, einops; "
        f"np.save(sys.argv[2], einops.reduce(np.load(sys.argv[1]), 'n t f -> n f', '{op}'))"
    )
    for op in ("mean", "max")
}

# In-process engine time (start-up excluded) of a full reduce and of the row gather.
ENGINE = """
import sys, time
import numpy as np
from lstmshape import api, io, stream
from lstmshape.masks import MaskSpec, build_validity
path, lengths_path, strategy, layout = sys.argv[1:5]

class Null:
    def write(self, start, block, axis=0):
        pass

with io.open_array(path) as src:
    lengths = np.load(lengths_path)
    plan = api.plan_reduce(src.shape, src.dtype, strategy, layout=layout)
    n, t = src.shape[:2][::-1] if layout == "tnf" else src.shape[:2]
    validity = build_validity(None, n=n, t=t, lengths=lengths)
    spec = MaskSpec(validity=validity)
    start = time.perf_counter()
    stream.run_plan(src, plan, spec, Null())
    print(time.perf_counter() - start)
"""


# ----------------------------------------------------------------------------- sizes, data


def parse_size(text: str) -> int:
    """'256MB', '4GB', '1.5GiB', '1000000' -> bytes (binary units), as LSTMSHAPE_MAX_MEMORY."""
    try:
        return units.parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


@dataclass
class Inputs:
    npy: Path
    lengths: Path
    h5: Path
    tnf: Path
    tiny: Path
    n: int

    @property
    def nbytes(self) -> int:
        return self.n * SAMPLE_BYTES


def _write_npy(path: Path, n: int, lengths: np.ndarray, *, time_major: bool = False) -> None:
    """Random float32 samples, zero past each length, written 256 samples at a time."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((256, T, F), dtype=np.float32)
    shape = (T, n, F) if time_major else (n, T, F)
    tmp = path.with_suffix(".part")
    if time_major:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    with tmp.open("r+b" if time_major else "wb") as fh:
        if not time_major:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "<f4", "fortran_order": False, "shape": shape}
            )
        for lo in range(0, n, 256):
            block = base[: min(256, n - lo)] + np.float32(lo % 7)
            block[np.arange(T)[None, :] >= lengths[lo : lo + len(block), None]] = 0
            if time_major:
                out[:, lo : lo + len(block)] = block.transpose(1, 0, 2)
            else:
                fh.write(block.tobytes())
    if time_major:
        out.flush()
        del out
    tmp.replace(path)


def _write_h5(path: Path, source: Path) -> None:
    import h5py

    x = np.load(source, mmap_mode="r")
    tmp = path.with_suffix(".part")
    with h5py.File(tmp, "w") as f:
        d = f.create_dataset("data", shape=x.shape, dtype=x.dtype, chunks=(8, T, F))
        for lo in range(0, x.shape[0], 256):
            d[lo : lo + 256] = x[lo : lo + 256]
    del x
    tmp.replace(path)


def make_inputs(size: int, *, extras: bool = True) -> Inputs:
    """Generate (or reuse) the inputs for `size` bytes under bench/data."""
    DATA.mkdir(parents=True, exist_ok=True)
    n = max(1, size // SAMPLE_BYTES)
    stem = DATA / f"lstm-{n}x{T}x{F}"
    inputs = Inputs(
        npy=stem.with_suffix(".npy"),
        lengths=Path(f"{stem}.lengths.npy"),
        h5=stem.with_suffix(".h5"),
        tnf=Path(f"{stem}.tnf.npy"),
        tiny=DATA / "tiny.npy",
        n=n,
    )
    rng = np.random.default_rng(1)
    lengths = rng.integers(int(0.4 * T), T + 1, size=n)  # ~30% padding on average
    np.save(inputs.lengths, lengths)
    np.save(inputs.tiny, np.zeros((4, 5, 3), np.float32))
    started = time.perf_counter()
    if not inputs.npy.exists():
        _write_npy(inputs.npy, n, lengths)
    if extras and not inputs.h5.exists():
        _write_h5(inputs.h5, inputs.npy)
    if extras and not inputs.tnf.exists():
        _write_npy(inputs.tnf, n, lengths, time_major=True)
    took = time.perf_counter() - started
    size = units.format_bytes(inputs.nbytes)
    print(f"inputs: N={n} x {T} x {F} float32, {size} each ({took:.0f} s)")
    return inputs


# ----------------------------------------------------------------------------- page cache


def evict(path: Path) -> None:
    """Drop a file's pages from the page cache (clean pages only, so fsync first)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached_fraction(path: Path, probes: int = 256) -> float:
    """Share of pages (sampled) that the page cache serves without waiting (RWF_NOWAIT)."""
    size = path.stat().st_size
    buf = bytearray(4096)
    hits = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in np.linspace(0, max(size - 4096, 0), probes).astype(np.int64).tolist():
            try:
                hits += os.preadv(fd, [buf], offset - offset % 4096, os.RWF_NOWAIT) > 0
            except BlockingIOError:
                pass
    finally:
        os.close(fd)
    return hits / probes


def warm(path: Path) -> None:
    with path.open("rb", buffering=0) as fh:
        buf = bytearray(1 << 24)
        while fh.readinto(buf):
            pass


# ----------------------------------------------------------------------------- running


@dataclass
class Run:
    wall: float
    rss_mb: float
    inner: float | None = None  # time the command reports itself (floors, engine)
    cpu: float = math.nan  # user + system CPU seconds


def run(cmd: Sequence[object], *, env: dict[str, str] | None = None) -> Run:
    """Run `cmd` as a grandchild; its wall time, peak RSS, and the last number it prints."""
    launch = [sys.executable, "-c", LAUNCHER, *(str(c) for c in cmd)]
    done = subprocess.run(launch, capture_output=True, text=True, env=env, cwd=DATA, check=False)
    lines = done.stdout.split("\n")
    wall, rss, code, cpu = lines[-2].split() if len(lines) >= 2 else ("nan", "0", "1", "nan")
    if int(code) != 0:
        raise RuntimeError(f"{cmd} failed ({code}): {done.stderr.strip()[-2000:]}")
    inner = None
    if len(lines) > 2:
        try:
            inner = float(lines[-3].split()[-1])
        except (ValueError, IndexError):
            inner = None
    return Run(float(wall), int(rss) / 1024, inner, float(cpu))


def best(
    cmd: Sequence[object], repeat: int, *, before: object = None, env: dict | None = None
) -> Run:
    """Best wall time (and inner time) of `repeat` runs, the largest peak RSS."""
    runs = []
    for _ in range(repeat):
        if callable(before):
            before()
        runs.append(run(cmd, env=env))
    inner = [r.inner for r in runs if r.inner is not None]
    return Run(
        min(r.wall for r in runs), max(r.rss_mb for r in runs), min(inner) if inner else None
    )


def scratch_install(venv: Path) -> Path:
    """lstmshape installed non-editable (compiled .pyc) into a scratch venv; its python."""
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    deps = next(p for p in sys.path if p.endswith("site-packages") and "lstmshape" not in p)
    (site / "lstmshape-deps.pth").write_text(deps + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    done = subprocess.run(
        [*pip, "install", "-q", "--no-deps", str(ROOT)], capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"installing lstmshape failed: {done.stderr[-2000:]}")
    return venv / "bin"


# ----------------------------------------------------------------------------- the table


@dataclass
class Row:
    case: str
    fmt: str
    cache: str
    tool: str
    run: Run
    nbytes: int
    notes: str = ""


@dataclass
class Bench:
    inputs: Inputs
    bin: Path
    repeat: int
    cold: bool
    rows: list[Row] = field(default_factory=list)
    results: dict[str, Run] = field(default_factory=dict)

    @property
    def lstmshape(self) -> str:
        return str(self.bin / "lstmshape")

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def add(self, key: str, case: str, fmt: str, cache: str, tool: str, result: Run) -> None:
        self.results[key] = result
        self.rows.append(Row(case, fmt, cache, tool, result, self.inputs.nbytes))

    def prepare(self, cache: str, *paths: Path) -> object:
        """What to do before each run: evict the inputs, or make sure they are all cached
        (a one-liner that allocates 4-8 GiB can push part of them out)."""
        if cache == "warm":

            def rewarm() -> None:
                for path in paths:
                    if cached_fraction(path) < 1.0:
                        warm(path)

            return rewarm
        return lambda: [evict(p) for p in paths]

    def reduce_cmd(self, path: object, strategy: str, lengths: bool, out: str) -> list:
        cmd = [self.lstmshape, "reduce", path, "--strategy", strategy]
        if lengths:
            cmd += ["--lengths", self.inputs.lengths]
        return [*cmd, "-o", DATA / out, "--force", "-q"]


@dataclass
class Cell:
    """One command of the table; `key` names its result (`base#variant`: the best variant)."""

    key: str
    case: str
    fmt: str
    tool: str
    cmd: list
    repeat: int | None = None  # None: the bench's --repeat


def measure(bench: Bench, cache: str, paths: Sequence[Path], cells: list[Cell]) -> None:
    """Run the cells round-robin (so drift in the machine's load hits them alike), each
    `repeat` times, evicting or warming `paths` before every run; add the best of each."""
    before = bench.prepare(cache, *paths)
    runs: dict[str, list[Run]] = {cell.key: [] for cell in cells}
    rounds = max(cell.repeat or bench.repeat for cell in cells)
    for round_ in range(rounds):
        for cell in cells:
            if round_ < (cell.repeat or bench.repeat):
                if callable(before):
                    before()
                runs[cell.key].append(run(cell.cmd))
    done: set[str] = set()
    for cell in cells:
        base = cell.key.split("#")[0]
        if base in done:
            continue
        done.add(base)
        mine = [r for key, rs in runs.items() if key.split("#")[0] == base for r in rs]
        inner = [r.inner for r in mine if r.inner is not None]
        result = Run(
            min(r.wall for r in mine), max(r.rss_mb for r in mine), min(inner) if inner else None
        )
        bench.add(base, cell.case, cell.fmt, cache, cell.tool, result)


def _strategy_cells(bench: Bench, path: object, fmt: str, kind: str, cache: str) -> list[Cell]:
    cells = []
    for strategy, lengths in (("mean", False), ("max", False), ("mean", True), ("last", True)):
        if kind == "h5" and (strategy, lengths) == ("mean", True):
            continue
        label = f"{strategy}{' --lengths' if lengths else ''}"
        key = f"{strategy}{'-L' if lengths else ''}-{kind}-{cache}"
        cmd = bench.reduce_cmd(path, strategy, lengths, "out.npy")
        cells.append(Cell(key, label, fmt, "lstmshape", cmd))
    return cells


def run_npy(bench: Bench, cache: str) -> None:
    inputs, py = bench.inputs, bench.python
    cells = [
        Cell(
            f"floor-npy-{cache}#{size}",
            "read",
            ".npy",
            "plain readinto loop",
            [py, "-c", FLOOR_NPY, inputs.npy, size],
        )
        for size in (1 << 20, 1 << 24)
    ]
    cells += _strategy_cells(bench, inputs.npy, ".npy", "npy", cache)
    if cache == "warm":
        for strategy in ("mean", "max"):
            cells.append(
                Cell(
                    f"{strategy}-npy-oneliner",
                    strategy,
                    ".npy",
                    "numpy one-liner",
                    [py, "-c", ONE_LINERS[strategy], inputs.npy, "one.npy"],
                    1,
                )
            )
            cells.append(
                Cell(
                    f"{strategy}-npy-einops",
                    strategy,
                    ".npy",
                    "einops.reduce",
                    [py, "-c", EINOPS[strategy], inputs.npy, "ein.npy"],
                    1,
                )
            )
        cmd = [py, "-c", ONE_LINERS["mean-L"], inputs.npy, "one.npy", inputs.lengths]
        cells.append(
            Cell("mean-L-npy-oneliner", "mean --lengths", ".npy", "numpy one-liner", cmd, 1)
        )
    for variant, tool in (("last", "numpy one-liner"), ("last-mmap", "numpy memmap gather")):
        cmd = [py, "-c", ONE_LINERS[variant], inputs.npy, "one.npy", inputs.lengths]
        cells.append(
            Cell(f"{variant}-npy-oneliner-{cache}", "last --lengths", ".npy", tool, cmd, 1)
        )
    measure(bench, cache, [inputs.npy], cells)


def run_engine(bench: Bench) -> None:
    """In-process engine times (start-up excluded): full mean vs last's row gather, and the
    masked mean and max of the time-major copy against the same on the batch-first file."""
    inputs = bench.inputs
    runs = [("mean", inputs.npy, "ntf"), ("last", inputs.npy, "ntf"), ("max", inputs.npy, "ntf")]
    runs += [("mean", inputs.tnf, "tnf"), ("max", inputs.tnf, "tnf")]
    cells = [
        Cell(
            f"engine-{s}" + ("-tnf" if layout == "tnf" else ""),
            s,
            ".npy",
            "engine",
            [bench.python, "-c", ENGINE, path, inputs.lengths, s, layout],
        )
        for s, path, layout in runs
    ]
    # Both files read into the page cache alike (evicted, then read in order): how the bench
    # wrote them (the time-major copy through a map) must not set the folios they are held in.
    for path in (inputs.npy, inputs.tnf):
        evict(path)
        warm(path)
    measure(bench, "warm", [inputs.npy, inputs.tnf], cells)
    bench.rows = [row for row in bench.rows if row.tool != "engine"]


def run_gather_cold(bench: Bench) -> None:
    """`last --lengths` on the evicted file against a plain cold read of it (the `npy`
    step's cold cells alone, without the full reductions and one-liners)."""
    inputs = bench.inputs
    floor = [bench.python, "-c", FLOOR_NPY, inputs.npy, 1 << 24]
    cells = [
        Cell("floor-npy-cold", "read", ".npy", "plain readinto loop", floor),
        Cell(
            "last-L-npy-cold",
            "last --lengths",
            ".npy",
            "lstmshape",
            bench.reduce_cmd(inputs.npy, "last", True, "out.npy"),
        ),
    ]
    measure(bench, "cold", [inputs.npy], cells)


def run_h5(bench: Bench, cache: str) -> None:
    inputs, py = bench.inputs, bench.python
    cells = [
        Cell(
            f"floor-h5-{cache}#{k}",
            "read",
            ".h5",
            "h5py read_direct loop",
            [py, "-c", FLOOR_H5, inputs.h5, k],
        )
        for k in (1, 16)
    ]
    cells += _strategy_cells(bench, f"{inputs.h5}:/data", ".h5", "h5", cache)
    if cache == "warm":
        cells.append(
            Cell(
                "mean-h5-oneliner",
                "mean",
                ".h5",
                "h5py one-liner",
                [py, "-c", ONE_LINERS["mean-h5"], inputs.h5, "one.npy"],
                1,
            )
        )
    measure(bench, cache, [inputs.h5], cells)


def run_tnf(bench: Bench) -> None:
    inputs, fmt = bench.inputs, ".npy (T,N,F)"
    cells = [
        Cell(
            "floor-tnf-warm",
            "read",
            fmt,
            "plain readinto loop",
            [bench.python, "-c", FLOOR_NPY, inputs.tnf, 1 << 24],
        )
    ]
    for strategy in ("mean", "last"):
        cmd = bench.reduce_cmd(inputs.tnf, strategy, True, "out.npy")
        cmd[3:3] = ["--layout", "tnf"]
        cells.append(Cell(f"{strategy}-tnf-warm", f"{strategy} --lengths", fmt, "lstmshape", cmd))
    measure(bench, "warm", [inputs.tnf], cells)


def run_startup(
    bench: Bench, editable_bin: Path, blas_threads: int | None = None
) -> dict[str, dict[str, float]]:
    """Best wall times (ms) of start-up commands, per installation, and their best CPU times
    (user + system, `name, CPU time`): steadier under load, but numpy's OpenBLAS threads
    count in its CPU time, so the wall-time ratio is the target.

    `blas_threads` caps numpy's BLAS threads for every command alike: the threads it starts
    at import spin on the other cores, so numpy's CPU time (and, under load, its wall time)
    swings with the load; with one thread the CPU-time ratio is steady to a few percent."""
    tiny = bench.inputs.tiny
    base_env = dict(os.environ)
    if blas_threads is not None:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            base_env[name] = str(blas_threads)
    installs = {
        "installed (non-editable, .pyc)": (bench.bin, base_env),
        "editable .venv, as the environment is": (editable_bin, base_env),
    }
    out: dict[str, dict[str, float]] = {}
    for name, (bindir, env) in installs.items():
        exe = str(bindir / "lstmshape")
        cmds = {
            'python -c "import numpy"': [str(bindir / "python"), "-c", "import numpy"],
            "lstmshape --version": [exe, "--version"],
            "lstmshape --help": [exe, "--help"],
            "lstmshape inspect tiny.npy": [exe, "inspect", tiny],
        }
        runs: dict[str, list[Run]] = {k: [] for k in cmds}
        for _ in range(STARTUP_ROUNDS):  # round-robin: load drift hits every command alike
            for key, cmd in cmds.items():
                runs[key].append(run(cmd, env=env))
        out[name] = {k: min(r.wall for r in v) * 1000 for k, v in runs.items()}
        out[f"{name}, CPU time"] = {k: min(r.cpu for r in v) * 1000 for k, v in runs.items()}
    return out


# ----------------------------------------------------------------------------- report


def table(bench: Bench) -> str:
    lines = [
        "| case | input | cache | tool | wall s | GB/s | x one-liner | x floor | peak RSS MiB |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    r = bench.results
    for row in bench.rows:
        one = _one_liner_for(row, r)
        floor = _floor_for(row, r)
        rate = row.nbytes / row.run.wall / 1e9
        vs_one = f"{one.wall / row.run.wall:.1f}" if one and row.tool == "lstmshape" else ""
        vs_floor = f"{floor.wall / row.run.wall:.2f}" if floor and "floor" not in row.tool else ""
        if "loop" in row.tool:
            vs_floor = "1.00"
        lines.append(
            f"| {row.case} | {row.fmt} | {row.cache} | {row.tool} | {row.run.wall:.3f} | "
            f"{rate:.2f} | {vs_one} | {vs_floor} | {row.run.rss_mb:.0f} |"
        )
    return "\n".join(lines)


def _one_liner_for(row: Row, r: dict[str, Run]) -> Run | None:
    if row.fmt == ".h5":
        return r.get("mean-h5-oneliner") if row.case == "mean" and row.cache == "warm" else None
    if row.fmt != ".npy":
        return None
    if row.case.startswith("last"):
        return r.get(f"last-npy-oneliner-{row.cache}")
    if row.cache != "warm":
        return None  # the other one-liners run warm only
    if row.case == "mean --lengths":
        return r.get("mean-L-npy-oneliner")
    return r.get(f"{row.case}-npy-oneliner")


def _floor_for(row: Row, r: dict[str, Run]) -> Run | None:
    kind = {".npy": "npy", ".h5": "h5"}.get(row.fmt, "tnf")
    return r.get(f"floor-{kind}-{row.cache}")


@dataclass
class Target:
    text: str
    value: str
    ok: bool | None  # None: not measured
    why: str = ""  # printed under a MISS


WHY_GATHER = (
    "rows of a cached file are copied out of a map of it (FileArray.read_rows), its pages "
    "dropped every 16 MiB of the file, and handed over as the output when every sample has "
    "its step; what is left is about one page fault per row where the page cache holds the "
    "file in folios smaller than 2 MiB (fault-around, unmapping: ~45% of a gather), ~1-2 us "
    "a row. Positioned reads (the cold path) cost 1.4-2 us a row; Linux AIO, process_vm_readv "
    "and populating whole spans were no faster."
)
WHY_TIME_MAJOR = (
    "time-major mean/sum/max/min over a known mask are folded along the file's time rows "
    "(lstmshape.timerows: contiguous, mapped in place when cached, per-sample running values); "
    "what is left is the fold's own kernel against the batch-first one, and the load of this "
    "shared machine (best of a few runs)."
)
WHY_VERSION = (
    "--version answers before click is imported (lstmshape._entry); --help is Python "
    "(~9 ms CPU) + click with its stdlib imports (~30 ms) + the group and its command table "
    "(~2 ms) + click's help formatting (~2 ms), against ~90 ms of CPU for import numpy with "
    "one BLAS thread (~100-125 ms with its threads); wall times swing with the load."
)
WHY_INSPECT = (
    "beyond numpy: rich's console and table (~23 ms CPU), click (~10 ms), the package's "
    "modules on the inspect path (~17 ms, ~7 ms of it creating their dataclasses), reading "
    "and drawing (~6 ms); 1.6x of numpy's ~90 ms leaves ~54 ms."
)


def targets(bench: Bench, startup: dict, rss_sizes: dict[str, float]) -> list[Target]:
    r = bench.results
    out: list[Target] = []

    def ratio(a: str, b: str, inner: bool = False) -> float | None:
        if a not in r or b not in r:
            return None
        if inner:
            return (r[a].inner or math.nan) / (r[b].inner or math.nan)
        return r[a].wall / r[b].wall

    def add(text: str, value: float | None, fmt: str, at_least: float, why: str = "") -> None:
        shown = "not measured" if value is None else fmt.format(value)
        out.append(Target(text, shown, None if value is None else value >= at_least, why))

    add(
        "mean .npy warm: >= 2.5x faster than the numpy one-liner",
        ratio("mean-npy-oneliner", "mean-npy-warm"),
        "{:.1f}x",
        2.5,
    )
    if "mean-npy-warm" in r and "mean-npy-oneliner" in r:
        v = r["mean-npy-oneliner"].rss_mb / r["mean-npy-warm"].rss_mb
        add("mean .npy warm: peak RSS <= 1/16 of the one-liner's", v, "1/{:.0f}", 16)
    add(
        "mean .npy warm: >= 0.8x the speed of a plain read (wall)",
        ratio("floor-npy-warm", "mean-npy-warm"),
        "{:.2f}x",
        0.8,
    )
    add(
        "mean .npy cold: >= 0.9x the speed of a plain cold read",
        ratio("floor-npy-cold", "mean-npy-cold"),
        "{:.2f}x",
        0.9,
    )
    for size, rss in rss_sizes.items():
        add(f"peak RSS, mean on {size}: <= 512 MB", 512e6 / 2**20 / rss, "{:.0f} MiB", 1.0)
        out[-1].value = f"{rss:.0f} MiB"
    if len(rss_sizes) > 1:
        values = list(rss_sizes.values())
        growth = values[-1] - values[0]
        out.append(Target("peak RSS not growing with the input", f"{growth:+.0f} MiB", growth < 16))
    add(
        "last --lengths warm: >= 50x faster than a full reduce (in-process engine time)",
        ratio("engine-mean", "engine-last", inner=True),
        "{:.1f}x",
        50,
        WHY_GATHER,
    )
    add(
        "last --lengths warm: its cost beyond start-up (in-process engine time) <= 1/20 of "
        "a full mean's (issue #16)",
        ratio("engine-mean", "engine-last", inner=True),
        "1/{:.1f}",
        20,
    )
    add(
        "  the same, whole commands (start-up included)",
        ratio("mean-npy-warm", "last-L-npy-warm"),
        "{:.1f}x",
        50,
    )
    add(
        "last --lengths cold: >= 1.5x faster than a plain cold read",
        ratio("floor-npy-cold", "last-L-npy-cold"),
        "{:.1f}x",
        1.5,
    )
    for strategy in ("mean", "max"):
        add(
            f"{strategy} --lengths time-major warm: >= 0.9x the batch-first engine speed "
            "(in-process engine time)",
            ratio(f"engine-{strategy}", f"engine-{strategy}-tnf", inner=True),
            "{:.2f}x",
            0.9,
            WHY_TIME_MAJOR,
        )
    add(
        ".h5 mean warm: >= 0.8x h5py's best read_direct loop",
        ratio("floor-h5-warm", "mean-h5-warm"),
        "{:.2f}x",
        0.8,
    )
    add(
        ".h5 mean cold: >= 0.8x h5py's best read_direct loop",
        ratio("floor-h5-cold", "mean-h5-cold"),
        "{:.2f}x",
        0.8,
    )
    for name, times in startup.items():
        numpy_ms = times['python -c "import numpy"']
        for cmd, limit, why in (
            ("--version", 0.5, WHY_VERSION),
            ("--help", 0.5, WHY_VERSION),
            ("inspect tiny.npy", 1.6, WHY_INSPECT),
        ):
            v = times[f"lstmshape {cmd}"] / numpy_ms
            text = f"start-up `lstmshape {cmd}` <= {limit}x import numpy [{name}]"
            out.append(Target(text, f"{v:.2f}x", v <= limit, why))
    return out


def startup_table(startup: dict[str, dict[str, float]], load: str) -> str:
    """Best wall and CPU ms of each start-up command, and each as a ratio of numpy's."""
    installs = [name for name in startup if not name.endswith(", CPU time")]
    lines = [
        f"Start-up, best of {STARTUP_ROUNDS} each, round-robin (ms; x = ratio to "
        '`python -c "import numpy"` of the same install); load average before it '
        f"(1, 5, 15 min): {load}",
        "",
        "| install | command | wall ms | x numpy | CPU ms | x numpy |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in installs:
        wall, cpu = startup[name], startup[f"{name}, CPU time"]
        base = 'python -c "import numpy"'
        for cmd in wall:
            lines.append(
                f"| {name} | {cmd} | {wall[cmd]:.0f} | {wall[cmd] / wall[base]:.2f} | "
                f"{cpu[cmd]:.0f} | {cpu[cmd] / cpu[base]:.2f} |"
            )
    return "\n".join(lines)


def machine_facts() -> str:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    blas = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    return textwrap.dedent(
        f"""\
        - date: {datetime.datetime.now().astimezone().isoformat(timespec="minutes")}
        - machine: {os.cpu_count()} cores ({cpu}), {mem / GIB:.0f} GiB RAM, \
{platform.system()} {platform.release()}
        - Python {platform.python_version()}, numpy {np.__version__}\
{", " + str(blas) if blas else ""}
        - load average at the end (1, 5, 15 min): {load}"""
    )


def report(
    bench: Bench, startup: dict, rss_sizes: dict[str, float], eviction: str, startup_load: str = ""
) -> str:
    parts = [
        f"# lstmshape benchmark: {units.format_bytes(bench.inputs.nbytes)} float32 (N, {T}, {F})",
        "",
        machine_facts(),
        f"- {eviction}",
        f"- best of {bench.repeat} runs per lstmshape/floor cell (one-liners: 1 run); "
        "wall time of the whole command, peak RSS from os.wait4; x one-liner and x floor are "
        "wall-time ratios (> 1: lstmshape is faster)",
        "",
        table(bench),
        "",
    ]
    if "engine-mean" in bench.results:
        em, el = bench.results["engine-mean"], bench.results["engine-last"]
        parts.append(
            f"In-process engine time (start-up excluded), warm: full mean reduce "
            f"{em.inner:.3f} s, last --lengths row gather {el.inner:.4f} s."
        )
        parts.append("")
        for strategy in ("mean", "max"):
            if f"engine-{strategy}-tnf" in bench.results:
                ntf, tnf = (
                    bench.results[f"engine-{strategy}"],
                    bench.results[f"engine-{strategy}-tnf"],
                )
                parts.append(
                    f"{strategy} --lengths in-process: batch-first {ntf.inner:.3f} s "
                    f"(peak RSS {ntf.rss_mb:.0f} MiB), time-major {tnf.inner:.3f} s "
                    f"(peak RSS {tnf.rss_mb:.0f} MiB)."
                )
        parts.append("")
    if startup:
        parts += [startup_table(startup, startup_load)]
    parts += ["", "Targets (issue #5):", ""]
    explained: set[str] = set()
    for target in targets(bench, startup, rss_sizes):
        mark = {True: "PASS", False: "MISS", None: "----"}[target.ok]
        parts.append(f"- {mark} {target.text}: {target.value}")
        if target.ok is False and target.why and target.why not in explained:
            explained.add(target.why)
            parts.append(f"  - why: {target.why}")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- main


def rss_check(bench: Bench, size: int) -> float:
    """Peak RSS of lstmshape mean on a generated input of `size` bytes (deleted after)."""
    extra = make_inputs(size, extras=False)
    try:
        cmd = bench.reduce_cmd(extra.npy, "mean", False, "out.npy")
        return run(cmd).rss_mb
    finally:
        for path in (extra.npy, extra.h5, extra.lengths):
            path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("256MB"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-cold", dest="cold", action="store_false")
    parser.add_argument(
        "--rss-size", type=parse_size, default=None, help="also check peak RSS on this size"
    )
    parser.add_argument("--save", type=Path, default=None, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep bench/data afterwards")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="start-up step: cap numpy's BLAS threads (OPENBLAS_NUM_THREADS...) for every "
        "command alike; 1 gives the steadiest CPU-time ratios",
    )
    parser.add_argument(
        "--steps",
        type=lambda text: set(text.split(",")),
        default=None,
        help="only these steps, comma-separated (npy,engine,h5,tnf,gather,startup; cold "
        "ones too; gather: cold last against a cold read)",
    )
    args = parser.parse_args(argv)

    inputs = make_inputs(args.size)
    print("installing lstmshape into a scratch venv ...", flush=True)
    bindir = scratch_install(DATA / "venv")
    bench = Bench(inputs, bindir, args.repeat, args.cold)
    try:
        return _measure(bench, args)
    finally:
        if not args.keep:
            shutil.rmtree(DATA, ignore_errors=True)


def _measure(bench: Bench, args: argparse.Namespace) -> int:
    inputs = bench.inputs
    evict(inputs.npy)
    left = cached_fraction(inputs.npy)
    eviction = (
        f"cold runs: posix_fadvise(DONTNEED) evicts the file ({left:.0%} of sampled pages "
        "still cached right after)"
        if left < 0.1
        else f"cold runs NOT cold: {left:.0%} of sampled pages stay cached after DONTNEED"
    )
    print(eviction, flush=True)
    steps = [("npy warm", lambda: run_npy(bench, "warm")), ("engine", lambda: run_engine(bench))]
    steps += [("h5 warm", lambda: run_h5(bench, "warm")), ("tnf warm", lambda: run_tnf(bench))]
    if args.cold and args.steps is not None and "gather" in args.steps:
        steps += [("gather cold", lambda: run_gather_cold(bench))]  # the npy step's cells
    if args.cold:
        steps += [("npy cold", lambda: run_npy(bench, "cold"))]
        steps += [("h5 cold", lambda: run_h5(bench, "cold"))]
    for name, step in steps:
        if args.steps is not None and name.split()[0] not in args.steps:
            continue
        started = time.perf_counter()
        step()
        print(f"  {name}: {time.perf_counter() - started:.0f} s", flush=True)
    startup, startup_load = {}, ""
    if args.steps is None or "startup" in args.steps:
        startup_load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        startup = run_startup(bench, Path(sys.executable).parent, args.blas_threads)
        if args.blas_threads is not None:
            startup_load += f"; numpy's BLAS threads capped at {args.blas_threads}"
    rss_sizes = {}
    if "mean-npy-warm" in bench.results:
        rss_sizes[units.format_bytes(inputs.nbytes)] = bench.results["mean-npy-warm"].rss_mb
    if args.rss_size:
        rss_sizes[units.format_bytes(args.rss_size)] = rss_check(bench, args.rss_size)
    text = report(bench, startup, rss_sizes, eviction, startup_load)
    print(text)
    if args.save:
        args.save.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
