"""Every run ends: FIFOs, devices and planted lock files never block or spin a command.

Promises tested here (docs/safety.md, "Every run ends"), each in a real process under a
timeout, so a regression fails the test instead of hanging the suite:
- only regular files (and `-`) are opened: a FIFO or a device as input, as `--lengths` or
  `--mask`, or as an output is refused in one line;
- the `.NAME.lock` sidecar is opened without following links and without blocking: a
  symlink, a FIFO or a directory there is refused in one line naming the file to remove,
  and the link's target is never created;
- a FIFO named like a stale temporary file does not block the cleaner.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import one_error
from helpers import run_bounded as run


@pytest.fixture
def here(tmp_path: Path) -> Path:
    np.save(tmp_path / "x.npy", np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    np.save(tmp_path / "lengths.npy", np.array([3, 2]))
    for name in ("fifo.npy", "fifo.h5", "fifo.npz"):
        os.mkfifo(tmp_path / name)
    return tmp_path


INPUTS = [
    ["inspect", "fifo.npy"],
    ["inspect", "fifo.h5"],
    ["inspect", "fifo.npz"],
    ["reduce", "fifo.npy", "-s", "mean", "-o", "o.npy"],
    ["reduce", "x.npy", "-s", "last", "--lengths", "fifo.npy", "-o", "o.npy"],
    ["pool", "x.npy", "--mask", "fifo.npz:m", "-o", "o.npy"],
    ["project", "x.npy", "--weights", "fifo.h5:/w", "-o", "o.npy"],
]


@pytest.mark.parametrize("args", INPUTS, ids=lambda a: "-".join(a[:2]))
def test_a_fifo_as_input_is_refused_without_blocking(here, args):
    line = one_error(run(args, here))
    assert "is a FIFO (named pipe), not a regular file" in line


@pytest.mark.parametrize("out", ["fifo.npy", "fifo.h5:/k", "fifo.npz:k"])
@pytest.mark.parametrize("force", [False, True], ids=["", "force"])
def test_a_fifo_as_output_is_refused_without_blocking(here, out, force):
    args = ["reduce", "x.npy", "-s", "mean", "-o", out, *(["--force"] if force else [])]
    line = one_error(run(args, here))
    assert line.endswith(
        "it is a FIFO (named pipe), not a regular file; use -o - for standard output"
    )
    assert (here / out.split(":")[0]).is_fifo()  # never replaced


def test_a_character_device_is_refused(tmp_path):
    link = tmp_path / "zero.npy"
    link.symlink_to("/dev/zero")
    line = one_error(run(["inspect", link], tmp_path))
    assert line == (
        f"Error: {link} is a character device, not a regular file; lstmshape reads only "
        "regular files (pipe a .npy stream into - instead)"
    )


@pytest.mark.parametrize("kind", ["symlink", "dangling", "fifo", "directory"])
@pytest.mark.parametrize("out", ["o.npy", "o.h5:/k"])
def test_a_planted_lock_file_is_refused_naming_it(here, kind, out):
    """A symlinked lock sent writers into a busy loop and created the link's target; a FIFO
    lock blocked forever."""
    name = out.split(":")[0]
    lock, planted = here / f".{name}.lock", here / "planted"
    if kind == "symlink":
        planted.write_bytes(b"")
        lock.symlink_to(planted)
    elif kind == "dangling":
        lock.symlink_to(planted)
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    line = one_error(run(["reduce", "x.npy", "-s", "mean", "-o", out], here))
    what = {"symlink": "a symbolic link", "dangling": "a symbolic link"}.get(kind)
    what = what or {"fifo": "a FIFO (named pipe)", "directory": "a directory"}[kind]
    assert line == (
        f"Error: cannot write {name}: its lock file .{name}.lock is {what}, not a regular "
        "file; remove it and run again"
    )
    assert not (here / name).exists()
    assert planted.exists() == (kind == "symlink")  # a dangling link's target is not created
    if kind == "symlink":
        assert planted.read_bytes() == b""
    lock.rmdir() if kind == "directory" else lock.unlink()
    done = run(["reduce", "x.npy", "-s", "mean", "-o", out, "-q"], here)
    assert done.returncode == 0, done.stderr


def test_a_fifo_named_like_a_stale_temporary_file_does_not_block_the_cleaner(here):
    os.mkfifo(here / ".o.npy.abcd1234.tmp")
    done = run(["reduce", "x.npy", "-s", "mean", "-o", "o.npy", "-q"], here)
    assert done.returncode == 0, done.stderr
    assert (here / ".o.npy.abcd1234.tmp").is_fifo()  # not a temporary file of ours
