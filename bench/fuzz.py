"""Fuzz the lstmshape command line with damaged input files.

Valid seed files (`.npy`, `.npz` stored and deflated, `.h5` chunked and contiguous,
`.safetensors`, `.nc`, a `.keras` archive, masks, lengths and weights) are damaged by
truncation, bit flips, overwritten byte runs, forged `.npy` headers (random shape, dtype and
order text), forged `.safetensors` headers (lying dtypes, shapes, offsets and length field),
re-zipped damaged `.npz` members and `.keras` archives with a damaged config or weights
file, or a zip bomb member,
then given to every command (inspect, reduce, pool, project, reshape, diff), as the data, the
mask, the lengths or the weights, by path, by KEY or on standard input.

The only outcomes allowed: exit 0, or exit 2 with exactly one `Error: ...` line on standard
error (and for `diff`, exit 1 with no `Error:` line: the inputs differ). Anything else is a
finding: exit 1 (an unexpected exception), a traceback, a warning (turned into an error, as
the test suite does), a crash by signal, a hang, or an attempt to allocate far more memory
than the tiny inputs justify (each case runs in a forked child with an address-space limit).

    python bench/fuzz.py --seconds 600          # the long run (`make fuzz`)
    python bench/fuzz.py --cases 200 --seed 7   # a fixed, reproducible batch

The tests (`tests/test_fuzz.py`) import this module and drive `generate_case` from
hypothesis with a small budget.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import json
import os
import random
import resource
import select
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------- seeds

N, T, F = 4, 5, 6
LENGTHS = np.array([5, 3, 1, 4])


def _data() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, T, F)).astype(np.float32)
    x[np.arange(T)[None, :] >= LENGTHS[:, None]] = 0
    return x


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _npz_bytes(members: dict[str, np.ndarray], compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **members)
    return buf.getvalue()


def _h5_bytes(chunked: bool) -> bytes:
    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seed.h5"
        with h5py.File(path, "w") as f:
            spec: dict[str, Any] = {"chunks": (2, T, F), "compression": "gzip"} if chunked else {}
            dset = f.create_dataset("/lstm/output", data=_data(), **spec)
            dset.attrs["note"] = "seed"
            f.create_dataset("/lstm/lengths", data=LENGTHS)
            f.create_dataset("/mask", data=np.arange(T)[None, :] < LENGTHS[:, None])
        return path.read_bytes()


def _safetensors_bytes() -> bytes:
    tensors = {"out": _data(), "lengths": LENGTHS.astype(np.int64)}
    header, data, at = {"__metadata__": {"format": "np"}}, b"", 0
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array).tobytes()
        code = {"float32": "F32", "int64": "I64"}[str(array.dtype)]
        header[name] = {
            "dtype": code,
            "shape": list(array.shape),
            "data_offsets": [at, at + len(raw)],
        }
        data, at = data + raw, at + len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return len(text).to_bytes(8, "little") + text + data


def _nc_bytes() -> bytes:
    from lstmshape import io as lio

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seed.nc"
        lio.save(_data(), f"{path}:/out", dims=("sample", "time", "feature"))
        lio.save(LENGTHS, f"{path}:/lengths", dims=("sample",))
        return path.read_bytes()


def _keras_bytes(weights: bytes | None = None, config: bytes | None = None) -> bytes:
    """A Keras 3 archive as Keras writes it (stored members): Input -> Dense(2)."""
    import h5py

    if weights is None:
        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            f["layers/dense/vars/0"] = np.ones((F, 2), np.float32)
            f["layers/dense/vars/1"] = np.zeros(2, np.float32)
        weights = buf.getvalue()
    if config is None:
        layers = [{"class_name": "Dense", "config": {"name": "proj", "units": 2}}]
        config = json.dumps({"class_name": "Sequential", "config": {"layers": layers}}).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("metadata.json", b"{}")
        zf.writestr("config.json", config)
        zf.writestr("model.weights.h5", weights)
    return out.getvalue()


def make_seeds() -> dict[str, bytes]:
    """Name (with its suffix) -> bytes of every valid seed file."""
    x = _data()
    mask = np.arange(T)[None, :] < LENGTHS[:, None]
    members = {"out": x, "lengths": LENGTHS, "mask": mask}
    return {
        "x.npy": _npy_bytes(x),
        "x_tnf.npy": _npy_bytes(np.ascontiguousarray(x.transpose(1, 0, 2))),
        "x2d.npy": _npy_bytes(x[:, -1]),
        "stored.npz": _npz_bytes(members, compressed=False),
        "deflated.npz": _npz_bytes(members, compressed=True),
        "chunked.h5": _h5_bytes(chunked=True),
        "contiguous.h5": _h5_bytes(chunked=False),
        "mask.npy": _npy_bytes(mask),
        "lengths.npy": _npy_bytes(LENGTHS),
        "weights.npy": _npy_bytes(np.ones((F, 2), np.float32)),
        "x.safetensors": _safetensors_bytes(),
        "x.nc": _nc_bytes(),
        "model.keras": _keras_bytes(),
    }


# ----------------------------------------------------------------------------- mutations

_DESCRS = [
    "'<f4'", "'<f8'", "'<f2'", "'>f4'", "'<i8'", "'|u1'", "'|b1'", "'<c8'", "'|O'", "'<U3'",
    "'|S0'", "'|V8'", "'<M8[s]'", "'x'", "''", "[('a', '<f4')]", "[('a', '|O')]", "3", "None",
    "'<f4' * 10", "{}",
]  # fmt: skip
_DIMS = [0, 1, 2, 3, 4, 5, 6, 7, 60, 2**31, 2**40, 2**62, 2**63, -1, -(2**40)]


def _random_shape(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.08:
        return rng.choice(["()", "None", "'abc'", "(1.5, 2)", "[4, 5, 6]", "(4, (5,), 6)", "(,)"])
    dims = [rng.choice(_DIMS) for _ in range(rng.choice([0, 1, 2, 3, 3, 3, 4, 6, 40]))]
    return "(" + "".join(f"{d}, " for d in dims) + ")"


def forge_npy_header(rng: random.Random, payload: bytes) -> bytes:
    """A .npy stream whose header text is random but well framed; `payload` follows."""
    descr = rng.choice(_DESCRS)
    fortran = rng.choice(["False", "True", "0", "'no'"])
    shape = _random_shape(rng)
    text = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
    if rng.random() < 0.1:
        text = rng.choice(["{}", "[]", "{'descr': '<f4'}", "__import__('os')", "{" * 5000])
    raw = text.encode("latin1")
    version = rng.choice([(1, 0), (1, 0), (2, 0), (3, 0), (9, 9)])
    size_fmt = "<H" if version == (1, 0) else "<I"
    head_len = 6 + 2 + struct.calcsize(size_fmt)
    pad = (-(head_len + len(raw) + 1)) % 64
    body = raw + b" " * pad + b"\n"
    declared = len(body) if rng.random() < 0.9 else rng.choice([0, 1, 65535, len(body) + 7])
    if size_fmt == "<H":
        declared = min(declared, 65535)
    return b"\x93NUMPY" + bytes(version) + struct.pack(size_fmt, declared) + body + payload


def _npy_payload(data: bytes) -> bytes:
    """The bytes after a .npy header (everything when the header cannot be found)."""
    end = data.find(b"\n", 0, 70000)
    return data[end + 1 :] if data.startswith(b"\x93NUMPY") and end > 0 else data


def flip_bits(rng: random.Random, data: bytes, *, head_bias: bool) -> bytes:
    out = bytearray(data)
    if not out:
        return bytes(out)
    for _ in range(rng.choice([1, 1, 2, 3, 8, 32])):
        limit = min(len(out), 600) if head_bias and rng.random() < 0.7 else len(out)
        pos = rng.randrange(limit)
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def overwrite(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    if not out:
        return bytes(out)
    start = rng.randrange(len(out))
    length = rng.choice([1, 4, 8, 16, 64])
    fill = rng.choice([b"\x00", b"\xff", None])
    chunk = bytes(rng.randrange(256) for _ in range(length)) if fill is None else fill * length
    out[start : start + length] = chunk[: len(out) - start]
    return bytes(out)


def truncate(rng: random.Random, data: bytes) -> bytes:
    if rng.random() < 0.5:
        return data[: rng.randrange(min(len(data), 300) + 1)]
    return data[: rng.randrange(len(data) + 1)]


def rezip_member(rng: random.Random, data: bytes) -> bytes:
    """A valid zip archive with one member's .npy bytes damaged (checksums recomputed)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as src:
            infos = src.infolist()
            contents = {info.filename: src.read(info) for info in infos}
    except Exception:
        return data
    victim = rng.choice(infos).filename
    contents[victim] = mutate_npy(rng, contents[victim])
    if rng.random() < 0.2:
        contents[rng.choice(["a.npy", "x.txt", "dir/", "out.npy"])] = rng.choice(
            [b"", b"\x93NUMPY", contents[victim]]
        )
    buf = io.BytesIO()
    method = infos[0].compress_type
    with zipfile.ZipFile(buf, "w", compression=method) as dst:
        for name, payload in contents.items():
            dst.writestr(name, payload)
    return buf.getvalue()


