"""Crash safety with real processes: kill -9 mid-write, and a full disk (RLIMIT_FSIZE).

Promises tested here (docs/safety.md):
- kill -9 at any moment leaves the output as it was (byte for byte, or absent) or complete;
  only dot-prefixed temporary files `.NAME.XXXXXXXX.tmp` (and `.part`) may remain, and the
  next write to the same target removes them;
- a write that fails because the disk is full (here: a file size limit) exits 1 with one
  `Error:` line, leaves no partial output and no temporary file.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import lstmshape

N, T, F = 2500, 100, 64  # a 64 MB float32 input and output: long enough to kill mid-write
TEMP = re.compile(r"\.out\.(npy|npz|h5)\.[a-z0-9_]{8}\.(tmp|part)")


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("big")
    x = np.lib.format.open_memmap(d / "x.npy", "w+", np.float32, (N, T, F))
    x[:] = 1.0
    x.flush()
    del x
    np.save(d / "w.npy", np.eye(F, dtype=np.float32) * 2)
    np.save(d / "small.npy", np.full((3, 4, F), 3.0, np.float32))
    return {"x": d / "x.npy", "w": d / "w.npy", "small": d / "small.npy"}


def make_old_output(directory: Path, fmt: str) -> tuple[Path, str]:
    """An existing output and the ref to write: a file to replace, or a container to extend."""
    path = directory / f"out.{fmt}"
    if fmt == "npy":
        np.save(path, np.arange(10.0))
        return path, str(path)
    if fmt == "npz":
        np.savez(path, orig=np.arange(10.0))
        return path, f"{path}:new"
    with h5py.File(path, "w") as f:
        f["/orig"] = np.arange(10.0)
    return path, f"{path}:/new"


def kill_mid_write(args: list[str], directory: Path, *, min_bytes: int = 4 << 20) -> None:
    """Start the command, SIGKILL it once a temporary file holds `min_bytes`."""
    with subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    pytest.fail(f"finished before it could be killed: {proc.stderr.read()!r}")
                temps = [p for p in directory.iterdir() if TEMP.fullmatch(p.name)]
                try:
                    if sum(p.stat().st_size for p in temps) >= min_bytes:
                        break
                except FileNotFoundError:
                    continue
                time.sleep(0.001)
            else:
                pytest.fail("no temporary file grew")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["npy", "npz", "h5"])
@pytest.mark.parametrize("existing", [True, False], ids=["existing", "new"])
def test_kill_9_mid_write_leaves_the_old_output(tmp_path, big, fmt, existing):
    if existing:
        path, ref = make_old_output(tmp_path, fmt)
    else:
        path, ref = tmp_path / f"out.{fmt}", str(tmp_path / f"out.{fmt}")
    before = digest(path)
    args = lstmshape("project", big["x"], "--weights", big["w"], "-o", ref, "--force", "-q")
    kill_mid_write([*args, "--chunk-mb", "0.5"], tmp_path)
    assert digest(path) == before  # byte-identical, or still absent
    stale = leftovers(tmp_path, {path.name})
    # the temporaries, and the lock sidecar when the kill came while the lock was held
    temps = [name for name in stale if TEMP.fullmatch(name)]
    assert temps and set(stale) - set(temps) <= {f".{path.name}.lock"}, stale

    # The next write to the same target removes what the killed writer left.
    again = subprocess.run(
        lstmshape("reduce", big["small"], "-s", "mean", "-o", ref, "--force", "-q"),
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert leftovers(tmp_path, {path.name}) == []
    if existing and fmt != "npy":  # the container kept its other array
        key = "orig" if fmt == "npz" else "/orig"
        from lstmshape import io

        assert io.load(f"{path}:{key}").tolist() == list(range(10))


@pytest.mark.slow
def test_kill_9_at_random_moments_gives_old_or_complete_output(tmp_path, big):
    """Killed anywhere (also while the container is merged and renamed), an HDF5 target is
    either the old file or the old datasets plus the complete new one."""
    path, ref = make_old_output(tmp_path, "h5")
    before = digest(path)
    args = lstmshape("project", big["x"], "--weights", big["w"], "-o", ref, "-q", "--force")
    started = time.monotonic()
    subprocess.run(args, check=True, capture_output=True)
    duration = time.monotonic() - started
    path.unlink()
    make_old_output(tmp_path, "h5")
    outcomes = set()
    for delay in np.linspace(0.3, 1.1, 4) * duration:
        with subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        if digest(path) == before:
            outcomes.add("old")
            continue
        outcomes.add("new")
        with h5py.File(path) as f:
            assert f["/orig"][:].tolist() == list(range(10))
            new = f["/new"]
            assert new.shape == (N, T, F) and float(new[-1, -1, -1]) == 2.0
        path.unlink()
        make_old_output(tmp_path, "h5")
        before = digest(path)
    assert outcomes  # which moments were hit varies with the machine's speed


def limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead

    return apply


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["npy", "npz", "h5", "h5-key", "npz-key"])
def test_full_disk_exits_1_with_one_line_and_leaves_nothing(tmp_path, big, fmt):
    src = tmp_path / "x.npy"
    np.save(src, np.ones((200, 50, 64), np.float32))  # 2.5 MB output
    keep = {"x.npy"}
    if fmt.endswith("-key"):
        path, ref = make_old_output(tmp_path, fmt[:-4])
        keep.add(path.name)
    else:
        path, ref = tmp_path / f"out.{fmt}", str(tmp_path / f"out.{fmt}")
    before = digest(path)
    result = subprocess.run(
        lstmshape("project", src, "--pca", "64", "-o", ref, "-q"),
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size(1 << 20),
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        rf"Error: cannot write {re.escape(ref)}(:\S+)?: File too large \(a file size limit "
        r"was reached\)",
        lines[0],
    ), lines[0]
    assert digest(path) == before
    assert leftovers(tmp_path, keep) == []


def test_full_disk_on_stdout_spool_is_an_output_error(tmp_path):
    """Held standard output spools to an anonymous file: a full disk there is exit 1 too."""
    src = tmp_path / "x.npy"
    x = np.ones((300, 40, 64), np.float32)
    x[0, 0, 0] = np.nan
    np.save(src, x)
    result = subprocess.run(
        lstmshape("pool", src, "--pool-size", "1", "--nan-policy", "omit", "-o", "-"),
        capture_output=True,
        preexec_fn=limit_file_size(1 << 20),
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().startswith("Error: cannot write")
    assert leftovers(tmp_path, {"x.npy"}) == []


def test_stdout_waits_when_a_run_can_fail_after_its_last_block(run_cli, tmp_path):
    """--empty error with --mask-value finds empty samples only while streaming: the data
    must not have gone out before the error."""
    x = np.ones((40, 200, 2), np.float32)  # 1.6 KB a sample: several blocks of 1 KB
    x[37] = 0.0  # all padding under --mask-value 0: an empty sample, in the last block
    np.save(tmp_path / "x.npy", x)
    args = ["reduce", tmp_path / "x.npy", "-s", "mean", "--mask-value", "0", "--chunk-mb", "0.001"]
    result = run_cli([*args, "-o", "-"])
    assert result.exit_code == 2 and "(37)" in result.stderr
    assert result.stdout_bytes == b""
