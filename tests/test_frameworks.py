"""lstmshape against outputs made once by PyTorch, Keras and einops (see tests/fixtures/).

The fixtures were written by tests/fixtures/make_fixtures.py; these tests need neither
torch nor keras.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import load_npy_bytes

import lstmshape
from lstmshape.errors import InputError
from lstmshape.strategies.reshape import rearrange_pattern, reshape_preset

FIXTURES = Path(__file__).parent / "fixtures"
CLOSE = {"rtol": 1e-5, "atol": 1e-6}


def _load(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.mark.parametrize("name", ["torch_packed_bilstm.npz", "torch_packed_bigru.npz"])
@pytest.mark.parametrize("source", ["lengths", "mask", "mask_value"])
def test_bidirectional_last_equals_packed_h_n(name, source):
    ref = _load(name)
    masks = {
        "lengths": {"lengths": ref["lengths"]},
        "mask": {"mask": ref["mask"]},
        "mask_value": {"mask_value": 0.0},
    }[source]
    ntf = lstmshape.reduce(ref["output_ntf"], "last", bidirectional=True, **masks)
    np.testing.assert_array_equal(ntf, ref["h_n_last_layer_concat"])
    if source != "mask_value":
        tnf_masks = {"mask": ref["mask"].T} if source == "mask" else masks
        tnf = lstmshape.reduce(
            ref["output_tnf"], "last", bidirectional=True, layout="tnf", **tnf_masks
        )
        np.testing.assert_array_equal(tnf, ref["h_n_last_layer_concat"])


def test_unidirectional_last_is_not_h_n_for_bidirectional_output():
    ref = _load("torch_packed_bilstm.npz")
    plain = lstmshape.reduce(ref["output_ntf"], "last", lengths=ref["lengths"])
    same = np.all(plain == ref["h_n_last_layer_concat"], axis=1)
    assert same.tolist() == [length == 1 for length in ref["lengths"]]


def test_cli_reduce_bidirectional_reads_npz_members(run_cli):
    path = FIXTURES / "torch_packed_bilstm.npz"
    result = run_cli(
        [
            "reduce",
            f"{path}:output_tnf",
            "--layout",
            "tnf",
            "-s",
            "last",
            "--bidirectional",
            "--lengths",
            f"{path}:lengths",
        ]
    )
    assert result.exit_code == 0, result.stderr
    out = load_npy_bytes(result.stdout_bytes)
    np.testing.assert_array_equal(out, _load("torch_packed_bilstm.npz")["h_n_last_layer_concat"])


def test_keras_global_average_pooling_with_mask():
    ref = _load("keras_global_avg_masked.npz")
    np.testing.assert_allclose(
        lstmshape.pool(ref["x"], "avg", mask=ref["mask"]), ref["gap_mask"], **CLOSE
    )
    np.testing.assert_allclose(
        lstmshape.reduce(ref["x"], "mean", mask=ref["mask"]), ref["gap_mask"], **CLOSE
    )
    np.testing.assert_allclose(lstmshape.pool(ref["x"], "avg"), ref["gap_nomask"], **CLOSE)
    np.testing.assert_array_equal(lstmshape.pool(ref["x"], "max"), ref["gmp_nomask"])


def test_masked_max_never_lets_padding_win():
    ref = _load("keras_global_avg_masked.npz")
    np.testing.assert_array_equal(
        lstmshape.pool(ref["x"], "max", mask=ref["mask"]), ref["max_valid_only_numpy"]
    )
    masked = lstmshape.pool(ref["masking_x"], "max", mask_value=0.0)
    np.testing.assert_array_equal(masked, ref["masking_max_valid_only_numpy"])
    assert not np.array_equal(masked, ref["masking_gmp"]), "Keras's mask-dropping max differs"


def test_keras_masking_layer_average():
    ref = _load("keras_global_avg_masked.npz")
    np.testing.assert_array_equal(
        lstmshape.make_mask(ref["masking_x"], mask_value=0.0), ref["masking_mask"]
    )
    for masks in ({"mask_value": 0.0}, {"lengths": ref["masking_lengths"]}):
        np.testing.assert_allclose(
            lstmshape.pool(ref["masking_x"], "avg", **masks), ref["masking_gap"], **CLOSE
        )


def test_all_padding_sample_is_nan_like_keras_with_empty_nan():
    ref = _load("keras_global_avg_masked.npz")
    out = lstmshape.reduce(ref["empty_x"], "mean", mask=ref["empty_mask"], empty="nan")
    np.testing.assert_allclose(out, ref["empty_gap"], equal_nan=True, **CLOSE)
    with pytest.raises(InputError, match="1 sample"):
        lstmshape.reduce(ref["empty_x"], "mean", mask=ref["empty_mask"])


def _pool_cases() -> list[dict]:
    return json.loads(str(_load("keras_pooling_windows.npz")["cases"]))


@pytest.mark.parametrize("case", _pool_cases(), ids=lambda case: case["name"])
@pytest.mark.parametrize("op", ["avg", "max"])
def test_keras_pooling_windows(case, op):
    ref = _load("keras_pooling_windows.npz")
    out = lstmshape.pool(
        ref[case["x"]],
        op,
        pool_size=case["pool_size"],
        strides=case["strides"],
        padding=case["padding"],
    )
    assert out.shape[1] == case["T_out"]
    np.testing.assert_allclose(out, ref[case[op]], **CLOSE)


def test_keras_dense_from_weights_file(run_cli, tmp_path):
    ref = _load("keras_dense.npz")
    weights_file = FIXTURES / "keras_dense.weights.h5"
    x_path = tmp_path / "x.npy"
    np.save(x_path, ref["x"])
    result = run_cli(
        [
            "project",
            x_path,
            "--weights",
            f"{weights_file}:{ref['h5_kernel_path']}",
            "--bias",
            f"{weights_file}:{ref['h5_bias_path']}",
            "--activation",
            "tanh",
        ]
    )
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(load_npy_bytes(result.stdout_bytes), ref["output"], **CLOSE)
    linear = lstmshape.project(ref["x"], ref["kernel"], ref["bias"])
    np.testing.assert_allclose(linear, ref["output_linear"], **CLOSE)


def test_torch_linear_layout():
    ref = _load("torch_linear.npz")
    out = lstmshape.project(ref["x"], ref["weight"], ref["bias"], weights_layout="torch")
    np.testing.assert_allclose(out, ref["output"], **CLOSE)


def test_einops_patterns_and_presets():
    ref = _load("einops_patterns.npz")
    names = [key.removeprefix("pattern__") for key in ref if key.startswith("pattern__")]
    for name in names:
        source = ref["out__split_directions"] if name == "merge_directions" else ref["x"]
        sizes = json.loads(str(ref[f"axes__{name}"]))
        out = rearrange_pattern(source, str(ref[f"pattern__{name}"]), sizes)
        np.testing.assert_array_equal(out, ref[f"out__{name}"])
        preset = name.replace("_", "-")
        np.testing.assert_array_equal(reshape_preset(source, preset), ref[f"out__{name}"])


def test_cli_pool_mask_equals_keras_global_average(run_cli):
    path = FIXTURES / "keras_global_avg_masked.npz"
    result = run_cli(["pool", f"{path}:x", "--mask", f"{path}:mask"])
    assert result.exit_code == 0, result.stderr
    out = load_npy_bytes(result.stdout_bytes)
    np.testing.assert_allclose(out, _load("keras_global_avg_masked.npz")["gap_mask"], **CLOSE)
