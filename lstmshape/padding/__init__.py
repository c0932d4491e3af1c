"""The one padding detector: where each sample's padding is, read from the data alone.

Two steps, so that a stream can look at one block of samples at a time:

1. `summarise(x_ntf)` looks at the two ends of every sample of a batch-first block and returns
   `Ends`, per-sample facts that are merged along N by `Ends.concat` (plain concatenation, so
   any split of a batch gives the same merged summary):
   - the run of leading steps equal to step 0 and of trailing steps equal to step T-1
     (all features exactly, NaN equal to NaN),
   - whether steps 0 and T-1 are *constant* (all features one value) and that value,
   - with a given `Validity`, whether the steps at and beside each sample's given first and
     last valid step equal the sample's end steps (what `audit` needs to judge the mask).
   `exact=False` (the default, for every run) counts each run up to 2 steps: it reads steps
   0, 1, T-2 and T-1, feature 0 first and whole steps only where feature 0 matches, plus
   one gathered step beside each given boundary (step T//2 of samples that look empty). On
   (N, 128, 256) float32 that is ~2-5% of a streamed masked mean (bench/bench_padding.py),
   about 0.1 ms of fixed cost per block. A sample whose steps 0, 1, T//2, T-2 and T-1 are
   one constant step counts as empty there, whatever the rest holds. `exact=True` (inspect,
   an automatic mask) follows each run to its end: its cost grows with the padding.
2. `infer(ends)` decides once, over the merged summary, what padding explains it (`Detection`):
   - value padding: end steps whose features all hold one value, the value shared by the most
     samples (NaN is one value). It sits at the end of samples (post), the start (pre), or,
     when at least 2 samples and a tenth of the padded ones show each, both (mixed); a lone
     sample showing the other side is taken as real data equal to the padding (`stray`).
   - repeat padding: trailing steps that repeat the last valid step exactly, which a masked
     Keras RNN writes (it carries its last output forward). It wins over value padding when
     more samples show it; its empty samples are the all-zero ones (Keras starts from zeros).
   - a sample that is one constant step from start to end is empty (all padding); empty
     samples alone say nothing about the side (reported as post).
   With one feature every step is constant, so a value (or a repeat) needs 2 samples to count.
   A valid step next to the padding that equals it exactly is counted as padding, as Keras
   `Masking` would; apart from that, lengths are exact when `exact=True`.

Deciding over the merged summary is exact but needs the whole batch first. A stream that needs
lengths per block (an automatic mask) can decide on its first block(s) with `infer(ends)` and
apply that decision to later blocks with `infer(ends, like=first)`; `infer` on the merged
summary at the end tells whether the batch agrees with the early decision.

3. `audit(detection, validity, ...)` (crosscheck.py) compares the given mask, or the lack
   of one, with the detection and returns one-line `Finding`s with stable codes.

Modules: ends.py (gathering the summary), decide.py (deciding), crosscheck.py (the audit).
"""

from __future__ import annotations

from lstmshape.padding.crosscheck import AUTO_MASK_FLAG, Finding, audit, looks_time_major
from lstmshape.padding.decide import EMPTY, HEAD, TAIL, Detection, Kind, Side, infer
from lstmshape.padding.ends import (
    PROBE_STEPS,
    Ends,
    Given,
    TimeScan,
    leading_true,
    same,
    summarise,
)

__all__ = [
    "AUTO_MASK_FLAG",
    "EMPTY",
    "HEAD",
    "PROBE_STEPS",
    "TAIL",
    "Detection",
    "Ends",
    "Finding",
    "Given",
    "Kind",
    "Side",
    "TimeScan",
    "audit",
    "detect",
    "infer",
    "leading_true",
    "looks_time_major",
    "same",
    "summarise",
]


def detect(x_ntf: object, *, exact: bool = True) -> Detection:
    """`infer(summarise(x_ntf, exact=exact))`: the padding of one in-memory batch-first array.

    >>> import numpy as np
    >>> x = np.zeros((2, 4, 3)); x[0, 2:] = 1.0, 2.0, 3.0; x[1, 3:] = 4.0, 5.0, 6.0
    >>> detect(x).lengths.tolist(), detect(x).side
    ([2, 1], 'pre')
    """
    return infer(summarise(x_ntf, exact=exact))
