"""Byte counts as people write and read them: one unit system, binary, everywhere.

`parse_size` reads what users type (`LSTMSHAPE_MAX_MEMORY`, `make bench SIZE=...`);
`format_bytes` writes what every table, bar and message shows. Both count in powers of
1024: `1GB`, `1G` and `1GiB` all mean 2**30 bytes, and sizes print as `GiB`.
"""

from __future__ import annotations

import re

_SCALE = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGTP]?)(?:(?<=[KMGTP])i)?B?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A size in bytes from `512`, `100M`, `100MB`, `100MiB`, `1.5GiB`, `2 g` (binary units).

    >>> parse_size("100MB"), parse_size("100M"), parse_size("1.5GiB"), parse_size("4096")
    (104857600, 104857600, 1610612736, 4096)

    Raises ValueError for anything else (`-1`, `ten`, `5 bytes`, `1e9`).
    """
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 512M, 100MB, 1.5GiB or a number of bytes)")
    return int(float(match.group(1)) * _SCALE[match.group(2).upper()])


def format_bytes(count: int) -> str:
    """A byte count in binary units, as every message, table and progress bar shows sizes.

    >>> format_bytes(512), format_bytes(3 * 2**30), format_bytes(5 * 2**40)
    ('512 B', '3.0 GiB', '5.0 TiB')
    """
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