def mutate_npy(rng: random.Random, data: bytes) -> bytes:
    choice = rng.random()
    if choice < 0.35:
        return forge_npy_header(rng, _npy_payload(data))
    if choice < 0.55:
        return truncate(rng, data)
    if choice < 0.85:
        return flip_bits(rng, data, head_bias=True)
    return overwrite(rng, data)


def forge_safetensors(rng: random.Random, data: bytes) -> bytes:
    """A well-framed header with lying entries: dtypes, shapes, offsets, the length field."""
    length = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    try:
        header = json.loads(data[8 : 8 + length])
    except ValueError:
        return truncate(rng, data)
    if not isinstance(header, dict):
        return truncate(rng, data)
    for name in [n for n in header if n != "__metadata__"]:
        entry = header[name]
        if not isinstance(entry, dict):
            continue
        what = rng.random()
        if what < 0.25:
            entry["dtype"] = rng.choice(["F16", "BF16", "F8_E4M3", "F4", "BOOL", "X", 7, None])
        elif what < 0.5:
            entry["shape"] = [rng.choice(_DIMS) for _ in range(rng.choice([0, 1, 3, 64]))]
        elif what < 0.75:
            entry["data_offsets"] = [rng.choice(_DIMS), rng.choice(_DIMS)]
        else:
            header[name] = rng.choice([None, [], "x", {"dtype": "F32"}])
    if rng.random() < 0.2:
        header["__metadata__"] = rng.choice([{"a": 1}, [], None, "x"])
    text = json.dumps(header).encode()
    if rng.random() < 0.1:
        text = rng.choice([b"[", b"{" * 5000, b'{"a": {}, "a": {}}', b"\xff\xfe"])
    declared = len(text) if rng.random() < 0.8 else rng.choice([0, 1, 2**40, len(text) + 9])
    return declared.to_bytes(8, "little") + text + data[8 + length :]


