"""Size bombs: files that declare (or inflate to) far more data than they hold.

Promises tested here (docs/safety.md), each in a real process whose peak memory is measured
or whose address space is limited:
- a `.npy` header declaring a huge shape over a short file is a clear error, nothing is
  allocated for it (files and standard input alike), and so is a header-length field that lies;
- a highly compressed `.h5` dataset or `.npz` member is streamed block by block: reduce,
  pool, project and inspect stay within a bounded resident set whatever it inflates to;
- what is read whole (reshape's input, masks, lengths, weights) is refused above
  LSTMSHAPE_MAX_MEMORY, and a mask or lengths array of the wrong size is refused unread;
- stored chunks so long along N that one block of whole chunks would exceed the limit are
  refused instead of read at once.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import lstmshape, npy_header, peak_rss

pytestmark = pytest.mark.slow  # real processes throughout

GIB = 2**30
HUGE = (10**6, 1000, 1000)  # 4 TB of float32
BOMB = (2048, 256, 256)  # 512 MiB of float32, a few hundred KB on disk


def run_limited(args: list[str], *, cwd: Path, address_space: int = 2 * GIB, **kwargs):
    """Run with an address-space limit: any attempt to allocate a bomb's size fails."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return subprocess.run(
        args, cwd=cwd, capture_output=True, preexec_fn=limit, timeout=120, **kwargs
    )


# ----------------------------------------------------------------------------- lying headers


@pytest.fixture
def liar(tmp_path: Path) -> Path:
    """A .npy whose header promises 4 TB, followed by 480 bytes."""
    (tmp_path / "liar.npy").write_bytes(npy_header(HUGE) + bytes(480))
    np.save(tmp_path / "w.npy", np.ones((1000, 2), np.float32))
    return tmp_path


TRUNCATED = (
    "is truncated: its header promises (1000000, 1000, 1000) float32 (4000000000000 bytes) "
    "but only 480 bytes follow"
)


