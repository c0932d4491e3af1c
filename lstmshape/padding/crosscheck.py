"""The cross-check: does what the user asked for fit the padding the data shows?

`audit(detected, validity, pad_side, mask_source, strategy)` turns a `Detection` (with the given
mask summarised beside it, see `summarise(x, validity)`) into `Finding`s: a stable `code` and
a one-line message naming the numbers and the flag that fixes it. It stays quiet when the
result is right anyway (repeat padding under last/first/max/min, post padding under first,
pre padding under last) and on weak evidence (a single sample whose final step alone looks
like padding), and it never warns on the true mask of data whose valid steps differ from the
padding.

Codes: "layout" (the padding forms a staircase along the first axis), "pad-side" (lengths on
the wrong side), "mask-disagrees" (the given mask's ends are not where the data's padding
is), "mask-all-valid" (lengths all T or an all-valid mask while padding shows),
"mask-value-unmatched" (`--mask-value` matches no step), "no-mask" and "nan-padding"
(padding shows and no mask is given).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lstmshape.padding.decide import EMPTY, HEAD, TAIL, Detection

if TYPE_CHECKING:
    from lstmshape.validity import Validity

AUTO_MASK_FLAG = "--lengths auto"  # the flag that takes the mask from the detected padding
MaskSource = str  # None (no mask), "mask", "lengths" or "mask-value"

# Strategies whose result padding cannot change, by what the padding is.
_REPEAT_SAFE = frozenset({"last", "first", "max", "min"})
_SAFE = {"post": frozenset({"first"}), "pre": frozenset({"last"})}
_SHOWN = 5  # sample indices named in a message


@dataclass(frozen=True)
class Finding:
    """One warning: a stable code and a one-line message."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def audit(
    detected: Detection,
    validity: Validity | None,
    pad_side: str = "post",
    mask_source: MaskSource | None = None,
    strategy: str | None = None,
    *,
    mask_value: float | str | None = None,
    layout: str = "ntf",
) -> list[Finding]:
    """What the data's padding says about the mask the user gave (or did not give).

    detected: `infer(summarise(x, validity))` over the whole input (blocks merged first).
    validity: the given mask as built (None or all-valid when nothing is masked).
    pad_side: `--pad-side`; mask_source: None, "mask", "lengths" or "mask-value";
    strategy: the reduction (last/first/mean/sum/max/min; pool avg as "mean", a PCA fit as
        "mean"); None for commands that map every step alone (they get no no-mask warning).
    mask_value: the `--mask-value` given, for messages; layout: `--layout`, for the hint.

    >>> from lstmshape.padding import infer, summarise
    >>> x = np.zeros((4, 5, 2)); x[:, :3] = 1.0, 2.0
    >>> [f.code for f in audit(infer(summarise(x)), None, strategy="mean")]
    ['no-mask']
    """
    if detected.n == 0:
        return []
    if looks_time_major(detected):
        other = "tnf" if layout == "ntf" else "ntf"
        rows = np.flatnonzero(detected.flags & (TAIL | HEAD | EMPTY))
        return [
            Finding(
                "layout",
                f"the padding forms a staircase along the first axis ({len(rows)} of "
                f"{detected.n} rows padded, from row {rows[0]} to {rows[-1]}): the data looks "
                f"{'time-major' if other == 'tnf' else 'batch-first'}; did you mean --layout "
                f"{other}?",
            )
        ]
    if mask_source is None:
        return _unmasked(detected, strategy)
    return _masked(detected, validity, pad_side, mask_source, mask_value)


def _unmasked(detected: Detection, strategy: str | None) -> list[Finding]:
    if strategy is None or not _strong(detected) or _safe(detected, strategy):
        return []
    count = int(np.count_nonzero(detected.padded | detected.empty))
    shows = f"{count} of {detected.n} samples {_describe(detected)}"
    sources = f"--lengths (with --pad-side {_lengths_side(detected)})"
    if detected.kind == "value" and _is_nan(detected.value):
        return [
            Finding(
                "nan-padding",
                f"no mask given, but {shows}: --strategy {strategy} gives NaN for them; add "
                f"--mask-value nan (or {sources} or --mask)",
            )
        ]
    if detected.kind == "value":
        sources += f", --mask-value {_show(detected.value)}"
    return [
        Finding(
            "no-mask",
            f"no mask given, but {shows}, which --strategy {strategy} would count; give "
            f"{sources} or --mask",
        )
    ]


