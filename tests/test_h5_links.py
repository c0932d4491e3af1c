"""HDF5 objects that point outside the named file: refused unless --allow-external.

External links (also reached through a soft link), virtual datasets whose sources are
other files, and datasets with external raw storage would let a file handed over by
someone else make lstmshape read any file the user can read (or block on a FIFO). Inputs
refuse them by default, naming the link; `--allow-external` (or `io.allow_external()`)
reads them. An output KEY never goes through an external link: HDF5 would write into the
other file.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import load_npy_bytes, lstmshape

from lstmshape import io
from lstmshape.errors import InputError

HINT = "lstmshape reads only the named file unless --allow-external is given"


@pytest.fixture
def linked(tmp_path: Path, monkeypatch) -> Path:
    """main.h5 with its own data, and every way of pointing at other.h5 / raw.bin."""
    monkeypatch.chdir(tmp_path)  # external names are relative, as users write them
    with h5py.File("other.h5", "w") as f:
        f["/data"] = np.full((2, 3, 4), 7.0)
        f["/grp/d"] = np.full((2, 3, 4), 5.0)
        f["/lengths"] = np.array([1, 3])
    np.full(24, 3.0).tofile("raw.bin")
    with h5py.File("main.h5", "w") as f:
        f["/own"] = np.ones((2, 3, 4))
        f["/elink"] = h5py.ExternalLink("other.h5", "/data")
        f["/egrp"] = h5py.ExternalLink("other.h5", "/grp")
        f["/elengths"] = h5py.ExternalLink("other.h5", "/lengths")
        f["/soft"] = h5py.SoftLink("/egrp/d")
        f["/softown"] = h5py.SoftLink("/own")
        layout = h5py.VirtualLayout(shape=(2, 3, 4), dtype="f8")
        layout[:] = h5py.VirtualSource("other.h5", "/data", shape=(2, 3, 4))
        f.create_virtual_dataset("/vds", layout)
        same = h5py.VirtualLayout(shape=(2, 3, 4), dtype="f8")
        same[:] = h5py.VirtualSource(".", "/own", shape=(2, 3, 4))
        f.create_virtual_dataset("/vds_self", same)
        f.create_dataset("/extraw", shape=(2, 3, 4), dtype="f8", external=[("raw.bin", 0, 192)])
    return tmp_path / "main.h5"


REFUSED = {
    "/elink": "/elink is an external link to other.h5:/data",
    "/egrp/d": "/egrp is an external link to other.h5:/grp",
    "/soft": "/egrp is an external link to other.h5:/grp",
    "/vds": "is a virtual dataset reading other files (other.h5)",
    "/extraw": "keeps its data in other files (raw.bin)",
}
VALUES = {"/elink": 7.0, "/egrp/d": 5.0, "/soft": 5.0, "/vds": 7.0, "/extraw": 3.0}
COMMANDS = [
    ["inspect"],
    ["reduce", "-s", "mean"],
    ["pool", "--pool-size", "2"],
    ["project", "--pca", "2"],
    ["reshape", "--to", "flatten"],
]


@pytest.mark.parametrize("key", sorted(REFUSED))
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_refused_by_default_with_one_line(run_cli, linked, key, command):
    args = [command[0], f"main.h5:{key}", *command[1:]]
    result = run_cli([*args, *([] if command[0] == "inspect" else ["-o", "out.npy"])])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"Error: main.h5:{key}{_sep(key)}{REFUSED[key]}; {HINT}"]
    assert not Path("out.npy").exists()


def _sep(key: str) -> str:
    return " " if "virtual" in REFUSED[key] or "keeps" in REFUSED[key] else ": "


@pytest.mark.parametrize("key", sorted(VALUES))
def test_allowed_with_the_flag_reads_the_right_file(run_cli, linked, key):
    result = run_cli(["reduce", f"main.h5:{key}", "-s", "mean", "--allow-external", "-o", "-"])
    assert result.exit_code == 0, result.stderr
    got = load_npy_bytes(result.stdout_bytes)
    assert got.tolist() == [[VALUES[key]] * 4] * 2


@pytest.mark.parametrize("key", ["/own", "/softown", "/vds_self"])
def test_objects_inside_the_file_need_no_flag(run_cli, linked, key):
    result = run_cli(["reduce", f"main.h5:{key}", "-s", "mean", "-o", "-"])
    assert result.exit_code == 0, result.stderr


def test_masks_and_lengths_through_links_are_refused_too(run_cli, linked):
    np.save("x.npy", np.ones((2, 3, 4)))
    result = run_cli(["reduce", "x.npy", "-s", "mean", "--lengths", "main.h5:/elengths"])
    assert result.exit_code == 2
    assert "/elengths is an external link to other.h5:/lengths" in result.stderr
    allowed = run_cli(
        ["reduce", "x.npy", "-s", "mean", "--lengths", "main.h5:/elengths", "--allow-external"]
    )
    assert allowed.exit_code == 0, allowed.stderr


def test_inspect_of_the_whole_file_names_the_first_outside_dataset(run_cli, linked):
    result = run_cli(["inspect", "main.h5"])
    assert result.exit_code == 2 and HINT in result.stderr
    assert run_cli(["inspect", "main.h5", "--allow-external", "-q"]).exit_code == 0


def test_the_library_refuses_unless_allowed(linked):
    with pytest.raises(InputError, match="external link"):
        io.load("main.h5:/elink")
    with io.allow_external():
        assert io.load("main.h5:/elink")[0, 0, 0] == 7.0
    with pytest.raises(InputError, match="virtual dataset"):
        io.load("main.h5:/vds")


def test_an_output_key_never_goes_through_an_external_link(run_cli, linked):
    before = Path("other.h5").read_bytes()
    np.save("x.npy", np.ones((2, 3, 4)))
    for flags in ([], ["--allow-external"]):
        result = run_cli(["reduce", "x.npy", "-s", "mean", "-o", "main.h5:/egrp/new", *flags])
        assert result.exit_code == 2
        assert result.stderr == (
            "Error: cannot write main.h5:/egrp/new: /egrp is an external link to "
            "other.h5:/grp; lstmshape writes only into the named file\n"
        )
    assert Path("other.h5").read_bytes() == before
    assert sorted(p.name for p in Path().iterdir()) == ["main.h5", "other.h5", "raw.bin", "x.npy"]


def test_a_link_to_a_fifo_is_refused_without_opening_it(tmp_path):
    """Following the link would block forever on the FIFO; the check looks at the link only."""
    os.mkfifo(tmp_path / "pipe.h5")
    with h5py.File(tmp_path / "main.h5", "w") as f:
        f["/data"] = h5py.ExternalLink("pipe.h5", "/data")
    result = subprocess.run(
        lstmshape("inspect", "main.h5:/data"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "/data is an external link to pipe.h5:/data" in result.stderr


def test_a_dataset_from_another_file_is_refused_even_if_the_path_check_misses(linked):
    """Defence in depth: the dataset's own file is checked after the link walk."""
    from unittest import mock

    from lstmshape.io import h5_links

    with (
        mock.patch.object(h5_links, "_h5_external_link", return_value=None),
        pytest.raises(InputError, match=r"main.h5:/elink lives in another file \(.*other.h5\)"),
    ):
        io.load("main.h5:/elink")
