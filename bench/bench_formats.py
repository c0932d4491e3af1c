"""The file formats of issue #13: streaming a `.safetensors` input against the same data as
`.npy` (wall time and peak RSS), and `inspect --brief` against `h5ls -r` on a multi-GB `.h5`.

    python bench/bench_formats.py [--size 4GB] [--repeat 3] [--save bench/RESULTS.md] [--keep]

Generates float32 (N, 128, 256) data of about `--size` under bench/data (the `.npy` of
bench/run.py, its bytes copied behind a `.safetensors` header, and an `.h5` chunked by 8
samples), warms each file, and runs each command as a child process (peak RSS from
`os.wait4`, best wall time of `--repeat`). With `--save`, the section "File formats" of the
results file is replaced (or appended). The generated files are deleted unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
from run import DATA, _write_h5, best, machine_facts, make_inputs, parse_size, warm

from lstmshape.units import format_bytes

LSTMSHAPE = Path(sys.executable).parent / "lstmshape"
SECTION = "## File formats (issue #13)"
RSS_SLACK_MIB = 16  # "the same peak RSS": within this of the .npy run


def write_safetensors(npy: Path, path: Path) -> None:
    """The `.npy` file's data behind a `.safetensors` header (no copy through memory)."""
    with npy.open("rb") as src:
        version = np.lib.format.read_magic(src)
        read = {(1, 0): np.lib.format.read_array_header_1_0}.get(version)
        shape, _, dtype = (read or np.lib.format.read_array_header_2_0)(src)
        offset = src.tell()
        nbytes = int(np.prod(shape)) * dtype.itemsize
        entry = {"dtype": "F32", "shape": list(shape), "data_offsets": [0, nbytes]}
        text = json.dumps({"out": entry}).encode()
        text += b" " * (-(8 + len(text)) % 8)
        tmp = path.with_suffix(".part")
        with tmp.open("wb") as out:
            out.write(len(text).to_bytes(8, "little") + text)
            src.seek(offset)
            shutil.copyfileobj(src, out, 1 << 24)
        tmp.replace(path)


def streaming_rows(npy: Path, st: Path, repeat: int) -> list[tuple[str, str, float, float]]:
    rows = []
    for strategy in ("mean", "max"):
        for label, ref in ((".npy", str(npy)), (".safetensors", f"{st}:out")):
            warm(Path(ref.split(":")[0]))
            out = DATA / "out.npy"
            cmd = [LSTMSHAPE, "reduce", ref, "-s", strategy, "-o", out, "--force", "-q"]
            r = best(cmd, repeat)
            rows.append((f"reduce -s {strategy}", label, r.wall, r.rss_mb))
    return rows


# The listing alone, in a process that has imported everything already (start-up excluded).
IN_PROCESS = """
import sys, time
from lstmshape.listing import brief_entries
from lstmshape.refs import parse_ref
brief_entries([parse_ref(sys.argv[1])])
start = time.perf_counter()
for _ in range(20):
    brief_entries([parse_ref(sys.argv[1])])
print((time.perf_counter() - start) / 20)
"""


def listing_rows(h5: Path, repeat: int) -> list[tuple[str, float, float]]:
    warm(h5)
    rows = [("lstmshape inspect --brief", *_timed([LSTMSHAPE, "inspect", "--brief", h5], repeat))]
    h5ls = shutil.which("h5ls")
    if h5ls:
        rows.append(("h5ls -r", *_timed([h5ls, "-r", h5], repeat)))
    inner = best([sys.executable, "-c", IN_PROCESS, h5], repeat)
    rows.append(("the listing in process (start-up excluded)", inner.inner or 0.0, inner.rss_mb))
    floor = [sys.executable, "-c", "import numpy, h5py"]
    rows.append(("python -c 'import numpy, h5py' (start-up floor)", *_timed(floor, repeat)))
    rows.append(("lstmshape inspect (reads every value)", *_timed([LSTMSHAPE, "inspect", h5], 1)))
    return rows


def _timed(cmd: list[object], repeat: int) -> tuple[float, float]:
    r = best(cmd, repeat)
    return r.wall, r.rss_mb


def report(size: int, streaming: list, listing: list) -> str:
    npy_rss = {row[0]: row[3] for row in streaming if row[1] == ".npy"}
    lines = [
        SECTION,
        "",
        f"float32 (N, 128, 256), {format_bytes(size)}, warm; best of the runs, "
        "peak RSS from os.wait4.",
        machine_facts(),
        "",
        "| command | input | wall s | GB/s | peak RSS MiB |",
        "|---|---|---:|---:|---:|",
    ]
    for command, label, wall, rss in streaming:
        lines.append(f"| {command} | {label} | {wall:.3f} | {size / wall / 1e9:.2f} | {rss:.0f} |")
    lines += ["", "| listing the chunked .h5 (8 samples a chunk) | wall s | peak RSS MiB |"]
    lines += ["|---|---:|---:|"]
    lines += [f"| {name} | {wall:.3f} | {rss:.0f} |" for name, wall, rss in listing]
    lines += ["", "Targets (issue #13):", ""]
    for command, label, _wall, rss in streaming:
        if label == ".safetensors":
            ok = rss <= npy_rss[command] + RSS_SLACK_MIB
            lines.append(
                f"- {'PASS' if ok else 'MISS'} {command}: .safetensors peak RSS {rss:.0f} MiB "
                f"<= the .npy run's {npy_rss[command]:.0f} MiB (+{RSS_SLACK_MIB})"
            )
    walls = {name: wall for name, wall, _ in listing}
    if "h5ls -r" in walls:
        h5ls = walls["h5ls -r"]
        ratio = walls["lstmshape inspect --brief"] / h5ls
        inner = walls["the listing in process (start-up excluded)"] / h5ls
        floor = walls["python -c 'import numpy, h5py' (start-up floor)"] / h5ls
        lines += [
            f"- {'PASS' if ratio <= 10 else 'MISS'} inspect --brief within a small factor "
            f"(<= 10x) of h5ls -r, whole commands: {ratio:.1f}x",
            f"  - why: importing Python, numpy and h5py alone takes {floor:.1f}x h5ls's time "
            "(a C program); the data is never read",
            f"- {'PASS' if inner <= 2 else 'MISS'} the listing itself (start-up excluded) "
            f"within 2x of h5ls -r: {inner:.2f}x",
        ]
    else:
        lines.append("- h5ls is not installed here: no comparison (apt-get install hdf5-tools)")
    return "\n".join(lines) + "\n"


def save(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(section.rstrip("\n"), text) if SECTION in text else text + "\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="256MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    inputs = make_inputs(parse_size(args.size), extras=False)
    st, h5 = inputs.npy.with_suffix(".safetensors"), inputs.npy.with_suffix(".h5")
    made = [inputs.npy, inputs.lengths, st, h5, DATA / "out.npy"]
    try:
        write_safetensors(inputs.npy, st)
        if not h5.exists():
            _write_h5(h5, inputs.npy)
        section = report(inputs.nbytes, streaming_rows(inputs.npy, st, args.repeat),
                         listing_rows(h5, max(args.repeat, 5)))  # fmt: skip
    finally:
        if not args.keep:
            for path in made:
                path.unlink(missing_ok=True)
    print(section)
    if args.save:
        save(args.save, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
