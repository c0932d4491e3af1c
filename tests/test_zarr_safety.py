"""Zarr stores keep the promises HDF5 files keep, with real processes where it matters.

Promises tested here (docs/safety.md, "Zarr stores"):
- a symbolic link inside a store is refused for reading unless --allow-external is given,
  and anything but a regular file (a FIFO, a device, also behind an allowed link) always;
  an output never goes through a link inside the store;
- a killed writer's temporary store is removed by the next writer of that store (a live
  writer's and other stores' are kept), and an interrupted writer removes its own;
- a replacement under --force cut between its two renames is completed by the next writer:
  the old store is back (or the new one is in place), never neither;
- concurrent --force writers of one KEY all succeed and the last one wins, whole;
- KEYs `.` and `..` are refused in one line, exit 2.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import lstmshape, one_error, run_bounded

zarr = pytest.importorskip("zarr")

from lstmshape import io  # noqa: E402
from lstmshape.errors import InputError  # noqa: E402

TIMEOUT = 120
HINT = "lstmshape reads only inside the store unless --allow-external is given"


def run(args: list[object], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_bounded(args, cwd, TIMEOUT)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """g.zarr with /out (4, 3, 2) float32 of ones, chunked so that c/0/0/0 is one chunk."""
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    out = group.create_array("out", shape=(4, 3, 2), chunks=(2, 3, 2), dtype="f4")
    out[:] = 1.0
    return tmp_path / "g.zarr"


def stray(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------- links inside


def test_a_chunk_linked_to_dev_zero_is_refused_even_when_allowed(store):
    chunk = store / "out" / "c" / "0" / "0" / "0"
    chunk.unlink()
    chunk.symlink_to("/dev/zero")
    line = one_error(run(["reduce", f"{store}:/out", "-s", "mean", "-o", "o.npy"], store.parent))
    assert line == (
        f"Error: cannot read {store}:/out: out/c/0/0/0 is a symbolic link to /dev/zero; {HINT}"
    )
    allowed = ["inspect", f"{store}:/out", "--allow-external"]
    line = one_error(run(allowed, store.parent))
    assert line.endswith("out/c/0/0/0 is a character device, not a regular file")


def test_a_fifo_chunk_is_refused_without_blocking(store):
    chunk = store / "out" / "c" / "1" / "0" / "0"
    chunk.unlink()
    os.mkfifo(chunk)
    line = one_error(run(["inspect", f"{store}:/out", "--allow-external"], store.parent))
    assert line.endswith("out/c/1/0/0 is a FIFO (named pipe), not a regular file")


def test_a_linked_group_is_refused_unless_allowed(store, tmp_path):
    outside = tmp_path / "outside.zarr"
    group = zarr.open_group(str(outside), mode="w")
    group.create_array("secret", shape=(2, 2), dtype="f8")[:] = 7.0
    (store / "lnk").symlink_to(outside)
    line = one_error(run(["inspect", f"{store}:/lnk/secret"], tmp_path))
    assert (
        line
        == f"Error: cannot open {store}:/lnk/secret: lnk is a symbolic link to {outside}; {HINT}"
        or ("lnk is a symbolic link" in line and HINT in line)
    )
    with pytest.raises(InputError, match="lnk is a symbolic link"):
        io.list_arrays(str(store))
    with io.allow_external():
        assert io.load(f"{store}:/lnk/secret").tolist() == [[7.0, 7.0], [7.0, 7.0]]


def test_a_linked_metadata_file_is_refused(store, tmp_path):
    meta = store / "out" / "zarr.json"
    real = tmp_path / "elsewhere.json"
    real.write_bytes(meta.read_bytes())
    meta.unlink()
    meta.symlink_to(real)
    with pytest.raises(InputError, match=r"out/zarr\.json is a symbolic link"):
        io.load(f"{store}:/out")


@pytest.mark.parametrize("key", ["/lnk/planted", "/lnk"])
def test_an_output_never_goes_through_a_link_inside_the_store(store, tmp_path, key):
    outside = tmp_path / "outside"
    outside.mkdir()
    (store / "lnk").symlink_to(outside)
    np.save(tmp_path / "x.npy", np.ones((2, 3, 4), np.float32))
    args = ["reduce", "x.npy", "-s", "mean", "-o", f"g.zarr:{key}", "--force", "--allow-external"]
    line = one_error(run(args, tmp_path))
    assert line == (
        f"Error: cannot write g.zarr:{key}: lnk is a symbolic link inside the store; "
        "lstmshape writes only into the named store"
    )
    assert list(outside.iterdir()) == []
    assert (store / "lnk").is_symlink()


def test_a_linked_store_path_is_written_where_it_points(store, tmp_path):
    (tmp_path / "link.zarr").symlink_to(store)
    np.save(tmp_path / "x.npy", np.ones((2, 3, 4), np.float32))
    done = run(["reduce", "x.npy", "-s", "sum", "-o", "link.zarr:/new", "-q"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "link.zarr").is_symlink()
    assert io.load(f"{store}:/new").tolist() == [[3.0] * 4] * 2
    assert io.load(f"{store}:/out").shape == (4, 3, 2)


@pytest.mark.parametrize("key", ["..", "a/../b", ".", "../../x"])
def test_dot_keys_are_refused_in_one_line(tmp_path, key):
    np.save(tmp_path / "x.npy", np.ones((2, 3, 4), np.float32))
    line = one_error(run(["reduce", "x.npy", "-s", "mean", "-o", f"g.zarr:{key}"], tmp_path))
    assert line.endswith(
        "a Zarr KEY is a node path inside the store; '.' and '..' are not node names"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


# ----------------------------------------------------------------------------- temporaries


def test_stale_temporary_stores_are_removed_by_the_next_writer(store, tmp_path):
    live, dead = store.parent / ".g.zarr.live0001.tmp", store.parent / ".g.zarr.dead0001.tmp"
    other = store.parent / ".h.zarr.dead0002.tmp"  # another store's: not ours to judge
    for path in (live, dead, other):
        (path / "c").mkdir(parents=True)
        (path / "c" / "0").write_bytes(b"x" * 100)
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a live writer holds it
        np.save(tmp_path / "x.npy", np.ones((2, 3, 4), np.float32))
        done = run(["reduce", "x.npy", "-s", "mean", "-o", "g.zarr:/new", "-q"], tmp_path)
        assert done.returncode == 0, done.stderr
        assert live.exists() and other.exists() and not dead.exists()
    finally:
        os.close(fd)


N, T, F = 2500, 100, 64  # 64 MB in and out: long enough to stop mid-write


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("big")
    x = np.lib.format.open_memmap(d / "x.npy", "w+", np.float32, (N, T, F))
    x[:] = 1.0
    x.flush()
    del x
    np.save(d / "w.npy", np.eye(F, dtype=np.float32) * 2)
    np.save(d / "small.npy", np.full((3, 4, F), 3.0, np.float32))
    return d


TEMP_STORE = re.compile(r"\.out\.zarr\.[a-z0-9_]{8}\.tmp")


def chunk_files(directory: Path) -> int:
    """How many files the temporary stores of out.zarr in `directory` hold."""
    count = 0
    for temp in (p for p in directory.iterdir() if TEMP_STORE.fullmatch(p.name)):
        count += sum(len(files) for _root, _dirs, files in os.walk(temp))
    return count


def stop_mid_write(args: list[object], directory: Path, sig: int) -> tuple[int, str]:
    """Start the command, send `sig` once its temporary store holds 16 files; (exit code,
    stderr)."""
    with subprocess.Popen(
        lstmshape(*args), cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if chunk_files(directory) >= 16:
                break
            time.sleep(0.005)
        finished = proc.poll() is not None
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT)
    if finished:
        pytest.fail(f"finished before it could be stopped: {err!r}")
    return proc.returncode, err.decode(errors="replace")


@pytest.mark.slow
def test_a_killed_writers_store_is_removed_by_the_next_writer(big, tmp_path):
    args = ["project", big / "x.npy", "--weights", big / "w.npy", "-o", "out.zarr", "-q"]
    code, _err = stop_mid_write([*args, "--chunk-mb", "0.5"], tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert [p.name for p in tmp_path.iterdir() if TEMP_STORE.fullmatch(p.name)]
    small = ["reduce", big / "small.npy", "-s", "mean", "-o", "out.zarr", "--force", "-q"]
    done = run(small, tmp_path)
    assert done.returncode == 0, done.stderr
    assert stray(tmp_path) == []


@pytest.mark.slow
def test_an_interrupted_writer_removes_its_own_store(big, tmp_path):
    """Interrupted while zarr writes a block (eight times: the moment varies), the writer
    leaves nothing behind and asyncio reports no abandoned task."""
    args = ["pool", big / "x.npy", "--pool-size", "2", "-o", "out.zarr", "-q"]
    for _ in range(8):
        code, err = stop_mid_write([*args, "--chunk-mb", "0.5"], tmp_path, signal.SIGINT)
        assert code != 0
        assert "Task was destroyed" not in err
        assert stray(tmp_path) == [] and not (tmp_path / "out.zarr").exists()


# ----------------------------------------------------------------------------- --force


def test_a_replacement_cut_between_its_renames_is_restored_by_the_next_writer(store, tmp_path):
    """The state a kill between the two renames of the fallback leaves: the old store aside
    with a note of where it came from, nothing at the target."""
    aside = tmp_path / ".g.zarr.cut00001.old"
    aside.mkdir()
    (aside / "origin").write_text("")
    store.rename(aside / "x")
    np.save(tmp_path / "x.npy", np.ones((2, 3, 4), np.float32))
    line = one_error(run(["reduce", "x.npy", "-s", "mean", "-o", "g.zarr"], tmp_path))
    assert line == "Error: g.zarr exists; use --force to overwrite"  # it is back
    assert io.load(f"{store}:/out").shape == (4, 3, 2)
    assert stray(tmp_path) == []


def test_an_array_replacement_cut_between_its_renames_is_restored(store, tmp_path):
    aside = tmp_path / ".g.zarr.cut00002.old"
    aside.mkdir()
    (aside / "origin").write_text("out")
    (store / "out").rename(aside / "x")
    np.save(tmp_path / "x.npy", np.ones((2, 3, 4), np.float32))
    done = run(["reduce", "x.npy", "-s", "sum", "-o", "g.zarr:/other", "-q"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert io.load(f"{store}:/out").tolist() == np.ones((4, 3, 2)).tolist()
    assert stray(tmp_path) == []


def test_a_completed_replacement_drops_what_was_set_aside(store, tmp_path):
    aside = tmp_path / ".g.zarr.cut00003.old"
    (aside / "x").mkdir(parents=True)  # the old store; the new one is already in place
    (aside / "origin").write_text("")
    np.save(tmp_path / "x.npy", np.ones((2, 3, 4), np.float32))
    done = run(["reduce", "x.npy", "-s", "sum", "-o", "g.zarr:/other", "-q"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert stray(tmp_path) == [] and io.load(f"{store}:/out").shape == (4, 3, 2)


@pytest.mark.parametrize("key", ["", "/out"])
def test_the_two_step_replacement_leaves_nothing_aside(store, monkeypatch, key):
    """Where the system cannot swap two directories, the fallback replaces as well."""
    from lstmshape.io import zarr_publish

    monkeypatch.setattr(zarr_publish, "_exchange", lambda source, target: False)
    io.save(np.full((2, 2), 5.0), f"{store}{':' + key if key else ''}", force=True)
    got = io.load(f"{store}:{key}" if key else str(store))
    assert got.tolist() == [[5.0, 5.0], [5.0, 5.0]]
    assert stray(store.parent) == []


@pytest.mark.slow
def test_kill_9_during_forced_replacement_leaves_old_or_new(big, tmp_path):
    """Killed at moments spread over a --force replacement, the store is whole: the old
    one (possibly restored by the next writer) or the new one."""
    from lstmshape.io import sidefiles, zarr_publish

    old = ["reduce", big / "small.npy", "-s", "mean", "-o", "out.zarr", "--force", "-q"]
    new = ["project", big / "x.npy", "--weights", big / "w.npy", "-o", "out.zarr", "--force"]
    assert run(old, tmp_path).returncode == 0
    started = time.monotonic()
    assert run([*new, "-q"], tmp_path).returncode == 0
    duration = time.monotonic() - started
    outcomes = set()
    for delay in np.linspace(0.5, 1.05, 6) * duration:
        assert run(old, tmp_path).returncode == 0
        with subprocess.Popen(lstmshape(*new, "-q"), cwd=tmp_path) as proc:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        with sidefiles._TargetLock(tmp_path / "out.zarr"):  # as the next writer does
            zarr_publish.recover_interrupted(tmp_path / "out.zarr")
        got = io.load(str(tmp_path / "out.zarr"))
        if got.shape == (3, F):
            outcomes.add("old")
            assert np.all(got == 3.0)
        else:
            outcomes.add("new")
            assert got.shape == (N, T, F) and float(got[-1, -1, -1]) == 2.0
    assert outcomes  # which moments were hit varies with the machine's speed


WRITERS = 8


@pytest.mark.slow
@pytest.mark.parametrize("existing", [False, True], ids=["new-store", "existing-store"])
def test_concurrent_forced_writers_of_one_key_all_succeed(tmp_path, existing):
    """Last writer wins, whole; no writer fails (with --force given)."""
    for i in range(WRITERS):
        np.save(tmp_path / f"x{i}.npy", np.full((400, 50, 32), float(i), np.float32))
    for _round in range(4):
        store = tmp_path / "g.zarr"
        if existing:
            io.save(np.zeros(3), f"{store}:/keep", force=True)
        commands = [
            lstmshape("reduce", f"x{i}.npy", "-s", "mean", "-o", "g.zarr:/k", "--force", "-q")
            for i in range(WRITERS)
        ]
        procs = [
            subprocess.Popen(c, cwd=tmp_path, stderr=subprocess.PIPE, text=True) for c in commands
        ]
        results = [(p.wait(timeout=TIMEOUT), p.stderr.read()) for p in procs]
        for p in procs:
            p.stderr.close()
        assert [code for code, _ in results] == [0] * WRITERS, results
        got = io.load(f"{store}:/k")
        assert got.shape == (400, 32) and len(set(got.ravel().tolist())) == 1
        if existing:
            assert io.load(f"{store}:/keep").tolist() == [0.0, 0.0, 0.0]
        assert stray(tmp_path) == []
        shutil.rmtree(store)
