"""Make the sample files in `samples/`: small, realistic saved LSTM/GRU outputs.

A NumPy LSTM (and GRU) forward pass, with PyTorch's gate order and init range, runs over
random variable-length input sequences; its outputs are saved padded in the ways real
frameworks pad them. Everything comes from one fixed seed, and the files are written
byte-for-byte reproducibly (no timestamps in `.npz` or `.h5`), so re-running this script
changes nothing in git unless the script changes.

Usage: ``python samples/make_samples.py [OUT_DIR]`` (default: the folder of this script).
It writes the data files, `manifest.json` (what each array was made with, for tests) and
`README.md` (the same as a table).
"""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

SEED = 20240607
N, T, D, H = 64, 40, 8, 16  # samples, timesteps, input features, hidden units
N_SMALL = 32  # the GRU run and the .npz batch
H_BI = 8  # per direction, so the bidirectional output has F = 2 * H_BI = 16

Floats = npt.NDArray[np.float64]
Cell = Callable[[Floats, Floats, Floats, dict[str, Floats]], tuple[Floats, Floats]]


@dataclass(frozen=True)
class Entry:
    """One array written to disk, and the facts `inspect` must recover from it."""

    file: str
    key: str | None
    array: np.ndarray
    layout: str | None = None
    pad_side: str | None = None
    pad_kind: str | None = None
    pad_value: float | None = None
    lengths: tuple[str, str | None] | None = None  # (file, key) of the lengths array
    mask: tuple[str, str | None] | None = None
    about: str = ""

    @property
    def ref(self) -> str:
        return ref_text(self.file, self.key)


def ref_text(file: str, key: str | None) -> str:
    """The contract's `PATH[:KEY]` spelling."""
    return file if key is None else f"{file}:{key}"


# --- recurrent cells (PyTorch layout: weight_ih (G*H, D), weight_hh (G*H, H)) ------------


def init_params(rng: np.random.Generator, gates: int, d: int, h: int) -> dict[str, Floats]:
    """PyTorch's init: every weight and bias uniform in [-1/sqrt(H), 1/sqrt(H)]."""
    bound = 1.0 / np.sqrt(h)

    def draw(*shape: int) -> Floats:
        return rng.uniform(-bound, bound, size=shape)

    return {
        "w_ih": draw(gates * h, d),
        "w_hh": draw(gates * h, h),
        "b_ih": draw(gates * h),
        "b_hh": draw(gates * h),
    }


def sigmoid(z: Floats) -> Floats:
    return 1.0 / (1.0 + np.exp(-z))


def lstm_cell(x: Floats, h: Floats, c: Floats, p: dict[str, Floats]) -> tuple[Floats, Floats]:
    """One LSTM step, gates in PyTorch order i, f, g, o."""
    gates = x @ p["w_ih"].T + p["b_ih"] + h @ p["w_hh"].T + p["b_hh"]
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def gru_cell(x: Floats, h: Floats, c: Floats, p: dict[str, Floats]) -> tuple[Floats, Floats]:
    """One GRU step, gates in PyTorch order r, z, n (`c` is unused)."""
    xr, xz, xn = np.split(x @ p["w_ih"].T + p["b_ih"], 3, axis=-1)
    hr, hz, hn = np.split(h @ p["w_hh"].T + p["b_hh"], 3, axis=-1)
    r, z = sigmoid(xr + hr), sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h, c


def run(cell: Cell, p: dict[str, Floats], x: Floats, lengths: np.ndarray) -> Floats:
    """Outputs (N, T, H) of `cell` over each sample's first `lengths[i]` steps; zeros after.

    Samples advance together; a sample's state stops changing after its last valid step.
    """
    n, t, _ = x.shape
    h_size = p["w_hh"].shape[1]
    h, c = np.zeros((n, h_size)), np.zeros((n, h_size))
    out = np.zeros((n, t, h_size))
    for step in range(t):
        live = (step < lengths)[:, None]
        h_new, c_new = cell(x[:, step], h, c, p)
        h, c = np.where(live, h_new, h), np.where(live, c_new, c)
        out[:, step] = np.where(live, h, 0.0)
    return out


