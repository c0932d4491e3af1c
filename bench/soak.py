"""Soak: many piped invocations in a loop leave no stray files or processes, all correct.

One bash loop runs, N times, `lstmshape reduce X --lengths L --nan-policy raise -o - |
lstmshape project - --weights W -o out/I.npy`, over five inputs in turn (`raise` holds the
output in an anonymous spool until the whole input was checked). Every 10th iteration the projection
goes into one shared `.h5` container instead (KEY /rI: the container is copied and
replaced each time), and every 25th also pipes a reduction into `head -c 64` (a reader that
goes away: the writer must stop quietly). The loop runs with a private TMPDIR and a marker
in its environment. Afterwards:

- every exit status is 0 (the broken pipe: 0 or 1, with nothing on stderr but nothing
  traceback-like), every output equals the numpy reference;
- the work directory holds only the inputs and outputs (no `.NAME.*.tmp`, no `.NAME.lock`),
  TMPDIR is empty, and no process carrying the marker is left.

    python bench/soak.py --iterations 500     # `make soak`, and part of `make fuzz`
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

INPUTS = 5
N, T, F, K = 64, 30, 16, 4


def _prepare(work: Path) -> dict[int, np.ndarray]:
    """Inputs, lengths and weights in `work`; the expected projection of each input."""
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((F, K)).astype(np.float32)
    np.save(work / "w.npy", weights)
    expected = {}
    for k in range(INPUTS):
        x = rng.standard_normal((N, T, F)).astype(np.float32)
        lengths = rng.integers(1, T + 1, N)
        x[np.arange(T)[None, :] >= lengths[:, None]] = 0
        np.save(work / f"x{k}.npy", x)
        np.save(work / f"len{k}.npy", lengths)
        mean = np.array([x[i, : lengths[i]].mean(axis=0) for i in range(N)], np.float32)
        expected[k] = mean @ weights
    (work / "out").mkdir()
    return expected


def _script(iterations: int, python: str) -> str:
    ls = f"{shlex.quote(python)} -m lstmshape"
    return f"""
set -u
for i in $(seq 1 {iterations}); do
  k=$(( i % {INPUTS} ))
  if (( i % 10 == 0 )); then
    target="results.h5:/r$i"
  else
    target="out/$i.npy"
  fi
  {ls} reduce x$k.npy -s mean --lengths len$k.npy --nan-policy raise -o - -q \\
    | {ls} project - --weights w.npy -o "$target" -q
  echo "$i ${{PIPESTATUS[0]}} ${{PIPESTATUS[1]}}" >> status.txt
  if (( i % 25 == 0 )); then
    {ls} reduce x$k.npy -s mean --lengths len$k.npy -o - -q 2> broken-$i.err \\
      | head -c 64 > /dev/null
    echo "broken $i ${{PIPESTATUS[0]}}" >> status.txt
  fi
done
"""


def _marked_processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def soak(iterations: int, work: Path, python: str = sys.executable) -> list[str]:
    """Run the loop in the empty directory `work`; the problems found (empty: all good)."""
    expected = _prepare(work)
    before = {p.name for p in work.iterdir()}
    marker = f"LSTMSHAPE_SOAK_{uuid.uuid4().hex}"
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lstmshape-soak-tmp-") as private_tmp:
        env = {**os.environ, "TMPDIR": private_tmp, marker: "1"}
        subprocess.run(["bash", "-c", _script(iterations, python)], cwd=work, env=env, check=True)
        left_in_tmp = sorted(p.name for p in Path(private_tmp).iterdir())
        if left_in_tmp:
            problems.append(f"files left in TMPDIR: {left_in_tmp[:10]}")
    time.sleep(0.1)  # let the kernel reap the last pipeline
    strays = _marked_processes(marker)
    if strays:
        problems.append(f"processes left running: {strays}")

    statuses = (work / "status.txt").read_text().split("\n")
    for line in filter(None, statuses):
        parts = line.split()
        if parts[0] == "broken":
            i, code = int(parts[1]), int(parts[2])
            err = (work / f"broken-{i}.err").read_text()
            if code not in (0, 1) or "Traceback" in err or "Exception" in err:
                problems.append(f"broken pipe {i}: exit {code}, stderr {err!r}")
        elif parts[1:] != ["0", "0"]:
            problems.append(f"iteration {parts[0]}: exit statuses {parts[1:]}")

    import h5py

    with h5py.File(work / "results.h5", "r") as results:
        for i in range(1, iterations + 1):
            want = expected[i % INPUTS]
            if i % 10 == 0:
                got = results[f"/r{i}"][()] if f"/r{i}" in results else None
            else:
                path = work / "out" / f"{i}.npy"
                got = np.load(path) if path.exists() else None
            if got is None:
                problems.append(f"iteration {i}: no output")
            elif not np.allclose(got, want, rtol=1e-5, atol=1e-5):
                problems.append(f"iteration {i}: wrong output")
        if len(results) != iterations // 10:
            problems.append(f"results.h5 holds {len(results)} datasets, not {iterations // 10}")

    expected_names = before | {"status.txt", "results.h5", "out"}
    expected_names |= {f"broken-{i}.err" for i in range(25, iterations + 1, 25)}
    extra = sorted({p.name for p in work.iterdir()} - expected_names)
    if extra:
        problems.append(f"stray files: {extra[:10]}")
    outs = {p.name for p in (work / "out").iterdir()}
    want_outs = {f"{i}.npy" for i in range(1, iterations + 1) if i % 10}
    if outs != want_outs:
        problems.append(f"out/ differs: extra {sorted(outs - want_outs)[:5]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=500)
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lstmshape-soak-") as tmp:
        problems = soak(args.iterations, Path(tmp))
    elapsed = time.monotonic() - started
    for problem in problems:
        print(f"PROBLEM: {problem}")
    verdict = "ok" if not problems else f"{len(problems)} problems"
    print(f"soak: {args.iterations} piped iterations in {elapsed:.0f}s: {verdict}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
