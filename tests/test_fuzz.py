"""Fuzzing: damaged .npy/.npz/.h5 files, masks, lengths and weights through every command.

The only outcomes allowed: exit 0, or exit 2 with exactly one `Error:` line (no traceback,
no exit 1 "unexpected" error, no warning, no crash, no hang, no huge allocation); `diff`
may also exit 1 with no `Error:` line (the inputs differ). The machinery (seed files,
mutations, the forked and memory-limited runner, the oracle) is `bench/fuzz.py`; `make fuzz`
runs it for ten minutes. Here hypothesis drives a fixed, bounded number of cases per role
(1750, about 35 s in all), and the damaged files the long runs found are replayed from
`tests/fuzz_corpus/`.
"""

from __future__ import annotations

import io
import json
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import load_bench
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"


fuzz = load_bench("fuzz")

# Cases per role: files in the data role go through every command, the others through
# reduce/project. derandomize: the suite runs the same cases every time (the long run explores).
BUDGET = {
    "data": 900,
    "stdin": 250,
    "mask": 150,
    "lengths": 150,
    "weights": 100,
    "formats": 250,
    "diff": 200,
}


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    return fuzz.make_seeds()


def check(case, where: Path, *, noting: bool = False) -> None:
    outcome = fuzz.run_case(case, where)
    if noting:
        note(case.describe())
    why = fuzz.problem(outcome)
    assert why is None, f"{why}\n{case.describe()}\n{outcome.error}"


@pytest.mark.slow
@pytest.mark.parametrize("role", fuzz.ROLES)
def test_damaged_inputs_give_success_or_one_error_line(role, seeds):
    @settings(
        max_examples=BUDGET[role],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(rng=st.randoms(use_true_random=False))
    def run(rng: random.Random) -> None:
        case = fuzz.generate_case(rng, seeds, role=role)
        tried.append(case)
        with tempfile.TemporaryDirectory(prefix="lstmshape-fuzz-") as tmp:
            check(case, Path(tmp) / "case", noting=True)

    tried: list = []
    run()
    print(f"fuzz[{role}]: {len(tried)} cases")
    assert len(tried) >= BUDGET[role] * 0.9  # the budget was spent, not cut short


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.iterdir() if p.is_dir()))
def test_cases_found_by_the_long_runs_stay_fixed(name, seeds, tmp_path):
    spec = json.loads((CORPUS / name / "case.json").read_text())
    files = dict(seeds)
    stdin = None
    for path in (CORPUS / name).iterdir():
        if path.name == "stdin.npy":
            stdin = path.read_bytes()
        elif path.name != "case.json":
            files[path.name] = path.read_bytes()
    case = fuzz.Case(files, spec["args"], stdin=stdin, note=spec["found"])
    outcome = fuzz.run_case(case, tmp_path / "case")
    assert fuzz.problem(outcome) is None, f"{fuzz.problem(outcome)}\n{outcome.error}"
    assert outcome.exit_code == spec["exit_code"], outcome.stderr  # as when it was fixed


# ----------------------------------------------------------------------------- forged headers


def npy_bytes(header_text: str, payload: bytes = bytes(480), version: int = 1) -> bytes:
    raw = header_text.encode("latin1")
    size = "<H" if version == 1 else "<I"
    fixed = 6 + 2 + (2 if version == 1 else 4)
    pad = (-(fixed + len(raw) + 1)) % 64
    body = raw + b" " * pad + b"\n"
    import struct

    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(size, len(body)) + body + payload


def header(shape: str, descr: str = "'<f4'") -> str:
    return f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}"


FORGED = {
    "negative size": (header("(-1, 5, 6)"), "its header declares a negative size in shape"),
    "65 axes": (header("(" + "1, " * 65 + ")"), "its header declares 65 axes (numpy allows 64)"),
    "zero-byte items": (header("(4, 5, 6)", "'|S0'"), "declares items of 0 bytes (dtype |S0)"),
    "overflowing sizes": (header("(4611686018427387904, 4, 6)"), "more bytes than any file"),
    "overflow beside a zero": (header(f"({2**40}, {2**40}, 0)"), "more bytes than any file"),
    "unbalanced brackets": ("{'descr': '<f4', 'shape': (4, (5,", "is not a valid .npy"),
    "deep nesting": ("{" * 5000, "is not a valid .npy"),
}


@pytest.mark.parametrize("name", sorted(FORGED))
@pytest.mark.parametrize("via", ["file", "stdin"])
def test_forged_headers_are_one_line_errors(run_cli, tmp_path, name, via):
    text, expected = FORGED[name]
    data = npy_bytes(text, version=2 if len(text) > 60000 else 1)
    if via == "file":
        (tmp_path / "x.npy").write_bytes(data)
        result = run_cli(["reduce", tmp_path / "x.npy", "-s", "mean", "-o", tmp_path / "o.npy"])
    else:
        result = run_cli(["reduce", "-", "-s", "mean", "-o", tmp_path / "o.npy"], input=data)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and expected in result.stderr


def test_a_python_2_header_is_read_without_a_warning(run_cli, tmp_path):
    """numpy re-parses `4L`-style headers with a UserWarning: not ours to print."""
    x = np.arange(120, dtype="<f4").reshape(4, 5, 6)
    data = npy_bytes(header("(4L, 5L, 6L)"), x.tobytes())
    (tmp_path / "x.npy").write_bytes(data)
    result = run_cli(["reduce", tmp_path / "x.npy", "-s", "last", "-o", "-"])  # warnings: errors
    assert result.exit_code == 0, result.stderr
    assert np.load(io.BytesIO(result.stdout_bytes)).tolist() == x[:, -1].tolist()


