"""`lstmshape diff`: the comparison against an element-by-element loop, and the command.

The reference walks every sample, step and feature with `numpy.isclose` on one pair of
values at a time, in the comparison dtype (the wider of the two, at least float32).
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmshape import compare, diffparts, diffstats
from lstmshape.compare import Tolerance, diff, diff_sources, mask_spec
from lstmshape.errors import InputError

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

# -- the reference ---------------------------------------------------------------------------


def reference(a, b, valid, *, rtol=1e-5, atol=1e-8, equal_nan=False, worst=5):
    """Every statistic of the report, one element at a time. a, b: (N, T, F) batch-first."""
    ct = np.result_type(a.dtype, b.dtype, np.float32)
    n, t, f = a.shape
    out = dict.fromkeys(
        ["samples", "steps", "elements", "d_samples", "d_steps", "d_elements", "nans"], 0
    )
    max_abs = max_rel = None
    listed = []  # (-key, sample, step, feature, a, b)
    peaks = []  # per compared sample: its largest |a - b|, "nan" when a NaN met a number
    with np.errstate(all="ignore"):
        for i in range(n):
            sample_differs, sample_peak, sample_nan, compared = False, 0.0, False, False
            for j in range(t):
                if not valid[i, j] or f == 0:
                    continue
                compared = True
                out["steps"] += 1
                step_differs = False
                for k in range(f):
                    x, y = ct.type(a[i, j, k]), ct.type(b[i, j, k])
                    out["elements"] += 1
                    close = bool(np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=equal_nan))
                    same = x == y or (equal_nan and np.isnan(x) and np.isnan(y))
                    if not close:
                        out["d_elements"] += 1
                        step_differs = True
                    if not same and (np.isnan(x) or np.isnan(y)):
                        out["nans"] += 1
                        sample_nan = True
                        key = math.inf
                    else:
                        d = 0.0 if same else float(abs(x - y))
                        rel = 0.0 if same else (math.inf if math.isinf(d) else float(d / abs(y)))
                        max_abs = d if max_abs is None else max(max_abs, d)
                        max_rel = rel if max_rel is None else max(max_rel, rel)
                        sample_peak = max(sample_peak, d)
                        key = d
                    if key > 0:
                        listed.append((-key, i, j, k, float(a[i, j, k]), float(b[i, j, k])))
                if step_differs:
                    out["d_steps"] += 1
                    sample_differs = True
            if compared:
                out["samples"] += 1
                out["d_samples"] += sample_differs
                peaks.append("nan" if sample_nan else sample_peak)
    out["max_abs"], out["max_rel"] = max_abs, max_rel
    out["worst"] = sorted(listed)[:worst]
    out["peaks"] = peaks
    return out


def report_facts(report):
    facts = {
        "samples": report.samples,
        "steps": report.steps,
        "elements": report.elements,
        "d_samples": report.differing_samples,
        "d_steps": report.differing_steps,
        "d_elements": report.differing_elements,
        "nans": report.nan_mismatches,
        "max_abs": report.max_abs_diff,
        "max_rel": report.max_rel_diff,
    }
    facts["worst"] = [
        (w.sample, w.step, w.feature, w.a, w.b, w.abs_diff, w.rel_diff) for w in report.worst
    ]
    return facts


def histogram_of(peaks):
    """The report's histogram rows, computed from the per-sample peaks by the labels' words."""
    counts = {}
    for peak in peaks:
        if peak == "nan":
            label = "nan"
        elif peak == 0:
            label = "0"
        elif math.isinf(peak):
            label = "inf"
        elif peak > 1e12:
            label = "> 1e12"
        elif peak <= 1e-12:
            label = "(0, 1e-12]"
        else:
            k = -12
            while not peak <= 10.0**k:
                k += 1
            label = f"(1e{k - 1}, 1e{k}]"
        counts[label] = counts.get(label, 0) + 1
    return counts


def assert_matches(report, expected, a, b):
    got = report_facts(report)
    for name in ("samples", "steps", "elements", "d_samples", "d_steps", "d_elements", "nans"):
        assert got[name] == expected[name], name
    assert got["max_abs"] == expected["max_abs"]
    assert got["max_rel"] == expected["max_rel"]
    assert report.equal == (expected["d_elements"] == 0)
    listed = [(i, j, k) for _, i, j, k, _, _ in expected["worst"]]
    assert [w[:3] for w in got["worst"]] == listed
    for w, e in zip(got["worst"], expected["worst"], strict=True):
        assert np.array_equal([w[3], w[4]], [e[4], e[5]], equal_nan=True)
        assert w[5] == -e[0] or (math.isnan(w[5]) and e[0] == -math.inf)
    shown = {label: count for label, count in report.histogram if count}
    assert shown == histogram_of(expected["peaks"])


# -- data ------------------------------------------------------------------------------------

FLOATS = ["float16", "float32", "float64"]
SPECIALS = [0.0, -0.0, 1.0, np.nan, np.inf, -np.inf, 1e-9, 65504.0]


@st.composite
def pairs(draw):
    """A, B batch-first (N, T, F) with every kind of pair: equal, close, far, NaN, inf."""
    n, t, f = draw(st.integers(0, 5)), draw(st.integers(0, 6)), draw(st.integers(0, 4))
    dtype_a, dtype_b = draw(st.sampled_from(FLOATS)), draw(st.sampled_from(FLOATS))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, t, f))
    kind = rng.integers(0, 6, size=a.shape)
    b = a.copy()
    b[kind == 1] *= 1 + rng.uniform(-1e-6, 1e-6, size=int((kind == 1).sum()))  # close
    b[kind == 2] += rng.standard_normal(int((kind == 2).sum()))  # far
    b[kind == 3] += 1e-5 * rng.standard_normal(int((kind == 3).sum()))  # near the edge
    special = rng.choice(SPECIALS, size=a.shape)
    a = np.where(kind == 4, special, a)
    b = np.where((kind == 4) & (rng.random(a.shape) < 0.5), special, b)
    b = np.where(kind == 5, rng.choice(SPECIALS, size=a.shape), b)
    with np.errstate(over="ignore"):
        return a.astype(dtype_a), b.astype(dtype_b)


@st.composite
def masks(draw, n, t):
    """(kind, validity as (N, T) bool, keyword arguments for `diff`)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["none", "holes", "post", "pre"]))
    if kind == "none":
        return np.ones((n, t), bool), {}
    if kind == "holes":
        valid = rng.random((n, t)) < 0.6
        return valid, {"mask": valid}
    lengths = rng.integers(0, t + 1, size=n)
    steps = np.arange(t)[None, :]
    valid = steps < lengths[:, None] if kind == "post" else steps >= t - lengths[:, None]
    return valid, {"lengths": lengths, "pad_side": kind}


