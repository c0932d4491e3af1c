"""The README stays true: every command is documented, and its Python example runs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import readme_blocks
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
    for _ in range(2):  # the example can be run again where it ran
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)
        assert namespace["last"].shape == (64, 16)
        assert namespace["pcs"].shape == (64, 40, 4)
        lengths = np.load(SAMPLES / "post_lengths.npy")
        assert namespace["packed"].shape == (int(lengths.sum()), 16)
        assert (tmp_path / "out.h5").exists()


def test_every_readme_console_block_is_what_the_commands_print(tmp_path):
    """Each `$ command` of a console block runs in a scratch copy of samples/, in README
    order, and prints exactly what the README shows (`python tests/readme_blocks.py
    --update` rewrites them after a change of output)."""
    examples = [example for block in readme_blocks.blocks(README) for example in block]
    assert len(examples) >= 10
    folder = readme_blocks.scratch_folder(tmp_path)
    for example in examples:
        printed = readme_blocks.run(example.command, folder)
        assert printed == example.output, f"$ {example.command}"


def test_readme_console_blocks_are_recognised():
    fences = README.count("```console")
    assert fences == len(readme_blocks.blocks(README)) and fences >= 7
    assert "\n  ```console" not in README  # an indented block would go unchecked


def test_readme_shows_the_two_commands():
    assert "make demo" in README and "make test" in README
