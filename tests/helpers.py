"""Plain helpers shared by the test modules (fixtures live in conftest.py).

Importable as `from helpers import ...` because pyproject.toml puts tests/ on the path
(`pythonpath`); with --import-mode=importlib, conftest.py itself is not importable.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


# ----------------------------------------------------------------------------- processes


def lstmshape(*args: object) -> list[str]:
    """The command line of `python -m lstmshape ARGS` in this interpreter."""
    return [sys.executable, "-m", "lstmshape", *(str(a) for a in args)]


# A direct child's ru_maxrss starts at the parent's resident set (fork copies pytest's memory,
# and exec keeps the high-water mark), so a small launcher forks and execs the command and
# writes the child's ru_maxrss to a pipe: the kernel's count, however the command ends.
_LAUNCHER = """
import os, sys
report, argv = int(sys.argv[1]), sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.close(report)
    os.execv(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
os.write(report, str(usage.ru_maxrss).encode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss(
    args: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: Any = None,
    timeout: float = 120,
) -> tuple[int, str, int]:
    """(exit code, stderr, peak resident set in bytes) of the command `args`; `stdin` is
    handed to it (a file or a pipe), and a command still running after `timeout` seconds
    fails the test."""
    if not hasattr(os, "wait4") or not hasattr(os, "fork"):
        pytest.skip("os.fork and os.wait4 are needed to read a child's peak RSS")
    read_end, write_end = os.pipe()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(write_end), *args],
            cwd=cwd,
            env=env,
            pass_fds=(write_end,),
            capture_output=True,
            stdin=stdin,
            timeout=timeout,
        )
        os.close(write_end)
        write_end = -1
        maxrss = int(os.read(read_end, 64))
    finally:
        os.close(read_end)
        if write_end != -1:
            os.close(write_end)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return done.returncode, done.stderr.decode(errors="replace"), maxrss * scale


def load_bench(name: str) -> ModuleType:
    """bench/NAME.py as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"lstmshape_bench_{name}", ROOT / "bench" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- arrays and bytes


def sample(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """Random data of any dtype; floats get a NaN and an -inf so bitwise checks bite."""
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("int"):
        return rng.integers(-1000, 1000, size=shape).astype(dtype)
    x = (rng.standard_normal(shape) * 100).astype(dtype)
    if x.size >= 2:
        x.flat[0], x.flat[-1] = np.nan, -np.inf
    return x


def assert_bitwise(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes()


def npy_bytes(array: np.ndarray, **kwargs: Any) -> bytes:
    """`array` as the bytes of a .npy file (`kwargs` go to np.save)."""
    buf = io.BytesIO()
    np.save(buf, array, **kwargs)
    return buf.getvalue()


def load_npy_bytes(data: bytes) -> np.ndarray:
    """The array in the bytes of a .npy file (a command's standard output); no pickles."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A C-order version 1.0 .npy header declaring `shape`: the data is the caller's."""
    buf = io.BytesIO()
    fields = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, fields)
    return buf.getvalue()


# ----------------------------------------------------------------------------- pickles


class Exploit:
    """Unpickling this creates `marker`: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


def evil_array(marker: Path) -> np.ndarray:
    """An object array whose unpickling would create `marker`."""
    array = np.empty(2, dtype=object)
    array[0], array[1] = Exploit(marker), 1
    return array


def run_bounded(
    args: Sequence[object], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`lstmshape ARGS` in `cwd` as a real process; a hang fails the test after `timeout` s."""
    try:
        return subprocess.run(
            lstmshape(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"lstmshape {' '.join(map(str, args))} hung for {timeout} s")


def one_error(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The one `Error:` line a failed run printed, after checking there is just that line."""
    lines = done.stderr.splitlines()
    assert done.returncode == code and len(lines) == 1, (done.returncode, done.stderr)
    assert lines[0].startswith("Error: "), done.stderr
    return lines[0]