def damage_keras(rng: random.Random, data: bytes) -> bytes:
    """A valid zip whose config or weights are damaged, or a zip bomb member."""
    choice = rng.random()
    if choice < 0.3:
        config = rng.choice([b"{", b"[]", b"{}", b'{"class_name": "Sequential", "config": 1}'])
        return _keras_bytes(config=config)
    if choice < 0.6:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                weights = zf.read("model.weights.h5")
        except Exception:
            return data
        return _keras_bytes(
            weights=rng.choice([flip_bits_anywhere, overwrite_any, truncate])(rng, weights)
        )
    if choice < 0.8:  # a deflated member that inflates 1000-fold
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("config.json", b"{}" if rng.random() < 0.5 else b" " * 2**26)
            zf.writestr("model.weights.h5", bytes(rng.choice([2**20, 2**28])))
        return out.getvalue()
    return rng.choice([truncate, flip_bits_anywhere, overwrite_any])(rng, data)


def overwrite_any(rng: random.Random, data: bytes) -> bytes:
    return overwrite(rng, data)


def flip_bits_anywhere(rng: random.Random, data: bytes) -> bytes:
    return flip_bits(rng, data, head_bias=False)


def mutate(rng: random.Random, name: str, data: bytes) -> bytes:
    """One or two random damages suited to the file's format."""
    suffix = Path(name).suffix
    for _ in range(rng.choice([1, 1, 1, 2])):
        if suffix == ".safetensors" and rng.random() < 0.5:
            data = forge_safetensors(rng, data)
        elif suffix == ".keras":
            data = damage_keras(rng, data)
        elif suffix == ".npy":
            data = mutate_npy(rng, data)
        elif suffix == ".npz":
            choice = rng.random()
            if choice < 0.5:
                data = rezip_member(rng, data)
            elif choice < 0.7:
                data = truncate(rng, data)
            elif choice < 0.9:
                data = flip_bits(rng, data, head_bias=False)
            else:
                data = overwrite(rng, data)
        else:
            choice = rng.random()
            if choice < 0.5:
                data = flip_bits(rng, data, head_bias=rng.random() < 0.5)
            elif choice < 0.75:
                data = overwrite(rng, data)
            else:
                data = truncate(rng, data)
    if rng.random() < 0.02:
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
    return data