def reverse_valid(a: Floats, lengths: np.ndarray) -> Floats:
    """Reverse each sample's first `lengths[i]` steps in place of them; padding stays put."""
    out = a.copy()
    for i, length in enumerate(lengths):
        out[i, :length] = a[i, :length][::-1]
    return out


# --- padding (all runs produce post-aligned outputs; these re-lay them out) --------------


def post_mask(lengths: np.ndarray, t: int) -> np.ndarray:
    return np.arange(t)[None, :] < lengths[:, None]


def fill_post(out: Floats, lengths: np.ndarray, value: float) -> Floats:
    """Padded steps set to `value` (PyTorch `pad_packed_sequence(padding_value=value)`)."""
    return np.where(post_mask(lengths, out.shape[1])[..., None], out, value)


def fill_repeat(out: Floats, lengths: np.ndarray) -> Floats:
    """Padded steps repeat the last valid output, as a masked Keras LSTM writes them."""
    last = np.minimum(np.arange(out.shape[1])[None, :], (lengths - 1)[:, None])
    return np.take_along_axis(out, last[..., None], axis=1)


def to_pre(out: Floats, lengths: np.ndarray) -> Floats:
    """Move each sample's valid steps to the end; zeros before (Keras `pad_sequences`
    default padding="pre", then a masked LSTM whose leading outputs are its zero state)."""
    pre = np.zeros_like(out)
    t = out.shape[1]
    for i, length in enumerate(lengths):
        pre[i, t - length :] = out[i, :length]
    return pre


def draw_lengths(rng: np.random.Generator, n: int, t: int) -> np.ndarray:
    """Lengths in [1, T], at least one of them T (a batch is padded to its longest)."""
    lengths = rng.integers(1, t + 1, size=n)
    lengths[rng.integers(n)] = t
    return lengths.astype(np.int64)


# --- the samples ------------------------------------------------------------------------


MASK = "(N, T) bool, True = valid"
FIRST_L = "(N,) valid steps, first L valid"


def f32(a: Floats) -> np.ndarray:
    return a.astype(np.float32)


