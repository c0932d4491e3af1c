"""The package's shape holds: no import cycle, heavy libraries only at home, short modules.

Every module in lstmshape/ is parsed with `ast` (nothing is imported). Imports inside
functions count; imports under `if TYPE_CHECKING:` do not make cycles (they never run), but
they do count against a library's home. Each violation is one line of the failure message.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT

PACKAGE = ROOT / "lstmshape"
MAX_LINES = 400

# library -> (where it may be imported, the path prefixes relative to lstmshape/ that allow it)
HOMES = {
    "click": ("the CLI (lstmshape/cli.py, lstmshape/cli/)", ("cli.py", "cli/")),
    "rich": ("lstmshape/render.py or lstmshape/render/", ("render.py", "render/")),
    "h5py": ("lstmshape/io/", ("io/",)),
    "zarr": ("lstmshape/io/", ("io/",)),
    "dask": ("lstmshape/engines/dask*", ("engines/dask",)),
    "distributed": ("lstmshape/engines/dask*", ("engines/dask",)),
}


@dataclass(frozen=True)
class Import:
    """One import statement: the module named, where it stands, and whether it can run."""

    name: str
    line: int
    runs: bool  # False under `if TYPE_CHECKING:`


# ----------------------------------------------------------------------------- parsing


def module_names(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file below `package`."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, runs: bool = True) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below `node`, with False below an `if TYPE_CHECKING:` (not its else)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield child, runs
            for stmt in child.body:
                yield stmt, False
                yield from _walk(stmt, False)
            for stmt in child.orelse:
                yield stmt, runs
                yield from _walk(stmt, runs)
            continue
        yield child, runs
        yield from _walk(child, runs)


def _import_call(node: ast.Call) -> str | None:
    """The module of `importlib.import_module("x")` / `__import__("x")` with a literal name."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _absolute(name: str | None, level: int, package: str) -> str:
    """The absolute module of `from <level dots><name> import ...` written in `package`."""
    if not level:
        return name or ""
    parts = package.split(".")
    anchor = parts[: len(parts) - level + 1]
    return ".".join([*anchor, name] if name else anchor)


