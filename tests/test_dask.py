"""`--engine dask` gives the in-process engine's results, on a real dask.distributed cluster.

One LocalCluster with 2 worker processes serves the whole module; the CLI reaches it with
`--scheduler tcp://...` as a user would reach an existing cluster. Every comparison runs
the same command twice, in-process and on the cluster, on sharded Zarr, `.h5` and `.npy`
inputs, and asks for identical bytes (PCA: equal within float tolerance).
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import npy_bytes

pytest.importorskip("dask.array")
pytest.importorskip("zarr")
distributed = pytest.importorskip("distributed")

from lstmshape import io  # noqa: E402
from lstmshape.engines import dask_engine, dask_session  # noqa: E402
from lstmshape.errors import InputError  # noqa: E402
from lstmshape.strategies.pca import PcaAccumulator  # noqa: E402

N, T, F = 240, 9, 6
SHARDS = [70, 50, 120]
CHUNK = "0.002"  # MB: blocks of ~9 samples, so every shard is several blocks


@pytest.fixture(scope="module")
def cluster():
    saved = dict(os.environ)
    try:
        with distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=":0",
            silence_logs=40,
        ) as local:
            _restore_environ(saved)  # distributed leaves MALLOC_TRIM_THRESHOLD_, OMP_... set
            yield local
    finally:
        _restore_environ(saved)


def _restore_environ(saved: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def address(cluster) -> str:
    return cluster.scheduler_address


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Post-padded data (some holes in a mask file, two empty samples in `lengths0`) as one
    .npy, one .h5, three .zarr shards, three .h5 shards, in both layouts."""
    d = tmp_path_factory.mktemp("dask")
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, T + 1, size=N)
    x = rng.standard_normal((N, T, F)).astype(np.float32)
    x[np.arange(T)[None, :] >= lengths[:, None]] = 0.0
    mask = np.arange(T)[None, :] < lengths[:, None]
    mask[::7, 0] = False  # holes: not a prefix mask
    mask[mask.sum(1) == 0, -1] = True
    lengths0 = lengths.copy()
    lengths0[[5, 200]] = 0
    np.save(d / "x.npy", x)
    np.save(d / "x_tnf.npy", np.ascontiguousarray(x.transpose(1, 0, 2)))
    np.save(d / "lengths.npy", lengths)
    np.save(d / "lengths0.npy", lengths0)
    np.save(d / "mask.npy", mask)
    np.save(d / "mask_tnf.npy", np.ascontiguousarray(mask.T))
    with h5py.File(d / "x.h5", "w") as f:
        f.create_dataset("lstm/out", data=x, chunks=(16, T, F))
    bounds = np.cumsum([0, *SHARDS])
    (d / "shards").mkdir()
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        io.save(x[lo:hi], f"{d}/shards/part-{i}.zarr:/lstm/out")
        io.save(x[lo:hi], f"{d}/shards/part-{i}.h5:/out")
        np.save(d / "shards" / f"lengths-{i}.npy", lengths[lo:hi])
    return {"dir": d, "x": x, "lengths": lengths, "mask": mask}


INPUTS = {
    "npy": lambda d: [d / "x.npy"],
    "h5": lambda d: [f"{d}/x.h5:/lstm/out"],
    "zarr-shards": lambda d: [f"{d}/shards/part-*.zarr:/lstm/out"],
    "h5-shards": lambda d: [f"{d}/shards/part-0.h5:/out", f"{d}/shards/part-[12].h5:/out"],
}


def run(run_cli, args: list, out: str | Path) -> np.ndarray:
    result = run_cli([*args, "-o", out, "-q", "--force", "--chunk-mb", CHUNK])
    assert result.exit_code == 0, result.stderr
    return io.load(str(out))


def compare(run_cli, tmp_path: Path, address: str, command: list, inputs: list, suffix: str):
    """The command in-process on x.npy and with the dask engine on `inputs`."""
    d = Path(str(inputs[0]).split(":")[0]).parent
    d = d.parent if d.name == "shards" else d
    want = run(run_cli, [command[0], d / "x.npy", *command[1:]], tmp_path / "want.npy")
    dask_args = ["--engine", "dask", "--scheduler", address]
    got = run(run_cli, [command[0], *inputs, *command[1:], *dask_args], tmp_path / f"got{suffix}")
    return want, got