def make_entries(rng: np.random.Generator) -> list[Entry]:
    """Every sample array, in the order the README lists them."""
    entries: list[Entry] = []
    lstm = init_params(rng, 4, D, H)
    zeros_post: dict[str, Any] = {
        "layout": "ntf",
        "pad_side": "post",
        "pad_kind": "value",
        "pad_value": 0.0,
    }
    zeros_pre = {**zeros_post, "pad_side": "pre"}

    # Post-padded: zeros, and the same run with repeat-last padding.
    lengths = draw_lengths(rng, N, T)
    out = run(lstm_cell, lstm, rng.standard_normal((N, T, D)), lengths)
    post_files: dict[str, Any] = {
        "lengths": ("post_lengths.npy", None),
        "mask": ("post_mask.npy", None),
    }
    entries += [
        Entry(
            "post_padded.npy",
            None,
            f32(fill_post(out, lengths, 0.0)),
            **zeros_post,
            **post_files,
            about="LSTM outputs, zeros after each sequence (PyTorch pad_packed_sequence)",
        ),
        Entry(
            "post_repeat.npy",
            None,
            f32(fill_repeat(out, lengths)),
            layout="ntf",
            pad_side="post",
            pad_kind="repeat",
            **post_files,
            about="same run; padded steps repeat the last valid output (masked Keras LSTM)",
        ),
        Entry("post_mask.npy", None, post_mask(lengths, T), about=MASK),
        Entry("post_lengths.npy", None, lengths, about=FIRST_L),
    ]

    # Pre-padded.
    lengths = draw_lengths(rng, N, T)
    out = run(lstm_cell, lstm, rng.standard_normal((N, T, D)), lengths)
    entries += [
        Entry(
            "pre_padded.npy",
            None,
            f32(to_pre(out, lengths)),
            **zeros_pre,
            lengths=("pre_lengths.npy", None),
            mask=("pre_mask.npy", None),
            about="LSTM outputs, zeros before each sequence (Keras pad_sequences + Masking)",
        ),
        Entry("pre_mask.npy", None, post_mask(lengths, T)[:, ::-1].copy(), about=MASK),
        Entry("pre_lengths.npy", None, lengths, about="(N,) valid steps, last L valid"),
    ]

    # Bidirectional: forward half left-to-right, backward half right-to-left, over valid steps.
    lengths = draw_lengths(rng, N, T)
    x = rng.standard_normal((N, T, D))
    fwd, bwd = init_params(rng, 4, D, H_BI), init_params(rng, 4, D, H_BI)
    back = reverse_valid(run(lstm_cell, bwd, reverse_valid(x, lengths), lengths), lengths)
    both = np.concatenate([run(lstm_cell, fwd, x, lengths), back], axis=-1)
    entries += [
        Entry(
            "bidirectional.npy",
            None,
            f32(both),
            **zeros_post,
            lengths=("bidirectional_lengths.npy", None),
            about=f"bidirectional LSTM, F = 2 x {H_BI} (forward half, then backward), zeros after",
        ),
        Entry("bidirectional_lengths.npy", None, lengths, about=FIRST_L),
    ]

    # Time-major (T, N, F), lengths sorted longest first as pack_padded_sequence wants.
    lengths = np.sort(draw_lengths(rng, N, T))[::-1].copy()
    out = run(lstm_cell, lstm, rng.standard_normal((N, T, D)), lengths)
    entries += [
        Entry(
            "time_major.npy",
            None,
            f32(out.transpose(1, 0, 2)),
            **{**zeros_post, "layout": "tnf"},
            lengths=("time_major_lengths.npy", None),
            about="LSTM outputs (T, N, F), PyTorch batch_first=False, zeros after",
        ),
        Entry("time_major_lengths.npy", None, lengths, about=FIRST_L + ", sorted descending"),
    ]

    # runs.h5: an LSTM run, a pre-padded GRU run, labels and a dense head's weights.
    lengths = draw_lengths(rng, N, T)
    out = run(lstm_cell, lstm, rng.standard_normal((N, T, D)), lengths)
    gru = init_params(rng, 3, D, H)
    g_lengths = draw_lengths(rng, N_SMALL, T)
    g_out = run(gru_cell, gru, rng.standard_normal((N_SMALL, T, D)), g_lengths)
    h5 = "runs.h5"
    entries += [
        Entry(
            h5,
            "/lstm/output",
            f32(out),
            **zeros_post,
            lengths=(h5, "/lstm/lengths"),
            mask=(h5, "/lstm/mask"),
            about="LSTM outputs, zeros after",
        ),
        Entry(h5, "/lstm/lengths", lengths, about=FIRST_L),
        Entry(h5, "/lstm/mask", post_mask(lengths, T), about=MASK),
        Entry(
            h5,
            "/gru/output",
            f32(to_pre(g_out, g_lengths)),
            **zeros_pre,
            lengths=(h5, "/gru/lengths"),
            about="GRU outputs (r, z, n gates), zeros before",
        ),
        Entry(h5, "/gru/lengths", g_lengths, about="(N,) valid steps, last L valid"),
        Entry(
            h5,
            "/meta/labels",
            rng.integers(0, 5, size=N).astype(np.int64),
            about="(N,) int class labels of the LSTM run",
        ),
        Entry(
            h5,
            "/head/kernel",
            f32(rng.uniform(-0.5, 0.5, size=(H, 4))),
            about="(F, K) Keras Dense kernel, for `project`",
        ),
        Entry(h5, "/head/bias", f32(rng.uniform(-0.1, 0.1, size=4)), about="(K,) Dense bias"),
    ]

    # batch.npz: NaN padding, as pad_packed_sequence(padding_value=float("nan")) writes it.
    lengths = draw_lengths(rng, N_SMALL, T)
    out = run(lstm_cell, lstm, rng.standard_normal((N_SMALL, T, D)), lengths)
    npz = "batch.npz"
    entries += [
        Entry(
            npz,
            "output",
            f32(fill_post(out, lengths, np.nan)),
            **{**zeros_post, "pad_value": float("nan")},
            lengths=(npz, "lengths"),
            mask=(npz, "mask"),
            about="LSTM outputs, NaN after",
        ),
        Entry(npz, "lengths", lengths, about=FIRST_L),
        Entry(npz, "mask", post_mask(lengths, T), about=MASK),
    ]
    return entries


# --- writing, reproducibly ---------------------------------------------------------------


