"""Bad input: exit 2, one `Error:` line, no traceback, and no file created or changed."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest


def _bad_inputs(tmp: Path, good: Path, pickled: Path) -> dict[str, tuple[list, str]]:
    """name -> (reduce arguments before -o, expected text in the Error line)."""
    (tmp / "adir.npy").mkdir()
    (tmp / "empty.npy").write_bytes(b"")
    whole = good.read_bytes()
    (tmp / "truncated.npy").write_bytes(whole[: len(whole) - 7])
    (tmp / "text.npy").write_text("hello, this is not an array\n")
    with h5py.File(tmp / "run.h5", "w") as f:
        f["lstm/output"] = np.zeros((2, 3, 4), np.float32)
        f["lstm/lengths"] = np.array([1, 3])
    with zipfile.ZipFile(tmp / "two.npz", "w") as z:
        for name in ("a", "b"):
            with z.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.zeros((2, 3, 4)))
    return {
        "missing file": ([tmp / "nope.npy"], "nope.npy"),
        "directory": ([tmp / "adir.npy"], "adir.npy"),
        "empty file": ([tmp / "empty.npy"], "empty.npy"),
        "truncated npy": ([tmp / "truncated.npy"], "truncated.npy"),
        "pickled npy": ([pickled], "evil.npy"),
        "text as npy": ([tmp / "text.npy"], "text.npy"),
        "missing key": ([f"{tmp / 'run.h5'}:/lstm/nothing"], "/lstm/nothing"),
        "key names a group": ([f"{tmp / 'run.h5'}:/lstm"], "/lstm"),
        "npz without key": ([tmp / "two.npz"], "two.npz"),
        "wrong ndim": ([f"{tmp / 'run.h5'}:/lstm/lengths"], "3-D"),
        "bad lengths": ([good, "--lengths", f"{tmp / 'run.h5'}:/lstm/lengths"], "lengths"),
    }


def _assert_one_error_line(result, expected: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("existing", [False, True], ids=["fresh-output", "existing-output"])
@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "directory",
        "empty file",
        "truncated npy",
        "pickled npy",
        "text as npy",
        "missing key",
        "key names a group",
        "npz without key",
        "wrong ndim",
        "bad lengths",
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    run_cli, tmp_path, padded, pickled_npy, case, existing
):
    pickled, marker = pickled_npy
    args, expected = _bad_inputs(tmp_path, padded["x"], pickled)[case]
    out = tmp_path / "out.npy"
    if existing:
        out.write_bytes(b"precious")
    result = run_cli(["reduce", *args, "-o", out, *(["--force"] if existing else [])])
    _assert_one_error_line(result, expected)
    assert not marker.exists(), "a pickle ran"
    if existing:
        assert out.read_bytes() == b"precious"
    else:
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_inspect_pickled_npy_runs_nothing(run_cli, pickled_npy):
    pickled, marker = pickled_npy
    result = run_cli(["inspect", pickled])
    _assert_one_error_line(result, "evil.npy")
    assert not marker.exists()


def test_existing_output_needs_force(run_cli, tmp_path, padded):
    out = tmp_path / "out.npy"
    out.write_bytes(b"precious")
    result = run_cli(["reduce", padded["x"], "-o", out])
    _assert_one_error_line(result, "--force")
    assert out.read_bytes() == b"precious"


def test_output_equal_to_input_is_refused_even_with_force(run_cli, tmp_path, padded):
    before = padded["x"].read_bytes()
    link = tmp_path / "link.npy"
    link.symlink_to(padded["x"])
    for target in (padded["x"], link, tmp_path / "." / "x.npy"):
        result = run_cli(["reduce", padded["x"], "-o", target, "--force"])
        _assert_one_error_line(result, "input")
        assert padded["x"].read_bytes() == before


def test_json_with_stdout_output_is_a_usage_error(run_cli, padded):
    result = run_cli(["reduce", padded["x"], "--json", "-o", "-"])
    _assert_one_error_line(result, "--json")


def test_empty_stdin(run_cli, tmp_path):
    out = tmp_path / "out.npy"
    result = run_cli(["reduce", "-", "-o", out], input=b"")
    _assert_one_error_line(result, "standard input")
    assert not out.exists()


def _assert_usage_error(result, expected: str, command: str = "reduce") -> None:
    """A usage error as click shows it: the usage line, a hint, then one `Error:` line."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"Usage: lstmshape {command} [OPTIONS]"), result.stderr
    assert lines[1] == f"Try 'lstmshape {command} --help' for help."
    assert [line for line in lines if line.startswith("Error: ")] == [lines[-1]]
    assert expected in lines[-1]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unknown_option_is_a_usage_error(run_cli, padded):
    result = run_cli(["reduce", padded["x"], "--no-such-option"])
    _assert_usage_error(result, "--no-such-option")