def with_junk_padding(b, valid, seed):
    """B with NaN, infinities or far values in half of its padded elements (never compared)."""
    rng = np.random.default_rng(seed)
    junk = rng.choice([np.nan, np.inf, -np.inf, 1e3], size=b.shape)
    with np.errstate(over="ignore"):
        return np.where(~valid[..., None] & (rng.random(b.shape) < 0.5), junk, b).astype(b.dtype)


@contextmanager
def small_pieces(piece: int, part: int):
    """Pieces of a few elements and blocks split among threads: every path on tiny data."""
    with (
        mock.patch.object(diffstats, "_PIECE_ELEMENTS", piece),
        mock.patch.object(compare, "_MIN_PART_ELEMENTS", part),
        mock.patch.object(compare, "_threads", lambda: 3),
    ):
        yield


class Blocks:
    """An in-memory array read in blocks (copies), as a file source would be."""

    def __init__(self, array):
        self.array, self.shape, self.dtype = array, array.shape, array.dtype

    def read(self, start, stop, axis=0):
        return self.array[(slice(None),) * axis + (slice(start, stop),)].copy()


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


# -- against the reference -------------------------------------------------------------------


@pytest.mark.parametrize("pieces", [(1 << 16, 1 << 18), (3, 1), (1, 1)], ids=str)
@SETTINGS
@given(data=st.data())
def test_diff_matches_an_element_loop(pieces, data):
    a, b = data.draw(pairs())
    valid, mask_kwargs = data.draw(masks(a.shape[0], a.shape[1]))
    b = with_junk_padding(b, valid, data.draw(st.integers(0, 2**32 - 1)))
    tol = data.draw(st.sampled_from([(1e-5, 1e-8, False), (1e-3, 1e-3, True), (0.0, 0.0, False)]))
    worst = data.draw(st.integers(0, 7))
    layout_a, layout_b = (data.draw(st.sampled_from(["ntf", "tnf"])) for _ in range(2))
    stored_a = a.transpose(1, 0, 2) if layout_a == "tnf" else a
    stored_b = b.transpose(1, 0, 2) if layout_b == "tnf" else b
    if layout_a == "tnf" and "mask" in mask_kwargs:
        mask_kwargs = {"mask": mask_kwargs["mask"].T}
    expected = reference(a, b, valid, rtol=tol[0], atol=tol[1], equal_nan=tol[2], worst=worst)
    with small_pieces(*pieces):
        report = diff(
            stored_a,
            stored_b,
            layout=layout_a,
            layout_b=layout_b,
            rtol=tol[0],
            atol=tol[1],
            equal_nan=tol[2],
            worst=worst,
            **mask_kwargs,
        )
    assert_matches(report, expected, a, b)


