"""Several inputs (paths or globs) joined along N equal one concatenated file.

Each case runs the CLI twice: once on shards (data, and masks/lengths likewise), once on
the concatenation of those shards, and asks for the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from lstmshape import io
from lstmshape.errors import InputError
from lstmshape.refs import ArrayRef
from lstmshape.sources import MultiRef, MultiSource, expand_refs, join_refs, open_sources

SIZES = [3, 1, 5, 2]  # samples per shard
T, F = 6, 4


def batch(seed: int = 0, layout: str = "ntf") -> tuple[np.ndarray, np.ndarray]:
    """(N, T, F) float32 post-padded data and its lengths (one sample empty-free)."""
    rng = np.random.default_rng(seed)
    n = sum(SIZES)
    lengths = rng.integers(1, T + 1, size=n)
    x = rng.standard_normal((n, T, F)).astype(np.float32)
    x[np.arange(T)[None, :] >= lengths[:, None]] = 0
    return (x.transpose(1, 0, 2) if layout == "tnf" else x), lengths


def split(array: np.ndarray, axis: int = 0) -> list[np.ndarray]:
    return np.split(array, np.cumsum(SIZES)[:-1], axis=axis)


def write_shards(
    directory: Path, name: str, array: np.ndarray, fmt: str, axis: int = 0
) -> list[str]:
    """Shards as name-00.npy ... (or .h5 with KEY /d); returns their refs."""
    refs = []
    for i, part in enumerate(split(array, axis)):
        if fmt == "npy":
            path = directory / f"{name}-{i:02d}.npy"
            np.save(path, part)
            refs.append(str(path))
        else:
            path = directory / f"{name}-{i:02d}.h5"
            with h5py.File(path, "w") as f:
                f["d"] = part
            refs.append(f"{path}:/d")
    return refs


def run_ok(run_cli, args: list) -> dict:
    result = run_cli([*args, "--json", "-q"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def data(tmp_path: Path) -> dict:
    x, lengths = batch()
    mask = np.arange(T)[None, :] < lengths[:, None]
    whole = {
        "x": tmp_path / "x.npy",
        "lengths": tmp_path / "lengths.npy",
        "mask": tmp_path / "m.npy",
    }
    np.save(whole["x"], x)
    np.save(whole["lengths"], lengths)
    np.save(whole["mask"], mask)
    shards = tmp_path / "shards"
    shards.mkdir()
    return {
        "whole": whole,
        "x_npy": write_shards(shards, "x", x, "npy"),
        "x_h5": write_shards(shards, "x", x, "h5"),
        "lengths": write_shards(shards, "lengths", lengths, "npy"),
        "mask": write_shards(shards, "mask", mask, "h5"),
        "shards": shards,
        "out": tmp_path,
    }


COMMANDS = {
    "reduce-last": ["reduce", "-s", "last"],
    "reduce-mean": ["reduce", "-s", "mean"],
    "pool-max": ["pool", "--op", "max"],
    "pool-windows": ["pool", "--pool-size", "4", "--strides", "2", "--padding", "same"],
    "project-pca": ["project", "--pca", "2"],
}


@pytest.mark.parametrize("fmt", ["npy", "h5"])
@pytest.mark.parametrize("mask_kind", ["lengths", "mask", "none"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_shards_equal_one_file(run_cli, data: dict, fmt: str, mask_kind: str, command: str):
    base = COMMANDS[command]
    whole_mask = [] if mask_kind == "none" else [f"--{mask_kind}", data["whole"][mask_kind]]
    shard_mask: list = []
    for ref in [] if mask_kind == "none" else data[mask_kind]:
        shard_mask += [f"--{mask_kind}", ref]
    want_path = data["out"] / "want.npy"
    got_path = data["out"] / "got.npy"
    # chunk-mb small enough that blocks straddle shard boundaries
    common = ["--chunk-mb", "0.001"]
    run_ok(run_cli, [base[0], data["whole"]["x"], *base[1:], *whole_mask, *common, "-o", want_path])
    payload = run_ok(
        run_cli, [base[0], *data[f"x_{fmt}"], *base[1:], *shard_mask, *common, "-o", got_path]
    )
    assert payload["input"]["shape"][0] == sum(SIZES)
    want, got = np.load(want_path), np.load(got_path)
    if command == "project-pca":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    else:
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_glob_equals_listed_files_and_mask_out(run_cli, data: dict) -> None:
    shards, out = data["shards"], data["out"]
    args = ["--pool-size", "3", "--lengths", str(shards / "lengths-*.npy")]
    run_ok(
        run_cli,
        ["pool", str(shards / "x-*.npy"), *args, "-o", out / "a.npy", "--mask-out", out / "am.npy"],
    )
    run_ok(
        run_cli,
        [
            "pool",
            data["whole"]["x"],
            "--pool-size",
            "3",
            "--lengths",
            data["whole"]["lengths"],
            "-o",
            out / "b.npy",
            "--mask-out",
            out / "bm.npy",
        ],
    )
    assert np.array_equal(np.load(out / "a.npy"), np.load(out / "b.npy"))
    assert np.array_equal(np.load(out / "am.npy"), np.load(out / "bm.npy"))


def test_h5_glob_with_key(run_cli, data: dict) -> None:
    shards, out = data["shards"], data["out"]
    payload = run_ok(run_cli, ["reduce", f"{shards}/x-*.h5:/d", "-s", "sum", "-o", out / "s.npy"])
    assert payload["input"]["shape"] == [sum(SIZES), T, F]
    x = np.load(data["whole"]["x"])
    np.testing.assert_allclose(np.load(out / "s.npy"), x.sum(1), rtol=1e-5)


def test_time_major_shards_join_along_axis_one(run_cli, tmp_path: Path) -> None:
    x, lengths = batch(3, layout="tnf")
    mask = (np.arange(T)[None, :] < lengths[:, None]).T  # (T, N)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "m.npy", mask)
    xs = write_shards(tmp_path, "x", x, "npy", axis=1)
    ms = write_shards(tmp_path, "m", mask, "npy", axis=1)
    for name, extra in {"reduce": ["-s", "max"], "pool": ["--pool-size", "2"]}.items():
        run_ok(
            run_cli,
            [name, tmp_path / "x.npy", *extra, "--layout", "tnf", "--mask", tmp_path / "m.npy",
             "-o", tmp_path / f"{name}-want.npy"],
        )  # fmt: skip
        mask_args = [a for m in ms for a in ("--mask", m)]
        run_ok(
            run_cli,
            [name, *xs, *extra, "--layout", "tnf", *mask_args, "--chunk-mb", "0.001",
             "-o", tmp_path / f"{name}-got.npy"],
        )  # fmt: skip
        want, got = np.load(tmp_path / f"{name}-want.npy"), np.load(tmp_path / f"{name}-got.npy")
        assert got.tobytes() == want.tobytes() and got.shape == want.shape


def test_zarr_and_npy_shards_mix(run_cli, data: dict) -> None:
    pytest.importorskip("zarr")
    x = np.load(data["whole"]["x"])
    parts = split(x)
    out = data["out"]
    refs = []
    for i, part in enumerate(parts):
        if i % 2:
            io.save(part, f"{out}/mix-{i}.zarr:/lstm/out")
            refs.append(f"{out}/mix-{i}.zarr:/lstm/out")
        else:
            np.save(out / f"mix-{i}.npy", part)
            refs.append(str(out / f"mix-{i}.npy"))
    run_ok(run_cli, ["reduce", *refs, "-s", "min", "-o", out / "mix.npy"])
    assert np.array_equal(np.load(out / "mix.npy"), x.min(1))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, T + 1, F), "f4"), r"has shape \(2, 7, 4\) but .*x-00.npy has \(3, 6, 4\)"),
        (np.zeros((2, T, F + 1), "f4"), "must agree on every other axis"),
        (np.zeros((2, T, F), "f8"), r"is float64 but .*x-00.npy is float32"),
        (np.zeros((2, T), "f4"), "the same number of axes"),
    ],
)
def test_mismatch_names_the_file(run_cli, data: dict, bad: np.ndarray, message: str) -> None:
    path = data["shards"] / "zz-bad.npy"
    np.save(path, bad)
    result = run_cli(["reduce", *data["x_npy"], str(path), "-o", data["out"] / "o.npy"])
    assert result.exit_code == 2
    assert "zz-bad.npy" in result.stderr
    with pytest.raises(InputError, match=message):
        open_sources(join_refs([ArrayRef(r) for r in [*data["x_npy"], str(path)]]))


def test_mask_shards_must_add_up(run_cli, data: dict) -> None:
    result = run_cli(
        ["reduce", *data["x_npy"], "--lengths", data["lengths"][0], "-o", data["out"] / "o.npy"]
    )
    assert result.exit_code == 2 and "N=11" in result.stderr


def test_errors_for_globs_stdin_and_input_as_output(run_cli, data: dict) -> None:
    result = run_cli(["reduce", str(data["shards"] / "nothing-*.npy")])
    assert result.exit_code == 2 and "no file matches" in result.stderr
    result = run_cli(["reduce", "-", data["x_npy"][0]], input=b"")
    assert result.exit_code == 2 and "cannot be joined" in result.stderr
    result = run_cli(["reduce", *data["x_npy"], "-o", data["x_npy"][2], "--force"])
    assert result.exit_code == 2 and "it is the input" in result.stderr
    lengths = [a for ref in data["lengths"] for a in ("--lengths", ref)]
    result = run_cli(["reduce", *data["x_npy"], *lengths, "-o", data["lengths"][1], "--force"])
    assert result.exit_code == 2 and "it is the input" in result.stderr


def test_inspect_expands_globs(run_cli, data: dict) -> None:
    result = run_cli(["inspect", str(data["shards"] / "x-*.npy"), "--json", "-q"])
    assert result.exit_code == 0
    assert [r["shape"][0] for r in json.loads(result.stdout)] == SIZES


# ----------------------------------------------------------------------------- the API


def test_multisource_reads(data: dict) -> None:
    x = np.load(data["whole"]["x"])
    ref = join_refs(expand_refs([ArrayRef(str(data["shards"] / "x-*.npy"))]), text="x-*.npy")
    assert isinstance(ref, MultiRef) and str(ref) == "x-*.npy" and len(ref.parts) == 4
    with open_sources(ref) as src:
        assert isinstance(src, MultiSource)
        assert src.shape == x.shape and src.dtype == x.dtype and src.nbytes == x.nbytes
        assert src.offsets == [0, 3, 4, 9, 11]
        for lo, hi in [(0, 11), (0, 3), (2, 5), (3, 4), (4, 9), (8, 11), (5, 5), (10, 99)]:
            assert np.array_equal(src.read(lo, hi), x[lo:hi])
        assert np.array_equal(src.read(1, 3, axis=1), x[:, 1:3])
        assert np.array_equal(src.read(2, 4, axis=2), x[:, :, 2:4])
        assert np.array_equal(src.read_all(), x)
        with pytest.raises(InputError, match="no axis 3"):
            src.read(0, 1, axis=3)


def test_single_ref_is_not_wrapped(data: dict) -> None:
    one = ArrayRef(data["x_npy"][0])
    assert join_refs([one]) is one
    with open_sources(one) as src:
        assert not isinstance(src, MultiSource) and src.shape == (3, T, F)
    with pytest.raises(InputError, match="no input"):
        join_refs([])


def test_existing_path_with_glob_characters_is_literal(tmp_path: Path) -> None:
    odd = tmp_path / "a[1].npy"
    np.save(odd, np.ones(2))
    assert expand_refs([ArrayRef(str(odd))]) == [ArrayRef(str(odd))]
