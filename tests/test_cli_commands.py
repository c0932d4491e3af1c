"""The commands end to end: data on stdout or in files, tables on stderr, JSON, dry runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import load_npy_bytes
from helpers import lstmshape as lstmshape_command

import lstmshape


def test_reduce_last_to_stdout_when_piped(run_cli, padded):
    result = run_cli(
        ["reduce", padded["x"], "--lengths", padded["lengths"]], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    x, lengths = np.load(padded["x"]), np.load(padded["lengths"])
    expected = x[np.arange(4), lengths - 1]
    np.testing.assert_array_equal(load_npy_bytes(result.stdout_bytes), expected)
    assert "(4, 5, 3)" in result.stderr and "(4, 3)" in result.stderr


def test_default_output_file_when_stdout_is_a_terminal(run_cli, padded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli(["reduce", padded["x"], "-s", "mean", "--mask", padded["mask"]], tty=True)
    assert result.exit_code == 0, result.stderr
    written = sorted(p.name for p in tmp_path.glob("x.*.npy"))
    assert len(written) == 1 and written[0] in result.stderr
    again = run_cli(["reduce", padded["x"], "-s", "mean", "--mask", padded["mask"]], tty=True)
    assert again.exit_code == 0
    assert len([p for p in tmp_path.glob("x.*.npy")]) == 2, "the second run must not clobber"


def test_json_has_the_contract_fields(run_cli, padded, tmp_path):
    out = tmp_path / "o.npy"
    result = run_cli(["reduce", padded["x"], "--lengths", padded["lengths"], "-o", out, "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["command"] == "reduce"
    assert payload["input"]["shape"] == [4, 5, 3] and payload["input"]["dtype"] == "float32"
    assert payload["output"]["shape"] == [4, 3] and payload["output"]["dtype"] == "float32"
    assert payload["output"]["path"] == str(out)


def test_dry_run_writes_nothing(run_cli, padded, tmp_path):
    out = tmp_path / "o.npy"
    result = run_cli(
        [
            "pool",
            padded["x"],
            "--pool-size",
            "2",
            "--padding",
            "same",
            "-o",
            out,
            "--dry-run",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["output"]["shape"] == [4, 3, 3]
    assert not out.exists()


def test_quiet_prints_nothing_on_stderr(run_cli, padded, tmp_path):
    """-q drops the table; -qq the warnings too (the unmasked `last` warns on this data)."""
    result = run_cli(["reduce", padded["x"], "-o", tmp_path / "o.npy", "-qq"])
    assert result.exit_code == 0 and result.stderr == ""
    masked = run_cli(
        ["reduce", padded["x"], "--mask", padded["mask"], "-o", tmp_path / "m.npy", "-q"]
    )
    assert masked.exit_code == 0 and masked.stderr == ""


def test_quiet_keeps_warnings_and_drops_the_table(run_cli, padded, tmp_path):
    result = run_cli(["reduce", padded["x"], "-o", tmp_path / "o.npy", "-q"])
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Warning: no mask given"), lines


def test_h5_output_keeps_other_datasets_and_records_provenance(run_cli, padded, tmp_path):
    out = tmp_path / "out.h5"
    with h5py.File(out, "w") as f:
        f["keep/me"] = np.arange(3)
    result = run_cli(["reduce", padded["x"], "-s", "max", "-o", f"{out}:/pooled/max"])
    assert result.exit_code == 0, result.stderr
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["keep/me"][()], np.arange(3))
        attrs = dict(f["pooled/max"].attrs)
        assert attrs["operation"] == "reduce"
        assert attrs["version"] == lstmshape.__version__
        assert "x.npy" in attrs["source"]
        assert json.loads(attrs["options"])["strategy"] == "max"
    again = run_cli(["reduce", padded["x"], "-s", "max", "-o", f"{out}:/pooled/max"])
    assert again.exit_code == 2 and "--force" in again.stderr


def test_time_major_input_and_mask(run_cli, padded, tmp_path):
    x = np.load(padded["x"])
    tnf = tmp_path / "tnf.npy"
    mask_tn = tmp_path / "mask_tn.npy"
    np.save(tnf, x.transpose(1, 0, 2))
    np.save(mask_tn, np.load(padded["mask"]).T)
    result = run_cli(["reduce", tnf, "--layout", "tnf", "--mask", mask_tn, "-s", "mean"])
    assert result.exit_code == 0, result.stderr
    lengths = np.load(padded["lengths"])
    expected = x.sum(1) / lengths[:, None]
    np.testing.assert_allclose(load_npy_bytes(result.stdout_bytes), expected, rtol=1e-6)


def test_windowed_pool_time_major_output_stays_time_major(run_cli, padded, tmp_path):
    x = np.load(padded["x"])
    tnf = tmp_path / "tnf.npy"
    np.save(tnf, x.transpose(1, 0, 2))
    ntf_out = load_npy_bytes(run_cli(["pool", padded["x"], "--pool-size", "2"]).stdout_bytes)
    tnf_out = load_npy_bytes(
        run_cli(["pool", tnf, "--layout", "tnf", "--pool-size", "2"]).stdout_bytes
    )
    np.testing.assert_array_equal(tnf_out, ntf_out.transpose(1, 0, 2))


def test_pool_mask_out(run_cli, padded, tmp_path):
    out, mask_out = tmp_path / "o.npy", tmp_path / "m.npy"
    result = run_cli(
        [
            "pool",
            padded["x"],
            "--pool-size",
            "2",
            "--lengths",
            padded["lengths"],
            "--mask-out",
            mask_out,
            "-o",
            out,
        ]
    )
    assert result.exit_code == 0, result.stderr
    expected = np.array([[1, 1], [1, 1], [1, 0], [1, 1]], bool)
    np.testing.assert_array_equal(np.load(mask_out), expected)


def test_pca_basis_reused_through_weights(run_cli, padded, tmp_path):
    basis, first = tmp_path / "basis.npz", tmp_path / "pca.npy"
    fit = run_cli(
        [
            "project",
            padded["x"],
            "--pca",
            "2",
            "--lengths",
            padded["lengths"],
            "--save-basis",
            basis,
            "-o",
            first,
        ]
    )
    assert fit.exit_code == 0, fit.stderr
    reuse = run_cli(
        [
            "project",
            padded["x"],
            "--weights",
            f"{basis}:weights",
            "--bias",
            f"{basis}:bias",
            "--lengths",
            padded["lengths"],
        ]
    )
    assert reuse.exit_code == 0, reuse.stderr
    np.testing.assert_allclose(
        load_npy_bytes(reuse.stdout_bytes), np.load(first), rtol=1e-5, atol=1e-6
    )


def test_reshape_pack_then_pad_round_trip(run_cli, padded, tmp_path):
    packed, lengths_out = tmp_path / "packed.npy", tmp_path / "lens.npy"
    result = run_cli(
        [
            "reshape",
            padded["x"],
            "--to",
            "steps",
            "--drop-padding",
            "--lengths",
            padded["lengths"],
            "--lengths-out",
            lengths_out,
            "-o",
            packed,
        ]
    )
    assert result.exit_code == 0, result.stderr
    assert np.load(packed).shape == (13, 3)
    back = run_cli(
        ["reshape", packed, "--to", "padded", "--lengths", lengths_out, "--timesteps", "5"]
    )
    assert back.exit_code == 0, back.stderr
    np.testing.assert_array_equal(load_npy_bytes(back.stdout_bytes), np.load(padded["x"]))


def test_reshape_pattern(run_cli, padded):
    result = run_cli(["reshape", padded["x"], "--pattern", "n t f -> t (n f)"])
    assert result.exit_code == 0, result.stderr
    assert load_npy_bytes(result.stdout_bytes).shape == (5, 12)
    bad = run_cli(["reshape", padded["x"], "--pattern", "n t -> t n"])
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: ")


def test_inspect_json_for_h5_lists_every_dataset(run_cli, tmp_path):
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f["a/out"] = np.zeros((2, 3, 4), np.float32)
        f["b"] = np.arange(2)
    result = run_cli(["inspect", path, "--json", "-q"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert [p["shape"] for p in payload] == [[2, 3, 4], [2]]


# ------------------------------------------------------------------ real processes


def _lstmshape(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(lstmshape_command(*args), capture_output=True, **kwargs)


def test_python_dash_m_and_a_real_pipe(padded):
    first = _lstmshape("reduce", str(padded["x"]), "-s", "mean", "-o", "-", "-q")
    assert first.returncode == 0, first.stderr
    second = _lstmshape("inspect", "-", "--json", "-q", input=first.stdout)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["shape"] == [4, 3]


def test_empty_stdin_in_a_real_pipe(tmp_path):
    result = _lstmshape("reduce", "-", "-o", str(tmp_path / "o.npy"), input=b"")
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines() == [
        line for line in result.stderr.decode().strip().splitlines() if line.startswith("Error:")
    ]
    assert not (tmp_path / "o.npy").exists()


def test_broken_pipe_is_quiet(padded):
    big = padded["x"].parent / "big.npy"
    np.save(big, np.zeros((20000, 8, 16), np.float32))
    pipeline = (
        f"{sys.executable} -m lstmshape pool {big} --pool-size 1 -o - -q | head -c 10 > /dev/null"
    )
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {pipeline}"], capture_output=True)
    assert b"Traceback" not in result.stderr
    assert result.stderr.decode().strip() == ""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["reduce", "--help"]])
def test_help_and_version_import_no_heavy_modules(args):
    code = (
        "import sys\n"
        "from lstmshape.cli import cli\n"
        f"try:\n    cli.main({args!r})\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('numpy', 'h5py', 'rich') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(lstmshape.__file__).parent.parent)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "HEAVY []" in result.stderr, result.stderr
    if args == ["--version"]:
        assert lstmshape.__version__ in result.stdout


def test_console_version_does_not_import_click():
    code = (
        "import sys\n"
        "sys.argv = ['lstmshape', '--version']\n"
        "from lstmshape._entry import main\n"
        "main()\n"
        "print('LOADED', sorted(m for m in ('click', 'numpy', 'rich') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(lstmshape.__file__).parent.parent)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stdout.splitlines() == [
        f"lstmshape, version {lstmshape.__version__}",
        "LOADED []",
    ]


def test_quiet_run_does_not_import_rich(padded, tmp_path):
    code = (
        "import sys\n"
        "from lstmshape.cli import cli\n"
        f"try:\n    cli.main(['reduce', {str(padded['x'])!r}, '-s', 'mean', '-q',"
        f" '-o', {str(tmp_path / 'o.npy')!r}])\n"
        "except SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        "print('RICH', 'rich' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "RICH False", result.stderr
