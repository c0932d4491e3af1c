"""Command-line manners (issue #12): help, usage errors, missing extras, honest dry runs, the
table before the work, chosen names, lengths kept beside packed data, globs that say what
they matched, options that would be ignored, sizes, set-up and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result
from helpers import ROOT, load_bench
from helpers import lstmshape as lstmshape_command

from lstmshape.cli import Terminal, cli

# ----------------------------------------------------------------------------- 1, 2: usage


def test_bare_lstmshape_prints_the_help_as_click_does(run_cli):
    result = run_cli([])
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: lstmshape [OPTIONS] COMMAND [ARGS]...\n")
    assert "Commands:" in result.stderr and "Error" not in result.stderr
    assert len(result.stderr.splitlines()) > 10  # the help, not one squashed line


def _usage_lines(result, command: str) -> list[str]:
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"Usage: lstmshape {command} [OPTIONS]")
    assert lines[1] == f"Try 'lstmshape {command} --help' for help."
    assert lines[-1].startswith("Error: ") and "Traceback" not in result.stderr
    return lines


def test_missing_input_is_a_usage_error_with_a_hint(run_cli):
    lines = _usage_lines(run_cli(["reduce"]), "reduce")
    assert lines[-1] == "Error: Missing argument 'INPUT...'."


def test_misspelt_choice_gets_a_did_you_mean(run_cli, padded):
    lines = _usage_lines(run_cli(["reduce", padded["x"], "-s", "meen"]), "reduce")
    assert lines[-1].endswith("Did you mean 'mean'?")


def test_a_word_far_from_every_choice_gets_no_guess(run_cli, padded):
    lines = _usage_lines(run_cli(["reduce", padded["x"], "-s", "xyzzy"]), "reduce")
    assert "Did you mean" not in lines[-1]


def test_pool_accepts_mean_for_avg(run_cli, padded):
    avg = run_cli(["pool", padded["x"], "--op", "avg", "--mask", padded["mask"], "-q"])
    mean = run_cli(["pool", padded["x"], "--op", "mean", "--mask", padded["mask"], "-q"])
    assert mean.exit_code == avg.exit_code == 0, mean.stderr
    assert mean.stdout_bytes == avg.stdout_bytes


def test_data_errors_stay_one_line(run_cli, tmp_path):
    result = run_cli(["reduce", tmp_path / "missing.npy"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("Error: ") and "Usage" not in result.stderr


# ----------------------------------------------------------------------------- 3: extras


@pytest.mark.parametrize(
    ("missing", "args"),
    [
        ("dask", ["reduce", "{x}", "--engine", "dask", "--workers", "1"]),
        ("zarr", ["inspect", "{zarr}"]),
    ],
)
def test_a_missing_extra_names_the_extra_to_install(tmp_path, padded, missing, args):
    (tmp_path / "store.zarr").mkdir()
    (tmp_path / "store.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    args = [a.format(x=padded["x"], zarr=tmp_path / "store.zarr") for a in args]
    blocked = [missing, "distributed"] if missing == "dask" else [missing]
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n    sys.modules[name] = None\n"  # import -> ModuleNotFound
        f"sys.argv = ['lstmshape', *{args!r}, '-o', {str(tmp_path / 'o.npy')!r}]\n"
        "from lstmshape._entry import main\nmain()\n"
    )
    if missing == "zarr":
        code = code.replace(", '-o', " + repr(str(tmp_path / "o.npy")), "")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: ")
    assert "pip install 'lstmshape[dask]'" in done.stderr


# ----------------------------------------------------------------------------- 5: dry runs


def test_dry_run_fails_where_the_real_run_fails(run_cli, padded, tmp_path):
    cases = {
        "missing folder": (["-o", tmp_path / "nofolder" / "x.npy"], "does not exist"),
        "existing output": (["-o", padded["lengths"]], "--force"),
    }
    for args, expected in cases.values():
        real = run_cli(["reduce", padded["x"], "-s", "mean", *args])
        dry = run_cli(["reduce", padded["x"], "-s", "mean", *args, "--dry-run"])
        assert dry.exit_code == real.exit_code == 2
        assert dry.stderr == real.stderr and expected in dry.stderr


def test_dry_run_shows_the_output_path_and_side_outputs(run_cli, padded, tmp_path):
    result = run_cli(
        [
            "pool",
            padded["x"],
            "--pool-size",
            "2",
            "--lengths",
            padded["lengths"],
            "--mask-out",
            tmp_path / "m.npy",
            "-o",
            tmp_path / "new.h5",
            "--dry-run",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["output"]["path"] == f"{tmp_path / 'new.h5'}:/data"
    assert payload["output mask"] == {
        "shape": [4, 2],
        "dtype": "bool",
        "path": str(tmp_path / "m.npy"),
    }
    assert "new.h5:/data" in result.stderr and "output mask" in result.stderr
    assert not (tmp_path / "new.h5").exists() and not (tmp_path / "m.npy").exists()


def test_dry_run_names_the_file_it_would_choose(run_cli, padded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli(["reduce", padded["x"], "-s", "mean", "--dry-run", "-q"], tty=True)
    assert result.exit_code == 0
    assert result.stderr == "Would write x.reduce-mean.npy (no -o given)\n"
    assert not list(tmp_path.glob("x.reduce*"))


# ----------------------------------------------------------------------------- 6: order, bars


def _on_a_terminal(args: list) -> Result:
    """Run with standard error on a terminal (stdout a pipe), as a person watching."""
    terminal = Terminal(stdin_isatty=False, stdout_isatty=False, stderr_isatty=True)
    return CliRunner().invoke(cli, [str(a) for a in args], obj=terminal)


def test_the_table_is_shown_before_the_work(padded, tmp_path, monkeypatch):
    from lstmshape import render, stream

    events: list[str] = []
    print_summary, run_plan = render.print_summary, stream.run_plan

    def table(summary, console=None):
        events.append("table")
        print_summary(summary, console)

    def work(*args, **kwargs):
        events.append("work")
        return run_plan(*args, **kwargs)

    monkeypatch.setattr(render, "print_summary", table)
    monkeypatch.setattr(stream, "run_plan", work)
    result = _on_a_terminal(["reduce", padded["x"], "-s", "mean", "-o", tmp_path / "o.npy"])
    assert result.exit_code == 0, result.stderr
    assert events == ["table", "work"]
    assert result.stderr.count("lstmshape reduce") == 1  # drawn once


def test_an_error_found_during_the_work_follows_the_table(run_cli, padded, tmp_path):
    lengths = tmp_path / "l.npy"
    np.save(lengths, np.array([0, 3, 0, 1]))
    args = ["reduce", padded["x"], "--lengths", lengths, "-o", tmp_path / "o.npy"]
    result = _on_a_terminal(args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2
    assert lines[0] == "lstmshape reduce" and lines[-1].startswith("Error: 2 samples")
    piped = run_cli(args)  # a script reading stderr finds the one Error line
    assert piped.exit_code == 2 and piped.stderr.splitlines() == [lines[-1]]


def test_every_pass_reports_progress(padded, tmp_path):
    from lstmshape.inputs import MaskRequest
    from lstmshape.jobs import project_job
    from lstmshape.refs import ArrayRef
    from lstmshape.run import OutputRequest, execute

    passes: dict[str, int] = {}

    def progress(total: int, label: str):
        from contextlib import contextmanager

        @contextmanager
        def counting():
            passes[label] = 0

            def advance(nbytes: int) -> None:
                passes[label] += nbytes

            yield advance
            assert passes[label] == total, label

        return counting()

    out = ArrayRef(str(tmp_path / "pca.npy"))
    with project_job(ArrayRef(str(padded["x"])), MaskRequest(), pca=2) as job:
        execute(job, OutputRequest(output_ref=out), progress=progress)
    assert list(passes) == ["pass 1 of 2: fitting PCA", "pass 2 of 2: projecting"]


def test_inspect_reports_progress_over_every_byte(padded):
    from lstmshape.handover import inspect_refs
    from lstmshape.refs import ArrayRef

    seen: list[tuple[str, int, int]] = []

    def progress(total: int, label: str):
        from contextlib import contextmanager

        @contextmanager
        def counting():
            done = [0]
            yield lambda nbytes: done.__setitem__(0, done[0] + nbytes)
            seen.append((label, total, done[0]))

        return counting()

    inspect_refs([ArrayRef(str(padded["x"]))], progress=progress)
    nbytes = np.load(padded["x"]).nbytes
    assert seen == [(f"inspecting {padded['x']}", nbytes, nbytes)]


def test_progress_bar_counts_in_binary_units(monkeypatch):
    from io import StringIO

    from rich.console import Console

    from lstmshape import render

    buffer = StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    monkeypatch.setattr(render, "error_console", lambda: console)
    monkeypatch.setattr(render._Timer, "elapsed", lambda self: 5.0)
    with render.progress_bar(3 * 2**30, "reduce", enabled=True) as advance:
        advance(3 * 2**29)
    drawn = buffer.getvalue()
    assert "1.5 GiB / 3.0 GiB" in drawn
    assert " GB" not in drawn and " MB" not in drawn


# ----------------------------------------------------------------------------- 7: terminals


def test_binary_data_is_never_written_to_a_terminal(run_cli, padded):
    result = run_cli(["reduce", padded["x"], "-s", "mean", "-o", "-"], tty=True)
    assert result.exit_code == 2 and result.stdout_bytes == b""
    assert "terminal" in result.stderr and "-o" in result.stderr


# ----------------------------------------------------------------------------- 8: chosen names


@pytest.mark.parametrize("quiet", ["-q", None])
def test_a_chosen_output_name_is_said_even_under_quiet(
    run_cli, padded, tmp_path, monkeypatch, quiet
):
    monkeypatch.chdir(tmp_path)
    args = ["reduce", padded["x"], "-s", "mean", *([quiet] if quiet else [])]
    result = run_cli(args, tty=True)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "Wrote x.reduce-mean.npy (no -o given)"
    assert (tmp_path / "x.reduce-mean.npy").exists()
    silent = run_cli([*args[:4], "-qq"], tty=True)
    assert silent.exit_code == 0 and silent.stderr == ""


def test_no_name_is_announced_when_the_user_named_the_output(run_cli, padded, tmp_path):
    args = ["reduce", padded["x"], "-s", "mean", "--lengths", padded["lengths"], "-q"]
    result = run_cli([*args, "-o", tmp_path / "o.npy"])
    assert result.exit_code == 0 and result.stderr == ""


# ----------------------------------------------------------------------------- 9: lengths kept


def _pack(padded: dict) -> list:
    lengths = ["--lengths", padded["lengths"]]
    return ["reshape", padded["x"], "--to", "steps", "--drop-padding", *lengths]


@pytest.mark.parametrize("container", ["packed.h5", "packed.npz", "packed.zarr:/steps"])
def test_packed_lengths_are_stored_beside_the_data_and_read_back(
    run_cli, padded, tmp_path, container
):
    packed = run_cli([*_pack(padded), "-o", f"{tmp_path}/{container}", "-q"])
    assert packed.exit_code == 0, packed.stderr
    key = {"packed.h5": "/data", "packed.npz": "arr_0"}.get(container, "/steps")
    path = container.partition(":")[0]
    beside = f"{tmp_path}/{path}:{key}_lengths"
    assert packed.stderr == f"Wrote the lengths to {beside} (beside the data)\n"
    restored = tmp_path / "restored.npy"
    padded_back = run_cli(["reshape", f"{tmp_path}/{path}:{key}", "--to", "padded", "-o", restored])
    assert padded_back.exit_code == 0, padded_back.stderr
    assert f"mask=lengths {beside}" in padded_back.stderr
    np.testing.assert_array_equal(np.load(restored), np.load(padded["x"]))


def test_h5_provenance_links_the_data_and_its_lengths(run_cli, padded, tmp_path):
    out = tmp_path / "p.h5"
    assert run_cli([*_pack(padded), "-o", f"{out}:/packed", "-q"]).exit_code == 0
    with h5py.File(out) as f:
        assert f["/packed"].attrs["lengths"] == f"{out}:/packed_lengths"
        assert f["/packed_lengths"].attrs["lengths_of"] == f"{out}:/packed"
        np.testing.assert_array_equal(f["/packed_lengths"][()], np.load(padded["lengths"]))


@pytest.mark.parametrize("output", ["o.npy", "-"])
def test_packing_into_npy_or_stdout_without_lengths_out_is_refused(
    run_cli, padded, tmp_path, output
):
    target = output if output == "-" else str(tmp_path / output)
    result = run_cli([*_pack(padded), "-o", target])
    assert result.exit_code == 2 and result.stdout_bytes == b""
    assert result.stderr.startswith("Error: ") and "--lengths-out" in result.stderr
    assert not (tmp_path / "o.npy").exists()
    kept = run_cli([*_pack(padded), "-o", target, "--lengths-out", tmp_path / "l.npy", "-q"])
    assert kept.exit_code == 0, kept.stderr


# ----------------------------------------------------------------------------- 10: globs, ignored


def test_globs_say_what_they_matched_when_counts_disagree(run_cli, tmp_path):
    np.save(tmp_path / "s1.npy", np.ones((100, 5, 3), np.float32))
    np.save(tmp_path / "s2.npy", np.ones((50, 5, 3), np.float32))
    for name, n in (("l1", 100), ("l2", 50), ("lx", 50)):  # lx.npy is a stray
        np.save(tmp_path / f"{name}.npy", np.full(n, 5))
    result = run_cli(
        [
            "reduce",
            f"{tmp_path}/s?.npy",
            "--lengths",
            f"{tmp_path}/l?.npy",
            "-o",
            tmp_path / "o.npy",
        ]
    )
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("Error: lengths has 200 entries")
    matched = f"{tmp_path}/s1.npy (100), {tmp_path}/s2.npy (50)"
    assert f"the input {tmp_path}/s?.npy matched 2 files: {matched}" in line
    assert f"{tmp_path}/lx.npy (50)" in line


@pytest.mark.parametrize(
    ("args", "flag", "partner"),
    [
        (["reduce", "{x}", "--mask", "{mask}", "--pad-side", "pre"], "--pad-side", "--lengths"),
        (["reduce", "{x}", "--mask-value", "0", "--pad-side", "post"], "--pad-side", "--lengths"),
        (["pool", "{x}", "--padding", "same"], "--padding", "--pool-size"),
        (["pool", "{x}", "--pool-size", "2", "--empty", "nan"], "--empty", "global pooling"),
        (
            ["project", "{x}", "--pca", "2", "--weights-layout", "torch"],
            "--weights-layout",
            "--weights",
        ),
        (["reshape", "{x}", "--to", "flatten", "-a", "d=2"], "--axis-size", "--pattern"),
        (["reshape", "{x}", "--to", "flatten", "--timesteps", "3"], "--timesteps", "--to padded"),
        (["reshape", "{x}", "--to", "flatten", "--mask", "{mask}"], "--mask", "--drop-padding"),
        (
            ["reshape", "{x}", "--to", "steps", "--lengths", "{lengths}"],
            "--lengths",
            "--drop-padding",
        ),
        (["reshape", "{x}", "--to", "flatten", "--chunk-mb", "4"], "--chunk-mb", "reshape reads"),
    ],
)
def test_an_option_that_would_be_ignored_is_refused(run_cli, padded, tmp_path, args, flag, partner):
    args = [a.format(**padded) for a in args]
    result = run_cli([*args, "-o", tmp_path / "o.npy"])
    lines = _usage_lines(result, args[0])
    assert lines[-1].startswith(f"Error: {flag} goes with ") and partner in lines[-1]
    assert not (tmp_path / "o.npy").exists()


def test_pad_side_with_lengths_is_accepted(run_cli, padded):
    result = run_cli(
        ["reduce", padded["x"], "--lengths", padded["lengths"], "--pad-side", "post", "-q"]
    )
    assert result.exit_code == 0, result.stderr


# ----------------------------------------------------------------------------- 11: help


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_option_has_help_and_a_section(run_cli, name):
    for option in _options(cli.commands[name]):
        assert option.help, f"{name} {option.opts} has no help"
    text = run_cli([name, "--help"]).stdout
    sections = [line for line in text.splitlines() if line.endswith(" options:")]
    assert sections[0] in ("Input options:", "Mask options:")
    assert "Options:" not in text
    if name != "inspect":
        assert {"Input options:", "Operation options:", "Output options:"} <= set(sections)


def test_top_level_help_has_an_example_and_whole_summaries(run_cli):
    text = run_cli(["--help"]).stdout
    assert "Example:" in text and "..." not in text.split("Commands:")[1]
    commands = " ".join(text.split("Commands:")[1].split())
    for name, command in cli.commands.items():
        first = (command.help or "").split("\n")[0].strip()
        assert f"{name} {first}" in commands


# ----------------------------------------------------------------------------- 12: sizes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("100MB", 100 * 2**20),
        ("100M", 100 * 2**20),
        ("1.5GiB", 3 * 2**29),
        ("512k", 2**19),
        ("4096", 4096),
    ],
)
def test_max_memory_takes_the_usual_spellings(monkeypatch, text, size):
    from lstmshape.io import memory_limit

    monkeypatch.setenv("LSTMSHAPE_MAX_MEMORY", text)
    assert memory_limit() == size
    assert load_bench("run").parse_size(text) == size  # `make bench SIZE=...` reads sizes alike


@pytest.mark.parametrize("text", ["ten", "-1", "1e9", "5 bytes", "1.5iB"])
def test_max_memory_refuses_other_text(run_cli, padded, monkeypatch, text):
    monkeypatch.setenv("LSTMSHAPE_MAX_MEMORY", text)
    result = run_cli(["reshape", padded["x"], "--to", "flatten", "-q"])
    assert result.exit_code == 2 and "LSTMSHAPE_MAX_MEMORY" in result.stderr


# ----------------------------------------------------------------------------- 13: set-up


def test_make_demo_installs_only_the_runtime_dependencies():
    plan = subprocess.run(
        ["make", "-n", "-B", "demo"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    installs = [line for line in plan.splitlines() if "pip install" in line and " -e " in line]
    assert installs and all("[test]" not in line for line in installs), installs


def test_readme_says_how_long_make_test_takes_and_what_test_fast_skips():
    readme = (ROOT / "README.md").read_text()
    assert "make test-fast" in readme and "skips" in readme
    assert "make test" in readme and "minute" in readme


# ----------------------------------------------------------------------------- 15: exit codes


def test_exit_codes_keep_their_classes(run_cli, padded, tmp_path):
    out = tmp_path / "o.npy"
    out.write_bytes(b"precious")
    assert run_cli(["reduce", padded["x"], "-o", out]).exit_code == 2  # refused overwrite
    assert run_cli(["reduce", padded["x"], "--bad-flag"]).exit_code == 2  # usage
    assert run_cli(["reduce", tmp_path / "none.npy"]).exit_code == 2  # bad input
    assert run_cli(["reduce", padded["x"], "-q", "-o", out, "--force"]).exit_code == 0
    readme = (ROOT / "README.md").read_text()
    assert "| 130 |" in readme


def test_python_dash_m_help_is_the_console_help():
    done = subprocess.run(lstmshape_command("--help"), capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("Usage: lstmshape [OPTIONS]")


def test_names_are_drawn_as_they_are_not_as_emoji(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("run:fire:.npy", np.zeros((2, 3, 1), np.float32))
    result = run_cli(["inspect", "run:fire:.npy"])
    assert result.exit_code == 0, result.output
    assert "run:fire:.npy" in result.stderr
    assert "\N{FIRE}" not in result.stderr
