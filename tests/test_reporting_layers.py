"""The report sits above the estimator: it uses public API only, and nothing below imports it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "headstart"


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> Iterator[tuple[str, str]]:
    """(module, name) of every import a module runs, at any depth, except under TYPE_CHECKING."""

    def walk(node: ast.AST) -> Iterator[tuple[str, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (pair for stmt in child.orelse for pair in walk(stmt))
                continue
            if isinstance(child, ast.Import):
                yield from ((alias.name, "") for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                yield from ((child.module, alias.name) for alias in child.names)
            yield from walk(child)

    yield from walk(ast.parse(path.read_text(encoding="utf-8")))


def _sources(under: str = "") -> list[Path]:
    return sorted((SRC / under).rglob("*.py"))


@pytest.mark.parametrize("path", _sources("evaluation"), ids=lambda p: p.name)
def test_evaluation_imports_neither_the_estimator_nor_the_report(path: Path) -> None:
    for module, _ in _runtime_imports(path):
        assert not module.startswith(("headstart.estimator", "headstart.reporting")), module


def test_nothing_below_the_report_imports_it() -> None:
    above = (SRC / "reporting", SRC / "cli", SRC / "serve")  # the report and its two front ends
    for path in _sources():
        if any(path.is_relative_to(folder) for folder in above):
            continue
        for module, _ in _runtime_imports(path):
            assert not module.startswith("headstart.reporting"), f"{_module(path)}: {module}"


@pytest.mark.parametrize("path", _sources("reporting"), ids=lambda p: p.name)
def test_the_report_uses_no_private_name_of_another_package(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("headstart"):
            if node.module.startswith("headstart.reporting"):
                continue
            # A private module of the root package (headstart._text) is every package's, as
            # test_architecture holds; one inside another package is that package's alone.
            inner = node.module.split(".")[2:] if node.module.count(".") >= 2 else []
            assert not any(p.startswith("_") for p in inner), node.module
            private = [a.name for a in node.names if a.name.startswith("_") and a.name[1] != "_"]
            assert not private, f"{node.module}: {private}"
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            assert node.attr.startswith("__"), f"{path.name}:{node.lineno} uses .{node.attr}"