def imports(path: Path, module: str) -> list[Import]:
    """What `path` (the module `module`) imports: absolute names, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node, runs in _walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno, runs) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            # `from P import n` loads the module P.n if there is one, else P: see _resolve.
            found += [Import(f"{base}.{alias.name}", node.lineno, runs) for alias in node.names]
        elif isinstance(node, ast.Call) and (name := _import_call(node)):
            found.append(Import(name, node.lineno, runs))
    return found


# ----------------------------------------------------------------------------- the rules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module `name` loads: itself, or the longest module prefix of it."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(package: Path) -> dict[str, dict[str, int]]:
    """module -> {module it imports at run time: line of the first such import}."""
    modules = module_names(package)
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for module, path in modules.items():
        for imp in imports(path, module):
            if not imp.runs or imp.name.split(".")[0] != package.name:
                continue
            target = _resolve(imp.name, modules)
            if target is not None and target != module:
                graph[module][target] = min(imp.line, graph[module].get(target, imp.line))
    return graph


def cycle_violations(package: Path) -> list[str]:
    graph = import_graph(package)
    modules = module_names(package)
    lines = []
    for component in _cycles(graph):
        path = _shortest_cycle(graph, component)
        where = ", ".join(
            f"{_rel(modules[a], package)}:{graph[a][b]}" for a, b in itertools.pairwise(path)
        )
        rest = sorted(set(component) - set(path))
        more = f"; the cycles also run through {', '.join(rest)}" if rest else ""
        lines.append(f"import cycle {' -> '.join(path)} ({where}){more}")
    return lines


def home_violations(package: Path) -> list[str]:
    lines = []
    for module, path in module_names(package).items():
        relative = path.relative_to(package).as_posix()
        for imp in imports(path, module):
            library = imp.name.split(".")[0]
            if library not in HOMES:
                continue
            home, prefixes = HOMES[library]
            if not relative.startswith(prefixes):
                lines.append(f"{_rel(path, package)}:{imp.line}: {library} imported outside {home}")
    return sorted(set(lines), key=_by_place)


def size_violations(package: Path) -> list[str]:
    lines = []
    for path in module_names(package).values():
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > MAX_LINES:
            lines.append(f"{_rel(path, package)}: {count} lines (at most {MAX_LINES})")
    return lines


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, inside the component."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    for node in queue:
        for succ in sorted(graph[node]):
            if succ == start:
                return [*paths[node], start]
            if succ in members and succ not in paths:
                paths[succ] = [*paths[node], succ]
                queue.append(succ)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def _rel(path: Path, package: Path) -> str:
    return path.relative_to(package.parent).as_posix()


def _by_place(line: str) -> tuple[str, int]:
    file, _, rest = line.partition(":")
    return file, int(rest.partition(":")[0])


def _fail_on(violations: list[str]) -> None:
    if violations:
        pytest.fail("\n".join(violations), pytrace=False)


# ----------------------------------------------------------------------------- the package


def test_no_import_cycles() -> None:
    _fail_on(cycle_violations(PACKAGE))


def test_heavy_libraries_are_imported_only_at_home() -> None:
    _fail_on(home_violations(PACKAGE))


def test_no_module_is_over_400_lines() -> None:
    _fail_on(size_violations(PACKAGE))


# ----------------------------------------------------------------------------- the checker


def _tree(root: Path, files: dict[str, str]) -> Path:
    """A package `pkg` below `root` with the given modules (path -> source)."""
    for name, source in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return root / "pkg"


def test_a_cycle_through_a_function_level_relative_import_is_found(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg import b\n",
            "b.py": "import os\n\n\ndef f():\n    from . import a\n",
            "c.py": "import pkg.d.e\n",
            "d/__init__.py": "",
            "d/e.py": "def g():\n    from ..c import x\n",
        },
    )
    assert cycle_violations(package) == [
        "import cycle pkg.a -> pkg.b -> pkg.a (pkg/a.py:1, pkg/b.py:5)",
        "import cycle pkg.c -> pkg.d.e -> pkg.c (pkg/c.py:1, pkg/d/e.py:2)",
    ]


def test_a_larger_cycle_names_every_module_in_it(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg import b, c\n",
            "b.py": "from pkg import a\n",
            "c.py": "from pkg.d import x\n",
            "d.py": "import pkg.a\n",
        },
    )
    assert cycle_violations(package) == [
        "import cycle pkg.a -> pkg.b -> pkg.a (pkg/a.py:1, pkg/b.py:1); "
        "the cycles also run through pkg.c, pkg.d"
    ]


def test_type_checking_imports_and_sibling_imports_make_no_cycle(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "c.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.d import X\n",
            "d.py": "from typing import TYPE_CHECKING\nimport pkg.c\n",
            "io/__init__.py": "from pkg.io.npy import load\n",
            "io/npy.py": "from . import base\nfrom pkg.io.base import Sink\n",
            "io/base.py": "",
        },
    )
    assert cycle_violations(package) == []
    # ...but the package's own names, imported from a module it imports, are a cycle.
    (package / "io" / "base.py").write_text("from pkg.io import load\n", encoding="utf-8")
    assert cycle_violations(package) == [
        "import cycle pkg.io -> pkg.io.npy -> pkg.io.base -> pkg.io "
        "(pkg/io/__init__.py:1, pkg/io/npy.py:1, pkg/io/base.py:1)"
    ]


def test_the_else_of_type_checking_runs(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    pass\nelse:\n    from pkg import b\n",
            "b.py": "import pkg.a\n",
        },
    )
    assert cycle_violations(package) == [
        "import cycle pkg.a -> pkg.b -> pkg.a (pkg/a.py:5, pkg/b.py:1)"
    ]


def test_libraries_away_from_home_are_found_however_imported(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "cli.py": "import click\nfrom rich import print\n",
            "render.py": "from rich.console import Console\n",
            "report.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from rich.tree import Tree\n",
            "sources.py": "def f():\n    import h5py.h5f\n",
            "load.py": "import importlib\nzarr = importlib.import_module('zarr.storage')\n",
            "helpers.py": "import click.testing\n",
            "io/__init__.py": "",
            "io/h5.py": "import h5py\n",
            "io/zarr/store.py": "import zarr\nfrom dask import array\n",
            "engines/__init__.py": "",
            "engines/dask_engine.py": "import dask.array as da\nfrom distributed import Client\n",
            "engines/dask/cluster.py": "import distributed\n",
            "engines/local.py": "def f():\n    from distributed import Client\n",
        },
    )
    assert home_violations(package) == [
        "pkg/cli.py:2: rich imported outside lstmshape/render.py or lstmshape/render/",
        "pkg/engines/local.py:2: distributed imported outside lstmshape/engines/dask*",
        "pkg/helpers.py:1: click imported outside the CLI (lstmshape/cli.py, lstmshape/cli/)",
        "pkg/io/zarr/store.py:2: dask imported outside lstmshape/engines/dask*",
        "pkg/load.py:2: zarr imported outside lstmshape/io/",
        "pkg/report.py:3: rich imported outside lstmshape/render.py or lstmshape/render/",
        "pkg/sources.py:2: h5py imported outside lstmshape/io/",
    ]


def test_modules_over_the_limit_are_named(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {"__init__.py": "", "short.py": "x = 1\n" * MAX_LINES, "long.py": "x = 1\n" * 401},
    )
    assert size_violations(package) == ["pkg/long.py: 401 lines (at most 400)"]
