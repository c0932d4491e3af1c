"""The padding audit on every run (issue #11): what the data contradicts is said in one line,
`-q` keeps it, `--json` carries it, `--strict` refuses; `--lengths auto` takes the mask from
the data; no warning where the result is right."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import SAMPLES, lstmshape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FRAMEWORK_BATCHES = sorted(p.name for p in FIXTURES.glob("padding_*.npz"))
STRATEGIES = ["last", "first", "mean", "max", "min", "sum"]


def _warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]


def _batch(lengths: list[int], t: int, f: int = 3, *, side: str = "post", value: float = 0.0):
    rng = np.random.default_rng(len(lengths) * 31 + t)
    x = rng.uniform(1.0, 2.0, (len(lengths), t, f)).astype(np.float32)
    for i, length in enumerate(lengths):
        if side == "post":
            x[i, length:] = value
        else:
            x[i, : t - length] = value
    return x


@pytest.fixture
def post(tmp_path: Path) -> dict[str, Path]:
    lengths = [3, 7, 5, 8, 2, 6, 8, 4]
    np.save(tmp_path / "x.npy", _batch(lengths, 8))
    np.save(tmp_path / "pre.npy", _batch(lengths, 8, side="pre"))
    np.save(tmp_path / "lengths.npy", np.array(lengths))
    np.save(tmp_path / "nan.npy", _batch(lengths, 8, value=np.nan))
    return {name: tmp_path / f"{name}.npy" for name in ("x", "pre", "lengths", "nan")}


# --- every case of the "Why" ------------------------------------------------------


def test_wrong_pad_side_for_last_warns(run_cli, post, tmp_path):
    args = ["reduce", post["x"], "-s", "last", "--lengths", post["lengths"], "--pad-side", "pre"]
    result = run_cli([*args, "-o", tmp_path / "o.npy"])
    assert result.exit_code == 0
    assert _warnings(result) == [
        "Warning: lengths say pre-padded, but 6 of 8 samples are padded at the end; did you "
        "mean --pad-side post?"
    ]


def test_forgotten_pad_side_pre_for_mean_warns(run_cli, post, tmp_path):
    result = run_cli(["reduce", post["pre"], "-s", "mean", "--lengths", post["lengths"],
                      "-o", tmp_path / "o.npy"])  # fmt: skip
    assert "did you mean --pad-side pre?" in result.stderr and result.exit_code == 0


def test_mean_without_a_mask_on_visible_padding_warns(run_cli, post, tmp_path):
    result = run_cli(["reduce", post["x"], "-s", "mean", "-o", tmp_path / "o.npy"])
    (warning,) = _warnings(result)
    assert "no mask given" in warning and "--mask-value 0.0" in warning


def test_nan_padding_without_a_mask_warns(run_cli, post, tmp_path):
    result = run_cli(["reduce", post["nan"], "-s", "mean", "-o", tmp_path / "o.npy"])
    (warning,) = _warnings(result)
    assert "--mask-value nan" in warning


def test_lengths_for_the_other_axis_name_the_layout(run_cli, tmp_path):
    np.save(tmp_path / "x.npy", _batch([4] * 6, 10))  # (6, 10, 3)
    np.save(tmp_path / "l.npy", np.full(10, 4))
    result = run_cli(["reduce", tmp_path / "x.npy", "--lengths", tmp_path / "l.npy",
                      "-o", tmp_path / "o.npy"])  # fmt: skip
    assert result.exit_code == 2 and "--layout tnf" in result.stderr


def test_quiet_keeps_warnings_and_json_carries_them(post, tmp_path):
    args = ["reduce", str(post["x"]), "-s", "mean", "-o", str(tmp_path / "o.npy")]
    quiet = subprocess.run(lstmshape(*args, "-q"), capture_output=True, text=True, check=True)
    assert quiet.stderr.startswith("Warning: no mask given")
    as_json = subprocess.run(
        lstmshape(*args, "--json", "-q", "--force"), capture_output=True, text=True, check=True
    )
    (warning,) = json.loads(as_json.stdout)["warnings"]
    assert warning["code"] == "no-mask" and warning["message"].startswith("no mask given")


def test_strict_refuses_and_writes_nothing(post, tmp_path):
    out = tmp_path / "o.npy"
    args = ["reduce", str(post["x"]), "-s", "mean", "-o", str(out), "--strict"]
    done = subprocess.run(lstmshape(*args), capture_output=True, text=True)
    assert done.returncode == 2 and not out.exists()
    assert done.stderr.strip().splitlines()[-1].endswith("(--strict)")
    piped = subprocess.run(lstmshape("reduce", str(post["x"]), "-s", "mean", "--strict", "-o", "-"),
                           capture_output=True)  # fmt: skip
    assert piped.returncode == 2 and piped.stdout == b""


def test_repeat_padding_is_no_false_alarm_for_last_but_warns_for_mean(run_cli, tmp_path):
    repeat = str(SAMPLES / "post_repeat.npy")  # a masked Keras LSTM carries its output on
    last = run_cli(["reduce", repeat, "-s", "last", "-o", tmp_path / "a.npy"])
    assert last.exit_code == 0 and _warnings(last) == []
    mean = run_cli(["reduce", repeat, "-s", "mean", "-o", tmp_path / "b.npy"])
    assert "repeat" in " ".join(_warnings(mean))


def test_row_gather_audits_its_first_samples(run_cli, post, tmp_path, monkeypatch):
    """last with lengths reads single rows; its audit reads the first samples once more."""
    from lstmshape import audit, gather

    seen = []
    monkeypatch.setattr(audit, "SAMPLE_BYTES", 3 * 8 * 3 * 4)  # the first 3 samples
    real = gather.gather_blocks
    monkeypatch.setattr(gather, "gather_blocks", lambda *a, **k: seen.append(1) or real(*a, **k))
    args = ["reduce", post["x"], "-s", "last", "--lengths", post["lengths"], "--pad-side", "pre"]
    result = run_cli([*args, "-o", tmp_path / "o.npy"])
    assert seen and _warnings(result) == [
        "Warning: lengths say pre-padded, but 3 of 3 samples are padded at the end; did you "
        "mean --pad-side post?"
    ]


# --- --lengths auto and the real frameworks' outputs ---------------------------------------


def _fixture(name: str, tmp_path: Path) -> tuple[Path, Path, dict]:
    with np.load(FIXTURES / name, allow_pickle=False) as z:
        truth = json.loads(str(z["truth"]))
        np.save(tmp_path / "x.npy", z["output"])
        np.save(tmp_path / "lengths.npy", z["lengths"])
    return tmp_path / "x.npy", tmp_path / "lengths.npy", truth


@pytest.mark.parametrize("name", FRAMEWORK_BATCHES)
def test_framework_outputs_auto_equals_true_lengths_and_never_warn(run_cli, tmp_path, name):
    x, lengths, truth = _fixture(name, tmp_path)
    side = truth["pad_side"]
    inspected = run_cli(["inspect", x, "--lengths-out", tmp_path / "found.npy", "-q"])
    assert inspected.exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "found.npy"), np.load(lengths))
    for strategy in STRATEGIES:
        for how, mask in (("true", ["--lengths", lengths, "--pad-side", side]),
                          ("auto", ["--lengths", "auto"])):  # fmt: skip
            empty = ["--empty", "zero"]
            result = run_cli(["reduce", x, "-s", strategy, *mask, *empty,
                              "-o", tmp_path / f"{how}.npy", "--force"])  # fmt: skip
            assert result.exit_code == 0, result.stderr
            assert _warnings(result) == [], (name, strategy, result.stderr)
        np.testing.assert_array_equal(
            np.load(tmp_path / "auto.npy"), np.load(tmp_path / "true.npy")
        )


def test_samples_correctly_masked_never_warn(run_cli, tmp_path):
    manifest = json.loads((SAMPLES / "manifest.json").read_text())
    runs = 0
    for entry in manifest["arrays"].values():
        if not entry.get("lengths") or len(entry["shape"]) != 3:
            continue
        source = f"{SAMPLES / entry['file']}" + (f":{entry['key']}" if entry["key"] else "")
        lengths = f"{SAMPLES / entry['lengths']['file']}" + (
            f":{entry['lengths']['key']}" if entry["lengths"]["key"] else ""
        )
        layout, side = entry.get("layout", "ntf"), entry.get("pad_side", "post")
        bidirectional = ["--bidirectional"] if entry.get("bidirectional") else []
        for strategy in STRATEGIES:
            result = run_cli(["reduce", source, "-s", strategy, "--layout", layout, *bidirectional,
                              "--lengths", lengths, "--pad-side", side,
                              "--empty", "zero", "-o", tmp_path / "o.npy", "--force"])  # fmt: skip
            assert result.exit_code == 0 and _warnings(result) == [], (source, result.stderr)
            runs += 1
    assert runs


def test_auto_without_padding_is_a_clear_error(run_cli, tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((4, 6, 3)))
    result = run_cli(["reduce", tmp_path / "x.npy", "--lengths", "auto", "-o", tmp_path / "o.npy"])
    assert result.exit_code == 2 and "--lengths auto" in result.stderr


# --- property: random padded batches --------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lengths=st.lists(st.integers(0, 9), min_size=1, max_size=12),
    side=st.sampled_from(["post", "pre"]),
    value=st.sampled_from([0.0, -1.0, np.nan]),
    layout=st.sampled_from(["ntf", "tnf"]),
    strategy=st.sampled_from(STRATEGIES),
)
def test_auto_recovers_lengths_and_true_mask_never_warns(
    run_cli, tmp_path_factory, lengths, side, value, layout, strategy
):
    if max(lengths) == 0 or sum(1 for n in lengths if n < 9) == 0:
        return  # nothing padded: auto has nothing to detect
    d = tmp_path_factory.mktemp("auto")
    x = _batch(lengths, 9, side=side, value=value)
    stored = np.ascontiguousarray(x.transpose(1, 0, 2)) if layout == "tnf" else x
    np.save(d / "x.npy", stored)
    np.save(d / "lengths.npy", np.array(lengths))
    common = ["-s", strategy, "--layout", layout, "--empty", "zero", "--force"]
    true = run_cli(["reduce", d / "x.npy", *common, "--lengths", d / "lengths.npy",
                    "--pad-side", side, "-o", d / "true.npy"])  # fmt: skip
    assert true.exit_code == 0 and _warnings(true) == [], true.stderr
    auto = run_cli(["reduce", d / "x.npy", *common, "--lengths", "auto", "-o", d / "auto.npy"])
    assert auto.exit_code == 0, auto.stderr
    np.testing.assert_array_equal(np.load(d / "auto.npy"), np.load(d / "true.npy"))


def test_the_audit_keeps_a_bounded_summary(monkeypatch):
    """A run of any N summarises at most `audit.MAX_SAMPLES` samples (its first ones)."""
    from lstmshape import audit
    from lstmshape.validity import Validity

    monkeypatch.setattr(audit, "MAX_SAMPLES", 5)
    accumulator = audit.PaddingAudit(audit.AuditSpec("lengths", strategy="mean"))
    x = _batch([3, 7, 5, 8], 8)
    for _ in range(3):
        accumulator.add(x, Validity.from_lengths(np.array([3, 7, 5, 8]), 8))
    assert sum(part.n for part in accumulator.parts) == 5
    assert accumulator.findings(None) == []


def test_past_its_first_samples_the_audit_takes_every_few_blocks(monkeypatch):
    from lstmshape import audit
    from lstmshape.validity import Validity

    monkeypatch.setattr(audit, "DENSE_SAMPLES", 8)
    monkeypatch.setattr(audit, "SPARSE_EVERY", 3)
    accumulator = audit.PaddingAudit(audit.AuditSpec(None, strategy="mean"))
    x = _batch([3, 7, 5, 8], 8)
    for _ in range(9):  # blocks 1, 2 (dense), then 3, 6, 9
        accumulator.add(x, Validity.all_valid(4, 8))
    assert len(accumulator.parts) == 5
