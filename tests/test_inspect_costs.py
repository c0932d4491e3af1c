"""What listing and inspecting cost grows with what a file really holds, no faster.

Promises tested here (docs/safety.md, "Time bounded by the bytes stored"). The work is
counted, not timed (speed claims live in bench/; `bench/attacks.py` times the sizes of the
issue: 100,000 datasets, 10,000 nested groups, a terabyte never written):
- inspecting an `.npz` reads each member's header once (it was once per member per member);
- inspecting an `.h5` opens the file once for all its datasets;
- a KEY as deep as the file goes costs one lookup per level;
- without KEY, a file of thousands of arrays is refused after looking at 21 of them;
- chunks never written are reported as their fill value without being read, and the report
  is the one reading them would give.

Each test runs under a deadline (SIGALRM), so a regression fails instead of hanging.
"""

from __future__ import annotations

import signal
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmshape import io
from lstmshape.errors import InputError
from lstmshape.handover import inspect_refs
from lstmshape.inspection import inspect_array
from lstmshape.io import h5_readers, npz
from lstmshape.refs import ArrayRef

DEADLINE = 120  # seconds; each test needs a few


@pytest.fixture(autouse=True)
def deadline():
    def expired(_signum, _frame):
        raise TimeoutError(f"the test ran past its {DEADLINE} s deadline")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(DEADLINE)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def counting(monkeypatch, module, name):
    """Wrap `module.name` to count its calls; returns the list the calls go into."""
    calls: list[tuple] = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_inspecting_an_npz_reads_each_header_once(tmp_path, monkeypatch):
    members = {f"m{i:03d}": np.full((2, 3, 4), i, np.float32) for i in range(300)}
    np.savez_compressed(tmp_path / "many.npz", **members)
    headers = counting(monkeypatch, npz, "_read_npy_header")
    reports = inspect_refs([ArrayRef(str(tmp_path / "many.npz"))])
    assert [r["key"] for r in reports] == sorted(members)
    assert len(headers) == 300  # was 300 + 300 * 300


def test_inspecting_an_h5_opens_the_file_once(tmp_path, monkeypatch):
    with h5py.File(tmp_path / "many.h5", "w") as f:
        for i in range(300):
            f[f"g{i % 7}/d{i:03d}"] = np.full((2, 3), i, np.float32)
    import h5py as h5

    opened = counting(monkeypatch, h5, "File")
    reports = inspect_refs([ArrayRef(str(tmp_path / "many.h5"))])
    assert len(reports) == 300 and reports[0]["key"] == "/g0/d000"
    assert len(opened) == 1  # was once more per dataset


@pytest.fixture
def deep(tmp_path: Path) -> tuple[Path, str]:
    """A dataset 400 groups deep."""
    key = "/" + "/".join(["g"] * 400) + "/x"
    with h5py.File(tmp_path / "deep.h5", "w") as f:
        f[key] = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    return tmp_path / "deep.h5", key


def test_a_deep_key_costs_one_lookup_per_level(deep, monkeypatch):
    path, key = deep
    levels: list[int] = []
    real = h5py.Group.get

    def get(self, name, *args, **kwargs):
        levels.append(len([p for p in str(name).split("/") if p]))
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "get", get)
    assert io.load(f"{path}:{key}").shape == (2, 3, 4)
    assert sum(levels) <= 4 * 401  # names looked up, level by level; was 401 * 402 / 2


def test_a_deep_file_is_listed_and_inspected(deep):
    path, key = deep
    (report,) = inspect_refs([ArrayRef(str(path))])
    assert report["key"] == key and report["shape"] == [2, 3, 4]


def test_without_key_21_candidates_are_enough_to_refuse(tmp_path, monkeypatch):
    with h5py.File(tmp_path / "many.h5", "w") as f:
        for i in range(2000):
            f[f"d{i:04d}"] = np.zeros(3, np.float32)
    from lstmshape.io import h5_listing

    checked = counting(monkeypatch, h5_listing, "_h5_is_candidate")
    with pytest.raises(InputError) as info:
        io.open_array(str(tmp_path / "many.h5"))
    shown = ", ".join(f"/d{i:04d}" for i in range(20))
    assert str(info.value) == (
        f"{tmp_path / 'many.h5'} holds more than 20 arrays (2000 datasets in all); "
        f"name one as {tmp_path / 'many.h5'}:KEY: {shown}, …"
    )
    assert len(checked) == 21


def test_an_npz_without_key_is_refused_after_21_headers(tmp_path, monkeypatch):
    with zipfile.ZipFile(tmp_path / "many.npz", "w") as z:
        for i in range(2000):
            with z.open(f"m{i:04d}.npy", "w") as member:
                np.lib.format.write_array(member, np.zeros(2, np.float32))
    headers = counting(monkeypatch, npz, "_read_npy_header")
    with pytest.raises(InputError, match=r"holds more than 20 arrays \(2000 members in all\)"):
        io.open_array(str(tmp_path / "many.npz"))
    assert len(headers) == 21


# ----------------------------------------------------------------------------- never written


