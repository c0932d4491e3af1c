"""Shared fixtures: tiny arrays written to tmp_path, and a CLI runner with stderr apart.

Plain helpers (no pytest machinery) live in helpers.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import evil_array

from lstmshape.cli import Terminal, cli


@pytest.fixture
def run_cli():
    """Run the CLI in-process as a pipe (stdout not a terminal) unless `tty=True`."""

    def invoke(args: list, *, tty: bool = False, **kwargs):
        terminal = Terminal(stdin_isatty=False, stdout_isatty=tty, stderr_isatty=False)
        return CliRunner().invoke(cli, [str(a) for a in args], obj=terminal, **kwargs)

    return invoke


@pytest.fixture
def padded(tmp_path: Path) -> dict[str, Path]:
    """A post-padded (4, 5, 3) float32 batch with its lengths and mask files."""
    rng = np.random.default_rng(0)
    lengths = np.array([5, 3, 1, 4])
    x = rng.standard_normal((4, 5, 3)).astype(np.float32)
    mask = np.arange(5)[None, :] < lengths[:, None]
    x[~mask] = 0
    paths = {
        "x": tmp_path / "x.npy",
        "lengths": tmp_path / "lengths.npy",
        "mask": tmp_path / "mask.npy",
    }
    np.save(paths["x"], x)
    np.save(paths["lengths"], lengths)
    np.save(paths["mask"], mask)
    return paths


@pytest.fixture
def pickled_npy(tmp_path: Path) -> tuple[Path, Path]:
    """An object .npy whose unpickling would create `marker`; returns (path, marker)."""
    path, marker = tmp_path / "evil.npy", tmp_path / "pwned"
    np.save(path, evil_array(marker), allow_pickle=True)
    assert not marker.exists()
    return path, marker
