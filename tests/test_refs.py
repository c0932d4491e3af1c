"""`PATH[:KEY]` parsing: textual only, one `exists` check, never splits an existing path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lstmshape.errors import InputError
from lstmshape.refs import ArrayRef, parse_ref, path_suffix


def never(_path: str) -> bool:
    return False


@pytest.mark.parametrize(
    ("text", "path", "key"),
    [
        ("x.npy", "x.npy", None),
        ("run.h5:/lstm/output", "run.h5", "/lstm/output"),
        ("run.hdf5:out", "run.hdf5", "out"),
        ("arrays.npz:hidden", "arrays.npz", "hidden"),
        ("RUN.H5:/a", "RUN.H5", "/a"),
        ("dir/sub/run.h5:g/d", "dir/sub/run.h5", "g/d"),
        ("a:b", "a:b", None),
        ("data.csv:x", "data.csv:x", None),
        ("run.h5:/a:b", "run.h5", "/a:b"),
        ("C:\\data\\x.npz:k", "C:\\data\\x.npz", "k"),
        ("-", "-", None),
        ("-:k", "-:k", None),
    ],
)
def test_parse_ref_splits_only_after_a_known_suffix(text: str, path: str, key: str | None) -> None:
    assert parse_ref(text, exists=never) == ArrayRef(path, key)


def test_an_existing_path_is_never_split(tmp_path: Path) -> None:
    odd = tmp_path / "x.npy:k"
    odd.write_bytes(b"")
    assert parse_ref(str(odd)) == ArrayRef(str(odd), None)


def test_a_split_whose_left_part_exists_wins(tmp_path: Path) -> None:
    inner = tmp_path / "a.h5"
    inner.write_bytes(b"")
    text = f"{inner}:/g/b.npy:c"
    assert parse_ref(text) == ArrayRef(str(inner), "/g/b.npy:c")
    assert parse_ref(text, exists=never) == ArrayRef(f"{inner}:/g/b.npy", "c")


def test_parse_ref_accepts_path_objects(tmp_path: Path) -> None:
    assert parse_ref(tmp_path / "x.npy") == ArrayRef(str(tmp_path / "x.npy"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty array reference; expected PATH or PATH:KEY"),
        ("run.h5:", "'run.h5:' has an empty KEY after ':'; write run.h5 or run.h5:KEY"),
    ],
)
def test_malformed_text_is_an_input_error(text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_ref(text, exists=never)
    assert str(info.value) == message


def test_array_ref_str_and_properties() -> None:
    ref = ArrayRef("Run.HDF5", "/a")
    assert str(ref) == "Run.HDF5:/a"
    assert str(ArrayRef("x.npy")) == "x.npy"
    assert ref.suffix == ".hdf5"
    assert ArrayRef("noext").suffix == ""
    assert not ref.is_stdio
    stdio = ArrayRef("-")
    assert stdio.is_stdio and stdio.suffix == ".npy" and stdio.display == "standard input"
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.key = "b"  # type: ignore[misc]


names = st.text(alphabet="abcXYZ_-./ 0123456789", min_size=1, max_size=12)


@given(
    stem=names.filter(lambda s: not s.endswith("/")),
    suffix=st.sampled_from([".npy", ".npz", ".h5", ".hdf5", ".H5"]),
    # A KEY holding ":" after a known suffix (".npy:x") is ambiguous by design; see above.
    key=st.text(min_size=1, max_size=12).filter(lambda k: ":" not in k),
)
def test_str_round_trips_through_parse_ref(stem: str, suffix: str, key: str) -> None:
    ref = ArrayRef(stem + suffix, key)
    assert parse_ref(str(ref), exists=never) == ref
    assert parse_ref(stem + suffix, exists=never) == ArrayRef(stem + suffix)


@given(st.text(alphabet="ab./\\:", max_size=12))
def test_path_suffix_is_purepaths(text):
    """`path_suffix` stands in for `PurePath(path).suffix` (no pathlib at start-up)."""
    assert path_suffix(text) == Path(text).suffix
