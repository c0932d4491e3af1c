"""The README stays true: every command is documented, and its Python example runs."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import ROOT, SAMPLES

from lstmshape.cli import cli

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_a_readme_section_and_help(run_cli, command):
    assert f"### {command}" in README
    result = run_cli([command, "--help"])
    assert result.exit_code == 0 and "Example:" in result.stdout


def test_readme_python_example_runs(tmp_path, monkeypatch):
    block = re.search(r"## Python API\n\n```python\n(.*?)```", README, re.S).group(1)
    (tmp_path / "samples").symlink_to(SAMPLES)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["last"].shape == (64, 16)
    assert namespace["pcs"].shape == (64, 40, 4)
    lengths = np.load(SAMPLES / "post_lengths.npy")
    assert namespace["packed"].shape == (int(lengths.sum()), 16)
    assert (tmp_path / "out.h5").exists()


def test_readme_shows_the_two_commands():
    assert "make demo" in README and "make test" in README
