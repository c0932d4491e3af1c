"""The attacks of issue #15 at the sizes the issue reports, each checked and measured.

Every attack runs real `lstmshape` processes (peak resident set read with wait4, wall time
per process, a timeout on each) and checks the promise it breaks when it gets through:
every run ends with exit 0 or one `Error:` line, memory stays bounded by
LSTMSHAPE_MAX_MEMORY, time by the bytes really stored, Zarr stores keep what HDF5 files
keep, and names are written where they should be or refused. The unit tests hold the same
promises at small sizes; this is the gigabyte version, part of `make fuzz`.

    python bench/attacks.py              # every attack, at full size (a few minutes)
    python bench/attacks.py --quick      # smaller files, fewer rounds
    python bench/attacks.py --only zarr  # the attacks whose name contains "zarr"

It prints one line per attack (cases run, worst wall time, worst peak RSS) and a Markdown
table for docs/safety.md; it exits 1 when an attack got through.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MIB, GIB = 2**20, 2**30
ROOT = Path(__file__).resolve().parent.parent
LS = [sys.executable, "-m", "lstmshape"]

# fork, exec, wait4: the child's own peak RSS, written to a pipe, however it ends
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


@dataclass
class Run:
    code: int
    stderr: str
    seconds: float
    peak: int  # bytes
    what: str = ""


@dataclass
class Attack:
    name: str
    issue_item: str
    runs: list[Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run(
        self,
        args: list[object],
        cwd: Path,
        *,
        env: dict[str, str] | None = None,
        stdin: object = None,
        timeout: float = 600,
    ) -> Run:
        """Run `lstmshape ARGS`, measured; a run past `timeout` is a failure (and killed)."""
        read_end, write_end = os.pipe()
        started = time.monotonic()
        with subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(write_end), *LS, *map(str, args)],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            pass_fds=(write_end,),
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a hung child is killed with its launcher
        ) as proc:
            os.close(write_end)
            try:
                _, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                _, err = proc.communicate()
                self.failures.append(f"hung: lstmshape {' '.join(map(str, args))}")
        with os.fdopen(read_end, "rb") as report:
            text = report.read()
        peak = int(text or 0) * (1 if sys.platform == "darwin" else 1024)
        seconds = time.monotonic() - started
        what = " ".join(map(str, args))
        run = Run(proc.returncode, err.decode(errors="replace"), seconds, peak, what[:80])
        self.runs.append(run)
        return run

    def expect(self, run: Run, code: int, contains: str = "", *, peak: int | None = None) -> None:
        """The run ended with `code` and (when not 0) one `Error:` line holding `contains`."""
        lines = run.stderr.splitlines()
        if run.code != code:
            self.failures.append(f"exit {run.code} (want {code}): {run.stderr[-300:]!r}")
        elif code and (len(lines) != 1 or not lines[0].startswith("Error: ")):
            self.failures.append(f"not one error line: {run.stderr[-300:]!r}")
        elif contains and contains not in run.stderr:
            self.failures.append(f"{contains!r} not in {run.stderr[-300:]!r}")
        if peak is not None and run.peak > peak:
            self.failures.append(f"peak RSS {run.peak / MIB:.0f} MiB > {peak / MIB:.0f} MiB")

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            self.failures.append(what)


ATTACKS: dict[str, tuple[str, Callable[[Attack, Path, bool], None]]] = {}


def attack(name: str, item: str) -> Callable[[Callable[[Attack, Path, bool], None]], None]:
    def register(function: Callable[[Attack, Path, bool], None]) -> None:
        ATTACKS[name] = (item, function)

    return register


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def deflated_zeros(nbytes: int) -> bytes:
    pack = zlib.compressobj(9)
    piece = bytes(64 * MIB)
    parts = [pack.compress(piece[: min(len(piece), nbytes - done)]) for done in
             range(0, nbytes, len(piece))]  # fmt: skip
    return b"".join([*parts, pack.flush()])


def x_npy(work: Path, shape: tuple[int, ...] = (8, 5, 3)) -> Path:
    np.save(work / "x.npy", np.ones(shape, np.float32))
    return work / "x.npy"


# ----------------------------------------------------------------------------- hangs


@attack("fifo as input, lengths and output", "1")
def fifos(a: Attack, work: Path, quick: bool) -> None:
    x_npy(work)
    for name in ("f.npy", "f.h5", "f.npz"):
        os.mkfifo(work / name)
    for args in (
        ["inspect", "f.npy"],
        ["inspect", "f.h5"],
        ["reduce", "x.npy", "-s", "last", "--lengths", "f.npy", "-o", "o.npy"],
        ["pool", "x.npy", "--mask", "f.npz:m", "-o", "o.npy"],
        ["reduce", "x.npy", "-s", "mean", "-o", "f.npy", "--force"],
        ["reduce", "x.npy", "-s", "mean", "-o", "f.h5:/k"],
    ):
        a.expect(a.run(args, work, timeout=60), 2, "FIFO")


@attack("symlinked or FIFO .NAME.lock", "2")
def locks(a: Attack, work: Path, quick: bool) -> None:
    x_npy(work)
    (work / ".o.h5.lock").symlink_to(work / "planted")
    a.expect(a.run(["reduce", "x.npy", "-s", "mean", "-o", "o.h5:/k"], work, timeout=60), 2,
             "is a symbolic link")  # fmt: skip
    a.check(not (work / "planted").exists(), "the link's target was created")
    os.mkfifo(work / ".o.npy.lock")
    a.expect(a.run(["reduce", "x.npy", "-s", "mean", "-o", "o.npy"], work, timeout=60), 2,
             "is a FIFO")  # fmt: skip


@contextlib.contextmanager
def listener(answer: bytes | None) -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = server.accept()
                held.append(conn)
                if answer is not None:
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@contextlib.contextmanager
def dask_cluster(workers: int) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    cli = [sys.executable, "-m"]
    procs = [subprocess.Popen([*cli, "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], **quiet)]  # fmt: skip
    try:
        from distributed import Client

        for _ in range(workers):
            procs.append(subprocess.Popen([*cli, "distributed.cli.dask_worker", address,
                                           "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                                          **quiet))  # fmt: skip
        with Client(address, timeout=60, set_as_default=False) as client:
            if workers:
                client.wait_for_workers(workers, timeout=120)
        yield address, procs[1:]
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait()


@attack("dask: silent, garbage, bad scheme, frozen worker, no workers", "3")
def dask_ends(a: Attack, work: Path, quick: bool) -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        a.failures.append("distributed is not installed")
        return
    np.save(work / "x.npy", np.ones((2000, 50, 32), np.float32))
    args = ["reduce", "x.npy", "-s", "mean", "-o", "o.npy", "--engine", "dask", "--scheduler"]
    with listener(None) as port:
        run = a.run([*args, f"tcp://127.0.0.1:{port}", "--connect-timeout", "5"], work)
        a.expect(run, 2, "no answer within 5 s")
    with listener(b"HTTP/1.1 200 OK\r\n\r\n" * 100) as port:
        a.expect(a.run([*args, f"tcp://127.0.0.1:{port}"], work), 2, "not a dask scheduler")
    a.expect(a.run([*args, "foo://127.0.0.1:1"], work), 2, "unknown address scheme")
    patience = {"LSTMSHAPE_DASK_NO_PROGRESS": "10"}
    with dask_cluster(1) as (address, workers):
        workers[0].send_signal(signal.SIGSTOP)
        run = a.run([*args, address, "--chunk-mb", "0.5"], work, env=patience)
        a.expect(run, 1, "a worker may be frozen")
    with dask_cluster(0) as (address, _):
        a.expect(a.run([*args, address], work, env=patience), 1, "has no workers")


# ----------------------------------------------------------------------------- memory


@attack("one sample over LSTMSHAPE_MAX_MEMORY (4 GiB and 16 GiB gzip chunks)", "5")
def huge_samples(a: Attack, work: Path, quick: bool) -> None:
    import h5py

    np.save(work / "w.npy", np.ones((1024, 2), np.float32))
    sizes = [(1, 2**20 // (8 if quick else 1), 1024), (2, 2**22 // (8 if quick else 1), 1024)]
    for name, shape in zip(("four.h5", "sixteen.h5"), sizes, strict=True):
        with h5py.File(work / name, "w") as f:
            dset = f.create_dataset("x", shape, "f4", chunks=(1, *shape[1:]), compression="gzip")
            dset.id.write_direct_chunk((0, 0, 0), deflated_zeros(shape[1] * shape[2] * 4))
        limit = {"LSTMSHAPE_MAX_MEMORY": "256M" if quick else "512M"}
        for command in (
            ["inspect", name],
            ["reduce", name, "-s", "mean", "-o", "o.npy", "--force"],
            ["pool", name, "--pool-size", "2", "-o", "o.npy", "--force"],
            ["project", name, "--weights", "w.npy", "-o", "o.npy", "--force"],
        ):
            run = a.run(command, work, env=limit)
            a.expect(run, 2, "is read into memory at once", peak=300 * MIB)


def pump(write_end: int, header: bytes, nbytes: int | None) -> threading.Thread:
    def feed() -> None:
        with os.fdopen(write_end, "wb") as pipe, contextlib.suppress(OSError, ValueError):
            pipe.write(header)
            piece, sent = bytes(4 * MIB), 0
            while nbytes is None or sent < nbytes:
                pipe.write(piece)
                sent += len(piece)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


@attack("standard input: zeros forever behind a small array, a 4 GiB pipe", "6")
def pipes(a: Attack, work: Path, quick: bool) -> None:
    np.save(work / "w.npy", np.ones((256, 2), np.float32))
    read_end, write_end = os.pipe()
    pump(write_end, npy_header((2, 3, 4)) + bytes(96), None)  # /dev/zero after 224 bytes
    a.expect(a.run(["inspect", "-", "-q"], work, stdin=read_end, timeout=60), 0, peak=200 * MIB)
    os.close(read_end)
    n = 1024 if quick else 4096
    for command in (
        ["inspect", "-"],
        ["reduce", "-", "-s", "mean", "-o", "o.npy", "--force"],
        ["pool", "-", "--pool-size", "4", "-o", "o.npy", "--force"],
        ["project", "-", "--weights", "w.npy", "-o", "o.npy", "--force"],
    ):
        read_end, write_end = os.pipe()
        feeder = pump(write_end, npy_header((n, 1024, 256)), n * 1024 * 256 * 4)
        a.expect(a.run([*command, "-q"], work, stdin=read_end), 0, peak=320 * MIB)
        os.close(read_end)
        feeder.join(timeout=60)


@attack("reshape --to padded --timesteps 1e9 on a 180-byte input", "7")
def padded_plan(a: Attack, work: Path, quick: bool) -> None:
    np.save(work / "packed.npy", np.ones((6, 4), np.float32))
    np.save(work / "lengths.npy", np.array([2, 4]))
    args = ["reshape", "packed.npy", "--to", "padded", "--lengths", "lengths.npy",
            "--timesteps", "1000000000", "-o", "o.npy"]  # fmt: skip
    a.expect(a.run(args, work), 2, "would hold", peak=200 * MIB)


# ----------------------------------------------------------------------------- inspect costs


@attack("inspect: 1000 .npz members, 100,000 datasets, 10,000 groups deep, 1 TiB unwritten", "8")
def inspect_costs(a: Attack, work: Path, quick: bool) -> None:
    import h5py

    members = 200 if quick else 1000
    np.savez(work / "many.npz", **{f"m{i}": np.zeros((2, 3, 4), "f4") for i in range(members)})
    a.expect(a.run(["inspect", "many.npz", "--json"], work), 0)
    datasets, depth = (10_000, 2_000) if quick else (100_000, 10_000)
    with h5py.File(work / "many.h5", "w", libver="latest") as f:
        for i in range(datasets):
            f.create_dataset(f"g{i % 100}/d{i}", data=np.zeros(3, "f4"))
    a.expect(a.run(["inspect", "many.h5", "--json", "-q"], work), 0, peak=1 * GIB)
    run = a.run(["reduce", "many.h5", "-s", "mean", "-o", "o.npy"], work)
    a.expect(run, 2, "holds more than 20 arrays", peak=300 * MIB)
    with h5py.File(work / "deep.h5", "w", libver="latest") as f:
        group = f
        for _ in range(depth):
            group = group.require_group("g")
        group["x"] = np.zeros((2, 3, 4), "f4")
    a.expect(a.run(["inspect", "deep.h5", "--json", "-q"], work), 0, peak=1 * GIB)
    with h5py.File(work / "tb.h5", "w") as f:
        f.create_dataset("x", (2**20, 1024, 256), "f4", chunks=(64, 64, 64))
    a.check((work / "tb.h5").stat().st_size < 10_000, "the terabyte file is not tiny")
    a.expect(a.run(["inspect", "tb.h5", "--json"], work), 0, peak=300 * MIB)


# ----------------------------------------------------------------------------- zarr


@attack("zarr: a chunk linked to /dev/zero, an output through a linked group", "9")
def zarr_links(a: Attack, work: Path, quick: bool) -> None:
    import zarr

    group = zarr.open_group(str(work / "g.zarr"), mode="w")
    group.create_array("out", shape=(4, 3, 2), chunks=(2, 3, 2), dtype="f4")[:] = 1.0
    chunk = work / "g.zarr" / "out" / "c" / "0" / "0" / "0"
    chunk.unlink()
    chunk.symlink_to("/dev/zero")
    for extra in ([], ["--allow-external"]):
        run = a.run(["reduce", "g.zarr:/out", "-s", "mean", "-o", "o.npy", *extra], work)
        a.expect(run, 2, "out/c/0/0/0", peak=300 * MIB)
    (work / "outside").mkdir()
    (work / "g.zarr" / "lnk").symlink_to(work / "outside")
    x_npy(work)
    args = ["reduce", "x.npy", "-s", "mean", "-o", "g.zarr:/lnk/planted", "--allow-external"]
    a.expect(a.run(args, work), 2, "symbolic link inside the store")
    a.check(not any((work / "outside").iterdir()), "an output landed outside the store")


def _stray(work: Path) -> list[str]:
    return sorted(p.name for p in work.iterdir() if p.name.startswith(".out.zarr"))


@attack("zarr: killed and interrupted writers leave no temporary stores", "10")
def zarr_temps(a: Attack, work: Path, quick: bool) -> None:
    x = np.lib.format.open_memmap(work / "x.npy", "w+", np.float32, (4000, 200, 128))
    x[:] = np.float32(1.0)
    x.flush()
    del x
    args = [*LS, "pool", "x.npy", "--pool-size", "2", "-o", "out.zarr", "--force", "-q"]
    rng = random.Random(15)
    for sig in (signal.SIGKILL, signal.SIGINT):
        for _ in range(3 if quick else 8):
            with subprocess.Popen(args, cwd=work, stderr=subprocess.PIPE) as proc:
                time.sleep(rng.uniform(0.8, 1.6))
                proc.send_signal(sig)
                _, err = proc.communicate(timeout=120)
            a.check(b"Task was destroyed" not in err, "asyncio reported abandoned tasks")
            if sig == signal.SIGINT:
                a.check(_stray(work) == [], f"SIGINT left {_stray(work)}")
            a.runs.append(Run(proc.returncode or 0, "", 0.0, 0))
    small = ["reduce", "x.npy", "-s", "mean", "-o", "out.zarr", "--force", "--chunk-mb", "64"]
    a.expect(a.run(small, work, env={"LSTMSHAPE_MAX_MEMORY": "2G"}), 0)
    a.check(_stray(work) == [], f"the next writer left {_stray(work)}")


@attack("zarr: kill -9 during --force replacement, then the next writer", "11")
def zarr_force_window(a: Attack, work: Path, quick: bool) -> None:
    np.save(work / "small.npy", np.full((3, 4, 8), 3.0, np.float32))
    big = np.lib.format.open_memmap(work / "big.npy", "w+", np.float32, (2000, 100, 64))
    big[:] = np.float32(1.0)
    big.flush()
    del big
    old = ["reduce", "small.npy", "-s", "mean", "-o", "out.zarr", "--force", "-q"]
    new = [*LS, "pool", "big.npy", "--pool-size", "2", "-o", "out.zarr", "--force", "-q"]
    rng = random.Random(11)
    for _ in range(5 if quick else 20):
        a.expect(a.run(old, work), 0)
        with subprocess.Popen(new, cwd=work) as proc:
            time.sleep(rng.uniform(0.2, 2.0))
            proc.send_signal(signal.SIGKILL)
        probe = ["reduce", "small.npy", "-s", "mean", "-o", "probe.zarr", "--force", "-q"]
        a.expect(a.run(probe, work), 0)
        shape_run = a.run(["inspect", "out.zarr", "--json", "-q"], work)
        a.expect(shape_run, 0)  # old or new, never missing
        # the next writer of out.zarr restores or drops what a cut replacement set aside
        a.expect(a.run(old, work), 0)
        a.check(_stray(work) == [], f"left {_stray(work)}")


@attack("zarr: 8 concurrent --force writers of one KEY", "12")
def zarr_concurrent(a: Attack, work: Path, quick: bool) -> None:
    for i in range(8):
        np.save(work / f"x{i}.npy", np.full((400, 50, 32), float(i), np.float32))
    from lstmshape import io as lio

    for _round in range(10 if quick else 40):
        shutil.rmtree(work / "g.zarr", ignore_errors=True)
        if _round % 2:
            lio.save(np.zeros(3), f"{work / 'g.zarr'}:/keep")
        commands = [[*LS, "reduce", f"x{i}.npy", "-s", "mean", "-o", "g.zarr:/k", "--force",
                     "-q"] for i in range(8)]  # fmt: skip
        started = time.monotonic()
        procs = [subprocess.Popen(c, cwd=work, stderr=subprocess.PIPE) for c in commands]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            a.runs.append(Run(proc.returncode, err.decode(), time.monotonic() - started, 0))
            a.check(proc.returncode == 0, f"a forced writer failed: {err.decode()[-200:]!r}")
        got = lio.load(f"{work / 'g.zarr'}:/k")
        a.check(len(set(got.ravel().tolist())) == 1, "the KEY holds a mix of writers")


# ----------------------------------------------------------------------------- names


@attack("names: link.h5, link.npz, 249-byte names, huge and traversing KEYs", "13, 14")
def names(a: Attack, work: Path, quick: bool) -> None:
    from lstmshape import io as lio

    x_npy(work)
    for fmt, key in (("h5", "/new"), ("npz", "new")):
        lio.save(np.zeros(2), f"{work / f'real.{fmt}'}:{'/' if fmt == 'h5' else ''}orig")
        (work / f"link.{fmt}").symlink_to(f"real.{fmt}")
        run = a.run(["reduce", "x.npy", "-s", "mean", "-o", f"link.{fmt}:{key}", "-q"], work)
        a.expect(run, 0)
        a.check((work / f"link.{fmt}").is_symlink(), f"link.{fmt} was replaced")
        a.check(lio.load(f"{work / f'real.{fmt}'}:{key}").shape == (8, 3), "the KEY is not there")
    long_name = "n" * 245 + ".npy"
    a.expect(a.run(["reduce", "x.npy", "-s", "mean", "-o", long_name, "-q"], work), 0)
    for out, says in (
        ("o.npz:" + "k" * 70_000, "too long"),
        ("g.zarr:..", "not node names"),
        ("o.npz:../../x", "member name inside the archive"),
        ("o.npz:/abs", "member name inside the archive"),
    ):
        a.expect(a.run(["reduce", "x.npy", "-s", "mean", "-o", out], work), 2, says)


# ----------------------------------------------------------------------------- the run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller files, fewer rounds")
    parser.add_argument("--only", default="", help="run the attacks whose name contains this")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per process")
    options = parser.parse_args(argv)
    results = []
    for name, (item, function) in ATTACKS.items():
        if options.only not in name:
            continue
        result = Attack(name, item)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="lstmshape-attack-") as tmp:
            try:
                function(result, Path(tmp), options.quick)
            except Exception as error:  # an attack that broke its own harness
                result.failures.append(f"{type(error).__name__}: {error}")
        longest = max((run.seconds for run in result.runs), default=0.0)
        peak = max((run.peak for run in result.runs), default=0)
        verdict = "ok" if not result.failures else "FAILED"
        print(
            f"{verdict:6} #{item:6} {name}: {len(result.runs)} cases, longest {longest:.1f} s, "
            f"peak RSS {peak / MIB:.0f} MiB ({time.monotonic() - started:.0f} s in all)",
            flush=True,
        )
        for failure in result.failures:
            print(f"         {failure}", flush=True)
        for run in result.runs if options.verbose else ():
            print(f"         {run.seconds:7.1f} s {run.peak / MIB:6.0f} MiB  {run.what}")
        results.append((result, longest, peak))
    print("\n| item | attack | cases | longest run | peak RSS | result |")
    print("|---|---|---|---|---|---|")
    for result, longest, peak in results:
        verdict = "held" if not result.failures else "got through"
        print(f"| {result.issue_item} | {result.name} | {len(result.runs)} | {longest:.1f} s | "
              f"{peak / MIB:.0f} MiB | {verdict} |")  # fmt: skip
    return 1 if any(result.failures for result, _, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
