"""Keras 3 `.keras` archives, read without Keras: a model saved by real Keras (two Dense
layers), projections equal to its layers' outputs, and damaged or hostile archives."""

from __future__ import annotations

import io as bytes_io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import assert_bitwise

from lstmshape import io
from lstmshape.errors import InputError
from lstmshape.refs import ArrayRef

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = FIXTURES / "keras_two_dense.keras"
EXPECTED = np.load(FIXTURES / "formats_expected.npz")
CLOSE = {"rtol": 1e-5, "atol": 1e-6}


def test_layers_are_listed_by_name_with_their_weight_shapes() -> None:
    listed = {info.ref.key: info for info in io.list_arrays(MODEL)}
    assert {k: v.shape for k, v in listed.items()} == {
        "encoder_proj/kernel": (5, 7),
        "encoder_proj/bias": (7,),
        "head/kernel": (7, 3),
    }
    assert dict(listed["head/kernel"].attrs) == {
        "path": "layers/dense_1/vars/0",
        "layer": "head",
        "class": "Dense",
    }


@pytest.mark.parametrize(
    ("key", "want"),
    [
        ("encoder_proj", "keras_kernel_0"),
        ("encoder_proj/kernel", "keras_kernel_0"),
        ("encoder_proj/bias", "keras_bias_0"),
        ("head", "keras_kernel_1"),
        ("layers/dense_1/vars/0", "keras_kernel_1"),
        ("/layers/dense/vars/1", "keras_bias_0"),
    ],
)
def test_keys_name_layers_weights_or_raw_paths(key: str, want: str) -> None:
    assert_bitwise(io.load(f"{MODEL}:{key}"), EXPECTED[want])


def test_projection_equals_the_keras_layers_outputs(run_cli, tmp_path: Path) -> None:
    x = f"{FIXTURES / 'formats_expected.npz'}:x"
    hidden = tmp_path / "hidden.npy"
    args = ["project", x, "--weights", f"{MODEL}:encoder_proj", "--activation", "tanh"]
    assert run_cli([*args, "-o", hidden]).exit_code == 0  # the bias comes along
    np.testing.assert_allclose(np.load(hidden), EXPECTED["keras_hidden"], **CLOSE)
    out = tmp_path / "out.npy"
    assert run_cli(["project", hidden, "--weights", f"{MODEL}:head", "-o", out]).exit_code == 0
    np.testing.assert_allclose(np.load(out), EXPECTED["keras_output"], **CLOSE)


def test_an_explicit_bias_or_a_raw_path_takes_no_layer_bias(run_cli, tmp_path: Path) -> None:
    x = f"{FIXTURES / 'formats_expected.npz'}:x"
    kernel, bias = EXPECTED["keras_kernel_0"], EXPECTED["keras_bias_0"]
    np.save(tmp_path / "zeros.npy", np.zeros(7, np.float32))
    for weights, extra, want in [
        (f"{MODEL}:encoder_proj", ["--bias", tmp_path / "zeros.npy"], EXPECTED["x"] @ kernel),
        (f"{MODEL}:layers/dense/vars/0", [], EXPECTED["x"] @ kernel),
        (f"{MODEL}:encoder_proj/kernel", [], EXPECTED["x"] @ kernel + bias),
    ]:
        result = run_cli(["project", x, "--weights", weights, *extra, "-o", "-"])
        assert result.exit_code == 0, result.stderr
        got = np.load(bytes_io.BytesIO(result.stdout_bytes))
        np.testing.assert_allclose(got, want, **CLOSE)
    assert io.paired_bias(ArrayRef(str(MODEL), "head")) is None  # use_bias=False


def _archive(path: Path, config: object, weights: dict[str, np.ndarray], **zip_kw) -> Path:
    buf = bytes_io.BytesIO()
    with h5py.File(buf, "w") as f:
        for name, value in weights.items():
            f[name] = value
    with zipfile.ZipFile(path, "w", **zip_kw) as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", "{}")
        zf.writestr("model.weights.h5", buf.getvalue())
    return path


