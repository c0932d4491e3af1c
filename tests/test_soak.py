"""A short soak: 25 piped invocations leave no stray files or processes, all correct.

`bench/soak.py` runs the loop and checks it; `make soak` (and `make fuzz`) run 500 of them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_soak():
    spec = importlib.util.spec_from_file_location("lstmshape_bench_soak", ROOT / "bench/soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_piped_runs_leave_nothing_behind_and_are_correct(tmp_path):
    # 25: two writes into the shared .h5 container and one broken pipe among them.
    assert _load_soak().soak(25, tmp_path) == []