# ----------------------------------------------------------------------------- cases


@dataclass
class Case:
    """Files to write into an empty directory, the CLI arguments, and standard input."""

    files: dict[str, bytes]
    args: list[str]
    stdin: bytes | None = None
    note: str = ""

    def describe(self) -> str:
        return f"{self.note}: lstmshape {' '.join(self.args)}"


_DATA_SEEDS = ["x.npy", "x_tnf.npy", "x2d.npy", "stored.npz", "deflated.npz", "chunked.h5",
               "contiguous.h5"]  # fmt: skip
_KEYS = {
    ".npz": ["", ":out", ":lengths", ":nope"],
    ".h5": ["", ":/lstm/output", ":/lstm", ":/mask", ":lstm/lengths"],
    ".safetensors": ["", ":out", ":lengths", ":o*"],
    ".nc": ["", ":out", ":/lengths", ":sample"],
    ".keras": ["", ":proj", ":proj/bias", ":layers/dense/vars/0"],
}
_FORMAT_SEEDS = ["x.safetensors", "x.nc", "model.keras"]
_OUTPUTS = ["out.npy", "out.npz", "out.h5", "out.h5:/r/k", "out.npz:k", "-", "out.safetensors",
            "out.nc:k"]  # fmt: skip


def _data_ref(rng: random.Random, name: str) -> str:
    return name + rng.choice(_KEYS.get(Path(name).suffix, [""]))


def _mask_args(rng: random.Random, role_file: str | None = None) -> list[str]:
    kind = rng.choice(["none", "lengths", "mask", "value", "h5lengths"])
    if role_file is not None:
        kind = role_file
    if kind == "lengths":
        return ["--lengths", "lengths.npy", "--pad-side", rng.choice(["post", "pre"])]
    if kind == "mask":
        return ["--mask", "mask.npy"]
    if kind == "h5lengths":
        return ["--lengths", "chunked.h5:/lstm/lengths"]
    if kind == "value":
        return ["--mask-value", rng.choice(["0", "nan", "1e300"])]
    return []


def _command(rng: random.Random, ref: str, mask: list[str]) -> list[str]:
    command = rng.choice(["inspect", "reduce", "pool", "project", "reshape", "diff"])
    layout = ["--layout", "tnf"] if rng.random() < 0.2 else []
    out = ["-o", rng.choice(_OUTPUTS), "-q"]
    if command == "inspect":
        return ["inspect", ref, *layout, *rng.choice([[], ["--json"], ["-q"], ["--brief"]])]
    if command == "diff":
        return _diff_command(rng, ref, [*layout, *mask])
    if command == "reduce":
        strategy = rng.choice(["last", "first", "mean", "max", "min", "sum"])
        extra = rng.choice([[], ["--empty", "nan"], ["--keepdims"], ["--bidirectional"]])
        extra += rng.choice([[], [], ["--nan-policy", "omit"], ["--nan-policy", "raise"]])
        return ["reduce", ref, "--strategy", strategy, *extra, *layout, *mask, *out]
    if command == "pool":
        extra = rng.choice([[], ["--pool-size", "2"], ["--pool-size", "3", "--padding", "same"]])
        extra += rng.choice([[], [], ["--nan-policy", "omit"], ["--nan-policy", "raise"]])
        op = rng.choice(["avg", "max"])
        return ["pool", ref, "--op", op, "--empty", "zero", *extra, *layout, *mask, *out]
    if command == "project":
        how = rng.choice([["--pca", "2"], ["--weights", "weights.npy"], ["--pca", "9"]])
        return ["project", ref, *how, *layout, *mask, *out]
    how = rng.choice(
        [
            ["--to", "flatten"],
            ["--to", "steps"],
            ["--to", "time-major"],
            ["--to", "split-directions"],
            ["--to", "steps", "--drop-padding"],
            ["--pattern", "n t f -> t n f"],
        ]
    )
    return ["reshape", ref, *how, *layout, *mask, *out]


