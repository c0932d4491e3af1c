"""Start-up stays lean: `--help` and `inspect` of a `.npy` import only what they use.

bench/run.py times them (issue #16: `--help` <= 0.5x and `inspect` <= 1.6x of
`python -c "import numpy"`); these tests keep the imports that would undo it from coming
back unnoticed. Each run is a fresh interpreter started with `-S`, so the editable install's
import hook (which loads pathlib and importlib.util itself) is not in the picture: the
package comes from this tree, its dependencies from the environment's site-packages.
"""

from __future__ import annotations

import ast
import importlib
import os
import site
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from helpers import ROOT

from lstmshape.cli import cli
from lstmshape.cli.lazy import COMMANDS

_RUN = """
import sys
sys.argv = ["lstmshape", *{args!r}]
from lstmshape._entry import main
main()
print("LOADED", sorted(name for name in {watched!r} if name in sys.modules), file=sys.stderr)
"""

#: Never needed to read a `.npy` file and show it (nor to print `--help`).
NOT_FOR_INSPECT = (
    "h5py",
    "zarr",
    "dask",
    "distributed",
    "einops",
    "numpy.ma",
    "numpy.typing",
    "lstmshape.strategies",
    "lstmshape.plan",
    "lstmshape.run",
    "lstmshape.jobs",
    "lstmshape.stream",
    "lstmshape.report",
    "lstmshape.cli.commands",
    "lstmshape.cli.diff",
    "lstmshape.cli.completion",
    "lstmshape.cli.rules",
    "click.shell_completion",
    "lstmshape.io.h5",
    "lstmshape.io.npz",
    "lstmshape.io.zarr",
    "lstmshape.io.atomic",
    "lstmshape.io.writing",
    "lstmshape.io.outputs",
    "lstmshape.io.stdio",
    "rich.markdown",
    "rich.pretty",
    "rich.progress",
    "rich.syntax",
    "rich.traceback",
    "rich._emoji_codes",
    "pathlib",
    "json",
    "tempfile",
    "shutil",
    "zipfile",
    "glob",
)

#: `--help` names the commands from a table: none of them, and nothing they use, is loaded.
NOT_FOR_HELP = (
    *NOT_FOR_INSPECT,
    "numpy",
    "rich",
    "lstmshape.cli.inspecting",
    "lstmshape.cli.options",
    "lstmshape.refs",
    "lstmshape.io",
)


def _loaded(args: list[str], watched: tuple[str, ...], cwd: str) -> tuple[list[str], str]:
    """The watched modules a console-script run of `lstmshape ARGS` imported, and stdout."""
    packages = [p for p in site.getsitepackages() if Path(p).is_dir()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *packages])}
    code = _RUN.format(args=args, watched=watched)
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED "))
    return ast.literal_eval(line.removeprefix("LOADED ")), done.stdout


def test_help_imports_no_command(tmp_path):
    loaded, stdout = _loaded(["--help"], NOT_FOR_HELP, str(tmp_path))
    assert "Commands:" in stdout
    assert loaded == []


def test_inspect_of_a_npy_imports_only_what_it_reads_and_draws(tmp_path):
    np.save(tmp_path / "tiny.npy", np.zeros((4, 5, 3), np.float32))
    loaded, _ = _loaded(["inspect", "tiny.npy"], NOT_FOR_INSPECT, str(tmp_path))
    assert loaded == []


def test_the_watch_list_can_see_an_import(tmp_path):
    """The check itself works: a run that writes (`reduce -o`) loads the writing side."""
    np.save(tmp_path / "tiny.npy", np.zeros((4, 5, 3), np.float32))
    args = ["reduce", "tiny.npy", "-q", "-o", "out.npy"]
    loaded, _ = _loaded(args, ("lstmshape.io.writing", "lstmshape.cli.commands"), str(tmp_path))
    assert loaded == ["lstmshape.cli.commands", "lstmshape.io.writing"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_command_table_names_each_command_its_module_and_summary(name):
    module, summary = COMMANDS[name]
    importlib.import_module(module)
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.callback is not None
    assert command.callback.__module__ == module
    assert command.get_short_help_str(limit=1000) == summary


def test_every_command_is_in_the_table():
    assert sorted(cli.commands) == sorted(COMMANDS)