@SETTINGS
@given(data=st.data(), chunk=st.integers(1, 400))
def test_blocks_of_different_sizes_pair_up(data, chunk):
    """A and B read in blocks of different sizes (other dtypes): the same statistics."""
    a, b = data.draw(pairs())
    valid, mask_kwargs = data.draw(masks(a.shape[0], a.shape[1]))
    expected = reference(a, b, valid, worst=3)
    spec = mask_spec(a.shape, "ntf", **mask_kwargs)
    with small_pieces(5, 1):
        report = diff_sources(Blocks(a), Blocks(b), spec=spec, worst=3, chunk_bytes=chunk)
    assert_matches(report, expected, a, b)


@pytest.mark.parametrize("value", [0.0, np.nan])
def test_mask_value_takes_the_padding_from_a(value):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 6, 3)).astype(np.float32)
    a[1, 4:] = value
    a[3, :2] = value
    b = a.copy()
    b[1, 4:] = 7.0  # B's padding differs: not compared
    valid = ~np.all((a == value) | (np.isnan(a) & np.isnan(value)), axis=2)
    report = diff(a, b, mask_value=value)
    assert_matches(report, reference(a, b, valid), a, b)
    assert report.equal and report.steps == 24 - 4
    assert not diff(a, b).equal


def test_include_padding_compares_every_step():
    a = np.zeros((2, 3, 1), np.float32)
    b = a.copy()
    b[1, 2] = 1
    assert diff(a, b, lengths=[3, 2]).equal
    assert not diff(a, b, include_padding=True).equal
    with pytest.raises(InputError, match="include-padding"):
        diff(a, b, lengths=[3, 2], include_padding=True)


@pytest.mark.parametrize(
    "shape", [(5, 3), (5,), (), (2, 3, 4, 5), (0, 3), (3, 0)], ids=lambda s: str(s)
)
def test_any_equal_shapes_compare_every_element(shape):
    rng = np.random.default_rng(2)
    a = np.asarray(rng.standard_normal(shape))
    b = a.copy()
    flat = b.reshape(-1)
    if flat.size:
        flat[-1] += 1.0
    report = diff(a, b, worst=2)
    assert report.elements == a.size
    assert report.differing_elements == (1 if a.size else 0)
    assert not report.has_time
    if a.size:
        where = report.worst[0]
        assert where.index == tuple(int(i) for i in np.unravel_index(a.size - 1, shape))
        assert where.b == float(b[where.index]) and where.abs_diff == pytest.approx(1.0)


def test_two_d_positions_name_sample_and_feature():
    a = np.zeros((3, 4))
    b = a.copy()
    b[2, 1] = 0.5
    (entry,) = diff(a, b).worst
    assert (entry.sample, entry.step, entry.feature, entry.index) == (2, None, 1, (2, 1))
    assert entry.where() == "sample 2, feature 1"


def test_time_major_positions_are_batch_first_with_the_stored_index():
    a = np.zeros((5, 3, 2), np.float32)  # (T, N, F)
    b = a.copy()
    b[4, 1, 0] = 2.0  # step 4 of sample 1
    (entry,) = diff(a, b, layout="tnf").worst
    assert (entry.sample, entry.step, entry.feature, entry.index) == (1, 4, 0, (4, 1, 0))


def test_integer_and_float_inputs_compare_as_floats():
    a = np.arange(12).reshape(2, 3, 2)
    report = diff(a, a.astype(np.float16))
    assert report.equal and report.compared_dtype == "float64"


# -- shapes and dtypes that cannot be compared -------------------------------------------------