def _diff_command(rng: random.Random, ref: str, options: list[str]) -> list[str]:
    """The damaged input against an intact one of the same shape, as A or as B."""
    other = rng.choice(["x.npy", "stored.npz:out", "chunked.h5:/lstm/output"])
    sides = [ref, other] if rng.random() < 0.5 else [other, ref]
    extra = rng.choice([[], ["--equal-nan"], ["--layout-b", "tnf"], ["--include-padding"]])
    report = rng.choice([["-q"], ["--json"], ["--json", "-q"], ["--worst", "0"]])
    return ["diff", *sides, *extra, *options, *report]


ROLES = ("data", "stdin", "mask", "lengths", "weights", "formats", "diff")


def generate_case(rng: random.Random, seeds: dict[str, bytes], role: str | None = None) -> Case:
    """One random case: a damaged file in a role (random unless given), through a random
    command."""
    files = dict(seeds)
    if role is None:
        role = rng.choice(
            ["data", "data", "data", "data", "stdin", "mask", "lengths", "weights", "formats"]
        )
    if role == "formats":  # .safetensors, .nc and .keras damaged: as data, or as the weights
        name = rng.choice(_FORMAT_SEEDS)
        files[name] = mutate(rng, name, seeds[name])
        ref = _data_ref(rng, name)
        if rng.random() < (0.5 if name == "model.keras" else 0.2):
            args = ["project", "x.npy", "--weights", ref, "-o", rng.choice(_OUTPUTS), "-q"]
        elif name == "model.keras":
            args = ["inspect", ref, *rng.choice([[], ["--json"], ["--brief"]])]
        else:
            args = _command(rng, ref, _mask_args(rng))
        return Case(files, args, note=f"{name} damaged")
    if role == "stdin":
        damaged = mutate(rng, "x.npy", seeds["x.npy"])
        command = _command(rng, "-", _mask_args(rng))
        return Case(files, command, stdin=damaged, note="stdin x.npy damaged")
    if role in ("mask", "lengths", "weights"):
        name = {"mask": "mask.npy", "lengths": "lengths.npy", "weights": "weights.npy"}[role]
        source = rng.choice([name, "stored.npz", "chunked.h5"]) if rng.random() < 0.3 else name
        files[name] = mutate(rng, source, seeds[source])
        if role == "weights":
            args = ["project", rng.choice(["x.npy", "x2d.npy"]), "--weights", name, "-o", "o.npy"]
        elif rng.random() < 0.25:
            args = ["diff", "x.npy", "x_tnf.npy", "--layout-b", "tnf", *_mask_args(rng, role)]
        else:
            strategy = rng.choice(["last", "mean", "max"])
            data = "x.npy"
            args = ["reduce", data, "--strategy", strategy, *_mask_args(rng, role), "-o", "o.npy"]
        return Case(files, args, note=f"{name} damaged (from {source})")
    name = rng.choice(_DATA_SEEDS)
    files[name] = mutate(rng, name, seeds[name])
    ref, mask = _data_ref(rng, name), _mask_args(rng)
    args = _diff_command(rng, ref, mask) if role == "diff" else _command(rng, ref, mask)
    return Case(files, args, note=f"{name} damaged")


# ----------------------------------------------------------------------------- running


@dataclass
class Outcome:
    exit_code: int | None
    stderr: str = ""
    error: str = ""  # an exception that escaped the CLI, with its traceback
    signal: int | None = None
    timed_out: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def problem(outcome: Outcome) -> str | None:
    """Why an outcome is not allowed, or None: exit 0, or exit 2 with one Error: line
    (and for `diff`, exit 1 without one: the inputs differ)."""
    if outcome.timed_out:
        return "hang (timed out)"
    if outcome.signal is not None:
        return f"crashed with signal {outcome.signal}"
    if outcome.error:
        return f"exception escaped: {outcome.error.strip().splitlines()[-1]}"
    if outcome.exit_code == 0:
        return None
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    if outcome.exit_code == 1 and outcome.extra.get("command") == "diff" and not errors:
        return "a traceback on standard error" if "Traceback" in outcome.stderr else None
    if outcome.exit_code != 2:
        return f"exit {outcome.exit_code}: {' | '.join(lines)[-300:]}"
    if len(errors) != 1 or "Traceback" in outcome.stderr:
        return f"exit 2 without exactly one Error: line: {outcome.stderr[-300:]!r}"
    return None


