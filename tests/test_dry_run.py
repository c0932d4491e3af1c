"""`--dry-run` comes from the plan alone: it reads no data, for every command and every
option that can change the output, and its shapes and dtypes are those of the real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import npy_header

N, T, F = 1 << 20, 256, 256  # float32: 256 GiB declared, nothing stored
LENGTHS_SEED = 0

# The child reports the bytes it read through system calls (`rchar`): the data path reads
# with pread, so a run that touched the data would show gigabytes here.
_CHILD = """
import runpy, sys
sys.argv = ["lstmshape", *sys.argv[1:]]
try:
    runpy.run_module("lstmshape", run_name="__main__")
finally:
    rchar = [line for line in open("/proc/self/io") if line.startswith("rchar")][0]
    print("RCHAR", rchar.split()[1], file=sys.stderr)
"""

COMMANDS = {
    "reduce-mean": ["reduce", "{big}", "-s", "mean"],
    "reduce-last-lengths": ["reduce", "{big}", "-s", "last", "--lengths", "{lengths}"],
    "reduce-tnf-keepdims": ["reduce", "{big}", "--layout", "tnf", "--keepdims", "-s", "max"],
    "pool-global": ["pool", "{big}", "--op", "max", "--lengths", "{lengths}"],
    "pool-windows": [
        "pool", "{big}", "--pool-size", "4", "--strides", "3", "--padding", "same",
        "--mask-out", "{tmp}/windows_mask.npy",
    ],
    "pool-windows-tnf": [
        "pool", "{big}", "--pool-size", "2", "--layout", "tnf", "--mask-out", "{tmp}/m.h5",
    ],
    "project-weights": ["project", "{big}", "--weights", "{weights}", "--activation", "tanh"],
    "project-pca": ["project", "{big}", "--pca", "4", "--lengths", "{lengths}"],
    "reshape-flatten": ["reshape", "{big}", "--to", "flatten"],
    "reshape-steps": ["reshape", "{big}", "--to", "steps"],
    "reshape-time-major": ["reshape", "{big}", "--to", "time-major"],
    "reshape-batch-first": ["reshape", "{big}", "--to", "batch-first", "--layout", "tnf"],
    "reshape-split": ["reshape", "{big}", "--to", "split-directions"],
    "reshape-merge": ["reshape", "{big4}", "--to", "merge-directions"],
    "reshape-pattern": ["reshape", "{big}", "--pattern", "n t (d h) -> n t d h", "-a", "d=2"],
    "reshape-drop-padding": [
        "reshape", "{big}", "--to", "steps", "--drop-padding", "--lengths", "{lengths}",
        "--lengths-out", "{tmp}/packed_lengths.npy",
    ],
    "reshape-padded": [
        "reshape", "{packed}", "--to", "padded", "--lengths", "{lengths}",
        "--mask-out", "{tmp}/mask.npy",
    ],
}  # fmt: skip


def _sparse_npy(path: Path, shape: tuple[int, ...]) -> str:
    """An .npy whose header declares `shape` (float32) over a file with no data blocks."""
    with path.open("wb") as f:
        f.write(npy_header(shape))
        f.truncate(f.tell() + int(np.prod(shape)) * 4)
    return str(path)


@pytest.fixture(scope="module")
def huge(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("huge")
    lengths = np.random.default_rng(LENGTHS_SEED).integers(1, T + 1, N)
    np.save(d / "lengths.npy", lengths)
    np.save(d / "w.npy", np.ones((F, 8), np.float32))
    return {
        "big": _sparse_npy(d / "big.npy", (N, T, F)),
        "big4": _sparse_npy(d / "big4.npy", (N, T, 2, F // 2)),
        "packed": _sparse_npy(d / "packed.npy", (int(lengths.sum()), F)),
        "lengths": str(d / "lengths.npy"),
        "weights": str(d / "w.npy"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_dry_run_reads_no_data(huge: dict[str, str], tmp_path: Path, name: str) -> None:
    args = [a.format(**huge, tmp=tmp_path) for a in COMMANDS[name]]
    out = tmp_path / "out.npy"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args, "--dry-run", "--json", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,  # reading the 256 GiB would take many minutes
    )
    assert done.returncode == 0, done.stderr
    rchar = int(done.stderr.rsplit("RCHAR", 1)[1])
    assert rchar < 64 * 2**20, f"{name} read {rchar} bytes"  # python, numpy, the lengths
    assert json.loads(done.stdout)["dry_run"] is True
    assert not out.exists()


SMALL = {
    name: [a.replace("{big4}", "{small4}").replace("{big}", "{small}") for a in args]
    for name, args in COMMANDS.items()
}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(1)
    n, t, f = 6, 9, 8
    lengths = rng.integers(1, t + 1, n)
    np.save(d / "x.npy", rng.standard_normal((n, t, f)).astype(np.float16))
    np.save(d / "x4.npy", rng.standard_normal((n, t, 2, f // 2)).astype(np.float32))
    np.save(d / "packed.npy", rng.standard_normal((int(lengths.sum()), f)).astype(np.float64))
    np.save(d / "lengths.npy", lengths)
    np.save(d / "w.npy", np.ones((f, 3), np.float32))
    return {
        "small": str(d / "x.npy"),
        "small4": str(d / "x4.npy"),
        "packed": str(d / "packed.npy"),
        "lengths": str(d / "lengths.npy"),
        "weights": str(d / "w.npy"),
    }


@pytest.mark.parametrize("name", list(SMALL))
def test_dry_run_shape_and_dtype_equal_the_real_run(
    run_cli, small: dict[str, str], tmp_path: Path, name: str
) -> None:
    args = [a.format(**small, tmp=tmp_path) for a in SMALL[name]]
    planned = run_cli([*args, "--dry-run", "--json", "-o", tmp_path / "o.npy"])
    assert planned.exit_code == 0, planned.stderr
    real = run_cli([*args, "--json", "-o", tmp_path / "o.npy"])
    assert real.exit_code == 0, real.stderr
    plan, done = json.loads(planned.stdout), json.loads(real.stdout)
    written = np.load(tmp_path / "o.npy")
    assert plan["output"]["shape"] == done["output"]["shape"] == list(written.shape)
    assert plan["output"]["dtype"] == done["output"]["dtype"] == str(written.dtype)
    assert plan["output"]["path"] == done["output"]["path"] == str(tmp_path / "o.npy")
    for side in ("output mask", "mask", "lengths"):  # --mask-out / --lengths-out rows
        assert plan.get(side) == done.get(side)
