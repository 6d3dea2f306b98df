"""The shape of the code: layers import only downwards, no import cycles, no huge modules.

Every module of ``pydock.core``, ``pydock.drivers`` and ``pydock.testing`` is read from its
source file with :mod:`ast` (nothing is imported), and every import of a pydock module is
collected wherever it stands: at module level, inside a function, or under
``if TYPE_CHECKING:``. A function-level import still ties the two modules together, and an
annotation-only one still says which layer knows about which: both count.

These checks need no root and run no container.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

import pytest

pytestmark = pytest.mark.quick

REPO = Path(__file__).resolve().parent.parent
# Source folder -> the import package it is installed as (pyproject.toml's package-dir).
PACKAGES = {"core": "pydock.core", "drivers": "pydock.drivers", "testing": "pydock.testing"}
MAX_LINES = 600
# Besides the packages: the benchmark scripts, plain modules run from their folder, and the
# tests, which a reader also looks up by topic.
ALSO_SIZE_CHECKED = ("benchmarks", "tests")


class Layer(NamedTuple):
    name: str
    members: tuple[str, ...]  # module names; "pkg.*" is a package and everything in it
    uses: tuple[str, ...] | None = None  # None: its own layer and every layer above it here


# THE layer table. Read from the bottom up; a module may import its own layer and the layers
# listed above it, unless its row names what it may use instead.
#
# - ground: helpers that know nothing of containers, images or drivers. errors.py sits here
#   because it imports nothing and every floor, the ground helpers included, raises PydockError.
# - contract: what a storage driver is written against. driver.py (the StorageDriver base
#   class, Mount, Usage) and hookspecs.py (the hook) are the contract itself; pydock.core
#   (core/__init__.py) holds ``hookimpl``, with which a plugin marks its hook; plugins.py is the
#   contract's host side (the registry that loads plugins and asks drivers whether they are
#   available). All four sit below layers/ and everything else, because the runtime (Mount),
#   containers, bench, cli and the drivers all build on them, while they need only the ground
#   floor. plugins.py loads the built-in drivers by name, as it loads any plugin: that is no
#   import, so core never depends on pydock.drivers.
# - drivers: plugins. They implement the contract with the ground floor and the layer format
#   (flattening a chain), and must never reach into images, runtime or containers: a
#   third-party driver cannot either.
# - snapshotter: containerd's Snapshots API served over any driver (`pydock snapshotter
#   serve`). It sits above containers, whose naive differ builds its committed layers for
#   drivers without a changes directory, and below the CLI that starts it.
# - testing: the conformance suite and test helpers, free to use anything it tests.
LAYERS: tuple[Layer, ...] = (
    Layer("ground", (
        "pydock.core.errors", "pydock.core.failpoints", "pydock.core.files", "pydock.core.ids",
        "pydock.core.leftovers", "pydock.core.processes", "pydock.core.progress",
        "pydock.core.storage_root", "pydock.core.syscalls",
    )),
    Layer("contract", (
        "pydock.core", "pydock.core.driver", "pydock.core.hookspecs", "pydock.core.plugins",
    )),
    Layer("layers", ("pydock.core.layers.*",)),
    Layer("images", ("pydock.core.images.*",)),
    Layer("runtime", ("pydock.core.runtime.*",)),
    Layer("containers", ("pydock.core.containers.*",)),
    Layer("bench", ("pydock.core.bench.*",)),
    Layer("snapshotter", ("pydock.core.snapshotter.*",)),
    Layer("cli", ("pydock.core.cli.*",)),
    Layer("drivers", ("pydock.drivers.*",), uses=("ground", "contract", "layers", "drivers")),
    Layer("testing", ("pydock.testing.*",), uses=(
        "ground", "contract", "layers", "images", "runtime", "containers", "bench",
        "snapshotter", "cli", "drivers", "testing",
    )),
)


class Import(NamedTuple):
    importer: str
    imported: str
    path: Path
    line: int
    where: str  # "at module level", "inside a function", "under TYPE_CHECKING"

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line} ({self.where})"


def module_files() -> dict[str, Path]:
    """Every module of the three packages, by the name it is imported as."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def resolve(names: list[str], known: set[str]) -> Iterator[str]:
    """The modules that ``import``/``from ... import`` statements name: ``pkg.x`` when it is a
    module, else the nearest enclosing module (``from pkg.mod import function`` -> ``pkg.mod``)."""
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            yield name


