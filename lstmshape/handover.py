"""The `inspect` run, and what it hands over: the detected validity written out (`--lengths-out`,
`--mask-out`), a given mask checked against it (`--lengths`/`--mask`), and a small picture
of it (samples x time, downsampled) so the padding's side and shape are seen at a glance."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from lstmshape.errors import InputError
from lstmshape.inputs import MaskRequest, load_mask_spec
from lstmshape.inspection import inspect_array
from lstmshape.progress import Counted, Progress, no_progress
from lstmshape.refs import ArrayRef
from lstmshape.validity import Validity

#: The picture's size at most: sampled rows, and columns the timesteps are binned into.
PICTURE_ROWS, PICTURE_COLUMNS = 12, 60
_SHOWN = 5  # sample indices named


# A NamedTuple, not a frozen dataclass: as immutable, and created ~7x faster (start-up).
class Handover(NamedTuple):
    """What `inspect` was asked to do with the validity it detects."""

    mask: MaskRequest | None = None  # a given mask source to check
    lengths_out: ArrayRef | None = None
    mask_out: ArrayRef | None = None
    force: bool = False
    strict: bool = False

    @property
    def writes(self) -> bool:
        return self.lengths_out is not None or self.mask_out is not None


def detected_validity(report: Any) -> Validity | None:
    """The validity `inspect` found (an `inspection.Report`), None when it has no lengths."""
    if report.lengths is None or report.padding is None or report.t is None:
        return None
    side = report.padding.side
    if side not in ("post", "pre", "none"):
        return None
    return Validity.from_lengths(
        report.lengths.values, report.t, "pre" if side == "pre" else "post"
    )


def hand_over(report: Any, source: Any, handover: Handover) -> dict[str, Any]:
    """The fields `inspect` adds to its report: `picture`, `check`, `written`."""
    detected = detected_validity(report)
    extra: dict[str, Any] = {}
    if detected is not None and detected.n:
        extra["picture"] = picture(detected)
    if handover.mask is not None and handover.mask.given:
        extra["check"] = _check(report, source, handover, detected)
    if handover.writes:
        extra["written"] = _write(report, detected, handover)
    return extra


def picture(validity: Validity) -> list[str]:
    """Rows of `█` (valid), `▒` (partly) and `·` (padding) for evenly spaced samples.

    >>> picture(Validity.from_lengths(np.array([4, 2]), t=4))
    ['████', '██··']
    """
    n, t = validity.n, validity.t
    spaced = np.linspace(0, n - 1, min(n, PICTURE_ROWS)).round().astype(np.intp)
    # Ascending, so repeats are adjacent (np.unique would import numpy.ma: 8 ms of start-up).
    rows = spaced[np.concatenate(([True], spaced[1:] != spaced[:-1]))]
    columns = min(max(t, 1), PICTURE_COLUMNS)
    edges = np.linspace(0, t, columns + 1).round().astype(np.intp)
    first = validity.first_index()[rows]
    stop = np.where(first >= 0, validity.last_index()[rows] + 1, 0)
    first = np.maximum(first, 0)
    overlap = np.clip(
        np.minimum(stop[:, None], edges[None, 1:]) - np.maximum(first[:, None], edges[None, :-1]),
        0,
        None,
    )
    width = np.maximum(edges[1:] - edges[:-1], 1)[None, :]
    glyphs = np.where(overlap >= width, "█", np.where(overlap > 0, "▒", "·"))
    return ["".join(row) for row in glyphs]


def _check(
    report: Any, source: Any, handover: Handover, detected: Validity | None
) -> dict[str, Any]:
    """How many samples the given mask's first/last valid steps disagree with the data in."""
    assert handover.mask is not None
    if detected is None:
        raise InputError("inspect found no per-sample padding to check the given mask against")
    shape_ntf = (report.n, report.t, report.f)
    given = load_mask_spec(handover.mask, shape_ntf, source).validity
    if given is None:
        raise InputError("inspect checks --mask or --lengths; --mask-value is the padding itself")
    bad = np.flatnonzero(
        (given.first_index() != detected.first_index())
        | (given.last_index() != detected.last_index())
    )
    check = {
        "given": handover.mask.describe(),
        "samples": int(report.n),
        "disagree": int(bad.size),
        "first": bad[:_SHOWN].tolist(),
    }
    if bad.size and handover.strict:
        shown = ", ".join(str(i) for i in check["first"]) + (", ..." if bad.size > _SHOWN else "")
        raise InputError(
            f"{check['given']} disagrees with the padding in the data in {bad.size} of "
            f"{report.n} samples ({shown}) (--strict)"
        )
    return check


def _write(report: Any, detected: Validity | None, handover: Handover) -> dict[str, str]:
    from lstmshape import io

    if detected is None:
        raise InputError(
            "inspect found no per-sample lengths to write (the data shows no padding on one "
            "side); --lengths-out and --mask-out need padded 3-D data"
        )
    written = {}
    for ref, data in (
        (handover.lengths_out, detected.counts().astype(np.int64)),
        (handover.mask_out, detected.as_mask().T if report.layout == "tnf" else detected.as_mask()),
    ):
        if ref is not None:
            io.save(data, ref, force=handover.force)
            written["lengths" if data.ndim == 1 else "mask"] = str(ref)
    return written


def _one_array(refs: list[ArrayRef]) -> None:
    """Refuse a mask handed over or checked against anything but exactly one array."""
    from lstmshape import io

    count = sum(len(io.list_arrays(ref)) for ref in refs)
    if count != 1:
        raise InputError(
            f"--lengths-out, --mask-out, --lengths and --mask go with one array; the inputs "
            f"hold {count} (name one with PATH:KEY)"
        )


def _first_axis_entry(ndim: int, layout: str) -> str:
    """What one index along the first axis is, in words (inspect reads whole ones)."""
    if ndim != 3:
        return "row"
    return "timestep" if layout == "tnf" else "sample"


def inspect_refs(
    refs: Iterable[ArrayRef],
    *,
    layout: str = "ntf",
    handover: Handover | None = None,
    progress: Progress = no_progress,
) -> list[dict[str, Any]]:
    """The inspect report of every array behind `refs` (each array of a file without KEY);
    `handover`: check a given mask, write the detected one (`lstmshape.handover`);
    `progress` gets one pass per array."""
    from lstmshape import io
    from lstmshape.limits import refuse_huge_reads
    from lstmshape.listing import header_fields

    refs = list(refs)
    handover = handover or Handover()
    if handover.writes or handover.mask is not None:
        _one_array(refs)
    reports = []
    for ref in refs:
        for source in io.iter_arrays(ref):  # a container is opened once for all its arrays
            info = source.info
            refuse_huge_reads(source, 0, _first_axis_entry(len(source.shape), layout))
            with progress(source.nbytes, f"inspecting {info.ref}") as advance:
                found = inspect_array(Counted(source, advance), layout=layout)
                report = found.to_dict() | hand_over(found, source, handover)
            report.update(ref=str(info.ref), key=info.ref.key, format=info.format)
            report.update(header_fields(info))  # chunks, dims, attributes, provenance
            if info.format == "h5" and ref.key is None:
                report["file_tree_of"] = info.ref.path
            reports.append(report)
    return reports