def _masked(
    detected: Detection,
    validity: Validity | None,
    pad_side: str,
    mask_source: MaskSource,
    mask_value: float | str | None,
) -> list[Finding]:
    named = {"lengths": "the lengths", "mask": "the mask"}.get(
        mask_source, f"--mask-value {mask_value}"
    )
    if validity is None or validity.is_all_valid:
        return _all_valid(detected, mask_source, named)
    if detected.kind == "none":
        return []
    flag = TAIL if detected.side == "post" else HEAD
    count = int(np.count_nonzero((detected.flags & flag > 0) & ~detected.empty))
    wrong_side = detected.side in ("pre", "post") and detected.side != pad_side
    if mask_source == "lengths" and wrong_side and count:
        where = "end" if detected.side == "post" else "start"
        return [
            Finding(
                "pad-side",
                f"lengths say {pad_side}-padded, but {count} of {detected.n} samples are padded "
                f"at the {where}; did you mean --pad-side {detected.side}?",
            )
        ]
    if detected.agree is None:
        return []
    bad = np.flatnonzero(~detected.agree)
    if not bad.size:
        return []
    which = f"{len(bad)} of {detected.n} samples ({_indices(bad)})"
    belong = "they belong" if mask_source == "lengths" else "it belongs"
    return [
        Finding(
            "mask-disagrees",
            f"{named} disagree with the padding in the data ({_describe(detected)}) in "
            f"{which}{_example(detected, validity, bad)}; check {belong} to this input in its "
            f"sample order, or use {AUTO_MASK_FLAG}",
        )
    ]


def _all_valid(detected: Detection, mask_source: MaskSource, named: str) -> list[Finding]:
    """Nothing is masked, yet the data shows padding (or, for --mask-value, nothing matched)."""
    strong = detected.kind != "none" and _strong(detected)
    count = int(np.count_nonzero(detected.padded | detected.empty))
    shows = f"{count} of {detected.n} samples {_describe(detected)}" if strong else ""
    if mask_source == "mask-value":
        fix = (
            f"; did you mean --mask-value {_show(detected.value)}?"
            if strong and detected.kind == "value"
            else f"; use {AUTO_MASK_FLAG} or --lengths"
            if strong
            else ""
        )
        seen = f", but {shows}" if strong else ", and the data shows no padding"
        return [Finding("mask-value-unmatched", f"{named} matches no timestep{seen}{fix}")]
    if not strong:
        return []
    what = (
        f"the lengths are all T={detected.t} (no padding)"
        if mask_source == "lengths"
        else "the mask marks every step valid"
    )
    return [
        Finding(
            "mask-all-valid",
            f"{what}, but {shows}; check {named} belong to this input, or use {AUTO_MASK_FLAG}",
        )
    ]


def looks_time_major(detected: Detection) -> bool:
    """Padding in a staircase along the first axis: time-major data read as batch-first.

    Read the wrong way round, the "samples" are timesteps and their ends are the first and
    last real samples: the rows that show padding are one contiguous run reaching the first
    or the last row (from the time those samples' padding begins), some rows show it at the
    start and some at the end, and several at both ends (or throughout, when the middle of a
    row is not looked at). A real batch, even one sorted by length, shows padding on one side.
    """
    if detected.kind != "value" or detected.n < 4:
        return False
    flags, empty = detected.flags, detected.empty
    padded = flags > 0
    head, tail = (flags & HEAD > 0) & ~empty, (flags & TAIL > 0) & ~empty
    if not (head.any() and tail.any()) or padded.all():
        return False
    if np.count_nonzero((head & tail) | empty) < 2:
        return False
    rows = np.flatnonzero(padded)
    contiguous = rows[-1] - rows[0] + 1 == len(rows)
    return bool(contiguous and (rows[0] == 0 or rows[-1] == detected.n - 1))


# --- wording -------------------------------------------------------------------------------


def _strong(detected: Detection) -> bool:
    """Enough to warn about: 2 padded samples, or one with 2 or more padding steps."""
    padded = detected.padded
    return int(np.count_nonzero(padded)) >= 2 or bool(np.any(detected.pad_run[padded] >= 2))


def _safe(detected: Detection, strategy: str) -> bool:
    """The strategy's result is right without a mask (empty samples aside)."""
    if detected.kind == "repeat":
        return strategy in _REPEAT_SAFE
    return strategy in _SAFE.get(detected.side, frozenset())


def _describe(detected: Detection) -> str:
    if detected.kind == "repeat":
        return "repeat their last valid step to the end (a masked Keras RNN's padding)"
    value = f"{_show(detected.value)} padding"
    return {
        "pre": f"start with {value}",
        "mixed": f"hold {value} at the start or end",
    }.get(detected.side, f"end in {value}")


def _lengths_side(detected: Detection) -> str:
    return "pre" if detected.side == "pre" else "post"


def _example(detected: Detection, validity: Validity | None, bad: Any) -> str:
    """'; sample 3 has 5 valid steps, the data 7' when the detected lengths are known."""
    if detected.lengths is None or validity is None:
        return ""
    first = int(bad[0])
    given = int(validity.counts()[first])
    return f"; sample {first} has {given} valid steps, the data {int(detected.lengths[first])}"


def _indices(bad: Any) -> str:
    shown = ", ".join(str(int(i)) for i in bad[:_SHOWN])
    return shown + (", ..." if len(bad) > _SHOWN else "")


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _show(value: Any) -> str:
    return "nan" if _is_nan(value) else repr(value)