def _run_in_child(case: Case, workdir: Path) -> dict[str, Any]:
    from click.testing import CliRunner

    from lstmshape.cli import Terminal, cli

    for name, data in case.files.items():
        (workdir / name).write_bytes(data)
    os.chdir(workdir)
    warnings.simplefilter("error")
    terminal = Terminal(stdin_isatty=False, stdout_isatty=False, stderr_isatty=False)
    result = CliRunner().invoke(cli, case.args, obj=terminal, input=case.stdin)
    error = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        error = "".join(traceback.format_exception(*result.exc_info))  # type: ignore[misc]
    return {"exit_code": result.exit_code, "stderr": result.stderr, "error": error}


def _vm_size() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _warm() -> None:
    """Import what every case needs once, in the parent: forked children inherit it
    (importing h5py, rich and the commands in each child would cost most of a case)."""
    import click.testing  # noqa: F401
    import h5py  # noqa: F401

    import lstmshape.api
    import lstmshape.cli
    import lstmshape.compare
    import lstmshape.inspection
    import lstmshape.io
    import lstmshape.render
    import lstmshape.stream  # noqa: F401


def run_case(case: Case, workdir: Path, *, timeout: float = 20.0, memory: int = 2**30) -> Outcome:
    """Run one case in a forked child: crashes, hangs and huge allocations are caught.

    `memory` bytes of address space are allowed beyond what the parent already maps.
    """
    _warm()
    workdir.mkdir(parents=True, exist_ok=True)
    limit = _vm_size() + memory
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read_fd)
            faulthandler.disable()  # a crash is reported by its signal, in the parent
            if limit > memory:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            payload = json.dumps(_run_in_child(case, workdir)).encode()
        except BaseException:
            payload = json.dumps({"exit_code": None, "error": traceback.format_exc()}).encode()
            code = 3
        try:
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([pipe], [], [], max(left, 0))
            if not ready:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            chunk = pipe.read(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return Outcome(None, timed_out=True)
    if os.WIFSIGNALED(status):
        return Outcome(None, signal=os.WTERMSIG(status))
    data = json.loads(b"".join(chunks) or b'{"exit_code": null, "error": "no report"}')
    extra = {"command": case.args[0] if case.args else None}
    return Outcome(
        data.get("exit_code"), data.get("stderr", ""), data.get("error", ""), extra=extra
    )


# ----------------------------------------------------------------------------- long run


def _save(case: Case, where: Path, why: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    for name, data in case.files.items():
        (where / name).write_bytes(data)
    if case.stdin is not None:
        (where / "stdin.npy").write_bytes(case.stdin)
    (where / "README.txt").write_text(f"{why}\n{case.describe()}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    parser.add_argument("--cases", type=int, default=0, help="stop after this many (0: no cap)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    parser.add_argument("--keep", type=Path, default=Path("build/fuzz-failures"))
    parser.add_argument("--max-failures", type=int, default=20)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    seeds = make_seeds()
    tried, failures = 0, 0
    seen: dict[str, int] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lstmshape-fuzz-") as tmp:
        while time.monotonic() - started < args.seconds and (not args.cases or tried < args.cases):
            case = generate_case(rng, seeds)
            outcome = run_case(case, Path(tmp) / f"case{tried}")
            tried += 1
            why = problem(outcome)
            if why is not None:
                key = why[:120]
                seen[key] = seen.get(key, 0) + 1
                if seen[key] == 1:
                    failures += 1
                    print(
                        f"FAIL #{failures} (case {tried}): {why}\n  {case.describe()}", flush=True
                    )
                    if outcome.error:
                        print("  " + outcome.error.strip().replace("\n", "\n  "))
                    _save(case, args.keep / f"case{tried}", why)
                if failures >= args.max_failures:
                    break
            with contextlib.suppress(OSError):
                import shutil

                shutil.rmtree(Path(tmp) / f"case{tried - 1}")
    elapsed = time.monotonic() - started
    total_failed = sum(seen.values())
    print(
        f"fuzz: {tried} cases in {elapsed:.0f}s (seed {seed}): "
        f"{total_failed} failed, {len(seen)} distinct problems"
    )
    return 1 if seen else 0


if __name__ == "__main__":
    sys.exit(main())