def assert_same(want: np.ndarray, got: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes()


# ----------------------------------------------------------------------------- reduce


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["last", "first", "mean", "max", "min", "sum"])
@pytest.mark.parametrize("source", ["zarr-shards", "h5"])
def test_every_reduce_strategy_with_lengths(run_cli, tmp_path, address, data, strategy, source):
    d = data["dir"]
    command = ["reduce", "-s", strategy, "--lengths", d / "lengths.npy"]
    want, got = compare(run_cli, tmp_path, address, command, INPUTS[source](d), ".npy")
    assert_same(want, got)


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        ["-s", "mean", "--mask", "{d}/mask.npy"],
        ["-s", "last", "--mask", "{d}/mask.npy", "--bidirectional"],
        ["-s", "first", "--lengths", "{d}/lengths.npy", "--pad-side", "pre", "--keepdims"],
        ["-s", "max", "--mask-value", "0"],
        ["-s", "sum", "--lengths", "{d}/lengths0.npy", "--empty", "nan"],
        ["-s", "mean"],
    ],
    ids=["mask-holes", "bidirectional", "pre-keepdims", "mask-value", "empty-nan", "no-mask"],
)
def test_reduce_mask_sources(run_cli, tmp_path, address, data, extra):
    d = data["dir"]
    command = ["reduce", *[str(a).format(d=d) for a in extra]]
    want, got = compare(run_cli, tmp_path, address, command, INPUTS["h5-shards"](d), ".npy")
    assert_same(want, got)


@pytest.mark.slow
def test_sharded_lengths_and_zarr_output(run_cli, tmp_path, address, data):
    d = data["dir"]
    want = run(
        run_cli, ["reduce", d / "x.npy", "-s", "mean", "--lengths", d / "lengths.npy"],
        tmp_path / "want.npy",
    )  # fmt: skip
    got = run(
        run_cli,
        ["reduce", *INPUTS["zarr-shards"](d), "-s", "mean",
         "--lengths", f"{d}/shards/lengths-*.npy",
         "--engine", "dask", "--scheduler", address],
        f"{tmp_path}/out.zarr:/reduced/mean",
    )  # fmt: skip
    assert_same(want, got)
    attrs = io.list_arrays(f"{tmp_path}/out.zarr:/reduced/mean")[0].attrs
    assert attrs["operation"] == "reduce" and json.loads(attrs["options"])["strategy"] == "mean"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- pool


@pytest.mark.slow
@pytest.mark.parametrize("op", ["avg", "max"])
@pytest.mark.parametrize("source", ["zarr-shards", "h5"])
def test_global_pooling(run_cli, tmp_path, address, data, op, source):
    d = data["dir"]
    command = ["pool", "--op", op, "--mask", d / "mask.npy"]
    want, got = compare(run_cli, tmp_path, address, command, INPUTS[source](d), ".npy")
    assert_same(want, got)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("op", "window"),
    [
        ("avg", ["--pool-size", "3"]),
        ("max", ["--pool-size", "4", "--strides", "2", "--padding", "same"]),
    ],
)
@pytest.mark.parametrize("out", [".npy", ".zarr", ".h5"])
def test_windowed_pooling_and_mask_out(run_cli, tmp_path, address, data, op, window, out):
    d = data["dir"]
    mask_args = ["--lengths", d / "lengths.npy"]
    want = run(
        run_cli,
        ["pool", d / "x.npy", "--op", op, *window, *mask_args, "--mask-out", tmp_path / "wm.npy"],
        tmp_path / "want.npy",
    )
    got = run(
        run_cli,
        ["pool", *INPUTS["zarr-shards"](d), "--op", op, *window, *mask_args,
         "--mask-out", tmp_path / "gm.npy", "--engine", "dask", "--scheduler", address],
        tmp_path / f"got{out}",
    )  # fmt: skip
    assert_same(want, got)
    assert_same(np.load(tmp_path / "wm.npy"), np.load(tmp_path / "gm.npy"))


@pytest.mark.slow
def test_time_major_windowed_pooling_and_projection(run_cli, tmp_path, address, data):
    d = data["dir"]
    rng = np.random.default_rng(1)
    np.save(tmp_path / "w.npy", rng.standard_normal((F, 3)).astype(np.float32))
    for command in (
        ["pool", "--pool-size", "2", "--op", "max"],
        ["project", "--weights", tmp_path / "w.npy", "--activation", "tanh"],
    ):
        common = [*command[1:], "--layout", "tnf", "--mask", d / "mask_tnf.npy"]
        want = run(run_cli, [command[0], d / "x_tnf.npy", *common], tmp_path / "want.npy")
        for out in (".npy", ".zarr"):
            got = run(
                run_cli,
                [command[0], d / "x_tnf.npy", *common, "--engine", "dask", "--scheduler", address],
                tmp_path / f"got{out}",
            )
            assert_same(want, got)


# ----------------------------------------------------------------------------- project