@pytest.mark.parametrize(
    "command",
    [
        ["inspect", "liar.npy"],
        ["reduce", "liar.npy", "-s", "mean", "-o", "o.npy"],
        ["pool", "liar.npy", "--pool-size", "2", "-o", "o.npy"],
        ["project", "liar.npy", "--weights", "w.npy", "-o", "o.npy"],
        ["reshape", "liar.npy", "--to", "flatten", "-o", "o.npy"],
    ],
    ids=lambda c: c[0],
)
def test_a_header_declaring_a_huge_shape_is_refused_unallocated(liar, command):
    result = run_limited(lstmshape(*command), cwd=liar, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"Error: liar.npy {TRUNCATED}\n"
    stdin = run_limited(
        lstmshape(*[("-" if c == "liar.npy" else c) for c in command]),
        cwd=liar,
        input=(liar / "liar.npy").read_bytes(),
    )
    assert stdin.returncode == 2
    assert stdin.stderr.decode() == f"Error: standard input {TRUNCATED}\n"


def test_a_lying_header_length_is_refused_before_numpy_reads_it(tmp_path):
    """The length field says 4 GiB; numpy would allocate that before its own size check."""
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{'descr': '<f4'"
    (tmp_path / "x.npy").write_bytes(data)
    result = run_limited(lstmshape("inspect", "x.npy"), cwd=tmp_path, address_space=GIB, text=True)
    assert result.returncode == 2
    assert result.stderr == (
        "Error: x.npy is not a valid .npy file (the header claims 4294967295 bytes "
        "(at most 10000))\n"
    )


def test_a_mask_of_the_wrong_huge_size_is_refused_unread(tmp_path):
    """A deflated 100 MB mask (100 KB on disk) for data that needs 20 values: never read."""
    np.save(tmp_path / "x.npy", np.ones((4, 5, 3), np.float32))
    np.savez_compressed(tmp_path / "mask.npz", mask=np.zeros((10_000, 10_000), bool))
    args = lstmshape("reduce", "x.npy", "-s", "mean", "--mask", "mask.npz", "-o", "o.npy")
    code, err, rss = peak_rss(args, cwd=tmp_path)
    assert code == 2
    assert err == (
        "Error: mask mask.npz:mask has shape (10000, 10000) (100000000 values); the data needs 20\n"
    )
    assert rss < 100 * 2**20


# ----------------------------------------------------------------------------- compressed bombs


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> Path:
    """512 MiB of zeros as a gzip-chunked .h5 (64 samples a chunk) and a deflated .npz."""
    d = tmp_path_factory.mktemp("bombs")
    chunk = (64, BOMB[1], BOMB[2])
    raw = zlib.compress(bytes(4 * int(np.prod(chunk))), 9)
    with h5py.File(d / "bomb.h5", "w") as f:
        dset = f.create_dataset("x", shape=BOMB, dtype="f4", chunks=chunk, compression="gzip")
        for start in range(0, BOMB[0], chunk[0]):
            dset.id.write_direct_chunk((start, 0, 0), raw)
    # Chunks spanning every sample (one timestep each): a block of whole chunks is all of it.
    span = (BOMB[0], 1, BOMB[2])
    raw = zlib.compress(bytes(4 * int(np.prod(span))), 9)
    with h5py.File(d / "span.h5", "w") as f:
        dset = f.create_dataset("x", shape=BOMB, dtype="f4", chunks=span, compression="gzip")
        for step in range(BOMB[1]):
            dset.id.write_direct_chunk((0, step, 0), raw)
    with (
        zipfile.ZipFile(d / "bomb.npz", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open("x.npy", "w", force_zip64=True) as member,
    ):
        member.write(npy_header(BOMB))
        zeros = bytes(1 << 24)
        for _ in range(4 * int(np.prod(BOMB)) // len(zeros)):
            member.write(zeros)
    np.save(d / "w.npy", np.ones((BOMB[2], 2), np.float32))
    assert all(p.stat().st_size < 4 << 20 for p in d.glob("*.h5"))
    return d


STREAMED = [
    ["reduce", "-s", "mean"],
    ["reduce", "-s", "last"],
    ["pool", "--pool-size", "4"],
    ["project", "--weights", "w.npy"],
    ["inspect"],
]


@pytest.mark.parametrize("name", ["bomb.h5", "bomb.npz"])
@pytest.mark.parametrize("command", STREAMED, ids=lambda c: "-".join(c[:2]))
def test_compressed_bombs_stream_in_bounded_memory(bombs, tmp_path, name, command):
    out = [] if command[0] == "inspect" else ["-o", tmp_path / "out.npy", "-q"]
    code, err, rss = peak_rss(lstmshape(command[0], name, *command[1:], *out), cwd=bombs)
    assert code == 0, err
    assert rss < 320 * 2**20, f"peak RSS {rss >> 20} MiB for a 512 MiB input"


def test_reshape_refuses_an_input_over_the_memory_limit(bombs, tmp_path):
    env = {**os.environ, "LSTMSHAPE_MAX_MEMORY": "256M"}
    args = lstmshape("reshape", "bomb.h5", "--to", "flatten", "-o", tmp_path / "o.npy")
    code, err, rss = peak_rss(args, cwd=bombs, env=env)
    assert code == 2
    assert err == (
        "Error: bomb.h5 holds 512.0 MiB; reshape holds its whole input in memory (reduce, "
        "pool and project stream it), and at most 256.0 MiB is read into memory at once "
        "(LSTMSHAPE_MAX_MEMORY)\n"
    )
    assert rss < 200 * 2**20
    dry = subprocess.run(
        [*args, "--dry-run", "-q"], cwd=bombs, env=env, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr  # shapes alone need no data


def test_weights_over_the_memory_limit_are_refused(bombs, tmp_path):
    env = {**os.environ, "LSTMSHAPE_MAX_MEMORY": "1M"}
    np.save(tmp_path / "w.npy", np.ones((BOMB[2], 4096), np.float32))  # 4 MiB
    args = lstmshape("project", "bomb.h5", "--weights", tmp_path / "w.npy", "-o", "-")
    result = subprocess.run(args, cwd=bombs, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "holds 4.0 MiB; it is read whole, and at most 1.0 MiB" in result.stderr


def test_chunks_spanning_every_sample_are_refused_over_the_limit(bombs, tmp_path):
    env = {**os.environ, "LSTMSHAPE_MAX_MEMORY": "256M"}
    for name, layout in (("span.h5", "ntf"), ("bomb.h5", "tnf")):
        args = lstmshape(
            "reduce", name, "-s", "mean", "--layout", layout, "-o", tmp_path / "o.npy", "--force"
        )
        code, err, rss = peak_rss(args, cwd=bombs, env=env)
        assert code == 2, err
        assert "samples (512 MiB of data each), more than the 256 MiB" in err
        assert rss < 200 * 2**20


def test_a_lying_deflated_member_is_truncated_not_allocated(tmp_path):
    with zipfile.ZipFile(tmp_path / "liar.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", npy_header(HUGE) + bytes(4096))
    result = run_limited(
        lstmshape("reduce", "liar.npz", "-s", "mean", "-o", "o.npy"), cwd=tmp_path, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("Error: liar.npz:x is truncated")


def test_a_fortran_order_deflated_member_is_bounded_by_the_limit(tmp_path):
    """Fortran-order members cannot stream (they are inflated whole): the limit applies."""
    np.savez_compressed(tmp_path / "f.npz", x=np.asfortranarray(np.zeros((64, 128, 128), "f4")))
    env = {**os.environ, "LSTMSHAPE_MAX_MEMORY": "1M"}
    result = subprocess.run(
        lstmshape("reduce", "f.npz", "-s", "mean", "-o", "o.npy"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "Error: f.npz:x is a compressed Fortran-order member of 4194304 bytes"
    )
    ok = subprocess.run(lstmshape("reduce", "f.npz", "-s", "mean", "-o", "o.npy"), cwd=tmp_path)
    assert ok.returncode == 0


def test_billions_of_empty_samples_are_counted_in_bounded_memory(tmp_path):
    """--mask-value finds empty samples block by block; naming them keeps a count and the
    first five, not every index (2**28 of them here: 2 GiB of indices)."""
    n = 2**28
    with (tmp_path / "x.npy").open("wb") as fh:
        fh.write(npy_header((n, 1, 1), "|u1"))
        fh.truncate(fh.tell() + n)  # a sparse file of zeros: nothing on disk
    args = lstmshape("reduce", "x.npy", "-s", "max", "--mask-value", "0", "-o", tmp_path / "o.npy")
    code, err, rss = peak_rss(args, cwd=tmp_path)
    assert code == 2
    assert err == (
        f"Error: {n} samples have no valid timestep (0, 1, 2, 3, 4, ...); use --empty nan or "
        "--empty zero\n"
    )
    assert rss < 300 * 2**20


def test_samples_without_data_bytes_are_still_streamed_in_bounded_blocks(tmp_path):
    """(2**24, 0, 1): no timesteps, so no data bytes, yet 16 M samples and a 64 MiB output;
    blocks are sized by what a sample costs besides its data."""
    n = 2**24
    (tmp_path / "x.npy").write_bytes(npy_header((n, 0, 1)))
    out = tmp_path / "o.npy"
    args = lstmshape("reduce", "x.npy", "-s", "mean", "--empty", "zero", "-o", out)
    code, err, rss = peak_rss(args, cwd=tmp_path)
    assert code == 0, err
    assert np.load(out, mmap_mode="r").shape == (n, 1)
    assert rss < 200 * 2**20
