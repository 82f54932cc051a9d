"""The house's layers (../shared/DESIGN.md, *Layers*): imports point down only.

errors → syntax → ops → graph → compiler → api → check · nn → cli. Every import in every module counts,
the ones inside functions too (a lazy import upward is still a cycle in the design).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "graphconv"
RANK = {"errors": 0, "syntax": 1, "ops": 2, "graph": 3, "compiler": 4, "api": 5, "__init__": 5, "__main__": 7,
        "library": 5, "check": 6, "nn": 6, "cli": 7}


def layer(module: str) -> str:
    """``graphconv.compiler.codegen.export`` → ``compiler``; ``graphconv`` itself → ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> list[tuple[str, int]]:
    """Every graphconv module ``path`` imports (absolute names), with the line."""
    found = []
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.append((base, node.lineno))
    return [(name, line) for name, line in found if name == "graphconv" or name.startswith("graphconv.")]


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert {layer(module_name(path)) for path in MODULES} <= set(RANK)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_it(path):
    own = layer(module_name(path))
    upward = [f"line {line}: {name} ({layer(name)})" for name, line in imported(path)
              if name != "graphconv" and RANK[layer(name)] > RANK[own]]
    assert not upward, f"{path.relative_to(PACKAGE)} ({own}) imports upward: {upward}"


def test_peers_do_not_import_each_other():
    """check and nn stand side by side: neither imports the other."""
    for path in MODULES:
        own = layer(module_name(path))
        if own in ("check", "nn"):
            other = {"check": "nn", "nn": "check"}[own]
            assert all(layer(name) != other for name, _ in imported(path)), path


def test_imports_are_found():
    """The walk sees lazy imports inside functions (so the test above can fail)."""
    names = {name for name, _ in imported(PACKAGE / "api.py")}
    assert "graphconv.compiler.compiled" in names