@pytest.mark.slow
@pytest.mark.parametrize("source", ["zarr-shards", "h5"])
def test_projection_with_weights(run_cli, tmp_path, address, data, source):
    d = data["dir"]
    rng = np.random.default_rng(2)
    np.save(tmp_path / "w.npy", rng.standard_normal((4, F)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.standard_normal(4).astype(np.float32))
    command = ["project", "--weights", tmp_path / "w.npy", "--weights-layout", "torch",
               "--bias", tmp_path / "b.npy", "--activation", "relu",
               "--lengths", d / "lengths.npy"]  # fmt: skip
    want, got = compare(run_cli, tmp_path, address, command, INPUTS[source](d), ".zarr")
    assert_same(want, got)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["zarr-shards", "h5-shards"])
@pytest.mark.parametrize("mask", [["--mask", "{d}/mask.npy"], ["--mask-value", "0"]])
def test_pca_is_fitted_distributed_and_matches(run_cli, tmp_path, address, data, source, mask):
    d = data["dir"]
    mask = [a.format(d=d) for a in mask]
    want = run(
        run_cli,
        ["project", d / "x.npy", "--pca", "3", *mask, "--save-basis", tmp_path / "wb.npz"],
        tmp_path / "want.npy",
    )
    got = run(
        run_cli,
        ["project", *INPUTS[source](d), "--pca", "3", *mask, "--save-basis", tmp_path / "gb.npz",
         "--engine", "dask", "--scheduler", address],
        tmp_path / "got.h5",
    )  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with np.load(tmp_path / "wb.npz") as wb, np.load(tmp_path / "gb.npz") as gb:
        for name in ("weights", "mean", "explained_variance"):
            np.testing.assert_allclose(gb[name], wb[name], rtol=1e-9, atol=1e-12)


def test_merge_accumulators_tree_equals_one_pass() -> None:
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((500, 4)) * [1, 10, 100, 1000] + 5
    whole = PcaAccumulator(4)
    whole.update(rows)
    parts = []
    for lo in range(0, 500, 37):
        acc = PcaAccumulator(4)
        acc.update(rows[lo : lo + 37])
        parts.append(acc)
    parts.append(PcaAccumulator(4))  # an empty block
    merged = dask_engine.merge_accumulators(
        dask_engine.merge_accumulators(*parts[:5]), dask_engine.merge_accumulators(*parts[5:])
    )
    assert merged.count == 500
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-10)


# ----------------------------------------------------------------------------- errors


@pytest.mark.slow
def test_empty_samples_are_named_by_file_index(run_cli, tmp_path, address, data):
    d = data["dir"]
    args = ["reduce", *INPUTS["zarr-shards"](d), "--lengths", d / "lengths0.npy"]
    inprocess = run_cli([*args, "-o", tmp_path / "a.npy"])
    on_dask = run_cli([*args, "-o", tmp_path / "b.npy", "--engine", "dask", "--scheduler", address])
    assert inprocess.exit_code == on_dask.exit_code == 2
    assert "(5, 200)" in on_dask.stderr and on_dask.stderr == inprocess.stderr
    assert not (tmp_path / "b.npy").exists()


@pytest.mark.slow
def test_empty_samples_found_by_mask_value_on_workers(run_cli, tmp_path, address):
    x = np.ones((30, 4, 2), np.float32)
    x[[3, 17]] = 0.0
    np.save(tmp_path / "x.npy", x)
    args = ["reduce", tmp_path / "x.npy", "--mask-value", "0", "--chunk-mb", "0.001"]
    inprocess = run_cli([*args, "-o", tmp_path / "a.npy"])
    on_dask = run_cli(
        [*args, "-o", tmp_path / "b.zarr", "--engine", "dask", "--scheduler", address]
    )
    assert on_dask.exit_code == 2 and "(3, 17)" in on_dask.stderr
    assert on_dask.stderr == inprocess.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "x.npy"]


@pytest.mark.slow
def test_bad_mask_values_fail_like_in_process(run_cli, tmp_path, address, data):
    np.save(tmp_path / "m.npy", np.full((N, T), 2, np.int8))
    d = data["dir"]
    args = ["reduce", d / "x.npy", "--mask", tmp_path / "m.npy", "-o", tmp_path / "o.npy"]
    assert (
        run_cli(args).stderr == run_cli([*args, "--engine", "dask", "--scheduler", address]).stderr
    )