def write_npz(path: Path, members: dict[str, np.ndarray]) -> None:
    """Like `np.savez`, with a fixed timestamp so the bytes never change."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, array in members.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, array, allow_pickle=False)


def write_h5(path: Path, datasets: dict[str, np.ndarray]) -> None:
    """Datasets in nested groups; no object timestamps, so the bytes never change."""
    path.unlink(missing_ok=True)
    with h5py.File(path, "w", libver="earliest", track_order=False) as f:
        for key, array in datasets.items():
            f.create_dataset(key, data=array, track_times=False)
        f.attrs["made_by"] = "samples/make_samples.py"
        f.attrs["seed"] = SEED


def write_files(out_dir: Path, entries: list[Entry]) -> None:
    by_file: dict[str, dict[str, np.ndarray]] = {}
    for e in entries:
        by_file.setdefault(e.file, {})[e.key or ""] = e.array
    for name, members in by_file.items():
        path = out_dir / name
        if name.endswith(".npy"):
            np.save(path, members[""], allow_pickle=False)
        elif name.endswith(".npz"):
            write_npz(path, members)
        else:
            write_h5(path, members)


def json_value(v: float | None) -> float | str | None:
    return "nan" if v is not None and np.isnan(v) else v


def manifest(entries: list[Entry]) -> dict[str, Any]:
    def ref(pair: tuple[str, str | None] | None) -> dict[str, str | None] | None:
        return None if pair is None else {"file": pair[0], "key": pair[1]}

    arrays = {
        e.ref: {
            "file": e.file,
            "key": e.key,
            "shape": list(e.array.shape),
            "dtype": str(e.array.dtype),
            "layout": e.layout,
            "pad_side": e.pad_side,
            "pad_kind": e.pad_kind,
            "pad_value": json_value(e.pad_value),
            "lengths": ref(e.lengths),
            "mask": ref(e.mask),
            "about": e.about,
        }
        for e in entries
    }
    return {"seed": SEED, "made_by": "samples/make_samples.py", "arrays": arrays}


README_HEAD = """\
# Sample files

Small, realistic saved recurrent-layer outputs for the demo, the docs and the tests. They are
made by `python samples/make_samples.py` (fixed seed {seed}, byte-for-byte reproducible): a
NumPy LSTM/GRU forward pass (PyTorch gate order and init) over random variable-length input
sequences (input size {d}, hidden size {h}, lengths drawn from 1..T with the longest = T), saved
padded the ways frameworks pad. `manifest.json` holds the same facts for the tests.

Shapes are as stored; "layout" says how to read them (`--layout tnf` for time-major).
Padding "value" means every feature of a padded step equals the value; "repeat" means a padded
step repeats the sample's last valid output (a masked Keras LSTM writes that).

| array | shape | dtype | layout | padding | lengths | what |
|---|---|---|---|---|---|---|
"""


def readme(entries: list[Entry]) -> str:
    rows = []
    for e in entries:
        if e.pad_kind == "value":
            padding = f"{e.pad_side}, value {json_value(e.pad_value)}"
        elif e.pad_kind == "repeat":
            padding = f"{e.pad_side}, repeat last valid"
        else:
            padding = ""
        lengths = "" if e.lengths is None else f"`{ref_text(*e.lengths)}`"
        shape = "(" + ", ".join(map(str, e.array.shape)) + ("," if e.array.ndim == 1 else "") + ")"
        rows.append(
            f"| `{e.ref}` | {shape} | {e.array.dtype} | {e.layout or ''} | {padding} "
            f"| {lengths} | {e.about} |"
        )
    return README_HEAD.format(seed=SEED, d=D, h=H) + "\n".join(rows) + "\n"


def main(argv: list[str]) -> None:
    out_dir = Path(argv[0]) if argv else Path(__file__).resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = make_entries(np.random.default_rng(SEED))
    write_files(out_dir, entries)
    text = json.dumps(manifest(entries), indent=2) + "\n"
    (out_dir / "manifest.json").write_text(text, encoding="utf-8")
    (out_dir / "README.md").write_text(readme(entries), encoding="utf-8")
    total = sum(p.stat().st_size for p in out_dir.iterdir() if p.suffix in {".npy", ".npz", ".h5"})
    print(f"wrote {len(entries)} arrays to {out_dir} ({total / 1e6:.2f} MB of data)")


if __name__ == "__main__":
    main(sys.argv[1:])