@pytest.mark.parametrize(
    ("shape_a", "shape_b", "layouts", "expected"),
    [
        ((4, 5, 6), (5, 4, 6), ("ntf", "ntf"), "they differ in N (4 vs 5) and T (5 vs 4); "
         "B looks time-major (T, N, F): try --layout-b tnf"),
        ((4, 5, 6), (4, 5, 6), ("ntf", "tnf"), "(A read as ntf, B as tnf); "
         "B looks batch-first (N, T, F): try --layout-b ntf"),
        ((4, 5, 6), (4, 5, 8), ("ntf", "ntf"), "they differ in F (6 vs 8)"),
        ((4, 5, 6), (3, 5, 6), ("ntf", "ntf"), "they differ in N (4 vs 3)"),
        ((4, 6), (4, 5, 6), ("ntf", "ntf"), "A has shape (4, 6) (2-D) and B (4, 5, 6) (3-D)"),
        ((4, 6), (6, 4), ("ntf", "ntf"), "they differ in axis 0, 1"),
    ],
)  # fmt: skip
def test_shape_differences_say_how(shape_a, shape_b, layouts, expected):
    with pytest.raises(InputError) as error:
        diff(np.zeros(shape_a), np.zeros(shape_b), layout=layouts[0], layout_b=layouts[1])
    assert expected in str(error.value)


@pytest.mark.parametrize("dtype", ["complex64", "U3", "datetime64[s]"])
def test_only_real_numbers_are_compared(dtype):
    with pytest.raises(InputError, match="diff compares real numbers"):
        diff(np.zeros((2, 3, 4), dtype), np.zeros((2, 3, 4)))


@pytest.mark.parametrize("bad", [{"rtol": -1.0}, {"atol": float("nan")}, {"worst": -1}])
def test_bad_tolerances_are_input_errors(bad):
    with pytest.raises(InputError):
        diff(np.zeros(3), np.zeros(3), **bad)


def test_a_mask_needs_a_time_axis():
    with pytest.raises(InputError, match="a mask needs 3-D data"):
        diff(np.zeros((3, 4)), np.zeros((3, 4)), lengths=[1, 2, 3])


def test_tolerance_is_numpy_isclose():
    tol = Tolerance()
    assert (tol.rtol, tol.atol, tol.equal_nan) == (1e-5, 1e-8, False)


# -- the command -----------------------------------------------------------------------------


@pytest.fixture
def outputs(tmp_path: Path) -> dict[str, Path]:
    """A post-padded float32 batch, the same with other padding, a changed copy, and more."""
    rng = np.random.default_rng(3)
    lengths = np.array([5, 3, 1, 4])
    x = rng.standard_normal((4, 5, 3)).astype(np.float32)
    x[np.arange(5)[None, :] >= lengths[:, None]] = 0
    repad = x.copy()
    repad[np.arange(5)[None, :] >= lengths[:, None]] = 9
    changed = x.copy()
    changed[2, 0, 1] += 0.25
    changed[0, 3, 2] += 0.5
    paths = {name: tmp_path / f"{name}.npy" for name in ("x", "repad", "changed", "lengths")}
    for name, array in zip(paths, (x, repad, changed, lengths), strict=True):
        np.save(paths[name], array)
    paths["tnf"] = tmp_path / "tnf.npy"
    np.save(paths["tnf"], x.transpose(1, 0, 2).astype(np.float16))
    with h5py.File(tmp_path / "run.h5", "w") as f:
        f["lstm/output"] = x
    paths["h5"] = tmp_path / "run.h5"
    return paths


