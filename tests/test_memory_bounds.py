"""Memory bounded by LSTMSHAPE_MAX_MEMORY where a sample, a chunk, a pipe or a plan is huge.

Promises tested here (docs/safety.md, "Memory stays bounded"), in real processes whose peak
resident set is measured (`VmHWM` via wait4), each under a timeout:
- one sample (or one stored chunk) larger than the limit is refused before it is
  allocated, naming its size and the limit: an `.h5` sample in one gzip chunk, a deflated
  `.npz` member, a Zarr chunk spanning every sample, through every command;
- a plan's output is checked before it is allocated: reshape's whole output, and the output
  of one sample (a projection to very many features);
- standard input is read block by block: reduce, pool, project and inspect stream a pipe
  of 512 MiB in bounded memory, and nothing past the declared data is read (a stream of
  zeros behind a small array ends the run at once).

The bombs here are small (a limit of 64 MiB, samples of 128-256 MiB) so the suite stays
fast; `bench/attacks.py` (`make fuzz`) runs the gigabyte versions of the issue.
"""

from __future__ import annotations

import os
import subprocess
import threading
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import lstmshape, npy_header, peak_rss

pytestmark = pytest.mark.slow  # real processes throughout

MIB = 2**20
LIMIT = {"LSTMSHAPE_MAX_MEMORY": "64M"}
BOUND = 200 * MIB  # far below any sample here, far above what a refusal costs


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def deflated_zeros(nbytes: int, wbits: int = zlib.MAX_WBITS) -> bytes:
    """`nbytes` of zeros, deflated without holding them in memory."""
    pack = zlib.compressobj(9, zlib.DEFLATED, wbits)
    piece = bytes(16 * MIB)
    parts = [
        pack.compress(piece[: min(len(piece), nbytes - done)])
        for done in range(0, nbytes, len(piece))
    ]
    return b"".join([*parts, pack.flush()])


def one_error(code: int, err: str) -> str:
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), (code, err)
    return lines[0]


COMMANDS = [
    ["inspect", "{src}"],
    ["reduce", "{src}", "-s", "mean", "-o", "o.npy"],
    ["pool", "{src}", "--pool-size", "2", "-o", "o.npy"],
    ["project", "{src}", "--weights", "w.npy", "-o", "o.npy"],
]


def commands(src: str) -> list[list[str]]:
    return [[part.format(src=src) for part in command] for command in COMMANDS]


# ----------------------------------------------------------------------------- one huge sample


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    """Two samples of 128 MiB each (float32 (2, 32768, 1024) zeros), stored compressed:
    an `.h5` with one gzip chunk per sample, a deflated `.npz` member, a Zarr array in
    one chunk."""
    d = tmp_path_factory.mktemp("samples")
    shape = (2, 32768, 1024)
    per_sample = 32768 * 1024 * 4
    chunk = deflated_zeros(per_sample)
    with h5py.File(d / "gz.h5", "w") as f:
        dset = f.create_dataset("x", shape, "f4", chunks=(1, *shape[1:]), compression="gzip")
        for i in range(2):
            dset.id.write_direct_chunk((i, 0, 0), chunk)
    header = npy_header(shape)
    member = zipfile.ZipInfo("x.npy")
    member.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(d / "deflated.npz", "w") as z, z.open(member, "w", force_zip64=True) as w:
        w.write(header)
        for _ in range(2 * per_sample // (16 * MIB)):
            w.write(bytes(16 * MIB))
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(
        str(d / "one.zarr"), shape=(64, 512, 1024), chunks=(64, 512, 1024), dtype="f4"
    )
    z[:] = 0.0  # one 128 MiB chunk holding every sample
    np.save(d / "w.npy", np.ones((1024, 2), np.float32))
    return d


@pytest.mark.parametrize("src", ["gz.h5", "deflated.npz"])
@pytest.mark.parametrize("command", range(len(COMMANDS)), ids=[c[0] for c in COMMANDS])
def test_a_sample_over_the_limit_is_refused_before_it_is_allocated(samples, src, command):
    args = commands(src)[command]
    code, err, peak = peak_rss(lstmshape(*args), cwd=samples, env=env(**LIMIT))
    line = one_error(code, err)
    assert f"one sample of {src}" in line and "holds 128.0 MiB (shape (2, 32768, 1024))" in line
    assert line.endswith("at most 64.0 MiB is read into memory at once (LSTMSHAPE_MAX_MEMORY)")
    assert peak < BOUND, peak


@pytest.mark.parametrize("command", range(len(COMMANDS)), ids=[c[0] for c in COMMANDS])
def test_a_chunk_over_the_limit_is_refused(samples, command):
    args = commands("one.zarr")[command]
    code, err, peak = peak_rss(lstmshape(*args), cwd=samples, env=env(**LIMIT))
    line = one_error(code, err)
    assert "is stored in chunks of 128.0 MiB (chunk shape (64, 512, 1024))" in line
    assert peak < BOUND, peak


def test_under_a_higher_limit_the_same_file_is_read(samples):
    code, err, _ = peak_rss(
        lstmshape("reduce", "gz.h5", "-s", "max", "-o", "big.npy", "-q"),
        cwd=samples,
        env=env(LSTMSHAPE_MAX_MEMORY="1G"),
    )
    assert code == 0, err
    assert np.load(samples / "big.npy").shape == (2, 1024)


# ----------------------------------------------------------------------------- planned outputs


def test_reshape_checks_its_planned_output_before_allocating(tmp_path):
    np.save(tmp_path / "packed.npy", np.ones((6, 4), np.float32))
    np.save(tmp_path / "lengths.npy", np.array([2, 4]))
    args = lstmshape(
        "reshape",
        "packed.npy",
        "--to",
        "padded",
        "--lengths",
        "lengths.npy",
        "--timesteps",
        "1000000000",
        "-o",
        "o.npy",
    )
    code, err, peak = peak_rss(args, cwd=tmp_path, env=env(LSTMSHAPE_MAX_MEMORY="1G"))
    line = one_error(code, err)
    assert line == (
        "Error: reshape's output (2, 1000000000, 4) float32 would hold 31.7 GiB; reshape holds "
        "its whole output in memory (reduce, pool and project stream it), and at most 1.0 GiB "
        "is read into memory at once (LSTMSHAPE_MAX_MEMORY)"
    )
    assert peak < BOUND and not (tmp_path / "o.npy").exists()


def test_one_samples_output_over_the_limit_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((4, 1000, 1), np.float32))
    np.save(tmp_path / "w.npy", np.ones((1, 2**20), np.float32))  # 4 MiB of weights
    args = lstmshape("project", "x.npy", "--weights", "w.npy", "-o", "o.npy")
    code, err, peak = peak_rss(args, cwd=tmp_path, env=env(LSTMSHAPE_MAX_MEMORY="1G"))
    line = one_error(code, err)
    assert line.startswith("Error: project's output for one sample would hold 3.9 GiB")
    assert peak < BOUND


