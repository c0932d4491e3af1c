"""Shell completion (issue #12 item 4): PATH[:KEY] completes as a file name, and after
`FILE:` as the arrays inside a container; bash keeps `FILE:KEY` whole although it splits
words at `:`. Checked through click's completion API and in a real interactive bash."""

from __future__ import annotations

import os
import select
import shutil
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from lstmshape.cli import cli
from lstmshape.cli.completion import ColonBashComplete


def _complete(args: list[str], incomplete: str) -> list[tuple[str, str]]:
    completion = ShellComplete(cli, {}, "lstmshape", "_LSTMSHAPE_COMPLETE")
    return [(item.type, item.value) for item in completion.get_completions(args, incomplete)]


@pytest.fixture
def containers(tmp_path: Path) -> dict[str, str]:
    with h5py.File(tmp_path / "runs.h5", "w") as f:
        f["lstm/output"] = np.zeros((2, 3, 4), np.float32)
        f["lstm/lengths"] = np.array([1, 3])
        f["gru/output"] = np.zeros((2, 3, 4), np.float32)
        # 1 TiB declared and never written: listing it must not read it
        f.create_dataset("huge", shape=(2**20, 2**10, 2**8), dtype="f4", chunks=(1, 1024, 256))
    np.savez(tmp_path / "batch.npz", output=np.zeros((2, 3, 4)), lengths=np.array([1, 2]))
    return {"h5": str(tmp_path / "runs.h5"), "npz": str(tmp_path / "batch.npz")}


@pytest.mark.parametrize(
    "args",
    [["reduce"], ["reduce", "x.npy", "--lengths"], ["pool", "x.npy", "-o"], ["inspect"]],
)
def test_a_path_completes_as_a_file_name(args):
    assert _complete(args, "pos") == [("file", "pos")]


def test_h5_keys_complete_after_the_colon(containers):
    h5 = containers["h5"]
    assert _complete(["inspect"], f"{h5}:/lstm/") == [
        ("plain", f"{h5}:/lstm/lengths"),
        ("plain", f"{h5}:/lstm/output"),
    ]
    everything = {value for _, value in _complete(["reduce"], f"{h5}:")}
    assert everything == {
        f"{h5}:{key}" for key in ("/gru/output", "/huge", "/lstm/lengths", "/lstm/output")
    }


def test_npz_members_complete_after_the_colon(containers):
    npz = containers["npz"]
    assert sorted(_complete(["reduce", "x.npy", "--mask"], f"{npz}:")) == [
        ("plain", f"{npz}:lengths"),
        ("plain", f"{npz}:output"),
    ]


def test_zarr_arrays_complete_after_the_colon(tmp_path):
    zarr = pytest.importorskip("zarr")
    root = zarr.open_group(str(tmp_path / "runs.zarr"), mode="w")
    root.create_array("lstm/out", shape=(2, 3, 4), dtype="f4")
    store = str(tmp_path / "runs.zarr")
    assert _complete(["reduce"], f"{store}:/l") == [("plain", f"{store}:/lstm/out")]