def test_equal_within_tolerance_exits_0(run_cli, outputs):
    args = ["diff", outputs["x"], outputs["repad"], "--lengths", outputs["lengths"]]
    result = run_cli(args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "equal within tolerance" in result.stderr and "Error" not in result.stderr


def test_different_exits_1_without_an_error_line(run_cli, outputs):
    result = run_cli(["diff", outputs["x"], outputs["repad"]], catch_exceptions=False)
    assert result.exit_code == 1
    assert "different" in result.stderr
    assert "Error" not in result.stderr and "Traceback" not in result.stderr


def test_quiet_prints_nothing_and_keeps_the_exit_code(run_cli, outputs):
    result = run_cli(["diff", outputs["x"], outputs["changed"], "-q"])
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", "")


def test_the_worst_listing_names_sample_step_feature_and_both_values(run_cli, outputs):
    result = run_cli(["diff", outputs["x"], outputs["changed"], "--worst", "2", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    x, changed = np.load(outputs["x"]), np.load(outputs["changed"])
    first, second = report["worst"]
    assert (first["sample"], first["step"], first["feature"]) == (0, 3, 2)
    assert (second["sample"], second["step"], second["feature"]) == (2, 0, 1)
    assert first["a"] == float(x[0, 3, 2]) and first["b"] == float(changed[0, 3, 2])
    assert first["abs_diff"] == pytest.approx(0.5)
    assert report["differing"] == {
        "samples": 2,
        "steps": 2,
        "elements": 2,
        "nan_mismatches": 0,
    }
    assert report["equal"] is False and report["command"] == "diff"
    assert report["a"]["path"] == str(outputs["x"]) and report["b"]["shape"] == [4, 5, 3]
    assert "sample 0, step 3, feature 2" in result.stderr  # the table lists them too
    assert "samples by their largest |A-B|" in result.stderr


def test_json_writes_nan_and_infinities_as_strings(run_cli, tmp_path):
    np.save(tmp_path / "a.npy", np.array([[1.0, np.inf]]))
    np.save(tmp_path / "b.npy", np.array([[np.nan, 0.0]]))
    result = run_cli(["diff", tmp_path / "a.npy", tmp_path / "b.npy", "--json", "-q"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["max_abs_diff"] == "inf"
    assert [(w["a"], w["b"], w["abs_diff"]) for w in report["worst"]] == [
        (1.0, "nan", "nan"),
        ("inf", 0.0, "inf"),
    ]
    assert report["histogram"] == [{"max_abs_diff": "nan", "samples": 1}]


def test_layout_b_and_float16_b(run_cli, outputs):
    args = ["diff", outputs["x"], outputs["tnf"], "--layout-b", "tnf", "--rtol", "1e-3", "-q"]
    assert run_cli(args).exit_code == 0
    result = run_cli(["diff", outputs["x"], outputs["tnf"]])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: A has shape (4, 5, 3) and B (5, 4, 3)")
    assert result.stderr.rstrip().endswith("try --layout-b tnf")


def test_stdin_for_one_side(run_cli, outputs):
    data = outputs["changed"].read_bytes()
    result = run_cli(["diff", outputs["x"], "-", "-q", "--json"], input=data)
    assert result.exit_code == 1 and json.loads(result.stdout)["b"]["path"] == "-"
    result = run_cli(["diff", "-", outputs["changed"], "-q"], input=data)
    assert result.exit_code == 0, result.stderr
    result = run_cli(["diff", "-", "-"], input=data)
    assert result.exit_code == 2 and "cannot both be -" in result.stderr


def test_h5_key_and_mask_file(run_cli, outputs, tmp_path):
    mask = np.arange(5)[None, :] < np.load(outputs["lengths"])[:, None]
    np.save(tmp_path / "mask.npy", mask)
    args = [
        "diff",
        f"{outputs['h5']}:/lstm/output",
        outputs["repad"],
        "--mask",
        tmp_path / "mask.npy",
    ]
    result = run_cli([*args, "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["mask"] == f"mask {tmp_path / 'mask.npy'}"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--rtol", "-1"], "Error: --rtol must be a finite number >= 0; got -1.0"),
        (["--mask-value", "x"], "Error: --mask-value takes a number or nan; got 'x'"),
        (["--lengths", "LEN", "--include-padding"], "Error: --include-padding compares every"),
        (["--lengths", "LEN", "--mask-value", "0"], "Error: give at most one of --mask"),
    ],
)
def test_bad_options_are_one_error_line(run_cli, outputs, extra, expected):
    extra = [str(outputs["lengths"]) if e == "LEN" else e for e in extra]
    result = run_cli(["diff", outputs["x"], outputs["repad"], *extra])
    assert result.exit_code == 2
    assert result.stderr.startswith(expected) and len(result.stderr.splitlines()) == 1


def test_a_missing_file_is_exit_2(run_cli, outputs, tmp_path):
    result = run_cli(["diff", outputs["x"], tmp_path / "nope.npy"])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "nope.npy" in result.stderr


def test_wrong_lengths_count_is_exit_2(run_cli, outputs, tmp_path):
    np.save(tmp_path / "short.npy", np.array([1, 2]))
    result = run_cli(["diff", outputs["x"], outputs["repad"], "--lengths", tmp_path / "short.npy"])
    assert result.exit_code == 2 and "lengths" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_reduced_outputs_compare_without_a_time_axis(run_cli, tmp_path):
    np.save(tmp_path / "a.npy", np.ones((6, 4), np.float32))
    np.save(tmp_path / "b.npy", np.ones((6, 4), np.float64) + 1e-9)
    result = run_cli(["diff", tmp_path / "a.npy", tmp_path / "b.npy", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["compared"] == {"samples": 6, "steps": None, "elements": 24}
    assert report["compared_dtype"] == "float64"


def test_padding_invariance_of_reduce(run_cli, tmp_path):
    """The README's check: reduce of a padded batch with its lengths equals the reduction of
    each sequence on its own."""
    x, lengths = np.load(SAMPLES / "post_padded.npy"), np.load(SAMPLES / "post_lengths.npy")
    np.save(
        tmp_path / "alone.npy", np.stack([x[i, :n].mean(axis=0) for i, n in enumerate(lengths)])
    )
    reduced = tmp_path / "mean.npy"
    args = ["reduce", SAMPLES / "post_padded.npy", "-s", "mean", "--lengths",
            SAMPLES / "post_lengths.npy", "-o", reduced, "-q"]  # fmt: skip
    assert run_cli(args).exit_code == 0
    assert run_cli(["diff", reduced, tmp_path / "alone.npy", "-q"]).exit_code == 0
    unmasked = tmp_path / "unmasked.npy"
    args = ["reduce", SAMPLES / "post_padded.npy", "-s", "mean", "-o", unmasked, "-q"]
    assert run_cli(args).exit_code == 0
    assert run_cli(["diff", unmasked, tmp_path / "alone.npy", "-q"]).exit_code == 1


def test_progress_on_a_terminal_does_not_break_the_report(outputs):
    from click.testing import CliRunner

    from lstmshape.cli import Terminal, cli

    terminal = Terminal(stdin_isatty=False, stdout_isatty=True, stderr_isatty=True)
    result = CliRunner().invoke(cli, ["diff", str(outputs["x"]), str(outputs["x"])], obj=terminal)
    assert result.exit_code == 0, result.stderr


def test_python_dash_m_exit_code(outputs):
    import subprocess
    import sys

    args = [sys.executable, "-m", "lstmshape", "diff", outputs["x"], outputs["changed"], "-q"]
    done = subprocess.run([str(a) for a in args], capture_output=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (1, b"", b"")


def test_time_major_a_takes_its_mask_time_major(run_cli, tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 5, 3)).astype(np.float32)  # (N, T, F)
    valid = rng.random((4, 5)) < 0.5
    y = np.where(valid[..., None], x, 7.0).astype(np.float32)  # B differs only in padding
    np.save(tmp_path / "a.npy", x.transpose(1, 0, 2))
    np.save(tmp_path / "b.npy", y)
    np.save(tmp_path / "mask.npy", valid.T)  # (T, N), as the layout says
    args = ["diff", tmp_path / "a.npy", tmp_path / "b.npy", "--layout", "tnf", "--layout-b", "ntf"]
    result = run_cli([*args, "--mask", tmp_path / "mask.npy", "--json", "-q"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["compared"]["steps"] == int(valid.sum())
    assert run_cli([*args, "-q"]).exit_code == 1


@pytest.mark.parametrize("pad_value", [np.nan, np.inf, 0.0])
def test_nan_or_inf_in_b_padding_is_never_compared(pad_value):
    """The tolerance check runs (a relative difference of 0.5 near zero, within atol) while
    B's padding holds values that are close to nothing."""
    a = np.array([[[1e-9, 1.0], [0.0, 0.0], [0.5, 0.5]]], np.float32)
    b = a.copy()
    b[0, 0] = [2e-9, 1.0 + 1e-6]
    b[0, 1] = pad_value  # a hole in the mask, inside the span of valid steps
    report = diff(a, b, mask=[[1, 0, 1]])
    assert report.equal and report.elements == 4
    assert report.max_rel_diff == pytest.approx(0.5)
    assert not diff(a, b, include_padding=True).equal or pad_value == 0.0


# -- the fast path (finite pieces) against the reference --------------------------------------


@st.composite
def finite_pairs(draw):
    """Finite A, B of both signs and many scales: close, equal, signed zeros, near the edge
    and far; every piece of them takes the fast path (no NaN, no infinity)."""
    n, t, f = draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 4))
    dtype_a, dtype_b = draw(st.sampled_from(FLOATS)), draw(st.sampled_from(FLOATS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = rng.standard_normal((n, t, f)) * 10.0 ** rng.integers(-3, 4, size=(n, t, f))
    kind = rng.integers(0, 6, size=a.shape)
    b = a.copy()
    b[kind == 1] *= 1 + rng.uniform(-1e-6, 1e-6, size=int((kind == 1).sum()))
    b[kind == 2] *= 1 + 1e-5 * rng.standard_normal(int((kind == 2).sum()))
    b[kind == 3] = -a[kind == 3]
    zeros = rng.choice([0.0, -0.0], size=a.shape)
    a = np.where(kind == 4, zeros, a)
    b = np.where(kind == 4, rng.choice([0.0, -0.0], size=a.shape), b)
    return a.astype(dtype_a), b.astype(dtype_b)


def assert_positive_zeros(report):
    """No -0.0 in the report: the fast path works on a - b and (a - b) / b, signs kept."""
    for value in (report.max_abs_diff, report.max_rel_diff):
        assert value is None or math.copysign(1.0, value) == 1.0
    for where in report.worst:
        assert math.copysign(1.0, where.abs_diff) == math.copysign(1.0, where.rel_diff) == 1.0


@pytest.mark.parametrize("pieces", [(1 << 16, 1 << 18), (3, 1), (1, 1)], ids=str)
@SETTINGS
@given(data=st.data())
def test_finite_pieces_take_the_fast_path_and_match_the_loop(pieces, data):
    a, b = data.draw(finite_pairs())
    valid, mask_kwargs = data.draw(masks(a.shape[0], a.shape[1]))
    tol = data.draw(st.sampled_from([(1e-5, 1e-8), (1e-3, 1e-3), (0.0, 0.0), (1e-5, 0.0)]))
    worst = data.draw(st.integers(0, 7))
    expected = reference(a, b, valid, rtol=tol[0], atol=tol[1], worst=worst)
    exact = mock.patch.object(diffstats._Kernel, "_exact", side_effect=AssertionError("slow"))
    with small_pieces(*pieces), exact:
        report = diff(a, b, rtol=tol[0], atol=tol[1], worst=worst, **mask_kwargs)
    assert_matches(report, expected, a, b)
    assert_positive_zeros(report)


@pytest.mark.parametrize(
    ("a", "b"), [(-1.0, -1.0), (-0.0, 0.0), (0.0, -0.0), (-0.0, -0.0), (0.0, -2.0)], ids=str
)
def test_zero_differences_are_positive_zeros(a, b, run_cli, tmp_path):
    """0 - 0 can round to -0.0 and 0 / -1 is -0.0: the report says 0.0 (JSON too)."""
    x, y = np.full((2, 3, 4), a, np.float32), np.full((2, 3, 4), b, np.float32)
    y[1, 2, 3] = 0.0 if b != 0.0 else b  # a single other element, equal or not
    report = diff(x, y, rtol=1.0, atol=2.0)
    assert report.equal and report.max_abs_diff is not None
    assert_positive_zeros(report)
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", y)
    args = ["diff", tmp_path / "a.npy", tmp_path / "b.npy", "--rtol", "1", "--atol", "2"]
    result = run_cli([*args, "--json", "-q"])
    assert result.exit_code == 0, result.stderr
    assert "-0.0" not in result.stdout, result.stdout


@pytest.mark.parametrize("min_cores", [0.0, math.inf], ids=["always-parallel", "falls-back"])
@SETTINGS
@given(data=st.data(), chunk=st.integers(1, 300))
def test_any_schedule_of_the_comparing_threads_gives_the_same_report(min_cores, data, chunk):
    """Blocks split among 3 threads (parts taken from a shared list), or compared in one
    thread after a block that did not run in parallel and retried every other block."""
    a, b = data.draw(pairs())
    valid, mask_kwargs = data.draw(masks(a.shape[0], a.shape[1]))
    expected = reference(a, b, valid, worst=4)
    spec = mask_spec(a.shape, "ntf", **mask_kwargs)
    schedule = (
        mock.patch.object(diffparts.BlockParts, "MIN_CORES", min_cores),
        mock.patch.object(diffparts.BlockParts, "RETRY_EVERY", 2),
    )
    with small_pieces(2, 1), schedule[0], schedule[1]:
        report = diff_sources(Blocks(a), Blocks(b), spec=spec, worst=4, chunk_bytes=chunk)
    assert_matches(report, expected, a, b)
