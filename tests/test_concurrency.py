"""Concurrent writers into one container, with real processes.

Promises tested here (docs/safety.md): several lstmshape processes writing different KEYs
into one `.h5`/`.npz` at once all succeed (or fail with one `Error:` line), no dataset
already in the file is lost, and every process that reported success finds its dataset at
the end. Writers of one target meet at a short lock (`.NAME.lock`, flock), taken at commit,
where each re-reads the file as it is then; nothing of the lock stays behind.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import lstmshape

from lstmshape import io

WRITERS = 8


def run_all(commands: list[list[str]]) -> list[tuple[int, str]]:
    """Start every command at once; (exit code, stderr) of each."""
    procs = [
        subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        results.append((proc.returncode, err))
    return results


def assert_clean(results: list[tuple[int, str]]) -> None:
    for code, err in results:
        if code != 0:
            lines = err.splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: "), err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    """One input per writer, each with its own values, sized so the writers overlap."""
    d = tmp_path_factory.mktemp("inputs")
    paths = []
    for i in range(WRITERS):
        path = d / f"x{i}.npy"
        np.save(path, np.full((1500, 40, 32), float(i), np.float32))
        paths.append(path)
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["h5", "npz"])
def test_writers_of_different_keys_all_land(tmp_path, inputs, fmt):
    target = tmp_path / f"run.{fmt}"
    original = np.arange(4_000_000, dtype=np.float32)  # a container worth copying
    if fmt == "h5":
        with h5py.File(target, "w") as f:
            f["/orig"] = original
    else:
        np.savez(target, orig=original)
    sep = "/" if fmt == "h5" else ""
    for round_ in range(2):
        refs = [f"{target}:{sep}r{round_}/k{i}" for i in range(WRITERS)]
        results = run_all(
            [
                lstmshape("reduce", x, "-s", "mean", "-o", ref, "-q")
                for x, ref in zip(inputs, refs, strict=True)
            ]
        )
        assert_clean(results)
        assert [code for code, _ in results] == [0] * WRITERS, results
        for i, ((code, _), ref) in enumerate(zip(results, refs, strict=True)):
            if code == 0:
                assert io.load(ref).tolist() == [[float(i)] * 32] * 1500
    assert np.array_equal(io.load(f"{target}:{sep}orig"), original)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no lock, no temp


@pytest.mark.slow
@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "existing-file"])
def test_writers_of_one_new_key_one_wins_the_others_are_refused(tmp_path, inputs, existing):
    """The KEY is checked again at commit, under the lock: without --force nobody replaces
    what another writer added meanwhile."""
    target = tmp_path / "run.h5"
    if existing:
        with h5py.File(target, "w") as f:
            f["/orig"] = np.arange(10)
    results = run_all(
        [lstmshape("reduce", x, "-s", "mean", "-o", f"{target}:/same", "-q") for x in inputs[:4]]
    )
    assert_clean(results)
    winners = [i for i, (code, _) in enumerate(results) if code == 0]
    assert len(winners) == 1, results
    for code, err in results:
        if code:
            assert code == 2 and err == f"Error: {target}:/same exists; use --force to overwrite\n"
    assert io.load(f"{target}:/same")[0, 0] == float(winners[0])


@pytest.mark.slow
def test_forced_writers_of_one_key_leave_one_complete_result(tmp_path, inputs):
    target = tmp_path / "run.h5"
    with h5py.File(target, "w") as f:
        f["/orig"] = np.arange(10)
        f["/same"] = np.zeros(3)
    results = run_all(
        [
            lstmshape("reduce", x, "-s", "mean", "-o", f"{target}:/same", "--force", "-q")
            for x in inputs[:4]
        ]
    )
    assert [code for code, _ in results] == [0] * 4, results
    got = io.load(f"{target}:/same")
    assert got.shape == (1500, 32) and len(set(got.ravel().tolist())) == 1
    assert io.load(f"{target}:/orig").tolist() == list(range(10))


def test_a_live_writers_temporary_file_is_kept_a_dead_ones_removed(tmp_path, run_cli):
    """Another writer's temporary file is removed only when no process holds its lock."""
    src = tmp_path / "x.npy"
    np.save(src, np.ones((2, 3, 4), np.float32))
    live, dead = tmp_path / ".out.npy.abcd1234.tmp", tmp_path / ".out.npy.dead5678.tmp"
    other = tmp_path / ".other.npy.dead5678.tmp"  # another target's: not ours to judge
    for path in (live, dead, other):
        path.write_bytes(b"partial")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the live writer holds it
        result = run_cli(["reduce", src, "-s", "mean", "-o", tmp_path / "out.npy", "-q"])
        assert result.exit_code == 0, result.stderr
        assert live.exists() and other.exists() and not dead.exists()
    finally:
        os.close(fd)


def test_no_lock_file_remains_after_a_failed_write(tmp_path, run_cli):
    src = tmp_path / "x.npy"
    np.save(src, np.full((2, 3, 4), np.nan, np.float32))
    out = f"{tmp_path / 'o.h5'}:/k"
    result = run_cli(["reduce", src, "-s", "mean", "--nan-policy", "raise", "-o", out])
    assert result.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
