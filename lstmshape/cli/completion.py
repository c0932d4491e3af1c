"""Shell completion (click's `_LSTMSHAPE_COMPLETE=bash_source|zsh_source|fish_source`).

A `PATH[:KEY]` completes as a file name, and after `FILE:` as the arrays inside an `.h5`,
`.npz` or `.zarr` container, listed from headers only (h5ls paths, npz members, zarr node
paths). Bash splits words at `:` (it is in `COMP_WORDBREAKS`), so bash gets its own
completion class: it reads the command line as typed (`COMP_LINE`) and answers with the
part of each key after the last word break, which is what bash replaces.
"""

from __future__ import annotations

import os
from pathlib import Path

from click.shell_completion import (
    BashComplete,
    CompletionItem,
    add_completion_class,
    split_arg_string,
)

_CONTAINERS = (".h5", ".hdf5", ".npz", ".zarr")
#: Bash's default word breaks, when the shell does not say.
_WORD_BREAKS = " \t\n\"'><=;|&(:"


def complete_ref(incomplete: str) -> list[CompletionItem]:
    """`FILE:` -> the KEYs inside FILE that start with what follows; else file names."""
    path, colon, key = incomplete.rpartition(":")
    if colon and path.lower().endswith(_CONTAINERS) and Path(path).exists():
        return [CompletionItem(f"{path}:{name}") for name in _keys(path) if name.startswith(key)]
    return [CompletionItem(incomplete, type="file")]


def _keys(path: str) -> list[str]:
    """The arrays in a container, as KEYs; none when it cannot be read (completion never
    fails: the command itself says what is wrong)."""
    from lstmshape import io
    from lstmshape.refs import ArrayRef

    try:
        return [str(info.ref.key) for info in io.list_arrays(ArrayRef(path))]
    except Exception:
        return []


class ColonBashComplete(BashComplete):
    """Bash completion that keeps `FILE:KEY` whole (see the module docstring)."""

    source_template = BashComplete.source_template.replace(
        "COMP_CWORD=$COMP_CWORD ",
        'COMP_CWORD=$COMP_CWORD COMP_LINE="$COMP_LINE" COMP_POINT=$COMP_POINT '
        'COMP_WORDBREAKS="$COMP_WORDBREAKS" ',
    )
    _trim = 0

    def get_completion_args(self) -> tuple[list[str], str]:
        if "COMP_LINE" not in os.environ:
            return super().get_completion_args()
        line = os.environ["COMP_LINE"][: int(os.environ.get("COMP_POINT", "1000000000"))]
        words = split_arg_string(line)
        incomplete = words.pop() if words and line and not line[-1].isspace() else ""
        breaks = os.environ.get("COMP_WORDBREAKS", _WORD_BREAKS)
        self._trim = max((i + 1 for i, ch in enumerate(incomplete) if ch in breaks), default=0)
        return words[1:], incomplete

    def format_completion(self, item: CompletionItem) -> str:
        value = item.value if item.type == "file" else item.value[self._trim :]
        return f"{item.type},{value}"


add_completion_class(ColonBashComplete, "bash")
