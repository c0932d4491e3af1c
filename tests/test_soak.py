"""A short soak: 25 piped invocations leave no stray files or processes, all correct.

`bench/soak.py` runs the loop and checks it; `make soak` (and `make fuzz`) run 500 of them.
"""

from __future__ import annotations

import pytest
from helpers import load_bench


@pytest.mark.slow
def test_piped_runs_leave_nothing_behind_and_are_correct(tmp_path):
    # 25: two writes into the shared .h5 container and one broken pipe among them.
    assert load_bench("soak").soak(25, tmp_path) == []
