"""The layering of ``src/headstart``, read from the source with ``ast`` (nothing is imported).

Two rules keep the house navigable as it grows (issue 23):

- **No import circle.** Between modules, counting the imports that run when a module is loaded
  (those inside functions and under ``if TYPE_CHECKING:`` run later or never, so they cannot make
  a half-initialised module); and between the top-level rooms (``headstart.estimator``,
  ``headstart.evaluation``, ``headstart.strategies``, ...), counting function-level imports too,
  because a lazy import upwards is still a room that depends on the one above it.
- **No reaching into another package's privates.** A name or module segment that starts with an
  underscore belongs to the package that holds it; modules of that package (and of its
  subpackages) may use it, nobody else. ``headstart._text`` is private to ``headstart`` and so
  usable everywhere; ``headstart.strategies._common`` only inside ``headstart.strategies``.

``KNOWN_VIOLATIONS`` lists the imports that break a rule today, in files being reworked
elsewhere; an entry that no longer occurs fails the test, so the list can only shrink.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# (importer, imported as written): imports that break a rule today, in files being reworked by
# other slices of issue 23. An import of another package's private name, or the import that
# closes a circle between rooms (the one pointing upwards).
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "headstart"


@dataclass(frozen=True)
class Import:
    """One imported dotted path, where it was written, and whether it runs at module load."""

    importer: str
    target: str
    at_load: bool
    type_checking: bool

    @property
    def key(self) -> tuple[str, str]:
        """How ``KNOWN_VIOLATIONS`` names it."""
        return (self.importer, self.target)


def _modules() -> dict[str, Path]:
    """Every module under ``src/headstart`` by dotted name (packages by their own name)."""
    found: dict[str, Path] = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> Iterator[Import]:
    """The imports of ``module`` as dotted targets (``from a import b`` gives ``a.b``)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if _is_package(module) else module.rpartition(".")[0]

    def visit(node: ast.AST, at_load: bool, type_checking: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, at_load, type_checking)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    target = base if alias.name == "*" else f"{base}.{alias.name}"
                    yield Import(module, target, at_load, type_checking)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from visit(child, False, type_checking)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), False, True)
                for stmt in child.orelse:
                    yield from visit(
                        ast.Module(body=[stmt], type_ignores=[]), at_load, type_checking
                    )
            else:
                yield from visit(child, at_load, type_checking)

    yield from visit(tree, True, False)


IMPORTS = [imp for module in MODULES for imp in _imports(module)]


def _resolve(target: str) -> str | None:
    """The headstart module ``target`` loads: itself, or the module that holds the name."""
    if target in MODULES:
        return target
    holder = target.rpartition(".")[0]
    return holder if holder in MODULES else None