def test_an_output_larger_than_its_input_is_streamed_in_bounded_blocks(tmp_path):
    """A projection to 64 times more features: blocks are sized by their output too."""
    np.save(tmp_path / "x.npy", np.ones((4096, 64, 4), np.float32))  # 4 MiB
    np.save(tmp_path / "w.npy", np.ones((4, 256), np.float32))  # output: 256 MiB
    args = lstmshape("project", "x.npy", "--weights", "w.npy", "-o", "o.npy", "-q")
    code, err, peak = peak_rss(args, cwd=tmp_path)
    assert code == 0, err
    assert peak < BOUND, peak


# ----------------------------------------------------------------------------- standard input


PIPED = (2048, 256, 256)  # 512 MiB of float32 behind a valid header


def feed(write_end: int, header: bytes, nbytes: int) -> threading.Thread:
    """Write `header` then `nbytes` zeros into a pipe, in a thread."""

    def pump() -> None:
        with os.fdopen(write_end, "wb") as pipe:
            try:
                pipe.write(header)
                piece, sent = bytes(4 * MIB), 0
                while sent < nbytes:
                    n = min(len(piece), nbytes - sent)
                    pipe.write(piece[:n])
                    sent += n
            except (BrokenPipeError, ValueError, OSError):
                pass  # the reader stopped reading: that is the point

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("command", range(len(COMMANDS)), ids=[c[0] for c in COMMANDS])
def test_a_pipe_is_streamed_in_bounded_memory(tmp_path, command):
    np.save(tmp_path / "w.npy", np.ones((256, 2), np.float32))
    read_end, write_end = os.pipe()
    pump = feed(write_end, npy_header(PIPED), 2048 * 256 * 256 * 4)
    try:
        code, err, peak = peak_rss(
            lstmshape(*commands("-")[command], "-q"), cwd=tmp_path, stdin=read_end
        )
    finally:
        os.close(read_end)
    pump.join(timeout=30)
    assert code == 0, err
    assert peak < 320 * MIB, peak


def test_zeros_behind_a_small_array_end_the_run_at_once(tmp_path):
    """`(head -c128 small.npy; cat /dev/zero) | lstmshape inspect -` grew past 3 GB (here
    1 GiB of zeros follow: a reader that reads them all fails the bound, and still ends)."""
    read_end, write_end = os.pipe()
    feed(write_end, npy_header((2, 3, 4)) + bytes(96), 2**30)
    try:
        code, err, peak = peak_rss(
            lstmshape("inspect", "-", "--json"), cwd=tmp_path, stdin=read_end, timeout=60
        )
    finally:
        os.close(read_end)
    assert code == 0, err
    assert peak < BOUND


def test_nothing_past_the_declared_data_is_read(tmp_path):
    data = npy_header((2, 3, 4)) + bytes(96)
    (tmp_path / "s.bin").write_bytes(data + b"NOT YOURS" * 1000)
    for args in (["inspect", "-"], ["reduce", "-", "-s", "mean", "-o", "o.npy", "--force"]):
        with (tmp_path / "s.bin").open("rb") as stream:
            done = subprocess.run(
                lstmshape(*args, "-q"), stdin=stream, capture_output=True, timeout=60, cwd=tmp_path
            )
            assert done.returncode == 0, done.stderr
            assert os.lseek(stream.fileno(), 0, os.SEEK_CUR) == len(data)


def test_a_stream_cut_short_after_its_head_sends_nothing_to_stdout(tmp_path):
    """The cut shows only when the stream ends, after blocks were computed: standard output
    waits for it, so a reader never gets a partial array."""
    shape = (40, 256, 1024)  # 40 MiB declared; 24 MiB sent
    data = npy_header(shape) + bytes(24 * MIB)
    done = subprocess.run(
        lstmshape("reduce", "-", "-s", "mean", "-o", "-"),
        input=data,
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.decode().startswith("Error: standard input is truncated: ")
    assert done.stdout == b""
