"""Output names and links: each is written where it should be, or refused in one line, exit 2.

Promises tested here (docs/safety.md, "Names and links"):
- a KEY written into `link.h5` or `link.npz` (a symlink to a real file) lands in the file
  the link names, and the link stays a link; so does a whole file replaced with --force;
- an output name as long as the file system allows is written (temporary and lock files
  take a shortened name), a longer one is refused;
- a `.npz` KEY that does not fit a zip member name, or that would leave the archive's
  directory when unzipped (`../x`, `/abs`), is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import one_error
from helpers import run_bounded as run

from lstmshape import io


@pytest.fixture
def here(tmp_path: Path) -> Path:
    np.save(tmp_path / "x.npy", np.ones((2, 3, 4), np.float32))
    return tmp_path


def reduce_to(out: str, *extra: str) -> list[str]:
    return ["reduce", "x.npy", "-s", "sum", "-o", out, "-q", *extra]


@pytest.mark.parametrize("fmt", ["h5", "npz"])
def test_a_key_written_through_a_link_lands_in_the_linked_file(here, fmt):
    real, link = here / f"real.{fmt}", here / f"link.{fmt}"
    io.save(np.arange(3.0), f"{real}:{'/' if fmt == 'h5' else ''}orig")
    link.symlink_to(real.name)
    key = "/new" if fmt == "h5" else "new"
    done = run(reduce_to(f"link.{fmt}:{key}"), here)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and link.resolve() == real
    assert io.load(f"{real}:{key}").tolist() == [[3.0] * 4] * 2
    assert io.load(f"{real}:{'/' if fmt == 'h5' else ''}orig").tolist() == [0.0, 1.0, 2.0]
    assert sorted(p.name for p in here.iterdir()) == sorted(["x.npy", real.name, link.name])


def test_a_file_replaced_through_a_link_is_the_linked_file(here):
    real, link = here / "sub" / "real.npy", here / "link.npy"
    real.parent.mkdir()
    np.save(real, np.zeros(2))
    link.symlink_to(real)
    done = run(reduce_to("link.npy", "--force"), here)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and np.load(real).tolist() == [[3.0] * 4] * 2
    assert sorted(p.name for p in real.parent.iterdir()) == ["real.npy"]


def test_an_h5_key_through_a_link_keeps_provenance_and_other_datasets(here):
    real = here / "real.h5"
    with h5py.File(real, "w") as f:
        f["/a/b"] = np.arange(4)
    (here / "link.h5").symlink_to(real)
    assert run(reduce_to("link.h5:/a/c"), here).returncode == 0
    with h5py.File(real) as f:
        assert sorted(f["/a"]) == ["b", "c"] and f["/a/c"].attrs["operation"] == "reduce"


@pytest.mark.parametrize("fmt", ["npy", "npz", "h5"])
def test_a_name_as_long_as_the_file_system_allows_is_written(here, fmt):
    name = "n" * (255 - len(fmt) - 1) + f".{fmt}"
    done = run(reduce_to(name), here)
    assert done.returncode == 0, done.stderr
    assert io.load(str(here / name)).shape == (2, 4)
    assert sorted(p.name for p in here.iterdir()) == sorted(["x.npy", name])
    again = run(reduce_to(name, "--force"), here)  # a replacement, through the lock too
    assert again.returncode == 0, again.stderr


def test_the_temporary_files_of_two_long_names_differ(here):
    """Shortened side names end in a digest of the whole name: two long names that share
    their first 230 bytes never take each other's temporary files for stale ones."""
    from lstmshape.io.sidefiles import side_stem

    a, b = "p" * 240 + "a.npy", "p" * 240 + "b.npy"
    assert side_stem(here / a) != side_stem(here / b)
    assert run(reduce_to(a), here).returncode == 0
    assert run(reduce_to(b), here).returncode == 0


def test_a_name_longer_than_the_file_system_allows_is_refused(here):
    name = "n" * 260 + ".npy"
    line = one_error(run(reduce_to(name), here))
    assert line == (
        f"Error: cannot write {name}: its name is 264 bytes long; the file system takes names "
        "of at most 255 bytes"
    )


def test_a_npz_key_too_long_for_a_zip_member_is_refused(here):
    line = one_error(run(reduce_to("o.npz:" + "k" * 70000), here))
    assert line == (
        "Error: cannot write o.npz: a .npz KEY of 70000 bytes is too long (a zip member name "
        "holds at most 65531 bytes after .npy)"
    )
    assert sorted(p.name for p in here.iterdir()) == ["x.npy"]


@pytest.mark.parametrize("key", ["../../x", "/abs", "a/../../b", "..\\evil"])
def test_a_npz_key_that_leaves_the_archive_is_refused(here, key):
    line = one_error(run(reduce_to(f"o.npz:{key}"), here))
    assert line == (
        f"Error: cannot write o.npz:{key}: a .npz KEY is a member name inside the archive; "
        "it may not start with / or hold a .. part"
    )
    assert sorted(p.name for p in here.iterdir()) == ["x.npy"]


def test_a_npz_key_with_a_folder_is_written_as_one_member(here):
    assert run(reduce_to("o.npz:lstm/out"), here).returncode == 0
    assert io.load(f"{here / 'o.npz'}:lstm/out").shape == (2, 4)


def test_a_long_name_survives_a_killed_writer(here):
    """The stale temporary file of a long name is found by the next writer of that name."""
    from lstmshape.io.sidefiles import side_stem

    name = "q" * 250 + ".npy"
    stale = here / f".{side_stem(here / name)}.dead0001.tmp"
    stale.write_bytes(b"partial")
    assert len(os.fsencode(stale.name)) <= 255
    assert run(reduce_to(name), here).returncode == 0
    assert not stale.exists()