def _private_owner(target: str) -> str | None:
    """The package a private segment of ``target`` belongs to, or None when all are public."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            owner = ".".join(parts[:i])
            return owner if _is_package(owner) else owner.rpartition(".")[0]
    return None


def _room(module: str) -> str:
    """The top-level room a module lives in: ``headstart.strategies._loop`` -> strategies."""
    return ".".join(module.split(".")[:2])


def _circles(edges: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[tuple[str, ...]] = set()

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def _module_edges(allowed: frozenset[tuple[str, str]] = KNOWN_VIOLATIONS) -> dict[str, set[str]]:
    """Module -> modules it imports when loaded, leaving out the ``allowed`` imports."""
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        target = _resolve(imp.target)
        if imp.at_load and target and target != imp.importer and imp.key not in allowed:
            edges.setdefault(imp.importer, set()).add(target)
    return edges


def _room_edges(allowed: frozenset[tuple[str, str]] = KNOWN_VIOLATIONS) -> dict[str, set[str]]:
    """Room -> rooms it imports from anywhere but ``if TYPE_CHECKING:``, less ``allowed``."""
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        target = _resolve(imp.target)
        if imp.type_checking or not target or _room(target) == _room(imp.importer):
            continue
        if imp.key not in allowed:
            edges.setdefault(_room(imp.importer), set()).add(_room(target))
    return edges


def _private_imports() -> set[tuple[str, str]]:
    """(importer, imported) for every import of a private name from outside its package."""
    found = set()
    for imp in IMPORTS:
        owner = _private_owner(imp.target)
        if owner is None or not imp.target.startswith(f"{PACKAGE}."):
            continue
        if imp.importer != owner and not imp.importer.startswith(f"{owner}."):
            found.add(imp.key)
    return found


def _violations() -> set[tuple[str, str]]:
    """Every import that breaks a rule, with no allowlist: private, or closing a circle."""
    found = _private_imports()
    none: frozenset[tuple[str, str]] = frozenset()
    module_circles = _circles(_module_edges(none))
    room_circles = _circles(_room_edges(none))
    for imp in IMPORTS:
        target = _resolve(imp.target)
        if not target:
            continue
        if imp.at_load and any({imp.importer, target} <= set(c) for c in module_circles):
            found.add(imp.key)
        rooms = {_room(imp.importer), _room(target)}
        if not imp.type_checking and len(rooms) == 2:
            if any(rooms <= set(c) for c in room_circles):
                found.add(imp.key)
    return found


def test_the_source_tree_is_found() -> None:
    assert f"{PACKAGE}.estimator" in MODULES and f"{PACKAGE}.backbones.registry" in MODULES


def test_no_import_circle_between_modules_at_load_time() -> None:
    circles = _circles(_module_edges())
    assert not circles, f"modules that import each other when loaded: {sorted(circles)}"


def test_no_import_circle_between_top_level_rooms() -> None:
    circles = _circles(_room_edges())
    assert not circles, f"rooms that import each other: {sorted(circles)}"


def test_no_module_imports_another_packages_private_names() -> None:
    found = _private_imports() - KNOWN_VIOLATIONS
    assert not found, (
        "imports of another package's private names (make the name public in its package, or "
        f"move the importer): {sorted(found)}"
    )


def test_backbone_families_never_import_the_registry_that_dispatches_to_them() -> None:
    """No circle inside ``headstart.backbones``, counting lazy and type-checking imports too."""
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        target = _resolve(imp.target)
        inside = imp.importer.startswith("headstart.backbones")
        if inside and target and target.startswith("headstart.backbones"):
            if target != imp.importer:
                edges.setdefault(imp.importer, set()).add(target)
    assert not _circles(edges)


@pytest.mark.parametrize("known", sorted(KNOWN_VIOLATIONS), ids="->".join)
def test_each_known_violation_still_occurs(known: tuple[str, str]) -> None:
    """An entry that no longer breaks a rule must leave the list, so that the list only shrinks."""
    assert known in _violations(), f"{known} is fixed: remove it from KNOWN_VIOLATIONS"


def _public_modules() -> list[str]:
    """Every module of the package whose path has no private part (``_name``)."""
    import pkgutil

    import headstart

    names = ["headstart"]
    for info in pkgutil.walk_packages(headstart.__path__, "headstart."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("module", _public_modules())
def test_every_name_in_a_public_modules_all_exists_and_says_what_it_is(module: str) -> None:
    """``__all__`` is the public API: each name it lists must import, and each function or
    class it lists must carry a docstring (the CLI's ``register``/``run`` pairs aside: their
    ``--help`` is their documentation). Mutation: listing a name the module lost (a rename left
    behind in ``__all__``) fails here; ``from headstart import *`` would raise."""
    import importlib
    import inspect

    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    if names is None:
        return
    assert len(set(names)) == len(names), f"{module}.__all__ lists a name twice"
    for name in names:
        value = getattr(mod, name)  # AttributeError: listed but missing
        command = module.startswith("headstart.cli.") and name in {"register", "run"}
        if (inspect.isfunction(value) or inspect.isclass(value)) and not command:
            assert inspect.getdoc(value), f"{module}.{name} has no docstring"