def test_mask_shape_mismatch_names_both_shapes(run_cli, tmp_path, padded):
    bad = tmp_path / "bad_mask.npy"
    np.save(bad, np.ones((4, 6), bool))
    result = run_cli(["pool", padded["x"], "--mask", bad, "-o", tmp_path / "o.npy"])
    _assert_one_error_line(result, "(4, 6)")
    assert "(4, 5)" in result.stderr


def test_two_mask_sources(run_cli, tmp_path, padded):
    result = run_cli(
        ["reduce", padded["x"], "--mask", padded["mask"], "--lengths", padded["lengths"]]
    )
    _assert_one_error_line(result, "at most one")


def test_empty_sample_error_names_samples(run_cli, tmp_path, padded):
    lengths = tmp_path / "l.npy"
    np.save(lengths, np.array([0, 3, 0, 1]))
    result = run_cli(["reduce", padded["x"], "--lengths", lengths, "-o", tmp_path / "o.npy"])
    _assert_one_error_line(result, "2 samples")
    assert not (tmp_path / "o.npy").exists()


@pytest.mark.parametrize("source", ["lengths", "mask-value"])
def test_empty_samples_are_named_by_file_index_when_streamed(run_cli, tmp_path, source):
    x = np.ones((50, 4, 3), np.float32)
    x[[7, 31, 44]] = 0.0
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "l.npy", np.where(np.isin(np.arange(50), [7, 31, 44]), 0, 4))
    masks = ["--lengths", tmp_path / "l.npy"] if source == "lengths" else ["--mask-value", "0"]
    out = tmp_path / "o.npy"
    result = run_cli(
        ["reduce", tmp_path / "x.npy", "-s", "mean", *masks, "--chunk-mb", "0.001", "-o", out]
    )
    _assert_one_error_line(result, "3 samples have no valid timestep (7, 31, 44)")
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["pool", "--pool-size", "9"], "pool size 9 exceeds T=5"),
        (["pool", "--pool-size", "2", "--strides", "0"], "strides"),
        (["project", "--weights", "{w}"], "(4, 2)"),
        (["reshape", "--pattern", "n t -> t n"], "einops pattern"),
        (["reshape", "--to", "split-directions"], "F=3"),
    ],
)
def test_many_to_many_argument_errors(run_cli, tmp_path, padded, args, expected):
    weights = tmp_path / "w.npy"
    np.save(weights, np.ones((4, 2), np.float32))
    args = [a.format(w=weights) for a in args]
    out = tmp_path / "o.npy"
    result = run_cli([args[0], padded["x"], *args[1:], "-o", out])
    _assert_one_error_line(result, expected)
    assert not out.exists()


def test_reshape_dry_run_reads_no_data(run_cli, tmp_path, padded, monkeypatch):
    from lstmshape import io

    read_all = io.ArraySource.read_all

    def refuse(source):
        if source.shape == (4, 5, 3):
            raise AssertionError("dry run read the data")
        return read_all(source)

    monkeypatch.setattr(io.ArraySource, "read_all", refuse)
    for extra in (
        ["--to", "flatten"],
        ["--to", "steps", "--drop-padding", "--lengths", padded["lengths"]],
    ):
        out = tmp_path / "packed.h5"  # the packed lengths go beside the data
        result = run_cli(["reshape", padded["x"], *extra, "--dry-run", "--json", "-q", "-o", out])
        assert result.exit_code == 0, result.stderr