def test_a_deprecated_dtype_alias_is_read_without_a_warning(run_cli, tmp_path):
    """numpy 2 warns about the 'a' alias (bytes) in a header; the file is simply refused."""
    (tmp_path / "x.npy").write_bytes(npy_bytes(header("(4, 5, 6)", "'a3'"), bytes(360)))
    result = run_cli(["reduce", tmp_path / "x.npy", "-s", "mean", "-o", tmp_path / "o.npy"])
    assert result.exit_code == 2, result.stderr
    assert result.stderr == "Error: cannot reduce data of dtype |S3; expected numbers or bool\n"


# ----------------------------------------------------------------------------- numeric warnings


def test_a_signalling_nan_in_pca_data_is_no_warning(run_cli, tmp_path):
    x = np.ones((4, 5, 3), np.float32)
    x.view(np.uint32)[0, 0, 0] = 0x7F800001  # a signalling NaN, as a bit flip makes one
    np.save(tmp_path / "x.npy", x)
    result = run_cli(["project", tmp_path / "x.npy", "--pca", "2", "-o", tmp_path / "o.npy"])
    assert result.exit_code == 2, result.stderr  # PCA refuses non-finite data, in one line
    assert len(result.stderr.splitlines()) == 1


def test_inf_minus_inf_in_a_window_is_nan_without_a_warning(run_cli, tmp_path):
    x = np.array([[[np.inf], [-np.inf], [1.0], [2.0]]], np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run_cli(["pool", tmp_path / "x.npy", "--pool-size", "2", "-o", "-"])
    assert result.exit_code == 0, result.stderr
    out = np.load(io.BytesIO(result.stdout_bytes))
    assert np.isnan(out[0, 0, 0]) and out[0, 1, 0] == 1.5


def test_inf_times_zero_weight_is_nan_without_a_warning(run_cli, tmp_path):
    np.save(tmp_path / "x.npy", np.array([[[np.inf, 1.0]]], np.float32))
    np.save(tmp_path / "w.npy", np.array([[0.0], [1.0]], np.float32))
    result = run_cli(["project", tmp_path / "x.npy", "--weights", tmp_path / "w.npy", "-o", "-"])
    assert result.exit_code == 0, result.stderr
    assert np.isnan(np.load(io.BytesIO(result.stdout_bytes))).all()


def test_a_mask_value_beyond_the_dtype_matches_nothing(run_cli, tmp_path):
    """float16 cannot hold 1e300; comparing would cast it to inf (with a warning) and take a
    step of all inf for padding."""
    x = np.array([[[1.0], [np.inf]]], np.float16)
    np.save(tmp_path / "x.npy", x)
    args = ["reduce", tmp_path / "x.npy", "-s", "last", "--mask-value", "1e300", "-o", "-"]
    result = run_cli(args)
    assert result.exit_code == 0, result.stderr
    assert np.load(io.BytesIO(result.stdout_bytes)).tolist() == [[np.inf]]


# ----------------------------------------------------------------------------- the harness


@pytest.mark.slow
def test_the_harness_sees_every_kind_of_failure(seeds, tmp_path, monkeypatch):
    """The oracle is not vacuous: an escaped exception, a crash and a hang are all caught."""
    from lstmshape import io as lio

    case = fuzz.Case(dict(seeds), ["inspect", "x.npy"])
    assert fuzz.problem(fuzz.run_case(case, tmp_path / "ok")) is None

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(lio, "list_arrays", boom)  # inherited by the forked child
    monkeypatch.setattr(lio, "iter_arrays", boom)  # what inspect opens its arrays with
    why = fuzz.problem(fuzz.run_case(case, tmp_path / "exc"))
    assert why is not None and "RuntimeError: boom" in why

    monkeypatch.setattr(lio, "list_arrays", lambda *a, **k: __import__("os").abort())
    monkeypatch.setattr(lio, "iter_arrays", lambda *a, **k: __import__("os").abort())
    assert "signal" in fuzz.problem(fuzz.run_case(case, tmp_path / "crash"))

    monkeypatch.setattr(lio, "list_arrays", lambda *a, **k: __import__("time").sleep(60))
    monkeypatch.setattr(lio, "iter_arrays", lambda *a, **k: __import__("time").sleep(60))
    assert "hang" in fuzz.problem(fuzz.run_case(case, tmp_path / "hang", timeout=1))

    monkeypatch.setattr(lio, "list_arrays", lambda *a, **k: bytearray(4 * 2**30))
    monkeypatch.setattr(lio, "iter_arrays", lambda *a, **k: bytearray(4 * 2**30))
    assert fuzz.problem(fuzz.run_case(case, tmp_path / "alloc")) is not None  # MemoryError


def test_diff_may_exit_1_without_an_error_line_and_nothing_else_may():
    differ = fuzz.Outcome(1, "", extra={"command": "diff"})
    assert fuzz.problem(differ) is None
    crashed = fuzz.Outcome(
        1, "Error: ValueError: boom (run with --debug)\n", extra={"command": "diff"}
    )
    assert fuzz.problem(crashed) is not None
    assert fuzz.problem(fuzz.Outcome(1, "", extra={"command": "reduce"})) is not None


def test_hdf5_names_that_are_not_utf8_are_listed(run_cli, tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset(b"\xff\xfebad", data=np.ones((2, 3, 4)))
        f["/ok"] = np.ones((2, 3, 4))
    result = run_cli(["reduce", f"{tmp_path / 'x.h5'}:/nope", "-o", tmp_path / "o.npy"])
    assert result.exit_code == 2
    assert result.stderr.endswith("has no dataset /nope; it holds: /ok, /\\xff\\xfebad\n")