def refuse_reads(monkeypatch):
    """Fail any read of HDF5 data: what was never written must not be read."""

    def refused(*_args, **_kwargs):
        raise AssertionError("data was read")

    for reader in (h5_readers.ChunkedFile, h5_readers.H5Direct):
        monkeypatch.setattr(reader, "read_into", refused)


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("fill", [0.0, np.nan, 7.5])
def test_a_terabyte_never_written_is_reported_without_reading(
    tmp_path, monkeypatch, fill, compression
):
    with h5py.File(tmp_path / "tb.h5", "w") as f:
        f.create_dataset(
            "x",
            (2**20, 1024, 256),
            "f4",
            chunks=(64, 64, 64),
            fillvalue=fill,
            compression=compression,
        )
    assert (tmp_path / "tb.h5").stat().st_size < 10_000
    refuse_reads(monkeypatch)
    (report,) = inspect_refs([ArrayRef(str(tmp_path / "tb.h5"))])
    assert report["nbytes"] == 2**40
    assert report["nan_count"] == (2**38 if np.isnan(fill) else 0)
    assert report["lengths"]["max"] == 0  # every step equals the fill value: all padding
    assert report["padding"]["empty_samples"] == 2**20


@settings(max_examples=40, deadline=None)
@given(
    layout=st.sampled_from(["ntf", "tnf"]),
    fill=st.sampled_from([0.0, np.nan, -1.0]),
    written=st.lists(st.integers(0, 11), max_size=6),
    chunk=st.sampled_from([(2, 5, 3), (1, 2, 3), (3, 10, 3)]),
    block_rows=st.integers(1, 5),
    compression=st.sampled_from([None, "gzip"]),
)
def test_skipping_unwritten_blocks_gives_the_report_reading_them_gives(
    tmp_path_factory, layout, fill, written, chunk, block_rows, compression
):
    """Against the same data read whole, for chunks written here and there."""
    path = tmp_path_factory.mktemp("partial") / "p.h5"
    rng = np.random.default_rng(len(written))
    shape = (12, 10, 3)
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(
            "x", shape, "f8", chunks=chunk, fillvalue=fill, compression=compression
        )
        for row in written:
            values = rng.standard_normal((1, 10, 3))
            values[0, rng.integers(0, 10) :] = 0.0  # some padding to find
            dset[row : row + 1] = values
    whole = io.load(f"{path}:/x")
    want = inspect_array(np.asarray(whole), layout=layout, block_rows=block_rows).to_dict()
    with io.open_array(f"{path}:/x") as source:
        got = inspect_array(source, layout=layout, block_rows=block_rows).to_dict()
    assert _comparable(got) == _comparable(want)


def _comparable(report: dict) -> str:
    """A report as text, NaN equal to NaN."""
    return repr(report).replace("nan", "NaN")


@settings(max_examples=30, deadline=None)
@given(
    paths=st.lists(
        st.lists(st.sampled_from(["a", "b", "B", "é", "z10", "z9"]), min_size=1, max_size=4),
        min_size=1,
        max_size=12,
    ),
    hard=st.integers(0, 3),
)
def test_datasets_are_listed_in_the_order_h5py_visits_them(tmp_path_factory, paths, hard):
    """The relative walk finds what `visititems` finds, in its order: each object once,
    hard links only (a second hard link, a soft link and an external link are passed over)."""
    from lstmshape.io.h5_listing import _h5_dataset_names

    path = tmp_path_factory.mktemp("tree") / "t.h5"
    with h5py.File(path, "w") as f:
        for parts in paths:
            name = "/".join(parts)
            if name in f or any("/".join(parts[:k]) in f and
                                isinstance(f["/".join(parts[:k])], h5py.Dataset)
                                for k in range(1, len(parts))):  # fmt: skip
                continue
            f[name] = np.zeros(2)
        datasets = []
        f.visititems(lambda n, o: datasets.append(n) if isinstance(o, h5py.Dataset) else None)
        for i in range(min(hard, len(datasets))):
            f[f"hard{i}"] = f[datasets[i]]  # the same dataset under a second name
        f["soft"] = h5py.SoftLink("/" + datasets[0])
        f["ext"] = h5py.ExternalLink("other.h5", "/x")
        want: list[str] = []
        f.visititems(lambda n, o: want.append("/" + n) if isinstance(o, h5py.Dataset) else None)
        assert _h5_dataset_names(f) == want


def test_datasets_without_attributes_need_no_guarded_read(tmp_path, monkeypatch):
    """Reading attribute values runs in a forked child (a damaged heap can hang HDF5); a
    dataset whose header declares none is answered without one (10,000 datasets: 280 s)."""
    from lstmshape.io import h5_guard

    with h5py.File(tmp_path / "many.h5", "w") as f:
        for i in range(3):
            f[f"r{i}"] = np.zeros((2, 3, 4), np.float32)
        f["r1"].attrs["unit"] = "volt"
    forks = []
    real = h5_guard.run_guarded
    monkeypatch.setattr(h5_guard, "run_guarded", lambda task: forks.append(1) or real(task))
    reports = inspect_refs([ArrayRef(str(tmp_path / "many.h5"))])
    assert [r["attrs"] for r in reports] == [{}, {"unit": "volt"}, {}]
    assert len(forks) == 1


@pytest.mark.parametrize("layout", ["ntf", "tnf"])
def test_a_npy_is_inspected_through_its_block_reader_not_map_views(tmp_path, monkeypatch, layout):
    """Views of the whole map (`ArraySource.read`) keep every page they touched resident:
    inspect of a 1 GiB .npy peaked at 985 MiB RSS; read block by block like the engine: 100."""
    from lstmshape.io import base

    x = np.zeros((40, 6, 3), np.float32)
    x[:, :4] = 1.0
    np.save(tmp_path / "x.npy", x)
    want = inspect_refs([ArrayRef(str(tmp_path / "x.npy"))], layout=layout)

    def refused(*_args, **_kwargs):
        raise AssertionError("read through a view of the map")

    monkeypatch.setattr(base.ArraySource, "read", refused)
    assert inspect_refs([ArrayRef(str(tmp_path / "x.npy"))], layout=layout) == want