def test_usage_errors(run_cli, tmp_path, data):
    x = data["dir"] / "x.npy"
    result = run_cli(["reduce", x, "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2 and "go with --engine dask" in result.stderr
    result = run_cli(["reduce", x, "--engine", "dask", "--scheduler", "a", "--workers", "2"])
    assert result.exit_code == 2 and "not both" in result.stderr
    result = run_cli(["reduce", "-", "--engine", "dask", "-o", tmp_path / "o.npy"],
                     input=npy_bytes(np.ones((2, 3, 4), np.float32)))  # fmt: skip
    assert result.exit_code == 2 and "not standard input" in result.stderr


@pytest.fixture(scope="module")
def nan_data(tmp_path_factory, data) -> Path:
    """x.npy with NaN in valid steps of a few samples (one of them NaN in every step), as
    one .npy and as three .h5 shards."""
    d = tmp_path_factory.mktemp("nan")
    x = np.load(data["dir"] / "x.npy")
    x[[3, 100, 230], 0, 1] = np.nan
    x[17] = np.nan  # every step: omission empties it
    np.save(d / "x.npy", x)
    start = 0
    for i, rows in enumerate(SHARDS):
        with h5py.File(d / f"part{i}.h5", "w") as f:
            f["x"] = x[start : start + rows]
        start += rows
    return d


@pytest.mark.parametrize(
    "extra",
    [
        ["reduce", "-s", "mean", "--nan-policy", "omit", "--empty", "nan"],
        ["reduce", "-s", "max", "--nan-policy", "omit", "--empty", "zero"],
        ["pool", "--op", "avg", "--nan-policy", "omit", "--empty", "nan"],
        ["pool", "--op", "max", "--pool-size", "3", "--nan-policy", "omit"],
    ],
    ids=["reduce-mean", "reduce-max", "pool-global", "pool-windows"],
)
def test_nan_policy_omit_matches_in_process(run_cli, tmp_path, address, nan_data, extra):
    inputs = [f"{nan_data}/part{i}.h5:x" for i in range(len(SHARDS))]
    want = run(run_cli, [extra[0], nan_data / "x.npy", *extra[1:]], tmp_path / "want.npy")
    dask_args = ["--engine", "dask", "--scheduler", address]
    got = run(run_cli, [extra[0], *inputs, *extra[1:], *dask_args], tmp_path / "got.npy")
    assert_same(want, got)


@pytest.mark.parametrize(
    "extra",
    [
        ["reduce", "-s", "mean", "--nan-policy", "raise"],
        ["reduce", "-s", "mean", "--nan-policy", "omit"],  # --empty error: sample 17 emptied
        ["pool", "--pool-size", "2", "--nan-policy", "raise"],
    ],
    ids=["raise", "omit-empties", "raise-windows"],
)
def test_nan_policy_errors_match_in_process(run_cli, tmp_path, address, nan_data, extra):
    inputs = [f"{nan_data}/part{i}.h5:x" for i in range(len(SHARDS))]
    local = run_cli([extra[0], nan_data / "x.npy", *extra[1:], "-o", tmp_path / "a.npy",
                     "--chunk-mb", CHUNK])  # fmt: skip
    remote = run_cli([extra[0], *inputs, *extra[1:], "-o", tmp_path / "b.npy", "--chunk-mb",
                      CHUNK, "--engine", "dask", "--scheduler", address])  # fmt: skip
    assert local.exit_code == remote.exit_code == 2
    assert local.stderr.strip().splitlines()[-1] == remote.stderr.strip().splitlines()[-1]
    assert "17" in local.stderr and not (tmp_path / "b.npy").exists()


def test_unreachable_scheduler_is_one_line(run_cli, tmp_path, data, monkeypatch):
    monkeypatch.setattr(dask_session, "CONNECT_TIMEOUT", "1s")
    result = run_cli(
        ["reduce", data["dir"] / "x.npy", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9",
         "-o", tmp_path / "o.npy"]
    )  # fmt: skip
    assert result.exit_code == 2
    assert "Error: cannot reach the dask scheduler at tcp://127.0.0.1:9" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the padding warning, one error


# ----------------------------------------------------------------------------- local engines


def test_threaded_scheduler_without_cluster(run_cli, tmp_path, data):
    d = data["dir"]
    want = run(run_cli, ["reduce", d / "x.npy", "-s", "last", "--mask", d / "mask.npy"],
               tmp_path / "a.npy")  # fmt: skip
    got = run(
        run_cli,
        ["reduce", *INPUTS["h5-shards"](d), "-s", "last", "--mask", d / "mask.npy",
         "--engine", "dask"],
        tmp_path / "b.npy",
    )  # fmt: skip
    assert_same(want, got)


def test_engine_choice_refuses_two_places() -> None:
    from lstmshape import engines

    with pytest.raises(InputError, match="not both"):
        engines.check_choice("dask", "tcp://x:1", 2)