def _sequential(*layers: tuple[str, dict]) -> dict:
    specs = [{"class_name": cls, "config": cfg} for cls, cfg in layers]
    return {"class_name": "Sequential", "config": {"name": "m", "layers": specs}}


def test_a_non_dense_layer_is_named_by_its_weights(tmp_path: Path) -> None:
    config = _sequential(
        ("LSTM", {"name": "rnn", "units": 2}), ("Dense", {"name": "d", "units": 2})
    )
    weights = {
        "layers/lstm/cell/vars/0": np.ones((3, 8), np.float32),
        "layers/dense/vars/0": np.ones((2, 2), np.float32),
        "layers/dense/vars/1": np.zeros(2, np.float32),
    }
    path = _archive(tmp_path / "m.keras", config, weights)
    with pytest.raises(InputError, match="is a LSTM layer, not a Dense one; name one of its"):
        io.load(f"{path}:rnn")
    assert io.load(f"{path}:rnn/cell/vars/0").shape == (3, 8)
    assert io.paired_bias(ArrayRef(str(path), "d")) == ArrayRef(str(path), "d/bias")


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path) -> None:
    config = _sequential(("Dense", {"name": "a", "units": 4}), ("Dense", {"name": "b", "units": 2}))
    swapped = {"layers/dense/vars/0": np.ones((3, 2)), "layers/dense_1/vars/0": np.ones((2, 4))}
    path = _archive(tmp_path / "m.keras", config, swapped)
    with pytest.raises(InputError, match="does not follow the layer order of its config"):
        io.load(f"{path}:a")


ARCHIVES = {
    "not a zip": (b"not a zip at all", "is not a Keras archive (a zip file)"),
    "no config": ({"model.weights.h5": b""}, "holds no config.json"),
    "bad config": ({"config.json": b"{", "model.weights.h5": b""}, "cannot read"),
    "no weights": ({"config.json": b"{}"}, "holds no model.weights.h5"),
    "not hdf5": ({"config.json": b"{}", "model.weights.h5": b"junk" * 100}, "cannot read"),
}


@pytest.mark.parametrize("name", sorted(ARCHIVES))
def test_damaged_archives_are_one_line_errors(run_cli, tmp_path: Path, name: str) -> None:
    content, expected = ARCHIVES[name]
    path = tmp_path / "m.keras"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with zipfile.ZipFile(path, "w") as zf:
            for member, data in content.items():
                zf.writestr(member, data)
    result = run_cli(["inspect", path])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and expected in result.stderr


def test_zip_bombs_are_refused_before_inflating(tmp_path: Path) -> None:
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", "{}")
        with zf.open("model.weights.h5", "w", force_zip64=True) as member:
            zeros = bytes(2**24)
            for _ in range(2**4 * 2):  # 512 MiB of zeros, about 0.5 MiB deflated
                member.write(zeros)
    with pytest.raises(InputError, match=r"would inflate from .* refused \(a zip bomb"):
        io.list_arrays(path)
    big_config = tmp_path / "config.keras"
    with zipfile.ZipFile(big_config, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("config.json", "w", force_zip64=True) as member:
            for _ in range(5):
                member.write(b" " * 2**24)
    with pytest.raises(InputError, match=r"config\.json says it holds 83886080 bytes"):
        io.list_arrays(big_config)


def test_keras_archives_are_read_only_and_pickles_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot write o.keras: .keras archives are read only"):
        io.check_output("o.keras")
    for suffix in (".pt", ".pth", ".ckpt"):
        (tmp_path / f"m{suffix}").write_bytes(b"PK\x03\x04 a torch.save archive")
        with pytest.raises(InputError, match="PyTorch pickle, which lstmshape never loads"):
            io.load(f"{tmp_path / f'm{suffix}'}:fc.weight")
