"""What a person sees: shape tables, inspect reports and progress, all on standard error.

The only module that imports rich, and imported only when something is drawn, so `-q`
runs never load rich. Data and `--json` go to standard output elsewhere (`report.py`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lstmshape.units import format_bytes

if TYPE_CHECKING:
    from rich.tree import Tree

    from lstmshape.diffreport import DiffReport
    from lstmshape.report import Summary

BAR_GLYPHS = " ▁▂▃▄▅▆▇█"


def error_console() -> Console:
    # emoji=False: names are shown as they are (`run:fire:.npy` is not drawn as a flame),
    # and rich's emoji table (~2 ms of start-up) is never loaded.
    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def shape_text(shape: Sequence[int]) -> str:
    """`(64, 16)`; a size known only once the data is read (-1 in a plan) shows as `?`."""
    sizes = ", ".join("?" if n < 0 else str(n) for n in shape)
    return "(" + sizes + ("," if len(shape) == 1 else "") + ")"


def print_summary(summary: Summary, console: Console | None = None) -> None:
    """The before/after shape table."""
    console = console or error_console()
    table = Table(
        title=f"lstmshape {summary.command}",
        title_justify="left",
        caption=_options_text(summary.options),
        caption_justify="left",
    )
    for column in ("", "shape", "dtype", "where"):
        table.add_column(column, overflow="fold")
    for step in summary.steps:
        where = step.where + (f"  [dim]{step.note}[/]" if step.note else "")
        table.add_row(step.label, shape_text(step.shape), step.dtype, where)
    console.print(table)
    for message in summary.messages:
        console.print(message)


def _options_text(options: dict[str, Any]) -> str:
    """`strategy=last  mask=lengths x.npy`, leaving out what is off or unset."""
    shown = {k: v for k, v in options.items() if v not in (None, False, {}, "") and k != "layout"}
    if options.get("layout") == "tnf":
        shown["layout"] = "tnf"
    return "  ".join(f"{key}={value}" for key, value in shown.items())


def histogram_bar(counts: Sequence[int]) -> str:
    """A one-line histogram: `histogram_bar([0, 1, 4])` -> ' ▂█'."""
    top = max(counts, default=0)
    if top == 0:
        return ""
    steps = len(BAR_GLYPHS) - 1
    return "".join(BAR_GLYPHS[round(c / top * steps) if c else 0] for c in counts)


def print_inspect(reports: Sequence[dict[str, Any]], console: Console | None = None) -> None:
    """One table per array, h5 files shown as their tree of groups first."""
    console = console or error_console()
    trees: dict[str, Tree] = {}
    for report in reports:
        tree_key = report.get("file_tree_of")
        if tree_key and tree_key not in trees:
            trees[tree_key] = _h5_tree(
                tree_key, [r["key"] for r in reports if r.get("file_tree_of") == tree_key]
            )
            console.print(trees[tree_key])
        console.print(_inspect_table(report))
        if report.get("picture"):
            console.print(_picture_text(report), highlight=False)


def _picture_text(report: dict[str, Any]) -> str:
    """The validity picture: sampled samples down, time across (█ valid, · padding)."""
    rows = report["picture"]
    return "valid steps (samples down, time across):\n" + "\n".join(
        f"  [green]{row}[/]".replace("·", "[dim]·[/]") for row in rows
    )


def _h5_tree(path: str, keys: Sequence[str]) -> Tree:
    from rich.tree import Tree

    root = Tree(f"[bold]{path}[/]")
    nodes: dict[str, Tree] = {"": root}
    for key in keys:
        parts = key.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix not in nodes:
                parent = nodes["/".join(parts[: depth - 1])]
                label = parts[depth - 1] + ("" if depth == len(parts) else "/")
                nodes[prefix] = parent.add(label)
    return root


def _inspect_table(report: dict[str, Any]) -> Table:
    table = Table(title=report["ref"], title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for label, value in _inspect_rows(report):
        table.add_row(label, value)
    return table


def _inspect_rows(report: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield "shape", shape_text(report["shape"])
    yield "dtype", str(report["dtype"])
    yield "size", f"{report['size']:,} elements, {format_bytes(report['nbytes'])}"
    if report.get("layout"):
        yield "layout", str(report["layout"])
    padding = report.get("padding")
    if padding:
        yield "padding", _padding_text(padding)
    lengths = report.get("lengths")
    if lengths:
        yield "valid lengths", _lengths_text(lengths)
    if report.get("nan_count") is not None:
        yield "NaN / Inf", f"{report['nan_count']:,} / {report.get('inf_count', 0):,}"
    for note in report.get("notes", []):
        yield "note", note
    check = report.get("check")
    if check:
        yield "given mask", f"{check['given']}: {_agreement(check)}"
    for what, where in report.get("written", {}).items():
        yield f"{what} written", where
    yield from _header_rows(report)


def _agreement(check: dict[str, Any]) -> str:
    if not check["disagree"]:
        return "agrees"
    shown = ", ".join(str(i) for i in check["first"])
    more = ", ..." if check["disagree"] > len(check["first"]) else ""
    return f"disagrees in {check['disagree']} of {check['samples']} samples ({shown}{more})"


def _header_rows(report: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """What the headers add (`listing.header_fields`): storage, provenance, attributes."""
    if report.get("dims"):
        yield "dimensions", ", ".join(report["dims"])
    if report.get("stored_dtype"):
        yield "stored as", f"{report['stored_dtype']} (read as {report['dtype']}, exactly)"
    if report.get("chunks"):
        yield "chunks", shape_text(report["chunks"])
    if report.get("compression"):
        yield "compression", str(report["compression"])
    provenance = report.get("provenance")
    if provenance:
        yield "provenance", escape(_provenance_text(provenance))
    shown = {k: v for k, v in (report.get("attrs") or {}).items() if not _is_provenance(k, report)}
    if shown:
        yield "attributes", escape("\n".join(f"{k} = {_short(v)}" for k, v in shown.items()))
    if report.get("attrs_error"):
        yield "attributes", escape(f"unreadable: {report['attrs_error']}")


def _is_provenance(name: str, report: dict[str, Any]) -> bool:
    return bool(report.get("provenance")) and name in ("source", "operation", "options", "version")


def _provenance_text(provenance: dict[str, Any]) -> str:
    options = provenance.get("options")
    if isinstance(options, dict):
        options = "  ".join(f"{k}={v}" for k, v in options.items() if v not in (None, False, ""))
    return (
        f"lstmshape {provenance.get('version')} {provenance.get('operation')}\n"
        f"from {provenance.get('source')}\n{options}"
    ).rstrip()


def _short(value: Any, limit: int = 200) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def brief_line(entry: dict[str, Any]) -> str:
    """One `inspect --brief` line: reference, shape (dimension names), dtype, size, storage.

    >>> brief_line({"ref": "r.nc:/out", "shape": [2, 3], "dims": ["sample", "feature"],
    ...             "dtype": "float32", "nbytes": 24, "chunks": [1, 3], "compression": "gzip"})
    'r.nc:/out  (sample=2, feature=3)  float32  24 B  chunks (1, 3) gzip'
    """
    dims = entry.get("dims")
    if dims and len(dims) == len(entry["shape"]):
        shape = "(" + ", ".join(f"{d}={n}" for d, n in zip(dims, entry["shape"], strict=True)) + ")"
    else:
        shape = shape_text(entry["shape"])
    dtype = entry["dtype"]
    if entry.get("stored_dtype"):
        dtype += f" ({entry['stored_dtype']} on disk)"
    parts = [entry["ref"], shape, dtype, format_bytes(entry["nbytes"])]
    storage = [f"chunks {shape_text(entry['chunks'])}"] if entry.get("chunks") else []
    storage += [str(entry["compression"])] if entry.get("compression") else []
    return "  ".join(parts + ([" ".join(storage)] if storage else []))


def print_brief(entries: Sequence[dict[str, Any]], console: Console | None = None) -> None:
    """`inspect --brief`: one plain line per array."""
    console = console or error_console()
    for entry in entries:
        console.print(brief_line(entry), markup=False, highlight=False)


def _padding_text(padding: dict[str, Any]) -> str:
    side = padding.get("side", "none")
    if side in (None, "none"):
        return "none detected"
    kind = padding.get("kind", "value")
    detail = "repeats the last valid step" if kind == "repeat" else f"value {padding.get('value')}"
    return f"{side}-padded, {detail}"


def _lengths_text(lengths: dict[str, Any]) -> str:
    text = f"min {lengths['min']}  median {lengths['median']}  max {lengths['max']}"
    bar = histogram_bar(lengths.get("histogram", []))
    return f"{text}  [cyan]{bar}[/]" if bar else text


@contextmanager
def progress_bar(total_bytes: int, label: str, *, enabled: bool) -> Iterator[Any]:
    """A bytes/rate/time-left bar on stderr; yields `advance(nbytes)`. Sizes and rates in
    binary units, as every table and message shows them (`units.format_bytes`).

    rich waits before drawing, so work shorter than about a second shows nothing.
    """
    if not enabled:
        yield lambda _nbytes: None
        return
    # rich.progress costs ~10 ms to import: only runs that draw a bar pay it.
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bytes_column, rate_column = _byte_columns()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        bytes_column,
        rate_column,
        TimeRemainingColumn(),
        console=error_console(),
        transient=True,
        refresh_per_second=5,
    )
    task = progress.add_task(label, total=total_bytes, visible=False)
    with progress:
        started = _Timer()

        def advance(nbytes: int) -> None:
            progress.advance(task, nbytes)
            if started.elapsed() > 1.0:
                progress.update(task, visible=True)

        yield advance


def _byte_columns() -> tuple[Any, Any]:
    """`done / total` and `rate/s` columns in binary units (rich's own are decimal)."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class BytesColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            total = "?" if task.total is None else format_bytes(int(task.total))
            return Text(f"{format_bytes(int(task.completed))} / {total}", style="progress.download")

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            rate = "?" if speed is None else f"{format_bytes(int(speed))}/s"
            return Text(rate, style="progress.data.speed")

    return BytesColumn(), RateColumn()


class _Timer:
    def __init__(self) -> None:
        import time

        self._clock = time.monotonic
        self._start = self._clock()

    def elapsed(self) -> float:
        return self._clock() - self._start


def print_diff(
    report: DiffReport, names: tuple[str, str], mask: str, console: Console | None = None
) -> None:
    """`lstmshape diff`: the verdict and statistics, the largest differences and a
    histogram of each sample's largest |A - B|."""
    console = console or error_console()
    tol = report.tolerance
    table = Table(title="lstmshape diff", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    for side, name in zip("ab", names, strict=True):
        info = report.inputs[side]
        layout = "  tnf" if info["layout"] == "tnf" and len(info["shape"]) == 3 else ""
        table.add_row(side.upper(), f"{name}  {shape_text(info['shape'])} {info['dtype']}{layout}")
    steps = f" in {report.steps:,} steps" if report.has_time else ""
    table.add_row("compared", f"{report.elements:,} elements{steps} of {report.samples:,} samples")
    table.add_row("mask", mask)
    nan = "; NaN = NaN" if tol.equal_nan else ""
    table.add_row(
        "close when", f"|A-B| <= {tol.atol:g} + {tol.rtol:g}·|B| ({report.compared_dtype}{nan})"
    )
    table.add_row("max |A-B|", _number(report.max_abs_diff))
    table.add_row("max |A-B|/|B|", _number(report.max_rel_diff))
    steps = f", {report.differing_steps:,} steps" if report.has_time else ""
    nans = f" ({report.nan_mismatches:,} NaN against a number)" if report.nan_mismatches else ""
    table.add_row(
        "differing",
        f"{report.differing_elements:,} elements{nans}{steps}, "
        f"{report.differing_samples:,} of {report.samples:,} samples",
    )
    verdict = "[green]equal within tolerance[/]" if report.equal else "[red bold]different[/]"
    table.add_row("result", verdict)
    console.print(table)
    if report.worst:
        console.print(_worst_table(report))
    if report.histogram:
        console.print(_diff_histogram(report.histogram))


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _worst_table(report: DiffReport) -> Table:
    table = Table(title="largest differences", title_justify="left")
    for column in ("where", "A", "B", "|A-B|", "|A-B|/|B|"):
        table.add_column(column, justify="left" if column == "where" else "right")
    for entry in report.worst:
        table.add_row(
            entry.where(),
            f"{entry.a:.7g}",
            f"{entry.b:.7g}",
            _number(entry.abs_diff),
            _number(entry.rel_diff),
        )
    return table


def _diff_histogram(bins: Sequence[tuple[str, int]], width: int = 30) -> Table:
    """Horizontal bars, one per decade of the per-sample maximum |A - B|."""
    table = Table(
        title="samples by their largest |A-B|", title_justify="left", show_header=False, box=None
    )
    table.add_column("bin", justify="right")
    table.add_column("bar", style="cyan")
    table.add_column("samples", justify="right")
    top = max((count for _, count in bins), default=0) or 1
    for label, count in bins:
        cells = count * width / top
        bar = "█" * int(cells) + ("▏" if count and cells < 1 else "")
        table.add_row(label, bar, f"{count:,}")
    return table