def test_a_damaged_container_completes_nothing_and_never_fails(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    assert _complete(["inspect"], f"{tmp_path / 'bad.npz'}:") == []
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    assert _complete(["inspect"], f"{tmp_path / 'empty.npz'}:") == []


def test_bash_answers_with_the_part_after_the_last_word_break(containers, monkeypatch, capsys):
    """Bash splits `runs.h5:/lstm/` at `:` and replaces only what follows it."""
    line = f"lstmshape inspect {containers['h5']}:/lstm/o"
    monkeypatch.setenv("COMP_LINE", line)
    monkeypatch.setenv("COMP_POINT", str(len(line)))
    monkeypatch.setenv("COMP_WORDBREAKS", " \t\n\"'><=;|&(:")
    monkeypatch.setenv("COMP_WORDS", "ignored")
    monkeypatch.setenv("COMP_CWORD", "1")
    completion = ColonBashComplete(cli, {}, "lstmshape", "_LSTMSHAPE_COMPLETE")
    assert completion.complete() == "plain,/lstm/output"
    monkeypatch.setenv("COMP_LINE", "lstmshape reduce pos")
    monkeypatch.setenv("COMP_POINT", "20")
    assert completion.complete() == "file,pos"


def test_zsh_and_fish_get_the_key_whole(containers, monkeypatch):
    """zsh and fish do not split words at `:`: their answer is `FILE:KEY` as a whole."""
    from click.shell_completion import FishComplete, ZshComplete

    h5 = containers["h5"]
    monkeypatch.setenv("COMP_WORDS", f"lstmshape inspect {h5}:/lstm/o")
    monkeypatch.setenv("COMP_CWORD", "2")
    zsh = ZshComplete(cli, {}, "lstmshape", "_LSTMSHAPE_COMPLETE")
    assert zsh.complete() == f"plain\n{h5}:/lstm/output\n_"
    monkeypatch.setenv("COMP_WORDS", "lstmshape inspect")
    monkeypatch.setenv("COMP_CWORD", f"{h5}:/lstm/o")
    fish = FishComplete(cli, {}, "lstmshape", "_LSTMSHAPE_COMPLETE")
    assert fish.complete() == f"plain,{h5}:/lstm/output"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_every_shell_gets_a_source_script(shell):
    result = CliRunner().invoke(cli, [], env={"_LSTMSHAPE_COMPLETE": f"{shell}_source"})
    assert result.exit_code == 0, result.output
    assert "_LSTMSHAPE_COMPLETE" in result.output and "lstmshape" in result.output
    if shell == "bash":
        assert 'COMP_LINE="$COMP_LINE"' in result.output


# ----------------------------------------------------------------------------- a real bash


class _Terminal:
    """An interactive bash on a pseudo-terminal; every read has a deadline."""

    def __init__(self, cwd: Path, path: str) -> None:
        import pty

        env = {
            "PATH": path,
            "HOME": str(cwd),
            "TERM": "dumb",
            "PS1": "$ ",
            "INPUTRC": "/dev/null",
            "LANG": "C.UTF-8",
        }
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: an interactive bash without start-up files
            os.chdir(cwd)
            os.execve(
                shutil.which("bash") or "/bin/bash", ["bash", "--norc", "--noprofile", "-i"], env
            )
        self.seen = ""

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} never appeared in {self.seen[-2000:]!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    self.seen += os.read(self.fd, 4096).decode(errors="replace")
                except OSError:
                    break
        return self.seen

    def close(self) -> None:
        import signal

        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_tab_completes_files_and_keys_in_a_real_bash(tmp_path, containers):
    if shutil.which("bash") is None or sys.platform == "win32":
        pytest.skip("needs bash and a pseudo-terminal")
    console_script = Path(sys.executable).with_name("lstmshape")
    if not console_script.exists():
        pytest.skip("the lstmshape console script is not installed next to this Python")
    np.save(tmp_path / "unique_name.npy", np.zeros((2, 3, 4), np.float32))
    bash = _Terminal(tmp_path, f"{console_script.parent}{os.pathsep}/usr/bin:/bin")
    try:
        bash.expect("$ ")
        bash.send('eval "$(_LSTMSHAPE_COMPLETE=bash_source lstmshape)"; echo READY\n')
        bash.expect("READY\r\n$ ")
        bash.send("lstmshape reduce uni\t")
        bash.expect("unique_name.npy ")
        bash.send("\x15lstmshape inspect runs.h5:/lstm/o\t")
        bash.expect("runs.h5:/lstm/output ")
        bash.send("\x15lstmshape reduce batch.npz:\t\t")
        screen = bash.expect("lengths")
        assert "output" in bash.expect("output")
        assert "Traceback" not in screen
    finally:
        bash.close()