def imports_in(module: str, source: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import of a module in ``known`` that ``source`` (the text of ``module``) makes."""
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, where: str) -> Iterator[Import]:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for statement in node.body:
                yield from visit(statement, "under TYPE_CHECKING")
            for statement in node.orelse:
                yield from visit(statement, where)
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            where = "inside a function"
        yield from imports_of(node, where)
        for child in ast.iter_child_nodes(node):
            yield from visit(child, where)

    def imports_of(node: ast.AST, where: str) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            return
        for imported in dict.fromkeys(resolve(names, known)):
            if imported != module:
                yield Import(module, imported, path, node.lineno, where)

    yield from visit(ast.parse(source, str(path)), "at module level")


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def all_imports() -> list[Import]:
    modules = module_files()
    known = set(modules)
    return [found for module, path in modules.items()
            for found in imports_in(module, path.read_text(), path, known)]


def layer_of(module: str) -> Layer | None:
    for layer in LAYERS:
        for member in layer.members:
            if module == member.removesuffix(".*") or (
                    member.endswith(".*") and module.startswith(member[:-1])):
                return layer
    return None


def may_use(layer: Layer) -> tuple[str, ...]:
    if layer.uses is not None:
        return layer.uses
    names = [other.name for other in LAYERS]
    return tuple(names[:names.index(layer.name) + 1])


def shortest_cycle(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """The shortest import path from ``start`` back to itself, if there is one."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph.get(node, ())):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if target not in came_from:
                came_from[target] = node
                queue.append(target)
    return None


def test_the_import_scanner_sees_every_kind_of_import() -> None:
    source = (
        "from __future__ import annotations\n"
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "import pkg.low\n"
        "from pkg import sub\n"
        "from pkg.sub.mod import function\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.typed import Thing\n"
        "def later() -> None:\n"
        "    from ..low import helper\n"
    )
    path = Path("pkg/sub/here.py")
    known = {"pkg", "pkg.low", "pkg.sub", "pkg.sub.mod", "pkg.sub.sibling", "pkg.typed"}
    found = {(i.imported, i.line, i.where)
             for i in imports_in("pkg.sub.here", source, path, known)}
    assert found == {
        ("pkg.low", 4, "at module level"),
        ("pkg.sub", 5, "at module level"),
        ("pkg.sub.mod", 6, "at module level"),
        ("pkg.sub.sibling", 7, "at module level"),
        ("pkg.typed", 9, "under TYPE_CHECKING"),
        ("pkg.low", 11, "inside a function"),
    }


def test_the_scan_reads_every_package() -> None:
    modules = module_files()
    assert {"pydock.core", "pydock.core.cli.main", "pydock.drivers.overlay",
            "pydock.testing.conformance"} <= set(modules)
    importers = {found.importer for found in all_imports()}
    assert {"pydock.core.cli.main", "pydock.drivers.overlay", "pydock.testing.cli"} <= importers


def test_no_import_cycles() -> None:
    imports = all_imports()
    graph: dict[str, set[str]] = {}
    for found in imports:
        graph.setdefault(found.importer, set()).add(found.imported)
    cycles: dict[frozenset[str], list[str]] = {}
    for module in sorted(graph):
        cycle = shortest_cycle(module, graph)
        if cycle is not None:
            cycles.setdefault(frozenset(cycle), cycle)
    where: dict[tuple[str, str], list[str]] = {}
    for found in imports:
        where.setdefault((found.importer, found.imported), []).append(str(found))
    problems = []
    for cycle in cycles.values():
        steps = "\n".join(f"    {a} imports {b} at {', '.join(where[a, b])}"
                          for a, b in pairwise(cycle))
        problems.append(f"import cycle {' -> '.join(cycle)}:\n{steps}")
    if problems:
        pytest.fail(
            "\n".join(problems) + "\nBreak each cycle: move what one module needs from the other "
            "into it or into a new module below both, or have the caller pass it in. A "
            "function-level or TYPE_CHECKING import still counts: it only hides the cycle.",
            pytrace=False)


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(module for module in module_files() if layer_of(module) is None)
    if unplaced:
        pytest.fail(
            f"modules in no layer: {unplaced}. Add each to a row of LAYERS in "
            f"{Path(__file__).name} (the ground floor if it knows nothing of pydock's concepts, "
            "else the lowest layer whose modules it needs).",
            pytrace=False)


def test_imports_go_only_downwards() -> None:
    problems = []
    for found in all_imports():
        importer, imported = layer_of(found.importer), layer_of(found.imported)
        if importer is None or imported is None:
            continue  # test_every_module_has_a_layer reports these
        if imported.name not in may_use(importer):
            problems.append(
                f"{found.importer} ({importer.name}) imports {found.imported} ({imported.name}) "
                f"at {found}; {importer.name} may import only {', '.join(may_use(importer))}")
    if problems:
        pytest.fail(
            "\n".join(problems) + "\nMove what is needed down into a layer the importer may "
            "use, or have the higher layer pass it in (a callback, a value); do not move the "
            "importer up the table to make this pass.",
            pytrace=False)


def test_no_module_over_600_lines() -> None:
    scripts = (path for folder in ALSO_SIZE_CHECKED for path in (REPO / folder).glob("*.py"))
    paths = sorted({*module_files().values(), *scripts})
    too_long = [f"{path.relative_to(REPO)}: {lines} lines"
                for path in paths if (lines := len(path.read_text().splitlines())) > MAX_LINES]
    if too_long:
        pytest.fail(
            "\n".join(too_long) + f"\nSplit each into modules of at most {MAX_LINES} lines, one "
            "topic per module, in the same folder (a reader looks for a topic by file name).",
            pytrace=False)


def test_package_inits_import_nothing() -> None:
    # A package's __init__ runs whenever any of its modules is imported: whatever it imports,
    # every `pydock run` pays for. pydock.core's own __init__ holds the plugin marker `hookimpl`
    # (the contract: `from pydock.core import hookimpl`) and may import pluggy for it.
    allowed = {"pydock.core": {"pluggy"}}
    problems = []
    for module, path in module_files().items():
        if path.name != "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            else:
                continue
            for name in names:
                if name not in allowed.get(module, set()):
                    problems.append(f"{path.relative_to(REPO)}:{node.lineno} imports {name}")
    if problems:
        pytest.fail(
            "\n".join(problems) + "\nA package __init__ holds only its docstring: import from the "
            "module itself (`from pydock.core.images.store import ImageStore`), not the package.",
            pytrace=False)
